import { posix } from 'node:path';
import type { Readable } from 'node:stream';
import type { StorageArray } from '../../arrays/index.js';
import { NotFoundError, SnapkeeperError } from '../../errors.js';
import type { BackupRecord, DiskRecord, VmRecord } from '../../model/backup.js';
import type { FileSource, StoredFile } from '../../repository/index.js';
import { datastorePathToRelative, formatDatastorePath } from '../../rules/index.js';
import { applyRule } from '../rule-errors.js';

/**
 * Which files of a backed-up VM an offload stores, and where each is inside the array snapshot (issue 8).
 *
 * A VM's copy is its home configuration files (`.vmx`, `.nvram`, `.vmsd`, `.vmxf`) and, for every included
 * disk, the descriptor the record names and the extents that descriptor lists. Nothing else:
 * - SNAPSHOT modes: the backup took a VM snapshot just before the array snapshot, so the base disks (the files
 *   the record names) are frozen at the VM-snapshot instant inside the array snapshot and every later write
 *   went to delta files (`name-000001.vmdk`, `-delta`/`-sesparse` extents) and the snapshot's state
 *   (`.vmsn`, `.vmem`). Storing the base disks, never the deltas, gives the file-system-consistent image (the
 *   same one a restore from the array gives).
 * - RDM disks are LUNs outside the datastores: not in the array snapshot, listed as excluded. Disks a task
 *   excludes are in the array snapshot but not part of the backup: excluded too.
 * - Logs, swap files and lock files are not part of a VM's backup.
 *
 * File names in the manifest (`StoredFile.path`) follow the repository's convention (`manifestPath`): the
 * path relative to the VM's home directory (the .vmx's) for a file below it, else the datastore path
 * `[ds] dir/file` (a disk on another datastore).
 */

/** Where one file of a backup is inside its array snapshot. */
export interface SnapshotFile {
  /** The file's name in the manifest. */
  path: string;
  /** The file's datastore path (`[ds] dir/file`). */
  datastorePath: string;
  array: string;
  snapshotId: string;
  volume: string;
  /** Relative to the volume's root. */
  relativePath: string;
  size: number;
  /** The included disk it belongs to (descriptor or extent), by label; absent for a home file. */
  disk?: string;
}

/** A disk left out of a VM's copy and why. */
export interface ExcludedDisk {
  label: string;
  reason: 'rdm' | 'task';
  note: string;
}

/** Everything of one VM an offload stores. */
export interface VmFiles {
  vm: VmRecord;
  files: SnapshotFile[];
  excluded: ExcludedDisk[];
  /** `base-disks`: a SNAPSHOT mode, the base disks at VM-snapshot time; `disks`: the disks as captured. */
  image: 'base-disks' | 'disks';
}

/** Home files a VM's copy keeps, by extension: its configuration, BIOS/EFI state and snapshot list. */
const HOME_FILE = /\.(vmx|nvram|vmsd|vmxf)$/i;

const EXTENT = /^(RW|RDONLY|NOACCESS)\s+\d+\s+\S+\s+"([^"]+)"/;

/** `[ds] dir/file` split; undefined when it is not a datastore path. */
function splitDatastorePath(p: string): { datastore: string; path: string } | undefined {
  const m = /^\[([^\]]+)\]\s*(.*)$/.exec(p);
  return m ? { datastore: m[1]!, path: m[2]! } : undefined;
}

/**
 * The name a VM file has in its manifest: the path relative to the VM's home directory (the .vmx's) when the
 * file is below it; a file elsewhere (a disk on another datastore) by its datastore path `[ds] dir/file`.
 * The same rule restore from a repository reads manifests with.
 */
export function manifestPath(vm: Pick<VmRecord, 'vmxFile'>, datastorePath: string): string {
  const file = splitDatastorePath(datastorePath);
  const vmx = splitDatastorePath(vm.vmxFile);
  if (!file || !vmx) return datastorePath;
  const home = posix.dirname(vmx.path);
  if (file.datastore === vmx.datastore) {
    if (home === '.') return file.path;
    if (file.path.startsWith(`${home}/`)) return file.path.slice(home.length + 1);
  }
  return `[${file.datastore}] ${file.path}`;
}

/** Where a datastore's files are in the backup's array snapshots (the datastore is a whole volume). */
export function snapshotPlace(
  backup: BackupRecord,
  datastore: string,
): { array: string; snapshotId: string; volume: string } {
  for (const s of backup.snapshots) {
    const volumes = s.datastores[datastore];
    if (!volumes) continue;
    if (volumes.length !== 1) {
      throw new SnapkeeperError(
        'DATASTORE_SPANS_VOLUMES',
        `datastore ${datastore} spans ${volumes.length} volumes; offloading its files is not supported`,
      );
    }
    return { array: s.array, snapshotId: s.snapshotId, volume: volumes[0]! };
  }
  throw new SnapkeeperError(
    'DATASTORE_NOT_IN_SNAPSHOT',
    `datastore ${datastore} is in no array snapshot of backup ${backup.id}`,
  );
}

