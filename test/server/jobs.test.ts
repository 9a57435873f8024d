import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it, type TestContext } from 'node:test';
import { type CatalogHandle, openCatalog } from '../../src/catalog/index.js';
import type { EngineContext, EngineEvents } from '../../src/engine/index.js';
import { type JobEvent, JobRunner } from '../../src/server/jobs.js';
import type { Logger } from '../../src/server/log.js';
import { Secret } from '../../src/util/secret.js';
import { filePostgres } from '../helpers/postgres.js';

const quiet: Logger = { info() {}, warn() {}, error() {} };
const dir = mkdtempSync(join(tmpdir(), 'snapkeeper-jobs-'));
const catalogs: CatalogHandle[] = [];
const pg = filePostgres();
after(async () => {
  for (const c of catalogs) await c.close();
  rmSync(dir, { recursive: true, force: true });
});

let n = 0;
/**
 * A fresh catalog (a SQLite file, or a database on the file's PostgreSQL server), opened once per daemon
 * (each daemon has its own connection). Undefined when the dialect cannot run here (the test is skipped).
 */
async function catalogFile(
  t: TestContext,
  dialect: 'sqlite' | 'postgres',
): Promise<{ open: () => Promise<CatalogHandle> } | undefined> {
  if (dialect === 'postgres' && !pg.require(t)) return undefined;
  n += 1;
  let target: Parameters<typeof openCatalog>[0] = { path: join(dir, `catalog-${n}.db`) };
  if (dialect === 'postgres') {
    const db = pg.database();
    target = { url: db.url, path: db.url, password: new Secret(db.password) };
  }
  await (await openCatalog(target, { create: true })).close();
  return {
    open: async () => {
      const c = await openCatalog(target);
      catalogs.push(c);
      return c;
    },
  };
}

/** A daemon's job runner: its jobs' engine contexts hand the work the events (no vCenter needed). */
function runner(store: CatalogHandle, instanceId: string, progressSaveMs?: number): JobRunner {
  return new JobRunner({
    store,
    instanceId,
    log: quiet,
    context: (events) => ({ events, close: async () => {} }) as unknown as EngineContext,
    ...(progressSaveMs !== undefined ? { progressSaveMs } : {}),
  });
}

/** A job whose work reports what the test says, and ends when the test says. */
async function controlledJob(r: JobRunner) {
  let events!: EngineEvents;
  let finish!: () => void;
  const ready = new Promise<void>((resolve) => {
    finish = resolve;
  });
  let started!: () => void;
  const running = new Promise<void>((resolve) => {
    started = resolve;
  });
  const job = await r.start('backup', 'task nightly', async (ctx) => {
    events = ctx.events;
    started();
    await ready;
    return { result: { ok: true } };
  });
  await running;
  return { job, events: () => events, finish };
}

/** Events of a followed job until `stop` says so. */
function collect(follow: (listener: (e: JobEvent) => void) => () => void, until: (e: JobEvent) => boolean) {
  const seen: JobEvent[] = [];
  return new Promise<JobEvent[]>((resolve) => {
    const stop = follow((e) => {
      seen.push(e);
      if (until(e)) {
        stop();
        resolve(seen);
      }
    });
  });
}

