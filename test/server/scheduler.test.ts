import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it, type TestContext } from 'node:test';
import { type CatalogHandle, openCatalog, type ScheduleState } from '../../src/catalog/index.js';
import type { Config } from '../../src/config/load.js';
import type { TaskConfig } from '../../src/config/schema.js';
import type { EngineContext } from '../../src/engine/index.js';
import { JobRunner } from '../../src/server/jobs.js';
import { ScheduleLeadership } from '../../src/server/leadership.js';
import type { Logger } from '../../src/server/log.js';
import { Scheduler } from '../../src/server/scheduler.js';
import { Secret } from '../../src/util/secret.js';
import { filePostgres } from '../helpers/postgres.js';

const LEASE_MS = 60_000;

interface Line {
  level: string;
  msg: string;
  fields: Record<string, unknown>;
}

function logger(lines: Line[]): Logger {
  const at =
    (level: string): Logger[keyof Logger] =>
    (msg, fields = {}) => {
      lines.push({ level, msg, fields });
    };
  return { info: at('info'), warn: at('warn'), error: at('error') };
}

const pg = filePostgres();
type Dialect = 'sqlite' | 'postgres';

/**
 * One catalog (a SQLite file, or a database on the file's PostgreSQL server) and one clock the test moves,
 * shared by the daemons it makes: the catalog stamps its leases with that clock, and each daemon's local
 * lease deadline runs on it too. Every decision is made without waiting. Undefined when the dialect cannot
 * run here (the test is skipped).
 */
