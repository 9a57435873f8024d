import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { describe, it, type TestContext } from 'node:test';
import { type JobQueue, type LeasedJob, startJobWorker } from '../../src/jobs/index.js';

/**
 * The job queue conformance suite (src/jobs/README.md): every case knows only the `JobQueue` interface and runs
 * against each implementation. `open` gives a fresh queue store; `peer()` a second handle on the same store (a
 * second process or machine: for PostgreSQL a second pool, for the in-process queue the same object).
 */
export interface QueueFixture {
  queue: JobQueue;
  peer(): Promise<JobQueue>;
  close(): Promise<void>;
}

export type QueueFactory = (t: TestContext) => Promise<QueueFixture | undefined>;

/** Polls `take` until a job comes (the queue's maintenance runs on its own clock), up to `limitMs`. */
async function takeEventually(q: JobQueue, name: string, limitMs = 30_000): Promise<LeasedJob> {
  const end = Date.now() + limitMs;
  while (Date.now() < end) {
    const [job] = await q.take(name);
    if (job) return job;
    await q.wait(200);
  }
  throw new Error(`no job of ${name} became ready within ${limitMs} ms`);
}

export function queueConformance(label: string, open: QueueFactory): void {
  const name = () => `q-${randomUUID().slice(0, 8)}`;
  const withQueue = (fn: (f: QueueFixture, t: TestContext) => Promise<void>) => async (t: TestContext) => {
    const f = await open(t);
    if (!f) return;
    try {
      await fn(f, t);
    } finally {
      await f.close();
    }
  };

  describe(`job queue conformance: ${label}`, () => {
    it(
      'a job is taken once, with its payload, and completes with its output',
      withQueue(async ({ queue }) => {
        const q = name();
        const id = await queue.enqueue({ queue: q, payload: { disk: 'a', n: 1 } });
        const [job] = await queue.take(q, 5);
        assert.ok(job);
        assert.equal(job.id, id);
        assert.deepEqual(job.payload, { disk: 'a', n: 1 });
        assert.equal(job.attempt, 1);
        assert.ok(job.startedAt.getTime() >= job.readyAt.getTime() - 1000);
        assert.deepEqual(await queue.take(q), [], 'a running job is not taken twice');
        assert.equal((await queue.status([job]))[0]?.state, 'running');
        assert.equal(await queue.complete(job, { files: [1, 2] }), true);
        const [info] = await queue.status([job]);
        assert.equal(info?.state, 'completed');
        assert.deepEqual(info?.output, { files: [1, 2] });
        assert.equal(info?.attempts, 1);
        assert.equal(await queue.complete(job, {}), false, 'completing twice is refused');
      }),
    );

    it(
      'a key de-duplicates: the same key gives the same job',
      withQueue(async ({ queue }) => {
        const q = name();
        const a = await queue.enqueue({ queue: q, payload: 1, key: 'op1/disk0' });
        const b = await queue.enqueue({ queue: q, payload: 2, key: 'op1/disk0' });
        const c = await queue.enqueue({ queue: q, payload: 3, key: 'op1/disk1' });
        assert.equal(a, b);
        assert.notEqual(a, c);
        const taken = await queue.take(q, 10);
        assert.deepEqual(taken.map((j) => j.payload).sort(), [1, 3]);
      }),
    );

    it(
      'a failed job is retried while attempts are left, then failed with its error',
      withQueue(async ({ queue }) => {
        const q = name();
        await queue.enqueue({ queue: q, payload: 'x', retryLimit: 1, retryDelayMs: 0 });
        const first = await takeEventually(queue, q);
        await queue.fail(first, { code: 'DISK_READ', message: 'read error at 4096' });
        const [mid] = await queue.status([first]);
        assert.ok(mid?.state === 'retry' || mid?.state === 'queued', `state ${mid?.state}`);
        assert.deepEqual(mid?.error, { code: 'DISK_READ', message: 'read error at 4096' });
        const second = await takeEventually(queue, q);
        assert.equal(second.id, first.id, 'a retry keeps the job id');
        assert.equal(second.attempt, 2);
        await queue.fail(second, { code: 'DISK_READ', message: 'again' });
        const [end] = await queue.status([first]);
        assert.equal(end?.state, 'failed');
        assert.equal(end?.error?.message, 'again');
        assert.deepEqual(await queue.take(q), []);
      }),
    );

    it(
      'a retry waits for its delay',
      withQueue(async ({ queue }) => {
        const q = name();
        await queue.enqueue({ queue: q, payload: 'x', retryLimit: 3, retryDelayMs: 600_000 });
        const [job] = await queue.take(q);
        assert.ok(job);
        await queue.fail(job, { code: 'E', message: 'e' });
        assert.deepEqual(await queue.take(q), [], 'not ready before its retry delay');
        assert.equal((await queue.status([job]))[0]?.state, 'retry');
      }),
    );

    it(
      "a running job's progress is visible, and a job given back is taken again without an attempt counted",
      withQueue(async ({ queue }) => {
        const q = name();
        await queue.enqueue({ queue: q, payload: 'p' });
        const [job] = await queue.take(q);
        assert.ok(job);
        await queue.progress(job, { bytesDone: 42 });
        assert.deepEqual((await queue.status([job]))[0]?.progress, { bytesDone: 42 });
        await queue.release(job);
        assert.equal((await queue.status([job]))[0]?.state, 'queued');
        const again = await takeEventually(queue, q);
        assert.equal(again.id, job.id);
        assert.equal(again.attempt, 1);
      }),
    );

    it(
      'a cancelled job is not taken, and a running one cancelled loses its lease',
      withQueue(async ({ queue }) => {
        const q = name();
        const a = await queue.enqueue({ queue: q, payload: 'a' });
        await queue.cancel({ queue: q, id: a });
        assert.equal((await queue.status([{ queue: q, id: a }]))[0]?.state, 'cancelled');
        assert.deepEqual(await queue.take(q), []);
        await queue.enqueue({ queue: q, payload: 'b' });
        const [b] = await queue.take(q);
        assert.ok(b);
        assert.equal(await queue.renew(b), true);
        await queue.cancel(b);
        assert.equal(await queue.renew(b), false);
        assert.equal(await queue.complete(b, 1), false);
      }),
    );

    it(
      "a job whose worker dies is taken by another worker once its lease expires; the dead worker's result is refused",
      withQueue(async ({ queue, peer }) => {
        const q = name();
        await queue.enqueue({ queue: q, payload: 'd', leaseMs: 1000, retryLimit: 2, retryDelayMs: 0 });
        const [dying] = await queue.take(q);
        assert.ok(dying);
        // The worker holding it stops renewing (it was SIGKILLed): another one gets it after the lease.
        const other = await peer();
        const retried = await takeEventually(other, q);
        assert.equal(retried.id, dying.id);
        assert.equal(retried.attempt, 2);
        assert.equal(await queue.renew(dying), false, 'the first attempt lost its lease');
        assert.equal(await queue.complete(dying, 'late'), false, "the dead worker's late result is refused");
        assert.equal(await other.complete(retried, 'ok'), true);
        assert.equal((await other.status([retried]))[0]?.output, 'ok');
      }),
    );

    it(
      'a renewed lease keeps the job with its worker',
      withQueue(async ({ queue, peer }) => {
        const q = name();
        await queue.enqueue({ queue: q, payload: 'r', leaseMs: 2000 });
        const [job] = await queue.take(q);
        assert.ok(job);
        const other = await peer();
        // Renewed well within the lease several times: nobody else may take it meanwhile.
        for (let i = 0; i < 5; i++) {
          assert.equal(await queue.renew(job), true);
          assert.deepEqual(await other.take(q), []);
          await queue.wait(400);
        }
        assert.equal(await queue.complete(job, 1), true);
      }),
    );

    it(
      'slots: at most `cap` holders at once, across handles',
      withQueue(async ({ queue, peer }) => {
        const group = name();
        const other = await peer();
        const a = await queue.trySlot(group, 2);
        const b = await other.trySlot(group, 2);
        assert.ok(a && b);
        assert.equal(await queue.trySlot(group, 2), undefined);
        assert.equal(await other.trySlot(group, 2), undefined);
        const d = await queue.trySlot(`${group}-other`, 1);
        assert.ok(d, 'another group has its own slots');
        await d.release();
        await a.release();
        const c = await other.trySlot(group, 2);
        assert.ok(c, 'a released slot is free again');
        await b.release();
        await c.release();
      }),
    );

    it(
      'two workers with a slot cap of 1 on their queue never run two of its jobs at once',
      withQueue(async ({ queue, peer }) => {
        const q = name();
        const ids: string[] = [];
        for (let i = 0; i < 4; i++) ids.push(await queue.enqueue({ queue: q, payload: i }));
        const other = await peer();
        let running = 0;
        let most = 0;
        let ran = 0;
        const handler = async () => {
          running++;
          ran++;
          most = Math.max(most, running);
          await queue.wait(100);
          running--;
          return null;
        };
        const slot = { name: `${q}-repository`, cap: 1 };
        const workers = [queue, other].map((h) =>
          startJobWorker(h, { queues: [{ name: q, slot }], concurrency: 2, pollMs: 50, handler }),
        );
        const end = Date.now() + 30_000;
        while (
          (await queue.status(ids.map((id) => ({ queue: q, id })))).some((j) => j.state !== 'completed')
        ) {
          assert.ok(Date.now() < end, 'the jobs did not complete');
          await queue.wait(100);
        }
        for (const w of workers) await w.stop();
        assert.equal(ran, 4);
        assert.equal(most, 1, 'one at a time across both workers');
      }),
    );

    it(
      'a worker runs jobs with its concurrency limit, completes and fails them, and gives running ones back when stopped',
      withQueue(async ({ queue }) => {
        const q = name();
        const ids: string[] = [];
        for (let i = 0; i < 5; i++)
          ids.push(await queue.enqueue({ queue: q, payload: { i }, retryLimit: 0 }));
        let running = 0;
        let most = 0;
        const worker = startJobWorker(queue, {
          queues: [{ name: q }],
          concurrency: 2,
          pollMs: 100,
          handler: async (job) => {
            running++;
            most = Math.max(most, running);
            await queue.wait(50);
            running--;
            const { i } = job.payload as { i: number };
            if (i === 3) throw new Error('disk 3 is unreadable');
            return { double: i * 2 };
          },
        });
        const end = Date.now() + 30_000;
        for (;;) {
          const infos = await queue.status(ids.map((id) => ({ queue: q, id })));
          if (infos.every((j) => j.state === 'completed' || j.state === 'failed')) break;
          assert.ok(Date.now() < end, 'the worker did not finish its jobs');
          await queue.wait(100);
        }
        await worker.stop();
        assert.ok(most <= 2, `ran ${most} at once`);
        const infos = await queue.status(ids.map((id) => ({ queue: q, id })));
        assert.deepEqual(
          infos.map((j) => j.state),
          ['completed', 'completed', 'completed', 'failed', 'completed'],
        );
        assert.deepEqual(infos[4]?.output, { double: 8 });
        assert.match(infos[3]?.error?.message ?? '', /disk 3 is unreadable/);

        // Stopping gives a running job back at once.
        const held = await queue.enqueue({ queue: q, payload: { i: 9 } });
        let entered!: () => void;
        const inside = new Promise<void>((r) => {
          entered = r;
        });
        const second = startJobWorker(queue, {
          queues: [{ name: q }],
          pollMs: 100,
          handler: (_job, control) =>
            new Promise((_resolve, reject) => {
              entered();
              control.signal.addEventListener('abort', () => reject(control.signal.reason));
            }),
        });
        await inside;
        await second.stop();
        const [info] = await queue.status([{ queue: q, id: held }]);
        assert.equal(info?.state, 'queued');
        assert.equal(info?.attempts, 0);
      }),
    );
  });
}