for (const dialect of ['sqlite', 'postgres'] as const) {
  describe(`jobs across daemons on one ${dialect} catalog`, () => {
    it('another daemon reads a running job from its row: progress, owner, its stream to the end; cancel only where it runs', async (t) => {
      const file = await catalogFile(t, dialect);
      if (!file) return;
      const a = runner(await file.open(), 'daemon-a', 0);
      const b = runner(await file.open(), 'daemon-b', 0);
      const { job, events, finish } = await controlledJob(a);
      events().phase('prepare');
      events().item('web01', 'prepared');

      const followed = collect(
        (l) => b.follow(job.id, l, 5),
        (e) => e.type === 'done' || e.type === 'failed',
      );
      const seenByB = await b.get(job.id);
      assert.equal(seenByB?.state, 'running');
      assert.equal(seenByB?.instanceId, 'daemon-a');
      assert.equal(b.isLocal(job.id), false);
      assert.equal(b.cancel(job.id), undefined, 'b cannot abort a job that runs in a');
      assert.equal((await b.list({ state: ['running'] })).length, 1);
      assert.equal(await b.taskRunningAnywhere('nightly'), true);
      assert.equal(b.taskRunning('nightly'), false);

      finish();
      await a.idle();
      const stream = await followed;
      const last = stream[stream.length - 1]!;
      assert.equal(last.type, 'done');
      assert.deepEqual((last.data as { result: unknown }).result, { ok: true });
      const progress = stream.filter((e) => e.type === 'progress').map((e) => e.data as { phase: string });
      assert.ok(progress.length >= 1, 'the progress written by a reached b');
      assert.equal(progress[progress.length - 1]!.phase, 'prepare');
      const done = await b.get(job.id);
      assert.equal(done?.state, 'done');
      assert.equal(await b.taskRunningAnywhere('nightly'), false);
    });

    it('progress reaches the row at a bounded rate, and the final row always', async (t) => {
      const file = await catalogFile(t, dialect);
      if (!file) return;
      const store = await file.open();
      const a = runner(store, 'daemon-a', 3_600_000);
      const { job, events, finish } = await controlledJob(a);
      for (let i = 0; i < 50; i++) events().item(`vm${i}`, 'done');
      // The row was written at the start; the next write is due an hour later: none of the 50 made one.
      assert.equal((await store.findJob(job.id))?.progress, undefined);
      assert.equal((await a.get(job.id))?.progress?.done, 50, 'in memory, progress is live');
      finish();
      await a.idle();
      const row = await store.findJob(job.id);
      assert.equal(row?.state, 'done');
      assert.equal((row?.progress as { done?: number } | undefined)?.done, 50);
    });

    it('one daemon only (no progressSaveMs): the row is written at start and end only', async (t) => {
      const file = await catalogFile(t, dialect);
      if (!file) return;
      const store = await file.open();
      const a = runner(store, 'daemon-a');
      const { job, events, finish } = await controlledJob(a);
      events().phase('prepare');
      assert.equal((await store.findJob(job.id))?.progress, undefined);
      finish();
      await a.idle();
      assert.equal(
        ((await store.findJob(job.id))?.progress as { phase?: string } | undefined)?.phase,
        'prepare',
      );
    });

    it('a job of a daemon that died is marked INTERRUPTED by the next daemon that notices; its followers see the end', async (t) => {
      const file = await catalogFile(t, dialect);
      if (!file) return;
      const aStore = await file.open();
      const bStore = await file.open();
      await aStore.heartbeatMember({ instanceId: 'daemon-a', host: 'h1', pid: 11, listen: 'h1:8470' });
      await bStore.heartbeatMember({ instanceId: 'daemon-b', host: 'h2', pid: 22, listen: 'h2:8470' });
      const a = runner(aStore, 'daemon-a', 0);
      const b = runner(bStore, 'daemon-b', 0);
      const { job, finish } = await controlledJob(a);
      const bJob = await controlledJob(b);
      const followed = collect(
        (l) => b.follow(job.id, l, 5),
        (e) => e.type === 'done' || e.type === 'failed',
      );
      // a's daemon is alive: nothing is orphaned.
      assert.equal(await bStore.failOrphanedJobs(60_000, { code: 'INTERRUPTED', message: 'gone' }), 0);
      // a dies: its row goes (reaped by a daemon of its host, or its heartbeat ages past the lease).
      await bStore.removeMember('daemon-a');
      assert.equal(await bStore.failOrphanedJobs(60_000, { code: 'INTERRUPTED', message: 'gone' }), 1);
      const stream = await followed;
      assert.equal(stream[stream.length - 1]!.type, 'failed');
      const seen = await b.get(job.id);
      assert.equal(seen?.state, 'failed');
      assert.equal(seen?.error?.code, 'INTERRUPTED');
      assert.equal((await b.get(bJob.job.id))?.state, 'running', 'b’s own job is untouched');
      finish();
      bJob.finish();
      await a.idle();
      await b.idle();
    });
  });
}
