import { basename, join, posix } from 'node:path';
import { NotFoundError, SnapkeeperError, UsageError } from '../errors.js';
import type { BackupRecord, DiskRecord, VmRecord, Warning } from '../model/backup.js';
import type { Datastore, Inventory } from '../model/inventory.js';
import { datastorePathToRelative } from '../rules/index.js';
import { isGone, type VcenterSession } from '../vsphere/index.js';
import type { EngineContext } from './context.js';
import type { ExportFiles } from './export-files.js';
import { BACKUP_ID_PATTERN } from './ids.js';
import { listArrayVolumes, mapConfiguredDatastores } from './placement.js';
import { applyRule } from './rule-errors.js';

/**
 * What restore, mount and attach share: finding a backup's VM and where its disk files are inside the array
 * snapshot, placing restored files on a datastore's volume, and the journaled `step`. Every journal action,
 * its data and its undo or roll-forward are in the registry (journal/actions.ts, journal/recovery.ts),
 * which both the operation's own failure path (operation.ts `runOperation`) and `recover` run.
 */

export const DATASTORE_PREFIX = 'snapkeeper-';

/** How the datastores a mount of `backupId` makes are named: `snapkeeper-<backup id>-<datastore>`. */
export function mountedDatastorePrefix(backupId: string): string {
  return `${DATASTORE_PREFIX}${backupId}-`;
}

/**
 * True when a datastore is one a mount made: named `snapkeeper-<backup id>-<datastore>` AND pointing into
 * a clone of a configured array (the array says so: `resolveExport`). A user's datastore that merely starts
 * with `snapkeeper-` (say `snapkeeper-data`) is neither, and is never touched.
 */
