import { errorMessage, SnapkeeperError } from '../errors.js';
import type { JobQueue, LeasedJob } from './types.js';

/** What a handler is given besides its job. */
export interface JobControl {
  /** Aborts when the job must stop: its lease was lost (another worker may have it), or the worker stops. */
  signal: AbortSignal;
  /** Reports progress (plain JSON); sent to the queue at most every `progressMs`. */
  progress(data: unknown): void;
}

export type JobHandler = (job: LeasedJob, control: JobControl) => Promise<unknown>;

/** A queue a worker serves, and the slot group (if any) each of its jobs must hold while it runs. */
export interface ServedQueue {
  name: string;
  /** At most `cap` jobs of this group run at once across every worker of the job queue. */
  slot?: { name: string; cap: number };
}

export type WorkerEvent =
  | { type: 'started'; job: LeasedJob }
  | { type: 'completed'; job: LeasedJob; ms: number }
  | { type: 'failed'; job: LeasedJob; ms: number; error: { code: string; message: string } }
  | { type: 'released'; job: LeasedJob; ms: number }
  | { type: 'lost'; job: LeasedJob; ms: number };

export interface JobWorkerOptions {
  queues: ServedQueue[];
  /** Jobs run at once by this worker (default 1). */
  concurrency?: number;
  handler: JobHandler;
  /** How long to wait between looks at an empty queue (default 500 ms). */
  pollMs?: number;
  /** Least time between two progress reports of one job sent to the queue (default 1000 ms). */
  progressMs?: number;
  onEvent?: (e: WorkerEvent) => void;
}

export interface RunningJobWorker {
  /** Jobs running now. */
  readonly running: number;
  /**
   * Stops taking jobs. `giveBack` (default): the running jobs are aborted and given back to the queue at
   * once (another worker takes them); otherwise they finish first. Resolves once none runs.
   */
  stop(options?: { giveBack?: boolean }): Promise<void>;
  /** Resolves when the worker has stopped (after `stop`). */
  readonly done: Promise<void>;
}

/** An error's code and message as a job's failure (never a stack: output is shown to users). */
export function jobErrorOf(err: unknown): { code: string; message: string } {
  return {
    code: err instanceof SnapkeeperError ? err.code : 'JOB_FAILED',
    message: errorMessage(err),
  };
}

/**
 * Takes jobs from `queues` and runs them with `handler`, up to `concurrency` at once, until stopped. Each
 * running job's lease is renewed every third of it; a renewal refused (the queue expired the lease and may
 * have handed the job to another worker, or it was cancelled) aborts the handler and drops its result. A
 * handler's result completes the job, its error fails it (retried by the queue's policy). Queues are served
 * in turn, so no queue starves another.
 */
