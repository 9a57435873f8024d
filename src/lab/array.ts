import { readdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { initFsArray, layout, removeTree } from '../arrays/index.js';
import { SnapkeeperError } from '../errors.js';
import { pathExists } from '../util/fs.js';
import { isMountPoint, mountLoopBtrfs, unmountLoopBtrfs } from './loop-btrfs.js';

/** Where the lab's array lives: at `path`, on a loop-mounted btrfs image when `image` is given. */
export interface LabArrayPlace {
  path: string;
  image?: { file: string; bytes: number } | undefined;
}

/**
 * Makes the lab's file-system array with one volume per datastore (on its btrfs image, made first, when it
 * has one) and returns each datastore's LUN: the stable name its volume is exported under.
 */
export async function createLabArray(
  place: LabArrayPlace,
  datastores: string[],
  progress: (step: string) => void,
): Promise<Map<string, string>> {
  if (place.image !== undefined) {
    progress('creating the btrfs image');
    await mountLoopBtrfs(place.image.file, place.path, place.image.bytes);
  }
  progress('creating the file-system array');
  const manifest = await initFsArray(place.path, datastores);
  return new Map(manifest.volumes.map((v) => [v.name, v.lun]));
}

/**
 * Removes the lab's array and unmounts and deletes its btrfs image. An array on a mount point the lab did
 * not make is refused (LAB_DOWN_FAILED): removing it would delete a file system that is not the lab's.
 */
export async function removeLabArray(arrayPath: string, image: string | undefined): Promise<void> {
  if (image !== undefined) await unmountLoopBtrfs(image, arrayPath);
  else if (await isMountPoint(arrayPath)) {
    throw new SnapkeeperError(
      'LAB_DOWN_FAILED',
      `${arrayPath} is a mount point the lab did not make; not removing it`,
    );
  }
  await removeArrayTree(arrayPath);
}

/**
 * Removes the array whatever its driver made: the arrays' own removeTree deletes btrfs subvolumes
 * (read-only snapshots included, which `rm -r` cannot remove) as such and plain trees after making them
 * writable.
 */
async function removeArrayTree(root: string): Promise<void> {
  if (!(await pathExists(root))) return;
  for (const parent of [layout.snapshots(root), layout.clones(root)]) {
    const names = await readdir(parent).catch(() => [] as string[]);
    for (const name of names) await removeTree(join(parent, name));
  }
  await removeTree(layout.pool(root));
  await rm(root, { recursive: true, force: true });
}
