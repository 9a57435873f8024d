import { hostname } from 'node:os';
import type { StorageArray } from '../arrays/index.js';
import { NotFoundError, SnapkeeperError, UsageError } from '../errors.js';
import {
  FINAL_STATES,
  type JobInfo,
  type JobQueue,
  type RunningJobWorker,
  startJobWorker,
  type WorkerEvent,
} from '../jobs/index.js';
import type { ArraySnapshotRecord } from '../model/backup.js';
import type { Manifest, Repository, StoredFile, WriteProgress } from '../repository/index.js';
import { crashPoint, type EngineEvents } from './context.js';
import { fileSource, type SnapshotFile, type VmFiles } from './steps/offload-files.js';

/**
 * One backup's offload as one job per disk (issue 10, docs/workers.md). A disk job reads its files (a disk's
 * descriptor and extents; the VM's home files ride with its first disk) from the array snapshot through the
 * array seam, writes them into the repository with a writer of its own, flushes that writer's packs and index
 * (no manifest: `RepositoryWriter.flush`) and returns the stored file descriptions. The coordinator (the process
 * that runs the offload operation) enqueues the jobs, follows them and writes the one manifest once all are
 * done (offload.ts).
 *
 * A job is only ever content-named, write-once data: run twice (a worker lost its lease, then finished
 * anyway), or after its coordinator died, it adds packs and an index that deduplicate against each other and
 * that prune collects when no manifest names them. A retried job reuses what its first attempt stored.
 */

/** The queue of a repository's disk jobs (one per repository: a worker's per-repository cap is a slot). */
export function diskQueueName(repository: string): string {
  return `offload-disk.${repository}`;
}

/** The slot group capping a repository's disk jobs across workers (`workers.perRepository`). */
export function repositorySlot(repository: string): string {
  return `offload-repository.${repository}`;
}

/** One file stored: its size, what was read of it, and the copy it was read incrementally against. */
export interface OffloadedFile {
  path: string;
  bytes: number;
  /** Set when only changed ranges were read: the backup whose copy gave the unchanged chunks. */
  incrementalFrom?: string;
  /** Bytes of the changed ranges read (incremental) or the whole file. */
  bytesToRead: number;
}

/** What a disk job is given: plain JSON (it may travel through PostgreSQL to another machine). */
export interface DiskJobPayload {
  v: 1;
  backupId: string;
  repository: string;
  repositoryId: string;
  vmId: string;
  vmName: string;
  /** The disk's label, or `home` for a VM without disks. */
  unit: string;
  files: SnapshotFile[];
  /** The VM's newest earlier copy in this repository whose array snapshot may still exist (incremental). */
  previous?: { backupId: string; manifestId: string; snapshots: ArraySnapshotRecord[] };
}

export interface DiskJobOutput {
  files: StoredFile[];
  details: OffloadedFile[];
  bytesRead: number;
  bytesAdded: number;
  ms: number;
  /** `host/pid` of the process that ran it. */
  worker: string;
}

/** What a disk job needs of the process running it. */
export interface DiskJobAccess {
  array(name: string): Promise<StorageArray>;
  /** The repository `name` opened (UsageError unless its id is `id`: another repository under that name). */
  repository(name: string, id: string): Promise<Repository>;
}

function payloadOf(data: unknown): DiskJobPayload {
  const p = data as Partial<DiskJobPayload> | null;
  if (
    p?.v !== 1 ||
    typeof p.backupId !== 'string' ||
    typeof p.repository !== 'string' ||
    typeof p.repositoryId !== 'string' ||
    !Array.isArray(p.files)
  ) {
    throw new UsageError('DISK_JOB_INVALID', 'a disk job of another version or shape: not run');
  }
  return p as DiskJobPayload;
}

const manifests = new Map<string, Promise<Manifest>>();

/** Previous manifests, loaded once per process (a backup of many disks has one previous manifest per VM). */
function loadManifest(repository: Repository, id: string): Promise<Manifest> {
  const key = `${repository.id}/${id}`;
  let m = manifests.get(key);
  if (!m) {
    m = repository.loadManifest(id);
    m.catch(() => manifests.delete(key));
    manifests.set(key, m);
    if (manifests.size > 64) manifests.delete(manifests.keys().next().value!);
  }
  return m;
}

