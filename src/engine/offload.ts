import type { StorageArray } from '../arrays/index.js';
import type { BackupCopy } from '../catalog/index.js';
import { NotFoundError, SnapkeeperError, UsageError } from '../errors.js';
import type { BackupRecord, Warning } from '../model/backup.js';
import type { Manifest, ManifestBody, Repository, StoredFile, WriteProgress } from '../repository/index.js';
import { type BackupRequest, runBackup } from './backup.js';
import type { EngineContext } from './context.js';
import { journalStep } from './journal/write.js';
import { checkedOperation, runOperation } from './operation.js';
import { applyRepositoryRetention, type RepositoryRetentionResult } from './repo.js';
import { type ConfiguredRepository, openConfiguredRepository } from './repository-access.js';
import {
  type ExcludedDisk,
  fileSource,
  type SnapshotFile,
  type VmFiles,
  vmFiles,
} from './steps/offload-files.js';
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

/** One file stored: its size, what was read of it, and the copy it was read incrementally against. */
export interface OffloadedFile {
  path: string;
  bytes: number;
  /** Set when only changed ranges were read: the backup whose copy gave the unchanged chunks. */
  incrementalFrom?: string;
  /** Bytes of the changed ranges read (incremental) or the whole file. */
  bytesToRead: number;
}

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
      const writer = await repository.writer({
        ...(signal ? { signal } : {}),
        onProgress: (p) => meter.update(p),
      });
      try {
        const stored: ManifestBody['vms'] = [];
        ctx.events.phase('offload');
        for (const v of vms) {
          const files: StoredFile[] = [];
          const details: OffloadedFile[] = [];
          for (const f of v.files) {
            signal?.throwIfAborted();
            const inc = await incremental(v, f, previous, await arrayOf(f.array), signal);
            ctx.events.item(v.vm.name, `${f.path}${inc ? ' (changed ranges)' : ''}`);
            files.push(await writer.addFile(fileSource(await arrayOf(f.array), f, inc?.source)));
            details.push({
              path: f.path,
              bytes: f.size,
              bytesToRead: inc ? inc.source.changedRanges.reduce((n, r) => n + r.length, 0) : f.size,
              ...(inc ? { incrementalFrom: inc.from } : {}),
            });
          }
          ctx.events.item(v.vm.name, 'stored');
          stored.push({ vmId: v.vm.id, name: v.vm.name, files });
          offloaded.push(offloadedVm(v, details));
        }
        await ctx.crashPoint('offload.stored');
        ctx.events.phase('commit');
        const committed = await writer.commit({
          backupId: backup.id,
          catalogId: ctx.catalog.id,
          task: backup.task,
          startedAt: backup.startedAt,
          ...(backup.snapshotAt !== undefined ? { snapshotAt: backup.snapshotAt } : {}),
          record: backup,
          ...(await taskConfig(ctx, backup.task)),
          vms: stored,
        });
        bytesAdded = meter.last.bytesAdded;
        bytesRead = meter.last.bytesRead;
        meter.done();
        await ctx.crashPoint('offload.committed');
        return committed;
      } catch (err) {
        meter.done();
        await writer.abort().catch(() => {});
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
 * What an incremental read of `file` stands on: the same file in the previous copy of its VM and the ranges
 * the array says may have changed since that backup's snapshot (same array and volume). Undefined when any
 * of it is missing: the writer then reads the whole file.
 */
async function incremental(
  v: VmFiles,
  file: SnapshotFile,
  previous: Map<string, PreviousCopy>,
  array: StorageArray,
  signal: AbortSignal | undefined,
): Promise<
  | { from: string; source: { previous: StoredFile; changedRanges: { offset: number; length: number }[] } }
  | undefined
> {
  const prev = previous.get(v.vm.id);
  if (!prev || array.changedRanges === undefined) return undefined;
  const stored = prev.manifest.body.vms
    .find((x) => x.vmId === v.vm.id)
    ?.files.find((f) => f.path === file.path);
  if (!stored) return undefined;
  const prevSnapshot = prev.backup.snapshots.find(
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
  return { from: prev.backup.id, source: { previous: stored, changedRanges: ranges } };
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
