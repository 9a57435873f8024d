import type { StorageArray } from '../arrays/index.js';
import type { BackupCopy } from '../catalog/index.js';
import { NotFoundError, SnapkeeperError, UsageError } from '../errors.js';
import { InProcessJobQueue, type JobQueue } from '../jobs/index.js';
import type { BackupRecord, Warning } from '../model/backup.js';
import type { Manifest, ManifestBody, Repository, StoredFile, WriteProgress } from '../repository/index.js';
import { type BackupRequest, runBackup } from './backup.js';
import type { EngineContext } from './context.js';
import { openQueue, queueTarget } from './job-queue.js';
import { journalStep } from './journal/write.js';
import {
  type DiskJobAccess,
  diskJobs,
  followDiskJobs,
  type OffloadedFile,
  startDiskWorker,
} from './offload-disk.js';
import { checkedOperation, runOperation } from './operation.js';
import { applyRepositoryRetention, type RepositoryRetentionResult } from './repo.js';
import { type ConfiguredRepository, openConfiguredRepository } from './repository-access.js';
import { type ExcludedDisk, type VmFiles, vmFiles } from './steps/offload-files.js';
import { recordCopy, storedManifest } from './steps/offload-record.js';
import { findTask } from './tasks.js';

/**
 * Offload (SPEC 4, issue 8): copies a backup's VM files from its array snapshot into a repository and records
 * the copy in the catalog.
 *
 * Checks first (exit 3, nothing changed): the backup exists and is complete or partial, the repository is
 * configured, its passphrase readable and right. Then one operation (kind `offload`) holds the backup shared
 * (`reads`: delete and expire wait, and its array snapshots must still exist) and an exclusive lock on the
 * pair backup/repository (two offloads of one backup into one repository never race), journals
 * `repository.offload`, writes every file through the repository's writer, commits the manifest (last: a
 * manifest names only stored data), records the copy.
 *
 * Incremental forever: for each VM, the newest copy of the same VM in the same repository whose backup's array
 * snapshot still exists on the same array gives each file's previous chunk list, and the array's changed
 * ranges (when it has the capability) say which chunks to read; every other byte is reused without reading.
 * Without them the writer reads everything and deduplicates. Either way the copy restores as a full image.
 *
 * A crash is rolled forward by recover (undo.ts: the repository's manifest for the backup is recorded as the
 * copy) and a second offload of a backup the repository already holds only records the copy: the copy is
 * recorded exactly once whatever happened.
 */

export interface OffloadRequest {
  backupId: string;
  repository: string;
  signal?: AbortSignal;
}

export type { OffloadedFile } from './offload-disk.js';

export interface OffloadedVm {
  name: string;
  id: string;
  /** `base-disks`: SNAPSHOT mode, the base disks at VM-snapshot time (file-system consistent). */
  image: 'base-disks' | 'disks';
  files: OffloadedFile[];
  excludedDisks: ExcludedDisk[];
  bytes: number;
}

export interface OffloadResult {
  backupId: string;
  repository: string;
  repositoryId: string;
  manifestId: string;
  offloadedAt: string;
  /** True when the repository already held the backup (an earlier offload): only the copy was recorded. */
  alreadyStored: boolean;
  vms: OffloadedVm[];
  /** Logical bytes of the copy. */
  bytes: number;
  /** Bytes read from the array snapshot. */
  bytesRead: number;
  /** New bytes written to the repository (compressed, encrypted). */
  bytesAdded: number;
  ms: number;
  warnings: Warning[];
  copy: BackupCopy;
}

export function runOffload(ctx: EngineContext, request: OffloadRequest): Promise<OffloadResult> {
  return checkedOperation(() => offloadOnce(ctx, request));
}

