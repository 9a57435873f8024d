import { constants } from 'node:fs';
import { chmod, copyFile, lstat } from 'node:fs/promises';
import { copyTrees, syncFileSystem } from '../tree.js';
import type { FsDriver } from './driver.js';

/**
 * For file systems that share extents (FICLONE: btrfs, XFS with reflink, bcachefs): each file is cloned,
 * so no data is copied, but files and volumes are cloned one after the other, so a group is not captured
 * at one point in time. Snapshots are read-only by mode bits only, which root ignores.
 */
export const reflinkDriver: FsDriver = {
  name: 'reflink',
  pointInTime: 'sequential',
  instantClone: true,

  async snapshot(pool, dest, volumes, options) {
    await copyTrees(pool, dest, volumes, { how: 'clone', readOnly: true, ...options });
    await syncFileSystem(dest);
  },

  async clone(src, dest, volumes, options) {
    await copyTrees(src, dest, volumes, { how: 'clone', readOnly: false, ...options });
    await syncFileSystem(dest);
  },

  async restoreFile(src, target, options) {
    return reflinkFile(src, target, options.signal);
  },
};

/** Clones one file (no data copied), writable by its owner. Fails where the file system cannot clone. */
export async function reflinkFile(
  src: string,
  target: string,
  signal?: AbortSignal,
): Promise<{ cloned: boolean; bytes: number }> {
  signal?.throwIfAborted();
  await copyFile(src, target, constants.COPYFILE_EXCL | constants.COPYFILE_FICLONE_FORCE);
  const s = await lstat(src);
  // Snapshot files of the reflink and copy drivers have lost their write bits; a restored file needs them.
  await chmod(target, (s.mode & 0o7777) | 0o200);
  return { cloned: true, bytes: s.size };
}
