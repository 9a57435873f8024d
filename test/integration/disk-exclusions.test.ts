import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { BackupRecord } from '../../src/model/backup.js';
import { runCli, runJson } from '../helpers/cli.js';
import { standardSpec, startLab, type TestLab } from '../helpers/lab.js';
import { inventoryOf, inventoryState } from '../helpers/state.js';

/**
 * Issue 11 item 3 through the CLI on the simulator lab: a task leaves web01's second disk out; the backup
 * and inquire show it as excluded by the task, restore --disk refuses it, a whole-VM restore and attach
 * leave it out with a warning.
 */
describe('disk exclusions from the CLI', () => {
  let lab: TestLab;
  let backup: BackupRecord;
  const cli = (...args: string[]) => runJson(lab.configPath, ...args);

  before(async () => {
    lab = await startLab(await standardSpec());
  });
  after(async () => {
    await lab?.stop();
  });

  it('task create refuses a malformed --exclude-disk with exit 3 and stores nothing', async () => {
    for (const bad of ['web01', ':Hard disk 2', 'web01:']) {
      const run = await cli('task', 'create', 'bad', '--vm', 'web01', '--exclude-disk', bad);
      assert.equal(run.code, 3, run.stdout + run.stderr);
      assert.equal(run.json.error.code, 'TASK_INVALID');
      assert.match(run.json.error.message, /--exclude-disk .*expected VM:LABEL/);
    }
    const listed = await cli('task', 'list');
    assert.deepEqual(
      listed.json.map((t: { name: string }) => t.name),
      ['lab-all'],
    );
  });

  it('backs up with the disk recorded as excluded by the task, warning of a rule that matched nothing', async () => {
    const created = await cli(
      'task',
      'create',
      'web-os',
      '--vm',
      'web01',
      'app01',
      '--exclude-disk',
      'web*:Hard disk 2',
      'app01:Hard disk 9',
    );
    assert.equal(created.code, 0, created.stdout + created.stderr);
    assert.deepEqual(created.json.exclude, {
      disks: [
        { vm: 'web*', disks: ['Hard disk 2'] },
        { vm: 'app01', disks: ['Hard disk 9'] },
      ],
    });
    const run = await cli('backup', '--task', 'web-os');
    assert.equal(run.code, 1, run.stdout + run.stderr);
    backup = run.json as BackupRecord;
    assert.equal(backup.state, 'complete');
    const web01 = backup.vms.find((v) => v.name === 'web01')!;
    assert.deepEqual(
      web01.disks.map((d) => [d.label, d.included, d.exclusion ?? null, d.note ?? null]),
      [
        ['Hard disk 1', true, null, null],
        ['Hard disk 2', false, 'task', 'excluded by task web-os'],
      ],
    );
    assert.ok(backup.vms.find((v) => v.name === 'app01')!.disks.every((d) => d.included));
    assert.deepEqual(
      backup.warnings.map((w) => [w.code, w.message]),
      [
        [
          'DISK_EXCLUSION_UNMATCHED',
          'the disk exclusions of web-os match nothing: no VM matching app01 has disk Hard disk 9',
        ],
      ],
    );
  });

  it('inquire --backup shows the disk as excluded by the task', async () => {
    const json = await cli('inquire', '--backup', backup.id);
    assert.deepEqual(
      json.json.vms.find((v: { name: string }) => v.name === 'web01').disks[1].exclusion,
      'task',
    );
    const text = await runCli(['--config', lab.configPath, 'inquire', '--backup', backup.id]);
    assert.match(text.stdout, /web01 \/ Hard disk 2: flat, EXCLUDED \(excluded by task web-os\)/);
    assert.match(text.stdout, /web01 .* 1 in, 1 excluded/);
  });

  it('restore --disk of the excluded disk, and --original of its VM, are refused with exit 3 and change nothing', async () => {
    const before0 = inventoryState(await inventoryOf(lab.configPath));
    const run = await cli(
      'restore',
      '--backup',
      backup.id,
      '--vm',
      'web01',
      '--disk',
      'Hard disk 2',
      '--to',
      'off01',
    );
    assert.equal(run.code, 3, run.stdout + run.stderr);
    assert.equal(run.json.error.code, 'DISK_EXCLUDED');
    assert.match(run.json.error.message, /excluded by task web-os.*cannot be restored/);
    const original = await cli('restore', '--backup', backup.id, '--vm', 'web01', '--original', '--force');
    assert.equal(original.code, 3, original.stdout + original.stderr);
    assert.equal(original.json.error.code, 'DISK_EXCLUDED_ORIGINAL');
    assert.deepEqual(inventoryState(await inventoryOf(lab.configPath)), before0);
  });

  it('a whole-VM restore leaves the excluded disk out with a warning (exit 1)', async () => {
    const run = await cli('restore', '--backup', backup.id, '--vm', 'web01', '--as', 'web01-r');
    assert.equal(run.code, 1, run.stdout + run.stderr);
    assert.deepEqual(
      run.json.warnings.map((w: { code: string }) => w.code),
      ['DISK_EXCLUDED_NOT_RESTORED'],
    );
    const restored = (await inventoryOf(lab.configPath)).vms.find((v) => v.name === 'web01-r')!;
    assert.deepEqual(
      restored.disks.map((d) => d.label),
      ['Hard disk 1'],
    );
  });

  it('attach skips the excluded disk with a warning (exit 1)', async () => {
    const run = await cli('attach', '--backup', backup.id, '--vm', 'web01', '--to', 'app01');
    assert.equal(run.code, 1, run.stdout + run.stderr);
    assert.deepEqual(
      run.json.disks.map((d: { label: string }) => d.label),
      ['Hard disk 1'],
    );
    assert.deepEqual(
      run.json.warnings.map((w: { code: string }) => w.code),
      ['DISK_EXCLUDED_NOT_ATTACHED'],
    );
    const detached = await cli('detach', '--to', 'app01');
    assert.equal(detached.code, 0, detached.stdout + detached.stderr);
  });

  it('task edit --exclude-disk replaces the disk rules and keeps the rest of the task', async () => {
    const edited = await cli('task', 'edit', 'web-os', '--exclude-disk', 'app01:Hard disk 2');
    assert.equal(edited.code, 0, edited.stdout + edited.stderr);
    assert.deepEqual(edited.json.exclude, { disks: [{ vm: 'app01', disks: ['Hard disk 2'] }] });
    assert.deepEqual(edited.json.select, { vms: ['web01', 'app01'] });
  });
});