/** The backup, refused (exit 3) unless it is complete or partial: only those have data to copy. */
async function offloadableBackup(ctx: EngineContext, backupId: string): Promise<BackupRecord> {
  const backup = await ctx.catalog.getBackup(backupId);
  if (backup.state !== 'complete' && backup.state !== 'partial') {
    const why =
      backup.state === 'running'
        ? 'is still running'
        : backup.state === 'lost'
          ? 'is lost (its array snapshot is gone)'
          : 'failed';
    throw new UsageError('BACKUP_NOT_OFFLOADABLE', `backup ${backupId} ${why}: nothing to offload`, {
      details: { backupId, state: backup.state },
    });
  }
  if (!backup.vms.some((v) => v.state === 'ok')) {
    throw new UsageError('BACKUP_NOT_OFFLOADABLE', `backup ${backupId} holds no VM that was backed up`);
  }
  return backup;
}

async function offloadOnce(ctx: EngineContext, request: OffloadRequest): Promise<OffloadResult> {
  const started = Date.now();
  const backup = await offloadableBackup(ctx, request.backupId);
  // Opening checks the name, the passphrase and the format: every mistake is refused before any change.
  const opened = await openConfiguredRepository(ctx, request.repository);
  try {
    return await runOperation(
      ctx,
      {
        kind: 'offload',
        subject: `${backup.id} -> ${request.repository}`,
        locks: [`offload:${backup.id}:${opened.repository.id}`],
        reads: backup,
      },
      (opId) => offloadBody(ctx, opId, backup, opened, request, started),
    );
  } finally {
    await opened.repository.close();
  }
}

