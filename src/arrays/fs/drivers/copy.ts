import { chmod, lstat } from 'node:fs/promises';
import { copyFileSparse, copyTrees, syncFileSystem } from '../tree.js';
import type { DriverOptions, FsDriver } from './driver.js';

/**
 * Works on any file system, without root: real byte copies (holes kept), one volume after the other.
 * Slow and not point-in-time across volumes; snapshots are made read-only by mode bits only, which root
 * ignores.
 */
export const copyDriver: FsDriver = {
  name: 'copy',
  pointInTime: 'sequential',
  instantClone: false,

  async snapshot(pool, dest, volumes, options) {
    await copyTrees(pool, dest, volumes, { how: 'copy', readOnly: true, ...options });
    // Data must be on disk before the caller writes the metadata that calls the snapshot complete.
    await syncFileSystem(dest);
  },

  async clone(src, dest, volumes, options) {
    await copyTrees(src, dest, volumes, { how: 'copy', readOnly: false, ...options });
    await syncFileSystem(dest);
  },

  async restoreFile(src: string, target: string, options: DriverOptions) {
    const bytes = await copyFileSparse(src, target, options);
    await chmod(target, ((await lstat(src)).mode & 0o7777) | 0o200);
    return { cloned: false, bytes };
  },
};