export function startJobWorker(queue: JobQueue, options: JobWorkerOptions): RunningJobWorker {
  const concurrency = Math.max(1, options.concurrency ?? 1);
  const pollMs = options.pollMs ?? 500;
  const progressMs = options.progressMs ?? 1000;
  const stopping = new AbortController();
  const active = new Set<Promise<void>>();
  const controllers = new Set<{ abort: AbortController; giveBack: boolean }>();
  let giveBack = true;
  let turn = 0;
  let wakeLoop: (() => void) | undefined;
  const emit = (e: WorkerEvent) => {
    try {
      options.onEvent?.(e);
    } catch {
      // A listener's failure is not the job's.
    }
  };

  const runJob = async (job: LeasedJob, slot: { release(): Promise<void> } | undefined): Promise<void> => {
    const started = Date.now();
    const entry = { abort: new AbortController(), giveBack: false };
    controllers.add(entry);
    let lost = false;
    const ref = { queue: job.queue, id: job.id, attempt: job.attempt };
    const beat = setInterval(
      () => {
        queue.renew(ref).then(
          (ok) => {
            if (!ok && !entry.abort.signal.aborted) {
              lost = true;
              entry.abort.abort(new SnapkeeperError('JOB_LEASE_LOST', `job ${job.id}: lease lost`));
            }
          },
          () => {
            // The queue is unreachable for a moment: the next beat tries again (the lease is three beats).
          },
        );
      },
      Math.max(200, Math.floor(job.leaseMs / 3)),
    );
    let lastSent = 0;
    let pending: unknown;
    let timer: NodeJS.Timeout | undefined;
    const send = () => {
      timer = undefined;
      lastSent = Date.now();
      queue.progress(ref, pending).catch(() => {});
    };
    emit({ type: 'started', job });
    try {
      let output: unknown;
      try {
        output = await options.handler(job, {
          signal: entry.abort.signal,
          progress(data) {
            pending = data;
            if (timer !== undefined) return;
            const wait = lastSent + progressMs - Date.now();
            if (wait <= 0) send();
            else timer = setTimeout(send, wait);
          },
        });
      } finally {
        clearInterval(beat);
        if (timer !== undefined) clearTimeout(timer);
      }
      if (lost) {
        emit({ type: 'lost', job, ms: Date.now() - started });
      } else if (await queue.complete(ref, output ?? null)) {
        emit({ type: 'completed', job, ms: Date.now() - started });
      } else {
        emit({ type: 'lost', job, ms: Date.now() - started });
      }
    } catch (err) {
      const ms = Date.now() - started;
      if (lost) emit({ type: 'lost', job, ms });
      else if (entry.giveBack) {
        await queue.release(ref).catch(() => {});
        emit({ type: 'released', job, ms });
      } else {
        const error = jobErrorOf(err);
        await queue.fail(ref, error).catch(() => {});
        emit({ type: 'failed', job, ms, error });
      }
    } finally {
      controllers.delete(entry);
      await slot?.release().catch(() => {});
    }
  };

  /** Starts one job if one is ready; true when it did. */
  const startOne = async (): Promise<boolean> => {
    for (let i = 0; i < options.queues.length; i++) {
      const served = options.queues[(turn + i) % options.queues.length]!;
      const slot = served.slot ? await queue.trySlot(served.slot.name, served.slot.cap) : undefined;
      if (served.slot && !slot) continue;
      let jobs: LeasedJob[];
      try {
        jobs = stopping.signal.aborted ? [] : await queue.take(served.name, 1);
      } catch (err) {
        await slot?.release().catch(() => {});
        throw err;
      }
      const job = jobs[0];
      if (!job) {
        await slot?.release().catch(() => {});
        continue;
      }
      turn = (turn + i + 1) % options.queues.length;
      const p = runJob(job, slot).finally(() => {
        active.delete(p);
        const w = wakeLoop;
        wakeLoop = undefined;
        w?.();
      });
      active.add(p);
      return true;
    }
    return false;
  };

  const loop = async () => {
    while (!stopping.signal.aborted) {
      let started = false;
      if (active.size < concurrency) {
        try {
          started = await startOne();
        } catch {
          // The queue is unreachable: wait and look again.
        }
      }
      if (started) continue;
      if (stopping.signal.aborted) break;
      // Wait for a job to finish (a free place) or for the queue to have news, whichever comes first.
      await Promise.race([
        queue.wait(pollMs, stopping.signal),
        new Promise<void>((r) => {
          wakeLoop = r;
        }),
      ]);
      wakeLoop = undefined;
    }
    if (giveBack) {
      for (const c of controllers) {
        c.giveBack = true;
        c.abort.abort(new SnapkeeperError('WORKER_STOPPING', 'the worker is stopping'));
      }
    }
    while (active.size > 0) await Promise.allSettled([...active]);
  };
  const done = loop();

  return {
    get running() {
      return active.size;
    },
    async stop(o = {}) {
      giveBack = o.giveBack ?? true;
      stopping.abort();
      await done;
    },
    done,
  };
}