async function offloadBody(
  ctx: EngineContext,
  opId: string,
  backup: BackupRecord,
  opened: ConfiguredRepository,
  request: OffloadRequest,
  started: number,
): Promise<OffloadResult> {
  const { repository } = opened;
  const signal = request.signal;
  const warnings: Warning[] = [];
  const arrays = new Map<string, StorageArray>();
  const arrayOf = async (name: string) => {
    let a = arrays.get(name);
    if (!a) {
      a = await ctx.array(name);
      arrays.set(name, a);
    }
    return a;
  };

  ctx.events.phase('plan');
  const vms: VmFiles[] = [];
  for (const vm of backup.vms) {
    if (vm.state !== 'ok') {
      warnings.push({
        code: 'VM_NOT_OFFLOADED',
        message: `VM ${vm.name} failed in backup ${backup.id} (${vm.error ?? 'not backed up'}): not offloaded`,
      });
      continue;
    }
    vms.push(await vmFiles(backup, vm, arrayOf, signal));
  }
  // Excluded disks (RDM LUNs, task exclusions) are no warning: the backup record already says they are not
  // part of the backup; the result lists them per VM (`excludedDisks`).

  let alreadyStored = false;
  let bytesAdded = 0;
  let bytesRead = 0;
  const offloaded: OffloadedVm[] = [];
  const summary = await journalStep(
    ctx,
    opId,
    {
      action: 'repository.offload',
      target: opened.name,
      data: { repository: opened.name, repositoryId: repository.id, backupId: backup.id },
    },
    async () => {
      const existing = await storedManifest(repository, backup.id, ctx.catalog.id, signal);
      if (existing) {
        alreadyStored = true;
        for (const v of vms) offloaded.push(offloadedVm(v, []));
        return existing;
      }
      const previous = await previousCopies(ctx, repository, backup, arrayOf);
      const total = vms.reduce((n, v) => n + v.files.reduce((m, f) => m + f.size, 0), 0);
      const meter = progressMeter(ctx, total);
      try {
        ctx.events.phase('offload');
        const earlier = new Map(
          [...previous].map(([vmId, p]) => [
            vmId,
            { backupId: p.backup.id, manifestId: p.manifest.id, snapshots: p.backup.snapshots },
          ]),
        );
        const jobs = diskJobs(backup.id, { name: opened.name, id: repository.id }, vms, earlier);
        const outputs = await runDiskJobsFor(
          ctx,
          opId,
          opened,
          jobs,
          arrayOf,
          (p) => meter.update(p),
          signal,
        );
        const stored: ManifestBody['vms'] = [];
        for (const v of vms) {
          const files = new Map<string, StoredFile>();
          const details = new Map<string, OffloadedFile>();
          outputs.forEach((out, i) => {
            if (jobs[i]!.vmId !== v.vm.id) return;
            for (const f of out.files) files.set(f.path, f);
            for (const d of out.details) details.set(d.path, d);
            bytesRead += out.bytesRead;
            bytesAdded += out.bytesAdded;
          });
          stored.push({ vmId: v.vm.id, name: v.vm.name, files: v.files.map((f) => files.get(f.path)!) });
          offloaded.push(
            offloadedVm(
              v,
              v.files.map((f) => details.get(f.path)!),
            ),
          );
        }
        await ctx.crashPoint('offload.stored');
        ctx.events.phase('commit');
        // A writer opened now reads the indexes the disk jobs wrote: its commit checks every chunk is stored.
        let manifestBytes = 0;
        const writer = await repository.writer({
          ...(signal ? { signal } : {}),
          onProgress: (p) => {
            manifestBytes = p.bytesAdded;
          },
        });
        let committed: Awaited<ReturnType<typeof writer.commit>>;
        try {
          committed = await writer.commit({
            backupId: backup.id,
            catalogId: ctx.catalog.id,
            task: backup.task,
            startedAt: backup.startedAt,
            ...(backup.snapshotAt !== undefined ? { snapshotAt: backup.snapshotAt } : {}),
            record: backup,
            ...(await taskConfig(ctx, backup.task)),
            vms: stored,
          });
        } catch (err) {
          await writer.abort().catch(() => {});
          throw err;
        }
        bytesAdded += manifestBytes;
        meter.done();
        await ctx.crashPoint('offload.committed');
        return committed;
      } catch (err) {
        meter.done();
        throw err;
      }
    },
    (s) => ({ manifestId: s.id }),
  );
  const manifestId = summary.id;
  const { copy } = await recordCopy(ctx.catalog, {
    backup,
    repository: opened.name,
    repositoryId: repository.id,
    summary,
    bytesAdded,
  });
  await ctx.crashPoint('offload.recorded');
  return {
    backupId: backup.id,
    repository: opened.name,
    repositoryId: repository.id,
    manifestId,
    offloadedAt: copy.offloadedAt,
    alreadyStored,
    vms: offloaded,
    bytes: copy.bytes,
    bytesRead,
    bytesAdded,
    ms: Date.now() - started,
    warnings,
    copy,
  };
}

function offloadedVm(v: VmFiles, files: OffloadedFile[]): OffloadedVm {
  return {
    name: v.vm.name,
    id: v.vm.id,
    image: v.image,
    files,
    excludedDisks: v.excluded,
    bytes: v.files.reduce((n, f) => n + f.size, 0),
  };
}

/** The task's configuration as it is now (config file or catalog), stored in the manifest when known. */
async function taskConfig(ctx: EngineContext, name: string): Promise<{ taskConfig?: unknown }> {
  const fromFile = ctx.config.tasks.find((t) => t.name === name);
  if (fromFile) return { taskConfig: fromFile };
  const stored = await ctx.catalog.findTask(name).catch(() => undefined);
  return stored ? { taskConfig: stored } : {};
}

/** For one VM: the newest earlier copy in this repository that an incremental offload can build on. */
interface PreviousCopy {
  backup: BackupRecord;
  manifest: Manifest;
}

/**
 * Per VM id, the newest copy in `repository` of an earlier backup of that VM whose record is still in the
 * catalog (so its array snapshot may still exist). Manifests are loaded once each.
 */
