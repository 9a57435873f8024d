import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, describe, it, type TestContext } from 'node:test';
import * as catalogLayer from '../../src/catalog/index.js';
import { runCli, runJson } from '../helpers/cli.js';
import { editConfig, STANDARD_SPEC, startLab, type TestLab } from '../helpers/lab.js';
import { filePostgres } from '../helpers/postgres.js';
import { requireCapability } from '../helpers/require.js';
import {
  api,
  finishedJob,
  freePort,
  jobEvents,
  makeToken,
  type Served,
  type SseEvent,
  serve,
} from './helpers.js';

const pg = filePostgres();
/** The PostgreSQL catalog (`openCatalog` with `catalog.url`) is built: branch pgcat is merged. */
const postgresCatalogBuilt = 'openCatalog' in catalogLayer;

/** Short, so that a takeover by lease would come quickly (here the dead leader's row is reaped at once). */
const LEASE_SECONDS = 4;
/** The scheduled task runs every 15 s (uniform within the minute): room for a backup of off01 between runs. */
const EVERY_SECONDS = 15;

// biome-ignore lint/suspicious/noExplicitAny: log lines are free-form JSON objects
type LogLine = any;

/** The first due time of the task at or after `from` (ms): a multiple of EVERY_SECONDS. */
function nextDue(from: number): number {
  return Math.ceil(from / (EVERY_SECONDS * 1000)) * EVERY_SECONDS * 1000;
}

/** Waits until the wall clock reaches `when` (ms): the schedule is on the wall clock. */
async function until(when: number): Promise<void> {
  const ms = when - Date.now();
  if (ms > 0) await new Promise((r) => setTimeout(r, ms));
}

/** The `schedule: run started` lines of a daemon for the task. */
function runsOf(d: Served): LogLine[] {
  return d.logs().filter((l) => l.msg === 'schedule: run started' && l.task === 'every');
}