export async function isMountedDatastore(
  ctx: EngineContext,
  ds: { name: string; url: string },
): Promise<boolean> {
  if (!ds.name.startsWith(DATASTORE_PREFIX)) return false;
  const rest = ds.name.slice(DATASTORE_PREFIX.length);
  // A backup id is 22 characters (`20261125-081500-a1b2c3`), then `-` and the backed-up datastore's name.
  const id = rest.slice(0, 22);
  if (!BACKUP_ID_PATTERN.test(id) || rest.length < 24 || rest[22] !== '-') return false;
  const path = ds.url.replace(/^file:\/\//, '');
  for (const array of (await ctx.arrays()).values()) {
    if ((await array.resolveExport(path))?.kind === 'clone') return true;
  }
  return false;
}

/**
 * Detaches every disk a VM has on a datastore (the files stay), then removes the datastore from `hostId`.
 * What unmount, the undo of a mount and recover's sweep all do: a disk still attached keeps it busy.
 * A VM that disappears meanwhile has nothing left to detach.
 */
export async function detachAllAndRemoveDatastore(
  vc: VcenterSession,
  inventory: Inventory,
  datastore: { id: string; name: string },
  hostId: string,
): Promise<void> {
  for (const vm of inventory.vms) {
    const files = vm.disks.filter((d) => d.datastore === datastore.name).map((d) => d.file);
    if (files.length === 0) continue;
    try {
      await vc.detachDiskFiles(vm.id, files);
    } catch (err) {
      if (!isGone(err)) throw err;
    }
  }
  await vc.removeDatastore(hostId, datastore.id);
}

/** The short suffix of an operation id, used to name staging directories and restored files. */
export function opSuffix(operationId: string): string {
  return operationId.slice(-6);
}

/** Names given by users end up in paths: no separators, no `..`, no control characters. */
export function checkName(what: string, name: string): void {
  if (
    name.trim() === '' ||
    name.length > 80 ||
    name.includes('/') ||
    name.includes('\\') ||
    name.includes('..') ||
    name.startsWith('.') ||
    // biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are what is refused
    /[\u0000-\u001f\u007f[\]]/.test(name)
  ) {
    throw new UsageError(
      'INVALID_NAME',
      `${what} ${JSON.stringify(name)} is not allowed: no "/", "\\", "..", brackets or control characters, at most 80 characters`,
    );
  }
}

/**
 * The backup of the catalog (BACKUP_NOT_FOUND, exit 3, when unknown). With `use` (what the caller wants to
 * do with it: `restore`, `mount`, ...), it must also be complete or partial (BACKUP_NOT_RESTORABLE): only
 * those own array snapshots.
 */
export async function catalogBackup(
  ctx: EngineContext,
  backupId: string,
  use?: string,
): Promise<BackupRecord> {
  const backup = await ctx.catalog.getBackup(backupId);
  if (use !== undefined && backup.state !== 'complete' && backup.state !== 'partial') {
    throw new UsageError('BACKUP_NOT_RESTORABLE', `backup ${backupId} is ${backup.state}: nothing to ${use}`);
  }
  return backup;
}

/** The backup and its VM record, refused with exit 3 when either is unknown or not restorable. */
export async function backupVm(
  ctx: EngineContext,
  backupId: string,
  vmName: string,
  use = 'restore',
): Promise<{ backup: BackupRecord; vm: VmRecord }> {
  const backup = await catalogBackup(ctx, backupId, use);
  return { backup, vm: vmOfBackup(backup, vmName) };
}

/** A backup's VM by name, refused with exit 3 when unknown or failed in that backup. */
export function vmOfBackup(backup: BackupRecord, vmName: string): VmRecord {
  const backupId = backup.id;
  const vm = backup.vms.find((v) => v.name === vmName);
  if (!vm) {
    throw new NotFoundError(
      'VM_NOT_IN_BACKUP',
      `backup ${backupId} holds no VM ${vmName} (it holds ${backup.vms.map((v) => v.name).join(', ')})`,
    );
  }
  if (vm.state !== 'ok') {
    throw new UsageError('VM_NOT_RESTORABLE', `VM ${vmName} failed in backup ${backupId}: ${vm.error ?? ''}`);
  }
  return vm;
}

export function isRdm(d: DiskRecord): boolean {
  return d.kind === 'rdm-physical' || d.kind === 'rdm-virtual';
}

/** True for a disk its task left out of the backup (exclude.disks): in the array snapshot, not in the backup. */
export function isTaskExcluded(d: DiskRecord): boolean {
  return d.exclusion === 'task';
}

/**
 * Issue 11: a disk excluded by its task is never restored or attached from this backup. Asked for by label
 * (`--disk`), it is refused (DISK_EXCLUDED, exit 3, before any change): the user named it, so leaving it out
 * silently would look like success. Otherwise (all disks) it is left out with a warning `code` each, as a
 * full-VM restore in Veeam leaves excluded disks out.
 */
export function excludedDiskWarnings(
  backupId: string,
  vmName: string,
  disks: readonly DiskRecord[],
  askedByLabel: boolean,
  verb: 'restored' | 'attached',
  code: string,
): Warning[] {
  const excluded = disks.filter(isTaskExcluded);
  if (excluded.length === 0) return [];
  if (askedByLabel) {
    throw new UsageError(
      'DISK_EXCLUDED',
      `${vmName} / ${excluded.map((d) => d.label).join(', ')} in backup ${backupId} ${excluded.length === 1 ? 'was' : 'were'} excluded from the backup (${excluded[0]?.note ?? 'excluded by its task'}) and cannot be ${verb} from it`,
    );
  }
  return excluded.map((d) => ({
    code,
    message: `${vmName} / ${d.label}: ${d.note ?? 'excluded by its task'}, not part of backup ${backupId}; not ${verb}`,
  }));
}

/** A VM snapshot's delta disk (`name-000001.vmdk`): what a disk's file is while the VM has user snapshots. */
const DELTA_DISK = /-\d{6}\.vmdk$/;

/**
 * Refuses (DELTA_DISK_NOT_SUPPORTED, exit 3, before any change) disks recorded as VM-snapshot deltas: the VM
 * had user snapshots at backup time, so its disk file is a delta whose parent chain (parentFileNameHint)
 * is not restored; restoring the delta alone would give a broken disk.
 */
export function checkNoDeltaDisks(vmName: string, disks: DiskRecord[]): void {
  const deltas = disks.filter((d) => DELTA_DISK.test(d.file));
  if (deltas.length === 0) return;
  throw new UsageError(
    'DELTA_DISK_NOT_SUPPORTED',
    `VM ${vmName} had VM snapshots at backup time: ${deltas.map((d) => `${d.label} (${d.file})`).join(', ')} ${deltas.length === 1 ? 'is a snapshot delta' : 'are snapshot deltas'}, and restoring a delta without its parent disks is not supported`,
    { details: { vm: vmName, disks: deltas.map((d) => ({ label: d.label, file: d.file })) } },
  );
}

/** Where a datastore's files are on the array: its volume's path plus the datastore's directory in it. */
export interface DatastorePlace {
  datastore: Datastore;
  array: string;
  volume: string;
  /** Absolute directory the datastore's root is at. */
  path: string;
  subPath: string;
}

/** Maps every datastore of the inventory that lives on a configured array to its directory. */
export async function datastorePlaces(
  ctx: EngineContext,
  inventory: Inventory,
): Promise<Map<string, DatastorePlace>> {
  const volumes = await listArrayVolumes(ctx);
  const mapping = mapConfiguredDatastores(ctx.config, inventory.datastores, volumes);
  const out = new Map<string, DatastorePlace>();
  for (const ds of inventory.datastores) {
    const loc = mapping.mapped.get(ds.name);
    if (loc?.volumes.length !== 1) continue;
    const vol = volumes.get(loc.array)?.find((v) => v.name === loc.volumes[0]);
    if (!vol) continue;
    out.set(ds.name, {
      datastore: ds,
      array: loc.array,
      volume: vol.name,
      path: loc.subPath === '' ? vol.path : join(vol.path, loc.subPath),
      subPath: loc.subPath,
    });
  }
  return out;
}

/** A target datastore by name: it must exist and be on an array volume (restored files are written there). */
export function targetPlace(
  places: Map<string, DatastorePlace>,
  inventory: Inventory,
  name: string,
): DatastorePlace {
  const place = places.get(name);
  if (place) return place;
  if (!inventory.datastores.some((d) => d.name === name)) {
    throw new NotFoundError('DATASTORE_NOT_FOUND', `no datastore ${name} in vCenter`);
  }
  throw new UsageError(
    'DATASTORE_NOT_ON_ARRAY',
    `datastore ${name} is not on a volume of a configured array: restored files cannot be placed there`,
  );
}

/** Where a backed-up disk's descriptor is inside the array snapshot. */
export interface DiskSource {
  array: string;
  snapshotId: string;
  volume: string;
  /** Path of the descriptor relative to the volume's root inside the snapshot. */
  relativePath: string;
}

export function diskSource(
  backup: BackupRecord,
  disk: DiskRecord,
  places: Map<string, DatastorePlace>,
): DiskSource {
  const rel = applyRule(() => datastorePathToRelative(disk.file));
  for (const s of backup.snapshots) {
    const volumes = s.datastores[rel.datastore];
    if (!volumes) continue;
    if (volumes.length !== 1) {
      throw new SnapkeeperError(
        'DATASTORE_SPANS_VOLUMES',
        `datastore ${rel.datastore} spans ${volumes.length} volumes; restoring its files is not supported`,
      );
    }
    // The datastore's directory inside its volume, as it is mapped now (the lab's datastores are whole volumes).
    const subPath = places.get(rel.datastore)?.subPath ?? '';
    return {
      array: s.array,
      snapshotId: s.snapshotId,
      volume: volumes[0]!,
      relativePath: subPath === '' ? rel.path : `${subPath}/${rel.path}`,
    };
  }
  throw new SnapkeeperError(
    'DISK_NOT_IN_SNAPSHOT',
    `disk ${disk.label} (${disk.file}) is on datastore ${rel.datastore}, which no array snapshot of backup ${backup.id} holds`,
  );
}

export interface PlacedDisk {
  /** Absolute path of the descriptor written. */
  descriptor: string;
  /** Every file written (descriptor and extents), absolute. */
  files: string[];
  cloned: boolean;
  bytes: number;
}

/**
 * The files of one backed-up disk where a restore reads them (restore-source.ts: an array snapshot or a
 * repository's manifest), by paths in that source's own terms. `placeDisk` needs nothing else, so every
 * restore mode places a disk the same way whatever the source.
 */
export interface DiskFiles {
  /** Path of the disk's descriptor (or single-file disk) in the source. */
  readonly descriptor: string;
  /** Why `path` cannot be read, for the error: `the array snapshot holds no file P on volume V`. */
  missing(path: string): string;
  /** Size of a file, undefined when the source has none at `path`. */
  size(path: string): Promise<number | undefined>;
  readText(path: string, signal?: AbortSignal): Promise<string>;
  /** Writes the file at `path` to the new file `target` (never overwriting); clones where it can. */
  restoreFile(
    path: string,
    target: string,
    options: { signal?: AbortSignal; onProgress?: (done: number, total: number) => void },
  ): Promise<{ cloned: boolean; bytes: number }>;
}

const EXTENT = /^(RW|RDONLY|NOACCESS)(\s+\d+\s+\S+\s+)"([^"]+)"(.*)$/;