async function readText(stream: Readable): Promise<string> {
  const parts: Buffer[] = [];
  for await (const chunk of stream) parts.push(chunk as Buffer);
  return Buffer.concat(parts).toString('utf8');
}

function isRdm(d: DiskRecord): boolean {
  return d.kind === 'rdm-physical' || d.kind === 'rdm-virtual';
}

/** The files of one VM of a backup to store, read from the array snapshot through the array seam. */
export async function vmFiles(
  backup: BackupRecord,
  vm: VmRecord,
  arrayOf: (name: string) => Promise<StorageArray>,
  signal?: AbortSignal,
): Promise<VmFiles> {
  const files: SnapshotFile[] = [];
  const seen = new Set<string>();
  const add = async (
    datastorePath: string,
    disk?: string,
    optional = false,
  ): Promise<SnapshotFile | undefined> => {
    const rel = applyRule(() => datastorePathToRelative(datastorePath));
    const place = snapshotPlace(backup, rel.datastore);
    const path = manifestPath(vm, datastorePath);
    if (seen.has(path)) return files.find((f) => f.path === path);
    const array = await arrayOf(place.array);
    let size: number;
    try {
      size = (await array.statFile(place.snapshotId, place.volume, rel.path)).size;
    } catch (err) {
      if (optional && err instanceof NotFoundError) return undefined;
      throw new NotFoundError(
        'FILE_NOT_IN_SNAPSHOT',
        `VM ${vm.name}: ${datastorePath} is not in array snapshot ${place.snapshotId} of backup ${backup.id}`,
        { cause: err },
      );
    }
    const file: SnapshotFile = {
      path,
      datastorePath: formatDatastorePath(rel.datastore, rel.path),
      ...place,
      relativePath: rel.path,
      size,
      ...(disk !== undefined ? { disk } : {}),
    };
    seen.add(path);
    files.push(file);
    return file;
  };

  // The home directory's configuration files, as they are in the snapshot.
  const vmx = applyRule(() => datastorePathToRelative(vm.vmxFile));
  await add(vm.vmxFile);
  const homeDir = posix.dirname(vmx.path);
  const home = snapshotPlace(backup, vmx.datastore);
  const entries = await (await arrayOf(home.array)).listFiles(
    home.snapshotId,
    home.volume,
    homeDir === '.' ? '' : homeDir,
  );
  for (const e of entries) {
    if (e.type !== 'file' || !HOME_FILE.test(e.name)) continue;
    await add(formatDatastorePath(vmx.datastore, homeDir === '.' ? e.name : `${homeDir}/${e.name}`));
  }

  const excluded: ExcludedDisk[] = [];
  for (const disk of vm.disks) {
    if (!disk.included) {
      const reason = isRdm(disk) ? 'rdm' : 'task';
      excluded.push({
        label: disk.label,
        reason,
        note:
          disk.note ??
          (reason === 'rdm'
            ? 'raw device mapping: the LUN is not part of the array snapshot'
            : 'excluded by its task'),
      });
      continue;
    }
    const descriptor = await add(disk.file, disk.label);
    if (!descriptor) continue;
    // A descriptor is a small text file naming its extents; anything large is a single-file disk.
    if (descriptor.size >= 64 * 1024) continue;
    const array = await arrayOf(descriptor.array);
    const text = await readText(
      await array.readFile(descriptor.snapshotId, descriptor.volume, descriptor.relativePath, {
        ...(signal ? { signal } : {}),
      }),
    );
    if (text.includes('\0')) continue;
    const dir = posix.dirname(descriptor.relativePath);
    const ds = splitDatastorePath(descriptor.datastorePath)!.datastore;
    for (const line of text.split('\n')) {
      const m = EXTENT.exec(line.trim());
      if (!m) continue;
      await add(formatDatastorePath(ds, dir === '.' ? m[2]! : `${dir}/${m[2]}`), disk.label);
    }
  }
  const snapshotMode = vm.effectiveMode === 'SNAPSHOT_EXCL_MEM' || vm.effectiveMode === 'SNAPSHOT_INCL_MEM';
  return { vm, files, excluded, image: snapshotMode && vm.vmSnapshot !== undefined ? 'base-disks' : 'disks' };
}

/** What the writer reads a file through: byte ranges of the file in the array snapshot. */
export function fileSource(
  array: StorageArray,
  file: SnapshotFile,
  incremental?: { previous: StoredFile; changedRanges: { offset: number; length: number }[] },
): FileSource {
  return {
    path: file.path,
    size: file.size,
    read: (offset, length, signal) =>
      array.readFile(file.snapshotId, file.volume, file.relativePath, {
        offset,
        length,
        ...(signal ? { signal } : {}),
      }),
    ...(incremental ?? {}),
  };
}
