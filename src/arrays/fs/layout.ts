import { createHash, randomBytes } from 'node:crypto';
import { mkdir, readFile, statfs } from 'node:fs/promises';
import { join } from 'node:path';
import { UsageError } from '../../errors.js';
import { execFile } from '../../util/exec.js';
import { writeJsonDurable } from '../../util/fs.js';

/**
 * On-disk layout of the file-system array (a contract: the lab lays datastores on it, the driver snapshots it).
 *
 *   ROOT/array.json        { format: 1, serial, volumes: [{ name, lun }] }
 *   ROOT/pool/             btrfs subvolume when ROOT is on btrfs, else a plain directory
 *   ROOT/pool/VOLUME/      one directory per volume: what a datastore on that volume points at
 *   ROOT/snapshots/ID/     a snapshot; volume V is at ROOT/snapshots/ID/V
 *   ROOT/snapshots/ID.json its metadata, written when the snapshot is complete
 *   ROOT/clones/ID/        a writable clone of a snapshot; same shape
 *
 * All volumes live in one pool subvolume so that a single btrfs snapshot of the pool covers any group of
 * volumes at one point in time: btrfs snapshots one subvolume at a time, and freezing does not help.
 */

export const BTRFS_SUPER_MAGIC = 0x9123683e;

export interface FsArrayManifest {
  format: 1;
  serial: string;
  volumes: { name: string; lun: string }[];
}

export const layout = {
  manifest: (root: string) => join(root, 'array.json'),
  pool: (root: string) => join(root, 'pool'),
  volume: (root: string, name: string) => join(root, 'pool', name),
  snapshots: (root: string) => join(root, 'snapshots'),
  snapshot: (root: string, id: string) => join(root, 'snapshots', id),
  snapshotMeta: (root: string, id: string) => join(root, 'snapshots', `${id}.json`),
  clones: (root: string) => join(root, 'clones'),
  clone: (root: string, id: string) => join(root, 'clones', id),
  cloneMeta: (root: string, id: string) => join(root, 'clones', `${id}.json`),
};

const VOLUME_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,79}$/;

/** The LUN canonical name a volume is exported as: NAA type 6, stable for the array's serial and the name. */
export function volumeLun(serial: string, name: string): string {
  return `naa.6${createHash('sha256').update(`${serial}:${name}`).digest('hex').slice(0, 31)}`;
}

export async function isBtrfs(path: string): Promise<boolean> {
  const s = await statfs(path);
  return s.type === BTRFS_SUPER_MAGIC;
}

export async function readManifest(root: string): Promise<FsArrayManifest> {
  let text: string;
  try {
    text = await readFile(layout.manifest(root), 'utf8');
  } catch {
    throw new UsageError(
      'ARRAY_NOT_FOUND',
      `no file-system array at ${root} (missing ${layout.manifest(root)})`,
    );
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    throw new UsageError('ARRAY_INVALID', `${layout.manifest(root)} is not valid JSON`);
  }
  const m = parsed as Partial<FsArrayManifest>;
  if (m.format !== 1 || typeof m.serial !== 'string' || !Array.isArray(m.volumes)) {
    throw new UsageError(
      'ARRAY_INVALID',
      `${layout.manifest(root)}: unknown format (expected format 1 with serial and volumes)`,
    );
  }
  for (const v of m.volumes) {
    if (typeof v?.name !== 'string' || !VOLUME_NAME.test(v.name) || typeof v.lun !== 'string') {
      throw new UsageError(
        'ARRAY_INVALID',
        `${layout.manifest(root)}: invalid volume entry ${JSON.stringify(v)}`,
      );
    }
  }
  return m as FsArrayManifest;
}

/** Durably (tmp, fsync, rename, fsync dir): array.json holds the LUN identities datastores are matched by. */
async function writeManifest(root: string, manifest: FsArrayManifest): Promise<void> {
  await writeJsonDurable(layout.manifest(root), manifest);
}

/**
 * Creates an array at `root` (or adds volumes to an existing one) and returns its manifest.
 * The pool is a btrfs subvolume when `root` is on btrfs.
 */
export async function initFsArray(root: string, volumes: string[]): Promise<FsArrayManifest> {
  for (const name of volumes) {
    if (!VOLUME_NAME.test(name))
      throw new UsageError('ARRAY_INVALID', `invalid volume name ${JSON.stringify(name)}`);
  }
  await mkdir(root, { recursive: true });
  let manifest: FsArrayManifest;
  try {
    manifest = await readManifest(root);
  } catch (err) {
    if (!(err instanceof UsageError) || err.code !== 'ARRAY_NOT_FOUND') throw err;
    manifest = { format: 1, serial: randomBytes(8).toString('hex'), volumes: [] };
    if (await isBtrfs(root)) await execFile('btrfs', ['subvolume', 'create', layout.pool(root)]);
    else await mkdir(layout.pool(root));
    await mkdir(layout.snapshots(root));
    await mkdir(layout.clones(root));
  }
  for (const name of volumes) {
    if (manifest.volumes.some((v) => v.name === name)) continue;
    await mkdir(layout.volume(root, name), { recursive: true });
    manifest.volumes.push({ name, lun: volumeLun(manifest.serial, name) });
  }
  await writeManifest(root, manifest);
  return manifest;
}
