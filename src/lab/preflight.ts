import { statfs } from 'node:fs/promises';
import { dirname } from 'node:path';
import { UsageError } from '../errors.js';
import { pathExists } from '../util/fs.js';
import { closestName } from './closest-name.js';
import { checkLabDir } from './lab-dir.js';
import { canMountLoopBtrfs } from './loop-btrfs.js';
import { datastoreNames, type LabSpec } from './spec.js';
import { VIM25_METHODS } from './vim25-methods.js';

/** The smallest btrfs image `lab up` makes: mkfs.btrfs refuses devices below about 109 MiB. */
const MIN_BTRFS_IMAGE_BYTES = 128 * 1024 * 1024;

const MIB = 1024 * 1024;
const mib = (bytes: number) => `${Math.ceil(bytes / MIB)} MiB`;

/**
 * Every check `lab up` makes before it creates anything (each failure a UsageError, exit 3), in the order a
 * user meets them: the directory, the btrfs image, the delays, then whether the disks fit.
 */
export async function checkLabUp(
  spec: LabSpec,
  dir: string,
  options: { btrfsImageBytes?: number | undefined; delays?: Record<string, number> | undefined },
): Promise<void> {
  await checkLabDir(dir);
  if (options.btrfsImageBytes !== undefined) await checkBtrfsImage(options.btrfsImageBytes);
  checkDelays(options.delays ?? {});
  await checkDisksFit(spec, dir, options.btrfsImageBytes);
}

async function checkBtrfsImage(bytes: number): Promise<void> {
  if (!Number.isSafeInteger(bytes) || bytes < MIN_BTRFS_IMAGE_BYTES) {
    throw new UsageError('LAB_INVALID', 'the btrfs image must be at least 128 MiB');
  }
  const can = await canMountLoopBtrfs();
  if (!can.ok) throw new UsageError('LAB_INVALID', `cannot make a btrfs image: ${can.reason}`);
}

function checkDelays(delays: Record<string, number>): void {
  for (const [method, ms] of Object.entries(delays)) {
    if (!/^[A-Za-z][A-Za-z0-9_]*$/.test(method) || !Number.isSafeInteger(ms) || ms < 0) {
      throw new UsageError('LAB_INVALID', `invalid delay ${method}=${ms} (expected Method=milliseconds)`);
    }
    // The simulator silently ignores a delay for a method it never sees: a typo would make a test pass
    // without the delay it relies on.
    if (!VIM25_METHODS.has(method)) {
      throw new UsageError(
        'LAB_INVALID',
        `unknown SOAP method ${method} in --delay (did you mean ${closestName(method, VIM25_METHODS)}?)`,
      );
    }
  }
}

/** The bytes each volume (datastore) needs for the disks the lab fills: flat and independent, not RDMs. */
export function diskBytesByDatastore(spec: LabSpec): Map<string, number> {
  const bytes = new Map<string, number>(datastoreNames(spec).map((name) => [name, 0]));
  for (const vm of spec.datacenters.flatMap((dc) => dc.vms)) {
    for (const disk of vm.disks) {
      if ('rdm' in disk) continue;
      bytes.set(disk.datastore, (bytes.get(disk.datastore) ?? 0) + disk.sizeMB * MIB);
    }
  }
  return bytes;
}

/** The free bytes of the file system `path` would be created on (its nearest existing ancestor). */
async function freeBytesAt(path: string): Promise<{ at: string; free: number }> {
  let at = path;
  while (!(await pathExists(at)) && dirname(at) !== at) at = dirname(at);
  const fs = await statfs(at);
  return { at, free: fs.bavail * fs.bsize };
}

/**
 * Refuses, before anything is written, a lab whose disks cannot fit the array: the btrfs image's size, or
 * else the free space of the file system DIR is on. Disks are filled in full (not sparse), so this is what
 * they will take; without the check the lab would write until a bare ENOSPC.
 */
async function checkDisksFit(spec: LabSpec, dir: string, btrfsImageBytes: number | undefined): Promise<void> {
  const perVolume = [...diskBytesByDatastore(spec)].filter(([, bytes]) => bytes > 0);
  const needed = perVolume.reduce((sum, [, bytes]) => sum + bytes, 0);
  const room =
    btrfsImageBytes !== undefined
      ? { what: `the --btrfs-image size`, bytes: btrfsImageBytes }
      : await freeBytesAt(dir).then(({ at, free }) => ({
          what: `free on the file system of ${at}`,
          bytes: free,
        }));
  if (needed <= room.bytes) return;
  throw new UsageError(
    'LAB_TOO_BIG',
    `the lab's disks need ${mib(needed)} (${perVolume.map(([ds, bytes]) => `${ds} ${mib(bytes)}`).join(', ')}) but the array has ${mib(room.bytes)} (${room.what}); nothing was created`,
    { details: { neededBytes: needed, availableBytes: room.bytes, volumes: Object.fromEntries(perVolume) } },
  );
}
