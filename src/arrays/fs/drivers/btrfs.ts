import { rename, rmdir } from 'node:fs/promises';
import { join } from 'node:path';
import { execFile } from '../../../util/exec.js';
import { copyTrees, isSubvolume } from '../tree.js';
import type { FsDriver } from './driver.js';
import { reflinkFile } from './reflink.js';

/**
 * For a pool that is a btrfs subvolume: one read-only snapshot of the whole pool captures every volume at
 * one point in time (btrfs snapshots one subvolume at a time, which is why all volumes share the pool).
 * The snapshot holds every volume of the pool; the array exposes only the requested group. Read-only is
 * enforced by the file system, for root too.
 */
export const btrfsDriver: FsDriver = {
  name: 'btrfs',
  pointInTime: 'atomic',
  instantClone: true,

  async snapshot(pool, dest, _volumes, options) {
    options.signal?.throwIfAborted();
    await execFile('btrfs', ['subvolume', 'snapshot', '-r', pool, dest], { signal: options.signal });
  },

  async clone(src, dest, volumes, options) {
    options.signal?.throwIfAborted();
    if (await isSubvolume(src)) {
      await execFile('btrfs', ['subvolume', 'snapshot', src, dest], { signal: options.signal });
      return;
    }
    // A snapshot made by the reflink or copy driver on the same file system (the driver was changed):
    // a fresh subvolume filled with clones of its files.
    await execFile('btrfs', ['subvolume', 'create', dest]);
    const tmp = join(dest, '.fill');
    await copyTrees(src, tmp, volumes, { how: 'clone', readOnly: false, ...options });
    for (const v of volumes) await rename(join(tmp, v), join(dest, v));
    await rmdir(tmp);
  },

  async restoreFile(src, target, options) {
    // Reflinks work across subvolumes of one btrfs file system, so a snapshot file clones into the pool.
    return reflinkFile(src, target, options.signal);
  },
};
