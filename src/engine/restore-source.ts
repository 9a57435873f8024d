import { posix } from 'node:path';
import { text } from 'node:stream/consumers';
import type { StorageArray } from '../arrays/index.js';
import type { LockRequest } from '../catalog/index.js';
import { errorMessage, NotFoundError, SnapkeeperError, UsageError } from '../errors.js';
import type { BackupRecord, DiskRecord, VmRecord } from '../model/backup.js';
import type { Manifest, Repository, StoredFile } from '../repository/index.js';
import type { EngineContext } from './context.js';
import type { ExportFiles } from './export-files.js';
import { openConfiguredRepository } from './repository-access.js';
import { type DatastorePlace, type DiskFiles, diskSource } from './restore-common.js';
import { assertSnapshotsPresent } from './snapshot-presence.js';
import { manifestPath } from './steps/offload-files.js';

/**
 * Where a restore reads a backup's files: the array snapshot (`array`, the default: clones on btrfs and
 * reflink) or a repository the backup was offloaded to (`repository`: verified chunks copied back). The
 * source is all that differs: placement, renaming, descriptor rewriting, registration, the journal and the
 * undo are the same code (restore-plan.ts `placeDisks`, restore-common.ts `placeDisk`) for both.
 */

export type RestoreSourceKind = 'array' | 'repository';

export interface RestoreSource {
  readonly kind: RestoreSourceKind;
  /** The repository read from (`repository` only). */
  readonly repository?: string;
  /**
   * How the operation holds the backup while it reads: from the array, `reads` (held shared and its array
   * snapshots checked under the hold); from a repository, the same shared hold but no array snapshot check
   * (the copy does not need it; the backup may be unknown to this catalog).
   */
  readonly hold: { reads: BackupRecord } | { locks: LockRequest[] };
  /** Whether placing `disk` clones it (no data copied): what a dry run reports. */
  instantClone(disk: DiskRecord, places: Map<string, DatastorePlace>): Promise<boolean>;
  /** Where the disk's descriptor and extents are in this source. */
  disk(disk: DiskRecord, places: Map<string, DatastorePlace>): Promise<DiskFiles>;
  /** For a dry run: the data is there (the array snapshots exist; the manifest holds every disk file). */
  assertPresent(disks: DiskRecord[], places: Map<string, DatastorePlace>): Promise<void>;
  close(): Promise<void>;
}

/** A backup and the source its files are read from. */
export interface SourcedBackup {
  backup: BackupRecord;
  source: RestoreSource;
}

/** What a restore request says about its source. */
export interface SourceRequest {
  backupId: string;
  source?: RestoreSourceKind;
  /** With `source: 'repository'`: which one (may be left out when exactly one configured repository holds it). */
  repository?: string;
  /** Aborts a repository's reads. */
  signal?: AbortSignal;
}

/** The backup a restore reads and where from; checked before any change (exit 3 for what the user got wrong). */
export async function restoreSource(ctx: EngineContext, request: SourceRequest): Promise<SourcedBackup> {
  if (request.source !== undefined && request.source !== 'array' && request.source !== 'repository') {
    throw new UsageError(
      'INVALID_SOURCE',
      `restore source ${JSON.stringify(request.source)} is not array or repository`,
    );
  }
  if (request.source === 'repository') return repositoryBackup(ctx, request);
  if (request.repository !== undefined) {
    throw new UsageError('RESTORE_MODE', '--repository needs --source repository');
  }
  const backup = await restorableCatalogBackup(ctx, request.backupId);
  return { backup, source: arraySource(ctx, backup) };
}

async function restorableCatalogBackup(ctx: EngineContext, backupId: string): Promise<BackupRecord> {
  const backup = await ctx.catalog.getBackup(backupId);
  if (backup.state !== 'complete' && backup.state !== 'partial') {
    throw new UsageError(
      'BACKUP_NOT_RESTORABLE',
      `backup ${backupId} is ${backup.state}: nothing to restore`,
    );
  }
  return backup;
}

// ---------------------------------------------------------------------------------------------------------
// The array snapshot

function arraySource(ctx: EngineContext, backup: BackupRecord): RestoreSource {
  return {
    kind: 'array',
    hold: { reads: backup },
    async instantClone(disk, places) {
      return (await ctx.array(diskSource(backup, disk, places).array)).instantClone;
    },
    async disk(disk, places) {
      const src = diskSource(backup, disk, places);
      return arrayDiskFiles(await ctx.array(src.array), src.snapshotId, src.volume, src.relativePath);
    },
    // "ok" must mean the data is there: the record alone does not say that its array snapshot still exists.
    assertPresent: () => assertSnapshotsPresent(ctx, backup),
    async close() {},
  };
}