/**
 * What an incremental read of `file` stands on: the same file in the previous copy of its VM and the ranges
 * the array says may have changed since that backup's snapshot (same array and volume). Undefined when any
 * of it is missing: the writer then reads the whole file.
 */
export async function incrementalSource(
  vmId: string,
  file: SnapshotFile,
  previous: { backupId: string; manifest: Manifest; snapshots: ArraySnapshotRecord[] } | undefined,
  array: StorageArray,
  signal: AbortSignal | undefined,
): Promise<
  | { from: string; source: { previous: StoredFile; changedRanges: { offset: number; length: number }[] } }
  | undefined
> {
  if (!previous || array.changedRanges === undefined) return undefined;
  const stored = previous.manifest.body.vms
    .find((x) => x.vmId === vmId)
    ?.files.find((f) => f.path === file.path);
  if (!stored) return undefined;
  const prevSnapshot = previous.snapshots.find(
    (s) => s.array === file.array && Object.values(s.datastores).some((vols) => vols.includes(file.volume)),
  );
  if (!prevSnapshot) return undefined;
  let ranges: { offset: number; length: number }[] | undefined;
  try {
    ranges = await array.changedRanges(
      prevSnapshot.snapshotId,
      file.snapshotId,
      file.volume,
      file.relativePath,
      signal ? { signal } : {},
    );
  } catch (err) {
    // The previous snapshot is gone (deleted meanwhile) or the file is new: read it all.
    if (err instanceof NotFoundError) return undefined;
    throw err;
  }
  if (ranges === undefined) return undefined;
  return { from: previous.backupId, source: { previous: stored, changedRanges: ranges } };
}

/** Runs one disk job: its files into the repository, flushed without a manifest. */
export async function runDiskJob(
  access: DiskJobAccess,
  data: unknown,
  control: { signal?: AbortSignal; progress?: (p: WriteProgress) => void },
): Promise<DiskJobOutput> {
  const started = Date.now();
  const job = payloadOf(data);
  const { signal } = control;
  const repository = await access.repository(job.repository, job.repositoryId);
  let previous: { backupId: string; manifest: Manifest; snapshots: ArraySnapshotRecord[] } | undefined;
  if (job.previous) {
    try {
      previous = {
        backupId: job.previous.backupId,
        manifest: await loadManifest(repository, job.previous.manifestId),
        snapshots: job.previous.snapshots,
      };
    } catch (err) {
      // Forgotten meanwhile: the files are read whole (and still deduplicate).
      if (!(err instanceof NotFoundError)) throw err;
    }
  }
  let last: WriteProgress = { bytesDone: 0, bytesTotal: 0, bytesRead: 0, bytesAdded: 0 };
  const writer = await repository.writer({
    ...(signal ? { signal } : {}),
    onProgress: (p) => {
      last = p;
      control.progress?.(p);
    },
  });
  const files: StoredFile[] = [];
  const details: OffloadedFile[] = [];
  try {
    for (const f of job.files) {
      signal?.throwIfAborted();
      const array = await access.array(f.array);
      const inc = await incrementalSource(job.vmId, f, previous, array, signal);
      files.push(await writer.addFile(fileSource(array, f, inc?.source)));
      details.push({
        path: f.path,
        bytes: f.size,
        bytesToRead: inc ? inc.source.changedRanges.reduce((n, r) => n + r.length, 0) : f.size,
        ...(inc ? { incrementalFrom: inc.from } : {}),
      });
    }
    await writer.flush();
  } catch (err) {
    await writer.abort().catch(() => {});
    throw err;
  }
  // Crash tests: a worker killed once its data is stored, before the queue hears of it.
  crashPoint('offload.disk-flushed');
  return {
    files,
    details,
    bytesRead: last.bytesRead,
    bytesAdded: last.bytesAdded,
    ms: Date.now() - started,
    worker: `${hostname()}/${process.pid}`,
  };
}