async function previousCopies(
  ctx: EngineContext,
  repository: Repository,
  backup: BackupRecord,
  arrayOf: (name: string) => Promise<StorageArray>,
): Promise<Map<string, PreviousCopy>> {
  const out = new Map<string, PreviousCopy>();
  const wanted = new Set(backup.vms.map((v) => v.id));
  const usable = (await arrayOf(backup.snapshots[0]?.array ?? '').catch(() => undefined))?.changedRanges;
  if (usable === undefined) return out;
  const copies = (await ctx.catalog.listCopies({ repositoryId: repository.id }))
    .filter((c) => c.arrayCopy && c.backupId !== backup.id)
    .reverse();
  for (const c of copies) {
    if (wanted.size === 0) break;
    const prev = await ctx.catalog.findBackup(c.backupId);
    if (!prev || (prev.state !== 'complete' && prev.state !== 'partial')) continue;
    const ids = prev.vms.filter((v) => v.state === 'ok' && wanted.has(v.id)).map((v) => v.id);
    if (ids.length === 0) continue;
    let manifest: Manifest;
    try {
      manifest = await repository.loadManifest(c.manifestId);
    } catch (err) {
      if (err instanceof NotFoundError) continue;
      throw err;
    }
    for (const id of ids) {
      out.set(id, { backup: prev, manifest });
      wanted.delete(id);
    }
  }
  return out;
}

/**
 * Runs an offload's disk jobs and returns their outputs (offload-disk.ts). Without a PostgreSQL queue
 * (`workers.queue`, or a catalog on PostgreSQL) they run here, on an in-process queue with a local worker of
 * `workers.concurrency`, reading through this context's arrays and writing through the repository this
 * operation opened. With one, they go to that queue and `snapkeeper worker` processes take them.
 */
async function runDiskJobsFor(
  ctx: EngineContext,
  opId: string,
  opened: ConfiguredRepository,
  jobs: ReturnType<typeof diskJobs>,
  arrayOf: (name: string) => Promise<StorageArray>,
  onProgress: (p: WriteProgress) => void,
  signal: AbortSignal | undefined,
) {
  const settings = ctx.config.workers;
  const target = queueTarget(ctx.config);
  let queue: JobQueue;
  let stop = async () => {};
  const localAccess: DiskJobAccess = {
    array: arrayOf,
    repository: async (name, id) => {
      if (name !== opened.name || id !== opened.repository.id) {
        throw new UsageError(
          'DISK_JOB_REPOSITORY',
          `a disk job for repository ${name} (${id}): this process has ${opened.name} (${opened.repository.id}) open`,
        );
      }
      return opened.repository;
    },
  };
  if (target === undefined) {
    const local = new InProcessJobQueue();
    const worker = startDiskWorker(local, localAccess, {
      repositories: [opened.name],
      concurrency: Math.min(settings.concurrency, settings.perRepository ?? settings.concurrency),
    });
    queue = local;
    stop = async () => {
      await worker.stop({ giveBack: true });
      await local.close();
    };
  } else {
    ctx.events.log(
      `disk jobs go to the job queue (${target.from})${settings.local ? '; this process takes some too' : '; snapkeeper worker processes take them'}`,
    );
    const remote = await openQueue(target, {
      connections: settings.local ? settings.concurrency * 2 + 2 : 2,
    });
    queue = remote;
    // Taking part: jobs of this repository from the shared queue (another offload's too: what this process
    // has not finished when its own offload ends is given back and taken again elsewhere).
    const worker = settings.local
      ? startDiskWorker(remote, localAccess, {
          repositories: [opened.name],
          concurrency: settings.concurrency,
          ...(settings.perRepository !== undefined ? { perRepository: settings.perRepository } : {}),
        })
      : undefined;
    stop = async () => {
      await worker?.stop({ giveBack: true });
      await remote.close();
    };
  }
  try {
    return await followDiskJobs({
      queue,
      opId,
      jobs,
      leaseMs: settings.leaseSeconds * 1000,
      retries: settings.retries,
      seedFirst: settings.seedFirst,
      events: ctx.events,
      onProgress,
      ...(signal ? { signal } : {}),
    });
  } finally {
    await stop();
  }
}