/** A disk's files inside an array snapshot (also what bench/restore measures `placeDisk` with). */
export function arrayDiskFiles(
  array: StorageArray,
  snapshotId: string,
  volume: string,
  descriptor: string,
): DiskFiles {
  return {
    descriptor,
    missing: (path) => `the array snapshot holds no file ${path} on volume ${volume}`,
    size: (path) =>
      array.statFile(snapshotId, volume, path).then(
        (s) => s.size,
        () => undefined,
      ),
    readText: async (path, signal) => text(await array.readFile(snapshotId, volume, path, { signal })),
    restoreFile: (path, target, options) => array.restoreFile(snapshotId, volume, path, target, options),
  };
}

// ---------------------------------------------------------------------------------------------------------
// A repository

/** A repository known to hold the backup: opened, with the backup's manifest. */
interface Holder {
  name: string;
  repo: Repository;
  manifest: Manifest;
}

/**
 * The backup from a repository: its manifest (by manifest or backup id) in the repository named, or in the
 * only configured one that holds it. The record is the catalog's when this catalog has the backup, else the
 * one the manifest carries (a new, empty catalog after the backup server was lost).
 */
async function repositoryBackup(ctx: EngineContext, request: SourceRequest): Promise<SourcedBackup> {
  const holder =
    request.repository !== undefined
      ? await holderNamed(ctx, request.repository, request.backupId)
      : await onlyHolder(ctx, request.backupId);
  try {
    const backup = await recordOf(ctx, holder.manifest);
    return { backup, source: repositorySource(ctx, holder, backup, request.signal) };
  } catch (err) {
    await holder.repo.close();
    throw err;
  }
}

async function holderNamed(ctx: EngineContext, name: string, backupId: string): Promise<Holder> {
  const { repository: repo } = await openConfiguredRepository(ctx, name);
  try {
    return { name, repo, manifest: await repo.loadManifest(backupId) };
  } catch (err) {
    await repo.close();
    throw err;
  }
}

/**
 * The one configured repository holding the backup: among those this catalog records a copy in, or, when it
 * records none (a new catalog, or an id from `repo backups`), among every configured repository. Several
 * holders need `--repository` (exit 3).
 */
async function onlyHolder(ctx: EngineContext, backupId: string): Promise<Holder> {
  const configured = ctx.config.repositories.map((r) => r.name);
  if (configured.length === 0) {
    throw new UsageError(
      'REPOSITORY_UNKNOWN',
      `${ctx.config.file} configures no repository: there is nothing to restore backup ${backupId} from`,
    );
  }
  const copies = new Set((await ctx.catalog.copiesOf(backupId)).map((c) => c.repository));
  const recorded = configured.filter((n) => copies.has(n));
  const names = recorded.length > 0 ? recorded : configured;
  const holders: Holder[] = [];
  const unreadable: string[] = [];
  for (const name of names) {
    let repo: Repository;
    try {
      repo = (await openConfiguredRepository(ctx, name)).repository;
    } catch (err) {
      unreadable.push(`${name}: ${errorMessage(err)}`);
      continue;
    }
    try {
      holders.push({ name, repo, manifest: await repo.loadManifest(backupId) });
    } catch (err) {
      await repo.close();
      if (!(err instanceof SnapkeeperError && err.code === 'REPOSITORY_BACKUP_NOT_FOUND')) {
        unreadable.push(`${name}: ${errorMessage(err)}`);
      }
    }
  }
  if (holders.length === 1) return holders[0]!;
  for (const h of holders) await h.repo.close();
  if (holders.length > 1) {
    throw new UsageError(
      'REPOSITORY_AMBIGUOUS',
      `backup ${backupId} has copies in repositories ${holders.map((h) => h.name).join(', ')}: choose one with --repository`,
    );
  }
  const why = unreadable.length > 0 ? `; could not read ${unreadable.join('; ')}` : '';
  throw new NotFoundError(
    'REPOSITORY_BACKUP_NOT_FOUND',
    `no configured repository holds backup ${backupId} (searched ${names.join(', ')})${why}`,
  );
}

/**
 * The catalog's record of the manifest's backup, or the manifest's own when this catalog lacks it (or the
 * copy was made by another catalog: its record is the one that describes the copy).
 */