/** The disk jobs of an offload: per VM, one per included disk (the home files with the first), in order. */
export function diskJobs(
  backupId: string,
  repository: { name: string; id: string },
  vms: VmFiles[],
  previous: Map<string, { backupId: string; manifestId: string; snapshots: ArraySnapshotRecord[] }>,
): DiskJobPayload[] {
  const out: DiskJobPayload[] = [];
  for (const v of vms) {
    const units = new Map<string, SnapshotFile[]>();
    const home: SnapshotFile[] = [];
    for (const f of v.files) {
      if (f.disk === undefined) home.push(f);
      else units.set(f.disk, [...(units.get(f.disk) ?? []), f]);
    }
    const list = [...units.entries()];
    if (list.length === 0) list.push(['home', []]);
    list[0]![1].unshift(...home);
    const prev = previous.get(v.vm.id);
    for (const [unit, files] of list) {
      out.push({
        v: 1,
        backupId,
        repository: repository.name,
        repositoryId: repository.id,
        vmId: v.vm.id,
        vmName: v.vm.name,
        unit,
        files,
        ...(prev ? { previous: prev } : {}),
      });
    }
  }
  return out;
}

export interface FollowOptions {
  queue: JobQueue;
  /** The operation's id: the jobs' keys (an enqueue repeated after a dropped connection adds nothing). */
  opId: string;
  jobs: DiskJobPayload[];
  leaseMs: number;
  retries: number;
  events: EngineEvents;
  /** Sum of the running and finished jobs' progress. */
  onProgress: (p: WriteProgress) => void;
  signal?: AbortSignal;
  /** Between looks at the jobs' state (an in-process queue wakes the coordinator at once). */
  pollMs?: number;
  /** Run the largest full-read job alone first (default true; `workers.seedFirst`). */
  seedFirst?: boolean;
}

/** The job to run first: the largest one without an earlier copy (read in full); -1 when all are incremental. */
function seedOf(jobs: DiskJobPayload[]): number {
  let best = -1;
  let bytes = -1;
  jobs.forEach((j, i) => {
    if (j.previous !== undefined) return;
    const n = j.files.reduce((m, f) => m + f.size, 0);
    if (n > bytes) {
      best = i;
      bytes = n;
    }
  });
  return best;
}

/**
 * Enqueues an offload's disk jobs and follows them to the end: their progress summed (bytes, read, added),
 * each VM's files reported as their jobs finish. The outputs, in the order of `jobs`. A job failed for good
 * (its retries spent) fails the offload naming the disk; an abort cancels the jobs not yet done.
 */
export async function followDiskJobs(o: FollowOptions): Promise<DiskJobOutput[]> {
  const refs: ({ queue: string; id: string } | undefined)[] = o.jobs.map(() => undefined);
  const enqueue = async (i: number) => {
    const job = o.jobs[i]!;
    const queue = diskQueueName(job.repository);
    const id = await o.queue.enqueue({
      queue,
      payload: job,
      key: `${o.opId}/${i}`,
      leaseMs: o.leaseMs,
      retryLimit: o.retries,
      retryDelayMs: 2000,
      retryBackoff: true,
    });
    refs[i] = { queue, id };
  };
  // The seed: the largest job read in full runs alone first, so that the jobs after it find its chunks in the
  // repository's index (disks of one template share most of their data; concurrent writers cannot see each
  // other's chunks and would each store them).
  const seed = o.seedFirst === false || o.jobs.length < 2 ? -1 : seedOf(o.jobs);
  if (seed >= 0) await enqueue(seed);
  else for (let i = 0; i < o.jobs.length; i++) await enqueue(i);
  const cancelAll = async () => {
    for (const r of refs) if (r) await o.queue.cancel(r).catch(() => {});
  };
  const reported = new Map<string, string>();
  const total = o.jobs.reduce((n, j) => n + j.files.reduce((m, f) => m + f.size, 0), 0);
  const vmJobsLeft = new Map<string, number>();
  for (const j of o.jobs) vmJobsLeft.set(j.vmName, (vmJobsLeft.get(j.vmName) ?? 0) + 1);
  try {
    for (;;) {
      o.signal?.throwIfAborted();
      const enqueued = refs.filter((r) => r !== undefined);
      const infos = new Map<string, JobInfo>((await o.queue.status(enqueued)).map((i) => [i.id, i]));
      const sum: WriteProgress = { bytesDone: 0, bytesTotal: total, bytesRead: 0, bytesAdded: 0 };
      let done = 0;
      for (let i = 0; i < refs.length; i++) {
        const ref = refs[i];
        if (ref === undefined) continue;
        const info = infos.get(ref.id);
        const job = o.jobs[i]!;
        if (!info)
          throw new SnapkeeperError(
            'DISK_JOB_LOST',
            `the disk job of ${job.vmName} ${job.unit} is gone from the queue`,
          );
        if (info.state === 'failed' || info.state === 'cancelled') {
          throw new SnapkeeperError(
            info.error?.code ?? 'DISK_JOB_FAILED',
            `offload of ${job.vmName} ${job.unit} ${info.state === 'cancelled' ? 'was cancelled' : `failed after ${info.attempts} attempt(s)`}${info.error ? `: ${info.error.message}` : ''}`,
            { details: { vm: job.vmName, disk: job.unit, attempts: info.attempts } },
          );
        }
        const key = `${info.state}/${info.attempts}`;
        if (reported.get(info.id) !== key) {
          reported.set(info.id, key);
          report(o.events, job, info, vmJobsLeft);
        }
        if (info.state === 'completed') {
          const out = info.output as DiskJobOutput;
          const bytes = job.files.reduce((n, f) => n + f.size, 0);
          sum.bytesDone += bytes;
          sum.bytesRead += out.bytesRead;
          sum.bytesAdded += out.bytesAdded;
          done++;
        } else if (info.state === 'running' && info.progress) {
          const p = info.progress as WriteProgress;
          sum.bytesDone += p.bytesDone;
          sum.bytesRead += p.bytesRead;
          sum.bytesAdded += p.bytesAdded;
        }
      }
      o.onProgress(sum);
      if (done === refs.length) {
        return refs.map((r) => infos.get(r!.id)!.output as DiskJobOutput);
      }
      if (done === enqueued.length && enqueued.length < refs.length) {
        // The seed is stored: the others now, all at once.
        for (let i = 0; i < refs.length; i++) if (refs[i] === undefined) await enqueue(i);
        continue;
      }
      await o.queue.wait(o.pollMs ?? 250, o.signal);
    }
  } catch (err) {
    await cancelAll();
    throw err;
  }
}