/** Bytes, rate and ETA of a running offload, as one status line (the CLI draws it on a terminal). */
function progressMeter(ctx: EngineContext, total: number) {
  const start = Date.now();
  let last: WriteProgress = { bytesDone: 0, bytesTotal: total, bytesRead: 0, bytesAdded: 0 };
  let shown = 0;
  return {
    get last() {
      return last;
    },
    update(p: WriteProgress) {
      last = p;
      ctx.events.bytes?.('offload', p.bytesDone, total);
      const now = Date.now();
      if (now - shown < 250) return;
      shown = now;
      const seconds = (now - start) / 1000;
      const rate = seconds > 0 ? p.bytesDone / seconds : 0;
      const left = rate > 0 ? Math.max(0, (total - p.bytesDone) / rate) : undefined;
      ctx.events.item(
        'offload',
        `${mib(p.bytesDone)} of ${mib(total)} MiB, ${mib(rate)} MiB/s, read ${mib(p.bytesRead)} MiB, added ${mib(p.bytesAdded)} MiB${left !== undefined ? `, ETA ${Math.ceil(left)} s` : ''}`,
      );
    },
    done() {
      ctx.events.item('offload', 'done');
    },
  };
}

function mib(n: number): string {
  return (n / 1048576).toFixed(1);
}

/** The offload that followed a backup (`backup --offload NAME`, or a task's `offload`), and its retention. */
export interface OffloadAfterBackup {
  repository: string;
  result?: OffloadResult;
  /** Why the offload failed; the backup itself stands. */
  error?: { code: string; message: string };
  /** The task's repository retention, applied after a successful offload. */
  retention?: RepositoryRetentionResult;
  retentionError?: { code: string; message: string };
}

export interface BackupThenOffload {
  record: BackupRecord;
  offload?: OffloadAfterBackup;
}

function errorOf(err: unknown): { code: string; message: string } {
  return {
    code: err instanceof SnapkeeperError ? err.code : 'OFFLOAD_FAILED',
    message: err instanceof Error ? err.message : String(err),
  };
}

/**
 * A backup followed by its offload: `request.offload`, else the task's `offload.repository`. The repository
 * is opened before the backup starts (an unknown name, an unreadable or wrong passphrase: exit 3, no
 * backup made). After a complete or partial backup the offload runs; its failure is reported beside the
 * backup, which stands. After a successful offload to the task's own repository, the task's repository
 * retention (`offload.retention`) forgets the copies beyond it.
 */
export async function runBackupThenOffload(
  ctx: EngineContext,
  request: BackupRequest,
): Promise<BackupThenOffload> {
  const task =
    request.taskName !== undefined
      ? (await findTask(ctx.config, ctx.catalog, request.taskName)).task
      : undefined;
  const repository = request.offload ?? task?.offload?.repository;
  if (repository === undefined) return { record: await runBackup(ctx, request) };
  // Checked before the backup: the name, the passphrase and the repository itself.
  const probe = await openConfiguredRepository(ctx, repository);
  await probe.repository.close();

  const record = await runBackup(ctx, { ...request, offload: repository });
  if (record.state !== 'complete' && record.state !== 'partial') return { record };
  const outcome: OffloadAfterBackup = { repository };
  try {
    outcome.result = await runOffload(ctx, {
      backupId: record.id,
      repository,
      ...(request.signal ? { signal: request.signal } : {}),
    });
  } catch (err) {
    outcome.error = errorOf(err);
    return { record, offload: outcome };
  }
  const policy = task?.offload?.retention;
  if (task && policy && task.offload?.repository === repository) {
    try {
      outcome.retention = await applyRepositoryRetention(ctx, { task: task.name, repository, policy });
    } catch (err) {
      outcome.retentionError = errorOf(err);
    }
  }
  return { record, offload: outcome };
}