describe('several daemons on one PostgreSQL catalog', { timeout: 600_000 }, () => {
  let lab: TestLab | undefined;
  let configs = 0;
  const daemons: Served[] = [];

  after(async () => {
    for (const d of daemons) await d.stop('SIGKILL');
    await lab?.stop();
  });

  /**
   * A fresh PostgreSQL catalog for the lab (its own database), its tokens, and the catalog task `every` on
   * off01, due every EVERY_SECONDS. Undefined when the test is skipped.
   */
  async function setup(t: TestContext) {
    if (!pg.require(t)) return undefined;
    if (
      !requireCapability(
        t,
        postgresCatalogBuilt,
        'the catalog on PostgreSQL (openCatalog, catalog.url) is not in this tree yet',
      )
    )
      return undefined;
    lab ??= await startLab(STANDARD_SPEC);
    const db = pg.database();
    const configPath = await editConfig(
      lab.configPath,
      (doc) => {
        doc.catalog = { url: db.url, passwordFile: db.passwordFile };
        doc.server = { ...doc.server, leaseSeconds: LEASE_SECONDS, scheduleTickSeconds: 0.5 };
      },
      join(lab.dir, `postgres-${++configs}.yaml`),
    );
    const created = await runJson(configPath, 'catalog', 'create');
    assert.equal(created.code, 0, created.stdout + created.stderr);
    const token = await makeToken(configPath, 'reader', 'read-only');
    const operator = await makeToken(configPath, 'ops', 'operator');
    const admin = await makeToken(configPath, 'admin', 'admin');
    const task = await runJson(
      configPath,
      'task',
      'create',
      'every',
      '--vm',
      'off01',
      '--schedule',
      `*/${EVERY_SECONDS} * * * * *`,
      '--timezone',
      'UTC',
    );
    assert.equal(task.code, 0, task.stdout + task.stderr);
    return { configPath, token, operator, admin };
  }

  /** Starts a and b on the catalog, a first: a leads. Returns them with their instance ids and a's term. */
  async function twoDaemons(configPath: string) {
    // a starts first and leads; b joins as a standby (a SQLite catalog would refuse it: DAEMON_RUNNING).
    const a = await serve(configPath);
    daemons.push(a);
    const aLeads = await a.waitForLog((l) => l.msg === 'schedules: leader');
    const b = await serve(configPath);
    daemons.push(b);
    const aListening = a.logs().find((l) => l.msg === 'listening');
    const bListening = b.logs().find((l) => l.msg === 'listening');
    assert.equal(aListening.shared, true);
    assert.equal(bListening.leader, false);
    const aId: string = aListening.instance;
    const bId: string = bListening.instance;
    return { a, b, aId, bId, aTerm: aLeads.term as number };
  }

  it('two daemons answer the API; the leader runs the schedules; SIGKILLed, the other takes over; every due time ran exactly once; its job shows INTERRUPTED', async (t) => {
    const set = await setup(t);
    if (!set) return;
    const { token, operator, admin } = set;
    const { a, b, aId, bId, aTerm } = await twoDaemons(set.configPath);

    for (const d of [a, b]) {
      const view = await api(d.url, 'GET', '/api/v1/daemons', { token });
      assert.equal(view.status, 200, view.text);
      assert.equal(view.json.shared, true);
      assert.equal(view.json.leaseSeconds, LEASE_SECONDS);
      assert.deepEqual(
        view.json.daemons.map((x: { instanceId: string; leader: boolean; pid: number }) => [
          x.instanceId,
          x.leader,
          x.pid,
        ]),
        [
          [aId, true, a.child.pid],
          [bId, false, b.child.pid],
        ],
      );
      assert.equal(view.json.daemons.find((x: { self: boolean }) => x.self).instanceId, d === a ? aId : bId);
      assert.equal(view.json.leadership.holder, aId);
    }
    const metrics = (await api(b.url, 'GET', '/metrics')).text;
    assert.match(metrics, new RegExp(`snapkeeper_schedule_leader\\{instance="${aId}",[^}]*\\} 1`));
    assert.match(metrics, new RegExp(`snapkeeper_schedule_leader\\{instance="${bId}",[^}]*\\} 0`));
    assert.match(metrics, /^snapkeeper_daemons 2$/m);

    // a runs two due times; b none. b shows a's jobs (from the catalog) while they run and when they end.
    await a.waitForLog(() => runsOf(a).length >= 2);
    const aRuns = runsOf(a);
    for (const r of aRuns) {
      const events = await jobEvents(b.url, r.job, token);
      assert.equal(events[events.length - 1]!.event, 'done', JSON.stringify(events));
      const seen = await api(b.url, 'GET', `/api/v1/jobs/${r.job}`, { token });
      assert.equal(seen.json.state, 'done');
      assert.equal(seen.json.instanceId, aId);
    }
    assert.equal(runsOf(b).length, 0, 'the standby ran no schedule');

    // A long job on a (a hook that sleeps), followed through b: its progress comes from a's job row.
    const hooked = {
      name: 'hooked',
      select: { vms: ['web01'] },
      hooks: [{ phase: 'before-prepare', run: ['/bin/sleep', '20'], timeoutSeconds: 120, onError: 'fail' }],
    };
    assert.equal((await api(a.url, 'POST', '/api/v1/tasks', { token: admin, body: hooked })).status, 201);
    const started = await api(a.url, 'POST', '/api/v1/tasks/hooked/run', { token: operator });
    assert.equal(started.status, 202, started.text);
    const jobId: string = started.json.job.id;
    let inHook!: () => void;
    const hookSeen = new Promise<void>((resolve) => {
      inHook = resolve;
    });
    const followed: Promise<SseEvent[]> = jobEvents(b.url, jobId, token, (e) => {
      if (e.event === 'progress' && e.data.phase === 'hook before-prepare') inHook();
    });
    await hookSeen;
    const remote = await api(b.url, 'GET', `/api/v1/jobs/${jobId}`, { token });
    assert.equal(remote.json.state, 'running');
    assert.equal(remote.json.instanceId, aId);
    assert.equal(remote.json.progress.phase, 'hook before-prepare');
    const cancel = await api(b.url, 'POST', `/api/v1/jobs/${jobId}/cancel`, { token: operator });
    assert.equal(cancel.status, 409, cancel.text);
    assert.equal(cancel.json.error.code, 'JOB_NOT_LOCAL');
    assert.match(cancel.json.error.message, new RegExp(`pid ${a.child.pid} `));
    const runsBeforeKill = runsOf(a).length;

    // The leader dies.
    const killedAt = Date.now();
    a.child.kill('SIGKILL');
    assert.equal((await a.exited).signal, 'SIGKILL');
    const takeover = await b.waitForLog((l) => l.msg === 'schedules: leader');
    t.diagnostic(
      `takeover ${Date.parse(takeover.time) - killedAt} ms after SIGKILL (lease ${LEASE_SECONDS} s)`,
    );
    // The next term: a's row was reaped (its pid is dead on this host), which freed its leadership.
    assert.equal(takeover.term, aTerm + 1, JSON.stringify(takeover));
    assert.ok(
      b
        .logs()
        .some((l) => l.msg.startsWith('daemon of this host gone without stopping') && l.instance === aId),
    );

    // a's job ends INTERRUPTED, on b's stream and in b's answers.
    const events = await followed;
    const last = events[events.length - 1]!;
    assert.equal(last.event, 'failed', JSON.stringify(last));
    assert.equal(last.data.error.code, 'INTERRUPTED');
    const interrupted = await api(b.url, 'GET', `/api/v1/jobs/${jobId}`, { token });
    assert.equal(interrupted.json.state, 'failed');
    assert.equal(interrupted.json.error.code, 'INTERRUPTED');

    // b runs the next two due times.
    await b.waitForLog(() => runsOf(b).length >= 2);
    const bRuns = runsOf(b);
    for (const r of bRuns) {
      const done = await jobEvents(b.url, r.job, token);
      assert.equal(done[done.length - 1]!.event, 'done', JSON.stringify(done));
    }
    const view = await api(b.url, 'GET', '/api/v1/daemons', { token });
    assert.deepEqual(
      view.json.daemons.map((x: { instanceId: string; leader: boolean }) => [x.instanceId, x.leader]),
      [[bId, true]],
    );
    assert.match((await api(b.url, 'GET', '/metrics')).text, /^snapkeeper_daemons 1$/m);
    const backups = await api(b.url, 'GET', '/api/v1/backups?task=every&limit=1000', { token });
    assert.equal(b.child.exitCode, null);
    assert.equal((await b.stop()).code, 0, b.stderr());

    // Exactly once: no due time ran twice, none between the first and the last was lost, and each run made
    // one backup.
    assert.ok(runsOf(a).length >= runsBeforeKill);
    const dues = [...runsOf(a), ...runsOf(b)].map((r) => Date.parse(r.dueAt)).sort((x, y) => x - y);
    assert.equal(new Set(dues).size, dues.length, `a due time ran twice: ${dues}`);
    for (let i = 1; i < dues.length; i++) {
      assert.equal(dues[i]! - dues[i - 1]!, EVERY_SECONDS * 1000, `a due time was lost: ${dues}`);
    }
    assert.ok(
      [...a.logs(), ...b.logs()].every((l) => !l.msg.startsWith('schedule: run skipped')),
      'no run was skipped',
    );
    assert.equal(backups.json.items.length, dues.length);
  });
  it('a leader paused past its lease (SIGSTOP) is replaced when its lease runs out; the due time missed meanwhile runs once; awake again, it stands by', async (t) => {
    const set = await setup(t);
    if (!set) return;
    const { token } = set;
    const { a, b, aId, bId, aTerm } = await twoDaemons(set.configPath);
    await a.waitForLog(() => runsOf(a).length >= 1);
    for (const r of runsOf(a)) await jobEvents(b.url, r.job, token);

    // Paused a moment before the next due time: it comes while a is stopped, its heartbeat and all.
    const due = nextDue(Date.now() + 3_000);
    await until(due - 1_500);
    a.child.kill('SIGSTOP');
    const pausedAt = Date.now();
    const takeover = await b.waitForLog((l) => l.msg === 'schedules: leader');
    t.diagnostic(
      `takeover ${Date.parse(takeover.time) - pausedAt} ms after SIGSTOP (lease ${LEASE_SECONDS} s)`,
    );
    assert.equal(takeover.term, aTerm + 1);
    // a's process is alive: only its lease running out let b take over.
    assert.ok(!b.logs().some((l) => l.msg.startsWith('daemon of this host gone without stopping')));
    await b.waitForLog(() => runsOf(b).length >= 1);
    assert.equal(
      runsOf(b)[0].dueAt,
      new Date(due).toISOString(),
      'the due time missed in the handover ran on b',
    );

    // a wakes up: its lease is over by its own clock and the catalog's; it stands by and starts nothing.
    a.child.kill('SIGCONT');
    await a.waitForLog((l) => l.msg === 'schedules: no longer leader');
    await a.waitForLog((l) => l.msg === 'schedules: the leader is another daemon' && l.leader === bId);
    await b.waitForLog(() => runsOf(b).length >= 2);
    for (const r of runsOf(b)) {
      const done = await jobEvents(b.url, r.job, token);
      assert.equal(done[done.length - 1]!.event, 'done', JSON.stringify(done));
    }
    for (const d of [a, b]) {
      const view = await api(d.url, 'GET', '/api/v1/daemons', { token });
      assert.deepEqual(
        view.json.daemons.map((x: { instanceId: string; leader: boolean }) => [x.instanceId, x.leader]),
        [
          [aId, false],
          [bId, true],
        ],
      );
    }
    // b stops cleanly: it gives the leadership up, and a takes it over at once (its next tick), not after the
    // lease.
    assert.equal((await b.stop()).code, 0, b.stderr());
    const back = await a.waitForLog((l) => l.msg === 'schedules: leader' && l.term === takeover.term + 1);
    assert.ok(back);
    assert.equal((await a.stop()).code, 0, a.stderr());
    const backups = await runJson(set.configPath, 'inquire', '--task', 'every');
    assert.equal(backups.code, 0, backups.stderr);

    assert.ok(
      runsOf(a).every((r) => Date.parse(r.dueAt) < due || Date.parse(r.time) > Date.parse(back.time)),
      'a started nothing between its pause and its taking the leadership back',
    );
    const dues = [...runsOf(a), ...runsOf(b)].map((r) => Date.parse(r.dueAt)).sort((x, y) => x - y);
    assert.equal(new Set(dues).size, dues.length, `a due time ran twice: ${dues}`);
    for (let i = 1; i < dues.length; i++) {
      assert.equal(dues[i]! - dues[i - 1]!, EVERY_SECONDS * 1000, `a due time was lost: ${dues}`);
    }
    assert.equal(backups.json.length, dues.length);
  });
  it('serve --worker 1 runs an offload worker in the daemon: an offload through the PostgreSQL queue completes; refused without a queue', async (t) => {
    const set = await setup(t);
    if (!set) return;
    const { token, operator } = set;
    // The lab's own configuration keeps its catalog in SQLite and names no queue: nothing to take jobs from.
    const port = await freePort();
    for (const [value, code] of [
      [[], 'WORKER_NO_QUEUE'],
      [['0'], 'WORKER_CONCURRENCY'],
    ] as const) {
      const refused = await runCli([
        '--config',
        lab!.configPath,
        '--json',
        'serve',
        '--listen',
        `127.0.0.1:${port}`,
        '--worker',
        ...value,
      ]);
      assert.equal(refused.code, 3, refused.stdout + refused.stderr);
      assert.equal(refused.json.error.code, code);
    }
    await assert.rejects(fetch(`http://127.0.0.1:${port}/healthz`));

    // Only workers take disk jobs (an offload takes none of its own): they must reach the daemon's worker.
    const onlyWorkers = await editConfig(
      set.configPath,
      (doc) => {
        doc.workers = { ...doc.workers, local: false };
      },
      join(lab!.dir, 'postgres-only-workers.yaml'),
    );
    const d = await serve(onlyWorkers, { args: ['--worker', '1'] });
    daemons.push(d);
    const listening = d.logs().find((l) => l.msg === 'listening');
    assert.equal(listening.worker.concurrency, 1);
    const backup = await api(d.url, 'POST', '/api/v1/backups', { token: operator, body: { vms: ['web01'] } });
    assert.equal(backup.status, 202, backup.text);
    const backedUp = await finishedJob(d.url, backup.json.job.id, token);
    assert.equal(backedUp.state, 'done', JSON.stringify(backedUp.error));
    const offload = await api(d.url, 'POST', '/api/v1/offloads', {
      token: operator,
      body: { backupId: backedUp.backupId, repository: 'lab' },
    });
    assert.equal(offload.status, 202, offload.text);
    const offloaded = await finishedJob(d.url, offload.json.job.id, token);
    assert.equal(offloaded.state, 'done', JSON.stringify(offloaded.error));
    assert.ok(offloaded.result.bytesAdded > 0, JSON.stringify(offloaded.result));
    // The disk jobs went through the queue to this daemon's worker.
    const completed = d
      .logs()
      .filter((l) => l.msg === 'worker job completed' && l.backupId === backedUp.backupId);
    assert.ok(completed.length >= 1, d.stderr());
    const metrics = (await api(d.url, 'GET', '/metrics')).text;
    const counted = /^snapkeeper_worker_jobs_total\{type="completed"\} (\d+)$/m.exec(metrics);
    assert.ok(counted && Number(counted[1]) >= completed.length, metrics);
    assert.equal((await d.stop()).code, 0, d.stderr());
    assert.ok(d.logs().some((l) => l.msg === 'worker stopped' && l.completed >= completed.length));
  });
});
