import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { Browser, Page } from 'playwright-core';
import {
  addUser,
  type Daemon,
  hasChromium,
  hasServe,
  launchBrowser,
  screenshot,
  startDaemon,
  text,
} from '../helpers/browser.js';
import { runJson } from '../helpers/cli.js';
import { STANDARD_SPEC, startLab, type TestLab } from '../helpers/lab.js';
import { requireCapability } from '../helpers/require.js';

/**
 * The web UI in real headless Chromium against a real `snapkeeper serve` on the lab: what an administrator
 * does in a browser, end to end. Screenshots go to test-artifacts/browser/ (their paths are printed).
 */

const PASSWORD = 'browser-test-pw-1';
const TIMEOUT = 120_000;

describe('web UI in headless Chromium', { timeout: 600_000 }, () => {
  let lab: TestLab | undefined;
  let daemon: Daemon | undefined;
  let browser: Browser | undefined;
  let ready = false;

  before(async () => {
    if (!hasChromium || !hasServe()) return;
    lab = await startLab(STANDARD_SPEC);
    await addUser(lab.configPath, lab.dir, 'alice', 'admin', PASSWORD);
    daemon = await startDaemon(lab.configPath);
    browser = await launchBrowser();
    ready = true;
  });

  after(async () => {
    await browser?.close();
    await daemon?.stop();
    await lab?.stop();
  });

  function available(t: Parameters<typeof requireCapability>[0]): boolean {
    return (
      requireCapability(t, hasChromium, 'Debian chromium is not installed (/usr/bin/chromium)') &&
      requireCapability(t, hasServe(), 'this checkout has no `snapkeeper serve` yet') &&
      ready
    );
  }

  async function newPage(): Promise<{ page: Page; errors: string[] }> {
    const context = await browser!.newContext({ viewport: { width: 1366, height: 800 } });
    const page = await context.newPage();
    page.setDefaultTimeout(30_000);
    const errors: string[] = [];
    page.on('pageerror', (e) => errors.push(e.message));
    return { page, errors };
  }

  async function login(page: Page): Promise<void> {
    await page.goto(daemon!.url);
    await page.getByLabel('User name').fill('alice');
    await page.getByLabel('Password').fill(PASSWORD);
    await page.getByRole('button', { name: 'Log in' }).click();
    await page.getByRole('heading', { level: 1, name: 'Dashboard' }).waitFor();
  }

  it('logs in, shows the inventory with RDM disks marked, runs a task, shows MODE_CHANGED_RDM, restores a VM as a new one', async (t) => {
    if (!available(t)) return;
    const { page, errors } = await newPage();

    // A wrong password is refused with a message, and nothing else is shown.
    await page.goto(daemon!.url);
    await page.getByLabel('User name').fill('alice');
    await page.getByLabel('Password').fill('not-the-password');
    await page.getByRole('button', { name: 'Log in' }).click();
    await page.getByRole('alert').filter({ hasText: 'Wrong user name or password' }).waitFor();
    assert.equal(await page.getByRole('navigation', { name: 'Main' }).count(), 0);

    await login(page);
    await screenshot(page, '01-dashboard-empty');

    // Inventory: db01's two raw device mappings and app01's independent disk are marked with text.
    await page.getByRole('link', { name: 'Inventory' }).click();
    await page.getByRole('heading', { level: 1, name: 'Inventory' }).waitFor();
    const db01 = page.locator('li.vm-node[data-vm="db01"]');
    await db01.waitFor();
    assert.match(await text(db01.locator('summary')), /2 RDM disks/);
    const rdm = db01.locator('li.disk');
    assert.equal(await rdm.count(), 3);
    assert.match(await text(rdm.nth(1)), /Hard disk 2[\s\S]*RDM physical/);
    assert.match(await text(rdm.nth(2)), /Hard disk 3[\s\S]*RDM virtual/);
    assert.equal(await db01.locator('li.disk[data-disk-kind="rdm-physical"]').count(), 1);
    assert.equal(await db01.locator('li.disk[data-disk-kind="rdm-virtual"]').count(), 1);
    assert.match(await text(page.locator('li.vm-node[data-vm="app01"] summary')), /1 independent/);
    assert.equal(await page.locator('li.vm-node[data-vm="web01"] .badge.kind-rdm-physical').count(), 0);
    for (const host of ['host esx01', 'host esx02', 'host esx-standalone']) {
      assert.equal((await page.getByText(host, { exact: false }).count()) > 0, true, host);
    }
    await screenshot(page, '02-inventory-rdm');

    // Tasks: run lab-all now and watch the job finish over its event stream.
    await page.getByRole('link', { name: 'Tasks' }).click();
    await page.getByRole('link', { name: 'lab-all' }).click();
    await page.getByRole('heading', { level: 1, name: 'Task lab-all' }).waitFor();
    await page.getByRole('button', { name: 'Run lab-all now' }).click();
    const finished = page.locator('.run-task p[role="status"]');
    await finished.waitFor({ timeout: TIMEOUT });
    assert.match(await text(finished), /Backup run finished: complete, \d+ warnings/);
    await screenshot(page, '03-task-run-finished');

    // The backup: db01 changed from SNAPSHOT_EXCL_MEM to ASIS with MODE_CHANGED_RDM, its RDM disks excluded.
    await finished.getByRole('link', { name: /Open backup/ }).click();
    await page.getByRole('heading', { level: 1, name: /^Backup \d{8}-\d{6}-[0-9a-f]{6}$/ }).waitFor();
    const backupId = (await text(page.getByRole('heading', { level: 1 }))).replace('Backup ', '');
    const card = page.locator('section.vm-card[data-vm="db01"]');
    await card.waitFor();
    const overview = page.locator('table.vm-overview tr[data-vm="db01"]');
    assert.match(await text(overview), /SNAPSHOT_EXCL_MEM[\s\S]*ASIS[\s\S]*changed[\s\S]*MODE_CHANGED_RDM/);
    assert.equal(await text(card.locator('[data-field="requestedMode"]')), 'SNAPSHOT_EXCL_MEM');
    assert.match(await text(card.locator('[data-field="effectiveMode"]')), /^ASIS/);
    assert.equal(await text(card.locator('[data-field="consistency"]')), 'crash');
    assert.match(await text(card.locator('[data-field="quiesce"]')), /not held/);
    assert.match(await text(card.locator('.warnings')), /MODE_CHANGED_RDM[\s\S]*db01/);
    const excluded = card.locator('tr.excluded');
    assert.equal(await excluded.count(), 2);
    assert.match(await text(excluded.first()), /no[\s\S]*not on a datastore and is not backed up/);
    const web01 = page.locator('section.vm-card[data-vm="web01"]');
    assert.equal(await text(web01.locator('[data-field="effectiveMode"]')), 'SNAPSHOT_EXCL_MEM');
    assert.match(await text(web01.locator('[data-field="quiesce"]')), /\d+(\.\d+)? (ms|s)/);
    await screenshot(page, '04-backup-mode-changed-rdm');

    // Offload it to the lab's repository from the backup page: live progress, then the copy is listed.
    const copies = page.locator('ul[data-copies]');
    assert.equal(await copies.locator('li[data-copy="repository"]').count(), 0);
    assert.equal(await copies.locator('li[data-copy="array"]').getAttribute('data-present'), 'yes');
    assert.equal(await page.getByLabel('Repository', { exact: true }).inputValue(), 'lab');
    await page.getByRole('button', { name: 'Offload', exact: true }).click();
    const offloadJob = page.locator('form.offload-form .job[data-job-state="done"]');
    await offloadJob.waitFor({ timeout: TIMEOUT });
    const labCopy = copies.locator('li[data-copy="repository"][data-repository="lab"]');
    await labCopy.waitFor();
    assert.match(await text(labCopy), /repository lab: offloaded .+, \d+(\.\d+)? MiB/);
    await screenshot(page, '04a-backup-offloaded');

    // The dashboard names the warning for the task's last run.
    await page.getByRole('link', { name: 'Dashboard' }).click();
    await page.getByRole('heading', { level: 1, name: 'Dashboard' }).waitFor();
    await page.locator('main').getByText('MODE_CHANGED_RDM').first().waitFor();
    await screenshot(page, '04b-dashboard-after-run');

    // Backups list: the new backup is there, filtered by VM.
    await page.goto(`${daemon!.url}/#/backups?vm=db01`);
    await page.locator(`tr[data-backup-id="${backupId}"]`).waitFor();
    assert.equal(await page.getByLabel('VM (name or glob)').inputValue(), 'db01');
    await screenshot(page, '04c-backups-filtered');
    // The filter form: no backup of the lab failed, and "Clear" lists them all again.
    await page.getByLabel('State').selectOption('failed');
    await page.getByRole('button', { name: 'Apply filters' }).click();
    await page.getByText('No backup matches.').waitFor();
    await page.getByRole('button', { name: 'Clear' }).click();
    await page.locator(`tr[data-backup-id="${backupId}"]`).waitFor();

    // Chart of duration and size: one point per backup.
    await page.getByRole('link', { name: 'Statistics' }).click();
    await page.locator('figure.chart.duration circle').first().waitFor();
    // As many points as the API has values (read with the page's own session cookie).
    const stats = (await (await page.request.get(`${daemon!.url}/api/v1/stats/backups`)).json()) as Array<{
      durationMs?: number;
      bytes?: number;
      bytesAdded?: number;
    }>;
    const durations = stats.filter((s) => s.durationMs !== undefined).length;
    const sizes = stats.filter((s) => s.bytes !== undefined).length;
    assert.ok(durations >= 1);
    assert.equal(await page.locator('figure.chart.duration circle').count(), durations);
    // Every backup has a size now (its included disks); the offloaded one has bytes added too.
    assert.equal(sizes, stats.length);
    assert.equal(await page.locator('figure.chart.size circle').count(), sizes);
    const added = stats.filter((s) => s.bytesAdded !== undefined).length;
    assert.equal(added, 1);
    assert.equal(await page.locator('figure.chart.offloaded circle').count(), added);
    await screenshot(page, '05-statistics-chart');

    // Restore db01 as a new VM through the guided form; its RDM disks are not restored.
    await page.goto(`${daemon!.url}/#/backups/${backupId}`);
    await card.getByRole('link', { name: 'Restore db01…' }).click();
    await page.getByRole('heading', { level: 1, name: 'Restore, attach, mount' }).waitFor();
    const disk1 = page.getByRole('checkbox', { name: /Hard disk 1/ });
    await disk1.waitFor();
    assert.equal(await disk1.isChecked(), true);
    assert.equal(await page.getByRole('checkbox', { name: /Hard disk 2/ }).isDisabled(), true);
    await page.getByRole('button', { name: 'Next' }).click();
    await page.getByLabel('Name of the new VM').fill('db01-browser');
    // The source: the array snapshot by default, or the copy offloaded above.
    const source = page.getByLabel('Read the backup from');
    assert.equal(await source.inputValue(), '');
    assert.deepEqual(await source.locator('option').allTextContents(), [
      'the array snapshot (fastest)',
      await text(source.locator('option[value="lab"]')),
    ]);
    assert.match(await text(source.locator('option[value="lab"]')), /^repository lab \(offloaded /);
    await page.getByRole('button', { name: 'Next' }).click();
    await page.getByRole('heading', { name: 'Confirm' }).waitFor();
    assert.match(await text(page.locator('main')), /new VM db01-browser/);
    assert.equal(await text(page.locator('[data-field="source"]')), 'the array snapshot');
    await screenshot(page, '06-restore-confirm');
    await page.getByRole('button', { name: 'Start restore' }).click();
    const result = page.locator('[data-result-state]');
    await result.waitFor({ timeout: TIMEOUT });
    assert.equal(await result.getAttribute('data-result-state'), 'done', await text(result));
    assert.match(await text(result), /RDM_NOT_RESTORED/);
    await screenshot(page, '07-restore-done');

    // Attach web01's disks to the running app01, see it listed, detach it again.
    await page.goto(`${daemon!.url}/#/backups/${backupId}`);
    await page
      .locator('section.vm-card[data-vm="web01"]')
      .getByRole('link', { name: 'Attach disks of web01…' })
      .click();
    await page.getByRole('checkbox', { name: /Hard disk 2/ }).waitFor();
    await page.getByRole('button', { name: 'Next' }).click();
    await page.getByLabel('Attach to the running VM').selectOption('app01');
    await page.getByRole('button', { name: 'Next' }).click();
    await page.getByRole('button', { name: 'Start attach' }).click();
    const attached = page.locator('[data-result-state]');
    await attached.waitFor({ timeout: TIMEOUT });
    assert.equal(await attached.getAttribute('data-result-state'), 'done', await text(attached));
    const row = page.locator('tr[data-mount-kind="attach"]').filter({ hasText: backupId });
    await row.waitFor();
    await screenshot(page, '07b-attached');
    assert.equal(await row.count(), 1);
    await row.getByRole('button', { name: 'Detach' }).click();
    await page.getByText('Nothing is mounted or attached.').waitFor({ timeout: TIMEOUT });

    // Mount the backup on a host, see it listed, unmount it.
    await page.goto(`${daemon!.url}/#/backups/${backupId}`);
    await page.getByRole('link', { name: 'Mount as a datastore…' }).click();
    await page.getByLabel('Host to mount the snapshot on').selectOption('esx-standalone');
    await page.getByRole('button', { name: 'Next' }).click();
    await page.getByRole('button', { name: 'Start mount' }).click();
    const mounted = page.locator('[data-result-state]');
    await mounted.waitFor({ timeout: TIMEOUT });
    assert.equal(await mounted.getAttribute('data-result-state'), 'done', await text(mounted));
    const mountRow = page.locator('tr[data-mount-kind="datastore"]').filter({ hasText: backupId });
    await mountRow.waitFor();
    assert.match(await text(mountRow), /esx-standalone/);
    await screenshot(page, '07c-mounted');
    await mountRow.getByRole('button', { name: 'Unmount' }).click();
    await page.getByText('Nothing is mounted or attached.').waitFor({ timeout: TIMEOUT });

    // Paging: one more backup (by the CLI, beside the daemon), then pages of one backup each.
    const second = await runJson(lab!.configPath, 'backup', '--vm', 'off01');
    assert.equal(second.json?.state, 'complete', second.stdout + second.stderr);
    await page.goto(`${daemon!.url}/#/backups?limit=1`);
    await page.locator(`tr[data-backup-id="${second.json.id}"]`).waitFor();
    assert.equal(await page.locator('tr[data-backup-id]').count(), 1);
    await page.getByRole('button', { name: 'Next page' }).click();
    await page.locator(`tr[data-backup-id="${backupId}"]`).waitFor();
    assert.equal(await text(page.locator('.pager span')), 'Page 2');
    assert.equal(await page.getByRole('button', { name: 'Next page' }).isDisabled(), true);
    await page.getByRole('button', { name: 'Previous page' }).click();
    await page.locator(`tr[data-backup-id="${second.json.id}"]`).waitFor();

    // The new VM exists in vCenter.
    const inv = await runJson(lab!.configPath, 'inventory');
    assert.ok(
      (inv.json.vms as Array<{ name: string }>).some((v) => v.name === 'db01-browser'),
      'db01-browser is in the inventory',
    );
    assert.deepEqual(errors, [], 'no script error in the page');
  });

  it('creates and edits a catalog task (a bad schedule is refused, nothing changed); read-only sees no buttons', async (t) => {
    if (!available(t)) return;
    const { page, errors } = await newPage();
    await login(page);
    await page.getByRole('link', { name: 'Tasks' }).click();
    await page.getByRole('button', { name: 'New task' }).click();
    await page.getByLabel('Name', { exact: true }).fill('web-nightly');
    await page.getByLabel('VMs (names or globs)').fill('web*, app01');
    await page.getByLabel('Backup mode').selectOption('SUSPEND');
    await page.getByLabel('Schedule (cron)').fill('0 2 * * *');
    await page.getByLabel('Time zone').fill('Europe/Berlin');
    await page.getByLabel('Keep versions').fill('7');
    await page.getByRole('button', { name: 'Create task' }).click();
    await page.getByRole('heading', { level: 1, name: 'Task web-nightly' }).waitFor();
    let shown = await runJson(lab!.configPath, 'task', 'show', 'web-nightly');
    assert.equal(shown.json?.source, 'catalog', shown.stdout + shown.stderr);
    assert.deepEqual(shown.json.select, { vms: ['web*', 'app01'] });
    assert.equal(shown.json.mode, 'SUSPEND');
    assert.deepEqual(shown.json.retention, { versions: 7 });

    // An invalid cron schedule: the daemon's message is shown and the stored task is unchanged.
    await page.getByRole('button', { name: 'Edit task' }).click();
    await page.getByLabel('Schedule (cron)').fill('every night');
    await page.getByRole('button', { name: 'Save task' }).click();
    const alert = page.getByRole('alert');
    await alert.waitFor();
    assert.match(await text(alert), /cron/i);
    await screenshot(page, '09-task-edit-refused');
    shown = await runJson(lab!.configPath, 'task', 'show', 'web-nightly');
    assert.equal(shown.json.schedule, '0 2 * * *');

    await page.getByLabel('Schedule (cron)').fill('30 3 * * 1-5');
    await page.getByRole('button', { name: 'Save task' }).click();
    await page.getByRole('button', { name: 'Edit task' }).waitFor();
    assert.match(await text(page.locator('main')), /30 3 \* \* 1-5/);
    shown = await runJson(lab!.configPath, 'task', 'show', 'web-nightly');
    assert.equal(shown.json.schedule, '30 3 * * 1-5');
    assert.equal(shown.json.timezone, 'Europe/Berlin');
    assert.deepEqual(errors, []);

    // A read-only user sees the task but no button that changes anything.
    await addUser(lab!.configPath, lab!.dir, 'rita', 'read-only', PASSWORD);
    const ro = await newPage();
    await ro.page.goto(daemon!.url);
    await ro.page.getByLabel('User name').fill('rita');
    await ro.page.getByLabel('Password').fill(PASSWORD);
    await ro.page.getByRole('button', { name: 'Log in' }).click();
    await ro.page.getByRole('heading', { level: 1, name: 'Dashboard' }).waitFor();
    await ro.page.goto(`${daemon!.url}/#/tasks/web-nightly`);
    await ro.page.getByRole('heading', { level: 2, name: 'Configuration' }).waitFor();
    assert.equal(
      await ro.page.getByRole('button', { name: /Run web-nightly now|Edit task|Delete task/ }).count(),
      0,
    );
    assert.match(await text(ro.page.locator('header')), /rita \(read-only\)/);
    assert.deepEqual(ro.errors, []);
  });

  it('logs in and moves between pages with the keyboard only', async (t) => {
    if (!available(t)) return;
    const { page, errors } = await newPage();
    await page.goto(daemon!.url);
    // The user field has the focus on arrival.
    await page.getByLabel('User name').waitFor();
    assert.equal(await page.evaluate(() => document.activeElement?.id), 'login-user');
    await page.keyboard.type('alice');
    await page.keyboard.press('Tab');
    assert.equal(await page.evaluate(() => document.activeElement?.id), 'login-password');
    await page.keyboard.type(PASSWORD);
    await page.keyboard.press('Enter');
    await page.getByRole('heading', { level: 1, name: 'Dashboard' }).waitFor();

    // Tab through: the skip link first, then the navigation; Enter follows a link.
    await page.keyboard.press('Tab');
    assert.equal(await page.evaluate(() => document.activeElement?.textContent), 'Skip to content');
    let guard = 0;
    while ((await page.evaluate(() => document.activeElement?.textContent)) !== 'Inventory') {
      await page.keyboard.press('Tab');
      assert.ok(++guard < 20, 'the Inventory link is reachable by Tab');
    }
    // The focused element shows a visible focus ring.
    const outline = await page.evaluate(() => {
      const el = document.activeElement as HTMLElement;
      return getComputedStyle(el).outlineStyle;
    });
    assert.notEqual(outline, 'none');
    await screenshot(page, '08-keyboard-focus');
    await page.keyboard.press('Enter');
    await page.getByRole('heading', { level: 1, name: 'Inventory' }).waitFor();
    // The page's heading takes the focus after the change, so reading starts there.
    assert.equal(await page.evaluate(() => document.activeElement?.tagName), 'H1');

    // Log out: the login page again, and the session cookie no longer opens the API.
    await page.getByRole('button', { name: 'Log out' }).click();
    await page.getByLabel('User name').waitFor();
    assert.equal((await page.request.get(`${daemon!.url}/api/v1/dashboard`)).status(), 401);
    assert.deepEqual(errors, []);
    // No password ever reaches the daemon's log (its JSON lines, which do record the logins).
    assert.match(daemon!.output(), /session/);
    assert.equal(daemon!.output().includes(PASSWORD), false);
  });
});