async function world(t: TestContext, dialect: Dialect, tasks: TaskConfig[]) {
  if (dialect === 'postgres' && !pg.require(t)) return undefined;
  const dir = mkdtempSync(join(tmpdir(), 'snapkeeper-scheduler-'));
  const file = join(dir, 'catalog.db');
  let now = new Date('2026-05-10T12:00:00Z');
  const clock = () => now;
  let target: Parameters<typeof openCatalog>[0] = { path: file };
  if (dialect === 'postgres') {
    const db = pg.database();
    target = { url: db.url, path: db.url, password: new Secret(db.password) };
  }
  await (await openCatalog(target, { create: true, now: clock })).close();
  const catalogs: CatalogHandle[] = [];
  const config = { tasks, file: '/etc/snapkeeper.yaml' } as unknown as Config;
  /** Every run any daemon started: who, which task, when. */
  const runs: { daemon: string; task: string; at: string }[] = [];
  return {
    file,
    runs,
    at(iso: string) {
      now = new Date(iso);
    },
    /** A catalog connection of its own, as a daemon process has. */
    async open(): Promise<CatalogHandle> {
      const c = await openCatalog(target, { now: clock });
      catalogs.push(c);
      return c;
    },
    /**
     * A daemon: its catalog connection, its leadership and its scheduler. `running` says a run of the task is
     * still going; `leader` replaces its view of the leadership (a process paused past its lease that wakes
     * up believing it still leads).
     */
    async daemon(
      name: string,
      options: {
        running?: (task: string) => boolean | Promise<boolean>;
        leader?: () => { instanceId: string; term: number } | undefined;
      } = {},
    ) {
      const catalog = await this.open();
      const lines: Line[] = [];
      const log = logger(lines);
      const leadership = new ScheduleLeadership({
        catalog,
        instanceId: name,
        leaseMs: LEASE_MS,
        log,
        clock: () => now.getTime(),
      });
      const scheduler = new Scheduler({
        config,
        catalog,
        log,
        leader: options.leader ?? (() => leadership.current()),
        standby: () => leadership.claimIfFree(),
        taskRunning: options.running ?? (() => false),
        runTask: async (task) => {
          runs.push({ daemon: name, task, at: now.toISOString() });
          return `job-${runs.length}`;
        },
        now: clock,
      });
      const beat = async () => {
        await catalog.heartbeatMember({ instanceId: name, host: 'test', pid: 1, listen: `${name}:8470` });
        // As the daemon's heartbeat: the leader renews, a standby looks and claims a free leadership.
        await leadership.beat();
        return leadership.view;
      };
      return { name, catalog, leadership, scheduler, lines, beat };
    },
    /** Writes a task's schedule state as the daemon leading now (what an earlier run left). */
    async seed(d: { leadership: ScheduleLeadership; catalog: CatalogHandle }, state: ScheduleState) {
      const leader = d.leadership.current();
      assert.ok(leader, 'seed needs the leader');
      assert.equal(await d.catalog.saveScheduleStateAsLeader(state, leader), true);
    },
    async close() {
      for (const c of catalogs) await c.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

const nightly: TaskConfig = {
  name: 'nightly',
  select: { vms: ['*'] },
  schedule: '0 2 * * *',
  timezone: 'UTC',
};
const manual: TaskConfig = { name: 'manual', select: { vms: ['*'] } };
/** Due at the start of every minute. */
const minutely: TaskConfig = {
  name: 'minutely',
  select: { vms: ['*'] },
  schedule: '* * * * *',
  timezone: 'UTC',
};

type World = NonNullable<Awaited<ReturnType<typeof world>>>;
const worlds: World[] = [];
async function newWorld(t: TestContext, dialect: Dialect, tasks: TaskConfig[]): Promise<World | undefined> {
  const w = await world(t, dialect, tasks);
  if (w) worlds.push(w);
  return w;
}
after(async () => {
  for (const w of worlds) await w.close();
});

for (const dialect of ['sqlite', 'postgres'] as const) {
  describe(`Scheduler on a ${dialect} catalog, one daemon`, () => {
    it('first sight records a baseline and runs nothing; the due time runs once; the next tick does not repeat it', async (t) => {
      const w = await newWorld(t, dialect, [nightly, manual]);
      if (!w) return;
      const d = await w.daemon('this-daemon');
      await d.beat();
      await d.scheduler.tick();
      assert.equal(w.runs.length, 0);
      assert.equal((await d.catalog.scheduleState('nightly'))?.handledAt, '2026-05-10T12:00:00.000Z');
      assert.equal(
        await d.catalog.scheduleState('manual'),
        undefined,
        'a task without a schedule has no state',
      );
      w.at('2026-05-11T02:00:00.300Z');
      await d.beat();
      await d.scheduler.tick();
      assert.deepEqual(
        w.runs.map((r) => r.task),
        ['nightly'],
      );
      assert.deepEqual(await d.catalog.scheduleState('nightly'), {
        task: 'nightly',
        handledAt: '2026-05-11T02:00:00.300Z',
        lastRunAt: '2026-05-11T02:00:00.300Z',
        lastJobId: 'job-1',
      });
      w.at('2026-05-11T02:00:01.300Z');
      await d.scheduler.tick();
      assert.equal(w.runs.length, 1);
    });

    it('three due times missed: one run, the missed count logged', async (t) => {
      const w = await newWorld(t, dialect, [nightly]);
      if (!w) return;
      const d = await w.daemon('this-daemon');
      await d.beat();
      await w.seed(d, { task: 'nightly', handledAt: '2026-05-07T12:00:00.000Z' });
      await d.scheduler.tick();
      assert.deepEqual(
        w.runs.map((r) => r.task),
        ['nightly'],
      );
      const folded = d.lines.find((l) => l.msg.startsWith('schedule: due times missed'));
      assert.equal(folded?.fields.missed, 2);
    });

    it('a task still running when due is skipped (logged) and not owed later', async (t) => {
      const w = await newWorld(t, dialect, [nightly]);
      if (!w) return;
      const d = await w.daemon('this-daemon', { running: () => true });
      await d.beat();
      await w.seed(d, { task: 'nightly', handledAt: '2026-05-10T01:00:00.000Z', lastJobId: 'job-0' });
      await d.scheduler.tick();
      assert.equal(w.runs.length, 0);
      const skipped = d.lines.find((l) => l.msg.startsWith('schedule: run skipped'));
      assert.equal(skipped?.level, 'warn');
      assert.equal(skipped?.fields.dueAt, '2026-05-10T02:00:00.000Z');
      const state = await d.catalog.scheduleState('nightly');
      assert.equal(state?.handledAt, '2026-05-10T12:00:00.000Z');
      assert.equal(state?.lastJobId, 'job-0');
    });

    it('nextRun is the next due time in the task’s zone; none without a schedule', async (t) => {
      const w = await newWorld(t, dialect, []);
      if (!w) return;
      const d = await w.daemon('this-daemon');
      assert.equal(d.scheduler.nextRun(nightly)?.toISOString(), '2026-05-11T02:00:00.000Z');
      assert.equal(
        d.scheduler.nextRun({ ...nightly, timezone: 'Asia/Tokyo' })?.toISOString(),
        '2026-05-10T17:00:00.000Z',
      );
      assert.equal(d.scheduler.nextRun(manual), undefined);
    });
  });

  describe(`Scheduler: two daemons on one ${dialect} catalog`, () => {
    it('only the leader runs; after its lease runs out the other takes over and the missed due time runs once; a deposed leader’s write is refused; a release hands over at once', async (t) => {
      const w = await newWorld(t, dialect, [minutely]);
      if (!w) return;
      const a = await w.daemon('a');
      const b = await w.daemon('b');
      const tickBoth = async () => {
        await a.scheduler.tick();
        await b.scheduler.tick();
      };

      // a starts first and leads (term 1); b stands by.
      assert.equal((await a.beat()).mine, true);
      const bSees = await b.beat();
      assert.equal(bSees.mine, false);
      assert.equal(bSees.holder, 'a');
      assert.equal(bSees.term, 1);
      await tickBoth();
      assert.equal(w.runs.length, 0, 'first sight is a baseline');

      // Heartbeats renew a's lease (same term); 12:01 is due: only the leader runs it, once however often both
      // tick.
      w.at('2026-05-10T12:00:30.000Z');
      assert.equal((await a.beat()).term, 1);
      await b.beat();
      w.at('2026-05-10T12:01:00.100Z');
      await a.beat();
      await b.beat();
      await tickBoth();
      await tickBoth();
      assert.deepEqual(w.runs, [{ daemon: 'a', task: 'minutely', at: '2026-05-10T12:01:00.100Z' }]);

      // a dies: no more heartbeats. Its lease (renewed at 12:01:00.100) lasts until 12:02:00.100.
      w.at('2026-05-10T12:01:50.000Z');
      assert.equal((await b.beat()).mine, false);
      await b.scheduler.tick();
      // 12:02 is due, but a's lease has not run out yet: b waits (a could still be alive and running it).
      w.at('2026-05-10T12:02:00.050Z');
      await b.scheduler.tick();
      assert.equal(w.runs.length, 1);
      assert.equal(b.leadership.current(), undefined);

      // A tick after the lease ran out: b takes over (term 2) and runs the due time missed in the handover.
      w.at('2026-05-10T12:02:00.200Z');
      await b.scheduler.tick();
      assert.deepEqual(b.leadership.current(), { instanceId: 'b', term: 2 });
      assert.deepEqual(w.runs[1], { daemon: 'b', task: 'minutely', at: '2026-05-10T12:02:00.200Z' });
      assert.ok(b.lines.some((l) => l.msg === 'schedules: leader' && l.fields.term === 2));
      // a's own view expired with its lease: even awake it would not act.
      assert.equal(a.leadership.current(), undefined);
      assert.ok(a.lines.some((l) => l.msg === 'schedules: no longer leader'));
      await b.scheduler.tick();
      assert.equal(w.runs.length, 2);

      // a wakes up believing it still leads in term 1 (paused past its lease): its writes are refused, so it
      // starts nothing, and b runs 12:03 once.
      const stale = await w.daemon('a', { leader: () => ({ instanceId: 'a', term: 1 }) });
      assert.equal(
        await stale.catalog.saveScheduleStateAsLeader(
          { task: 'minutely', handledAt: '2026-05-10T12:02:30.000Z' },
          { instanceId: 'a', term: 1 },
        ),
        false,
      );
      w.at('2026-05-10T12:03:00.100Z');
      await stale.scheduler.tick();
      assert.equal(w.runs.length, 2, 'the deposed leader started nothing');
      assert.ok(stale.lines.some((l) => l.msg.startsWith('schedule: leadership lost')));
      await b.beat();
      await b.scheduler.tick();
      await stale.scheduler.tick();
      assert.deepEqual(w.runs[2], { daemon: 'b', task: 'minutely', at: '2026-05-10T12:03:00.100Z' });

      // a comes back for real: its heartbeat finds b leading. b stops cleanly (release): a takes over on its
      // next tick, without waiting for b's lease.
      w.at('2026-05-10T12:03:10.000Z');
      assert.equal((await a.beat()).mine, false);
      await b.leadership.release();
      await a.scheduler.tick();
      assert.deepEqual(a.leadership.current(), { instanceId: 'a', term: 3 });
      w.at('2026-05-10T12:04:00.100Z');
      await a.beat();
      assert.equal((await b.beat()).mine, false, 'a released daemon does not claim again');
      await tickBoth();

      // Every due time ran exactly once, each on the daemon that led at the time.
      assert.deepEqual(
        w.runs.map((r) => [r.daemon, r.at.slice(11, 16)]),
        [
          ['a', '12:01'],
          ['b', '12:02'],
          ['b', '12:03'],
          ['a', '12:04'],
        ],
      );
      assert.equal((await a.catalog.currentLeadership()).term, 3);
    });

    it('a new leader does not start a task whose run is still going on another daemon', async (t) => {
      const w = await newWorld(t, dialect, [minutely]);
      if (!w) return;
      const a = await w.daemon('a');
      await a.beat();
      await a.scheduler.tick();
      // a's run of the task, as its job row says (what JobRunner writes when a job starts).
      await a.catalog.saveJob({
        id: 'job-a',
        kind: 'backup',
        subject: 'task minutely',
        state: 'running',
        instanceId: 'a',
        startedAt: '2026-05-10T12:00:30.000Z',
      });
      // b's runner looks at its own jobs and at the catalog's.
      const bCatalog = await w.open();
      const runner = new JobRunner({
        store: bCatalog,
        instanceId: 'b',
        log: logger([]),
        context: () => ({ close: async () => {} }) as unknown as EngineContext,
      });
      const b = await w.daemon('b', { running: (task) => runner.taskRunningAnywhere(task) });
      await b.beat();
      await a.leadership.release();
      w.at('2026-05-10T12:01:00.100Z');
      await b.scheduler.tick();
      assert.deepEqual(b.leadership.current(), { instanceId: 'b', term: 2 });
      assert.equal(w.runs.length, 0);
      assert.ok(b.lines.some((l) => l.msg.startsWith('schedule: run skipped')));
      // Once that run has ended, the next due time runs.
      await a.catalog.saveJob({
        id: 'job-a',
        kind: 'backup',
        subject: 'task minutely',
        state: 'done',
        instanceId: 'a',
        startedAt: '2026-05-10T12:00:30.000Z',
        finishedAt: '2026-05-10T12:01:20.000Z',
      });
      w.at('2026-05-10T12:02:00.100Z');
      await b.beat();
      await b.scheduler.tick();
      assert.deepEqual(
        w.runs.map((r) => r.daemon),
        ['b'],
      );
    });
  });
}