function report(events: EngineEvents, job: DiskJobPayload, info: JobInfo, left: Map<string, number>): void {
  if (info.state === 'running') {
    events.item(
      job.vmName,
      `${job.unit}: offloading${info.attempts > 1 ? ` (attempt ${info.attempts})` : ''}`,
    );
  } else if (info.state === 'retry') {
    events.item(job.vmName, `${job.unit}: retrying${info.error ? ` (${info.error.message})` : ''}`);
  } else if (info.state === 'completed') {
    const out = info.output as DiskJobOutput;
    for (const d of out.details) {
      events.item(job.vmName, `${d.path}${d.incrementalFrom !== undefined ? ' (changed ranges)' : ''}`);
    }
    const n = (left.get(job.vmName) ?? 1) - 1;
    left.set(job.vmName, n);
    if (n === 0) events.item(job.vmName, 'stored');
  }
  if (FINAL_STATES.includes(info.state) && info.state !== 'completed') events.item(job.vmName, info.state);
}

/**
 * A worker of disk jobs on `queue` for `repositories` (names and ids), `concurrency` at once, each
 * repository capped at `perRepository` running jobs across every worker of the queue when set.
 */
export function startDiskWorker(
  queue: JobQueue,
  access: DiskJobAccess,
  options: {
    repositories: string[];
    concurrency: number;
    perRepository?: number;
    pollMs?: number;
    onEvent?: (e: WorkerEvent) => void;
    /** A job's output, just before its `completed` event. */
    onOutput?: (jobId: string, output: DiskJobOutput) => void;
  },
): RunningJobWorker {
  return startJobWorker(queue, {
    queues: options.repositories.map((r) => ({
      name: diskQueueName(r),
      ...(options.perRepository !== undefined
        ? { slot: { name: repositorySlot(r), cap: options.perRepository } }
        : {}),
    })),
    concurrency: options.concurrency,
    ...(options.pollMs !== undefined ? { pollMs: options.pollMs } : {}),
    ...(options.onEvent ? { onEvent: options.onEvent } : {}),
    handler: async (job, control) => {
      const out = await runDiskJob(access, job.payload, {
        signal: control.signal,
        progress: (p) => control.progress(p),
      });
      options.onOutput?.(job.id, out);
      return out;
    },
  });
}
