import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { runJson } from '../helpers/cli.js';
import { STANDARD_SPEC, startLab, type TestLab } from '../helpers/lab.js';
import { api, finishedJob, makeToken, type Served, serve } from './helpers.js';

/**
 * A six-field cron pattern (seconds first, read in UTC) due at each of `times` (all within one minute).
 */
function cronAt(times: Date[]): string {
  const first = times[0]!;
  assert.ok(times.every((t) => t.getUTCMinutes() === first.getUTCMinutes()));
  return `${times.map((t) => t.getUTCSeconds()).join(',')} ${first.getUTCMinutes()} ${first.getUTCHours()} ${first.getUTCDate()} ${first.getUTCMonth() + 1} *`;
}

/** `count` instants one second apart, starting at least `leadMs` from now, inside one minute. */
function dueTimes(leadMs: number, count: number): Date[] {
  let start = Math.ceil((Date.now() + leadMs) / 1000) * 1000;
  const second = new Date(start).getUTCSeconds();
  if (second + count > 59) start += (60 - second) * 1000;
  return Array.from({ length: count }, (_, i) => new Date(start + i * 1000));
}

/** Waits until the clock has passed `when`: the schedule needs those due times to be in the past. */
async function until(when: Date): Promise<void> {
  const ms = when.getTime() - Date.now() + 200;
  if (ms > 0) await new Promise((r) => setTimeout(r, ms));
}

describe('snapkeeper serve: task schedules', { timeout: 300_000 }, () => {
  let lab: TestLab;
  let token: string;
  let admin: string;
  const daemons: Served[] = [];

  before(async () => {
    lab = await startLab(STANDARD_SPEC);
    token = await makeToken(lab.configPath, 'reader', 'read-only');
    admin = await makeToken(lab.configPath, 'admin', 'admin');
    // A catalog task on the powered-off VM (quick), due far in the future for now.
    const create = await runJson(
      lab.configPath,
      'task',
      'create',
      'sched',
      '--vm',
      'off01',
      '--schedule',
      '0 0 1 1 *',
      '--timezone',
      'UTC',
    );
    assert.equal(create.code, 0, create.stdout + create.stderr);
  });

  after(async () => {
    for (const d of daemons) await d.stop('SIGKILL');
    await lab?.stop();
  });

  const backupsOf = async (url: string) =>
    (await api(url, 'GET', '/api/v1/backups?task=sched', { token })).json.items as { id: string }[];

  it('a task due three times while the daemon was down runs once after the restart', async () => {
    const first = await serve(lab.configPath);
    daemons.push(first);
    // The first daemon to see a task owes nothing from before: it only records that it has seen it.
    await first.waitForLog((l) => l.msg === 'schedule: task seen' && l.task === 'sched');
    assert.equal((await first.stop()).code, 0);

    const missed = dueTimes(1000, 3);
    const edit = await runJson(lab.configPath, 'task', 'edit', 'sched', '--schedule', cronAt(missed));
    assert.equal(edit.code, 0, edit.stdout + edit.stderr);
    await until(missed[2]!);

    const second = await serve(lab.configPath);
    daemons.push(second);
    const started = await second.waitForLog((l) => l.msg === 'schedule: run started' && l.task === 'sched');
    const folded = second.logs().find((l) => l.msg.startsWith('schedule: due times missed'));
    assert.equal(folded?.missed, 2);
    const job = await finishedJob(second.url, started.job, token);
    assert.equal(job.state, 'done', JSON.stringify(job));
    assert.equal(job.subject, 'task sched');
    assert.deepEqual(
      (await backupsOf(second.url)).map((b) => b.id),
      [job.backupId],
    );
    const shown = await api(second.url, 'GET', '/api/v1/tasks/sched', { token });
    assert.equal(shown.json.lastRuns[0].id, job.backupId);
  });

  it('a schedule due within seconds fires while the daemon runs, once per due time', async () => {
    const daemon = daemons[daemons.length - 1]!;
    const [due] = dueTimes(3000, 1);
    const put = await api(daemon.url, 'PUT', '/api/v1/tasks/sched', {
      token: admin,
      body: { name: 'sched', select: { vms: ['off01'] }, schedule: cronAt([due!]), timezone: 'UTC' },
    });
    assert.equal(put.status, 200, put.text);
    const next = await api(daemon.url, 'GET', '/api/v1/tasks/sched', { token });
    assert.equal(next.json.nextRun, due!.toISOString());
    const runs = () => daemon.logs().filter((l) => l.msg === 'schedule: run started' && l.task === 'sched');
    await daemon.waitForLog((l) => l.msg === 'schedule: run started' && runs().length === 2);
    const fired = runs()[1];
    assert.ok(Date.now() >= due!.getTime());
    const job = await finishedJob(daemon.url, fired.job, token);
    assert.equal(job.state, 'done');
    assert.equal((await backupsOf(daemon.url)).length, 2);
    const exit = await daemon.stop();
    assert.equal(exit.code, 0);
    assert.equal(runs().length, 2, 'no due time ran twice');
  });
});
