import { UsageError } from '../errors.js';
import type { WorkerEvent } from '../jobs/index.js';
import type { Repository } from '../repository/index.js';
import type { EngineContext } from './context.js';
import { openQueue, queueTarget } from './job-queue.js';
import {
  type DiskJobAccess,
  type DiskJobOutput,
  type DiskJobPayload,
  startDiskWorker,
} from './offload-disk.js';
import { openConfiguredRepository } from './repository-access.js';

/**
 * `snapkeeper worker` (issue 10, docs/workers.md): takes offload disk jobs from the PostgreSQL job queue of
 * the configuration (`workers.queue`, or the catalog's database) and runs them, reading the arrays' snapshots
 * through this configuration's arrays and writing into its repositories, until stopped. It needs neither
 * vCenter nor the catalog. `serve` can run one beside the daemon with the same call.
 */

export interface WorkerOptions {
  /** Disk jobs at once (default `workers.concurrency`). */
  concurrency?: number;
  /** Called for each job started, completed, failed, given back or lost (a line on a terminal). */
  onJob?: (e: WorkerJobEvent) => void;
  /** Between looks at an empty queue (default 500 ms). */
  pollMs?: number;
}

/** One job's event, as the CLI and the daemon show it (no payload beyond names). */
export interface WorkerJobEvent {
  type: WorkerEvent['type'];
  job: string;
  attempt: number;
  backupId: string;
  repository: string;
  vm: string;
  disk: string;
  /** Set when it ended (completed, failed, given back, lost). */
  ms?: number;
  /** ms from ready to started (queue latency), on `started`. */
  waitedMs?: number;
  bytes?: number;
  bytesRead?: number;
  bytesAdded?: number;
  error?: { code: string; message: string };
}

export interface WorkerSummary {
  queue: string;
  repositories: string[];
  concurrency: number;
  completed: number;
  failed: number;
  givenBack: number;
  lost: number;
  bytes: number;
  bytesRead: number;
  bytesAdded: number;
}

export interface RunningWorker {
  /** The queue's URL (no password) and where it came from. */
  readonly queue: string;
  readonly repositories: string[];
  readonly concurrency: number;
  /** Stops taking jobs, gives the running ones back to the queue, closes everything. */
  stop(): Promise<WorkerSummary>;
}

/**
 * Starts a worker of disk jobs. Refused (UsageError, exit 3, nothing taken) when the configuration names no
 * PostgreSQL queue, configures no repository, or `concurrency` is not 1-64; a queue that cannot be reached is
 * an error naming it (never its password).
 */
export async function startWorker(ctx: EngineContext, options: WorkerOptions = {}): Promise<RunningWorker> {
  const config = ctx.config;
  const concurrency = options.concurrency ?? config.workers.concurrency;
  if (!Number.isInteger(concurrency) || concurrency < 1 || concurrency > 64) {
    throw new UsageError(
      'WORKER_CONCURRENCY',
      `concurrency ${concurrency} must be a whole number from 1 to 64`,
    );
  }
  const target = queueTarget(config);
  if (target === undefined) {
    throw new UsageError(
      'WORKER_NO_QUEUE',
      `${config.file} names no job queue: set workers.queue.url (postgres://USER@HOST:PORT/DATABASE) or put the catalog on PostgreSQL; without one, offloads run their disk jobs themselves`,
    );
  }
  const repositories = config.repositories.map((r) => r.name);
  if (repositories.length === 0) {
    throw new UsageError(
      'WORKER_NO_REPOSITORY',
      `${config.file} configures no repository: nothing to offload into`,
    );
  }
  const queue = await openQueue(target, { connections: concurrency * 2 + 4 });
  const opened = new Map<string, Promise<Repository>>();
  const access: DiskJobAccess = {
    array: (name) => ctx.array(name),
    repository: async (name, id) => {
      let p = opened.get(name);
      if (!p) {
        p = openConfiguredRepository(ctx, name).then((o) => o.repository);
        p.catch(() => opened.delete(name));
        opened.set(name, p);
      }
      const repository = await p;
      if (repository.id !== id) {
        throw new UsageError(
          'DISK_JOB_REPOSITORY',
          `repository ${name} of ${config.file} is repository ${repository.id}, the disk job is for ${id}: this worker's configuration names another repository`,
        );
      }
      return repository;
    },
  };
  const summary: WorkerSummary = {
    queue: `${target.url} (${target.from})`,
    repositories,
    concurrency,
    completed: 0,
    failed: 0,
    givenBack: 0,
    lost: 0,
    bytes: 0,
    bytesRead: 0,
    bytesAdded: 0,
  };
  const outputs = new Map<string, DiskJobOutput>();
  const worker = startDiskWorker(queue, access, {
    repositories,
    concurrency,
    ...(config.workers.perRepository !== undefined ? { perRepository: config.workers.perRepository } : {}),
    ...(options.pollMs !== undefined ? { pollMs: options.pollMs } : {}),
    onEvent: (e) => {
      const p = e.job.payload as DiskJobPayload;
      const bytes = p.files.reduce((n, f) => n + f.size, 0);
      const view: WorkerJobEvent = {
        type: e.type,
        job: e.job.id,
        attempt: e.job.attempt,
        backupId: p.backupId,
        repository: p.repository,
        vm: p.vmName,
        disk: p.unit,
        bytes,
      };
      if (e.type === 'started') view.waitedMs = e.job.startedAt.getTime() - e.job.readyAt.getTime();
      else view.ms = e.ms;
      if (e.type === 'completed') {
        summary.completed++;
        summary.bytes += bytes;
        const out = outputs.get(e.job.id);
        if (out) {
          summary.bytesRead += out.bytesRead;
          summary.bytesAdded += out.bytesAdded;
          view.bytesRead = out.bytesRead;
          view.bytesAdded = out.bytesAdded;
          outputs.delete(e.job.id);
        }
      } else if (e.type === 'failed') {
        summary.failed++;
        view.error = e.error;
      } else if (e.type === 'released') summary.givenBack++;
      else if (e.type === 'lost') summary.lost++;
      options.onJob?.(view);
    },
    onOutput: (id, out) => outputs.set(id, out),
  });
  return {
    queue: summary.queue,
    repositories,
    concurrency,
    async stop() {
      await worker.stop({ giveBack: true });
      for (const p of opened.values()) await (await p.catch(() => undefined))?.close().catch(() => {});
      await queue.close();
      return { ...summary };
    },
  };
}