async function recordOf(ctx: EngineContext, manifest: Manifest): Promise<BackupRecord> {
  const known =
    manifest.catalogId === ctx.catalog.id ? await ctx.catalog.findBackup(manifest.backupId) : undefined;
  const record = known ?? checkedManifestRecord(manifest);
  const state = record.state === 'lost' ? record.lost?.previousState : record.state;
  if (state !== 'complete' && state !== 'partial') {
    throw new UsageError(
      'BACKUP_NOT_RESTORABLE',
      `backup ${manifest.backupId} is ${record.state}: nothing to restore`,
    );
  }
  return record;
}

/** A manifest is input: its record must at least name the backup and list VMs with disks. */
function checkedManifestRecord(manifest: Manifest): BackupRecord {
  const r = manifest.body.record as Partial<BackupRecord> | undefined;
  const ok =
    typeof r === 'object' &&
    r !== null &&
    r.id === manifest.backupId &&
    Array.isArray(r.vms) &&
    r.vms.every(
      (v) => typeof v?.name === 'string' && Array.isArray(v.disks) && typeof v.vmxFile === 'string',
    );
  if (!ok) {
    throw new SnapkeeperError(
      'MANIFEST_CORRUPT',
      `the manifest ${manifest.id} of backup ${manifest.backupId} carries no usable backup record`,
    );
  }
  return r as BackupRecord;
}

function repositorySource(
  ctx: EngineContext,
  holder: Holder,
  backup: BackupRecord,
  signal: AbortSignal | undefined,
): RestoreSource {
  const files = (disk: DiskRecord) =>
    manifestDiskFiles(ctx.files, holder, vmOfDisk(backup, disk), disk, signal);
  return {
    kind: 'repository',
    repository: holder.name,
    hold: { locks: [{ resource: `backup:${backup.id}`, mode: 'shared' }] },
    instantClone: async () => false,
    disk: async (disk) => files(disk),
    async assertPresent(disks) {
      for (const disk of disks) {
        const f = files(disk);
        if ((await f.size(f.descriptor)) === undefined) {
          throw new SnapkeeperError('FILE_NOT_FOUND', f.missing(f.descriptor));
        }
      }
    },
    close: () => holder.repo.close(),
  };
}

function vmOfDisk(backup: BackupRecord, disk: DiskRecord): VmRecord {
  return (
    backup.vms.find((v) => v.disks.includes(disk)) ??
    backup.vms.find((v) => v.disks.some((d) => d.file === disk.file))!
  );
}

function manifestDiskFiles(
  files: ExportFiles,
  holder: Holder,
  vm: VmRecord,
  disk: DiskRecord,
  signal: AbortSignal | undefined,
): DiskFiles {
  const entry =
    holder.manifest.body.vms.find((v) => v.vmId === vm.id) ??
    holder.manifest.body.vms.find((v) => v.name === vm.name);
  const stored = new Map((entry?.files ?? []).map((f) => [f.path, f]));
  const where = `repository ${holder.name} (backup ${holder.manifest.backupId}, VM ${vm.name})`;
  const lookup = (path: string): StoredFile => {
    const f = stored.get(posix.normalize(path));
    if (!f) throw new NotFoundError('FILE_NOT_FOUND', `${where} holds no file ${path}`);
    return f;
  };
  const descriptor = manifestPath(vm, disk.file);
  return {
    descriptor,
    missing: (path) => `${where} holds no file ${path}`,
    size: async (path) => stored.get(posix.normalize(path))?.size,
    async readText(path, readSignal) {
      const f = lookup(path);
      const buf = Buffer.alloc(f.size);
      await holder.repo.restoreFile(
        f,
        { write: async (offset, data) => void data.copy(buf, offset) },
        { ...((readSignal ?? signal) ? { signal: readSignal ?? signal } : {}) },
      );
      return buf.toString('utf8');
    },
    async restoreFile(path, target, options) {
      const f = lookup(path);
      const out = await files.createNewFile(target);
      try {
        await holder.repo.restoreFile(f, out, {
          ...((options.signal ?? signal) ? { signal: options.signal ?? signal } : {}),
          ...(options.onProgress ? { onProgress: options.onProgress } : {}),
        });
        await out.finish(f.size);
      } catch (err) {
        await out.abandon();
        throw err;
      }
      return { cloned: false, bytes: f.size };
    },
  };
}