/**
 * Restores one disk from its source into `targetDir` as `<stem>.vmdk` (descriptor) with its extents
 * (`<stem>-flat.vmdk`, ...). Extents go through the source's `restoreFile`: out of an array snapshot a
 * clone on btrfs and reflink (no data copied) or a copy with progress on the copy driver; out of a
 * repository a copy of verified chunks. The small text descriptor is read from the source and written
 * rewritten so that it names the new extent files.
 */
export async function placeDisk(
  source: DiskFiles,
  files: ExportFiles,
  targetDir: string,
  stem: string,
  options: { signal?: AbortSignal; onProgress?: (done: number, total: number) => void } = {},
): Promise<PlacedDisk> {
  const size = await source.size(source.descriptor);
  if (size === undefined) throw new NotFoundError('FILE_NOT_FOUND', source.missing(source.descriptor));
  const out: PlacedDisk = { descriptor: join(targetDir, `${stem}.vmdk`), files: [], cloned: true, bytes: 0 };
  const relDir = posix.dirname(source.descriptor);
  // A descriptor is a small text file; anything large is a single-file disk restored as it is.
  const descriptor = size < 64 * 1024 ? await source.readText(source.descriptor, options.signal) : '';
  const lines = descriptor.split('\n');
  const extents = lines.map((l) => EXTENT.exec(l)).filter((m) => m !== null);
  if (extents.length === 0 || descriptor.includes('\0')) {
    const r = await source.restoreFile(source.descriptor, out.descriptor, options);
    out.files.push(out.descriptor);
    out.cloned = r.cloned;
    out.bytes = r.bytes;
    return out;
  }
  let n = 0;
  const rewritten = lines.map((line) => {
    const m = EXTENT.exec(line);
    if (!m) return line;
    n++;
    return `${m[1]}${m[2]}"${extentName(stem, n, extents.length)}"${m[4]}`;
  });
  n = 0;
  for (const m of extents) {
    n++;
    const target = join(targetDir, extentName(stem, n, extents.length));
    const from = relDir === '.' ? m[3]! : `${relDir}/${m[3]}`;
    const r = await source.restoreFile(from, target, options);
    out.files.push(target);
    out.cloned &&= r.cloned;
    out.bytes += r.bytes;
  }
  await files.writeNewFile(out.descriptor, rewritten.join('\n'));
  out.files.push(out.descriptor);
  return out;
}

function extentName(stem: string, n: number, count: number): string {
  return count === 1 ? `${stem}-flat.vmdk` : `${stem}-f${String(n).padStart(3, '0')}.vmdk`;
}

/** Makes `dir` unless it exists; returns whether it was made (then undo removes it whole). */
export async function ensureDir(files: ExportFiles, dir: string): Promise<boolean> {
  if (await files.exists(dir)) return false;
  await files.makeDirectory(dir);
  return true;
}

/**
 * Removes what a `files.place` step wrote: the whole directory when the step made it, else the files named
 * after its stems (`<stem>.vmdk`, `<stem>-flat.vmdk`, ...). Idempotent.
 */
export async function removePlaced(
  files: ExportFiles,
  placed: { dir: string; createdDir?: boolean | undefined; stems?: string[] | undefined },
): Promise<void> {
  const { dir } = placed;
  if (dir === '' || basename(dir) === '') return;
  if (placed.createdDir === true) {
    await files.remove(dir);
    return;
  }
  const stems = placed.stems ?? [];
  for (const n of await files.list(dir)) {
    if (stems.some((s) => n === `${s}.vmdk` || (n.startsWith(`${s}-`) && n.endsWith('.vmdk')))) {
      await files.remove(join(dir, n));
    }
  }
}

/** The free bytes every target datastore needs, checked before any change (exit 3 when short). */
export function checkFreeSpace(needs: Map<Datastore, number>): void {
  for (const [ds, bytes] of needs) {
    if (bytes > ds.freeBytes) {
      throw new UsageError(
        'INSUFFICIENT_SPACE',
        `datastore ${ds.name} has ${ds.freeBytes} bytes free; the restore needs ${bytes}`,
        { details: { datastore: ds.name, freeBytes: ds.freeBytes, neededBytes: bytes } },
      );
    }
  }
}

/** Journals one step through the typed registry (journal/write.ts), runs it, completes it. */
export { journalStep as step } from './journal/write.js';
