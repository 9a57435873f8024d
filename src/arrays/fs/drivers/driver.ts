import type { PointInTime } from '../../types.js';
import type { ProgressFn } from '../tree.js';

/**
 * What differs between the ways the fs array can make snapshots. The array (fs-array.ts) owns ids,
 * metadata, listing, validation and crash order; a driver only moves data, and never writes metadata.
 */
export interface FsDriver {
  readonly name: 'btrfs' | 'reflink' | 'copy';
  readonly pointInTime: PointInTime;
  readonly instantClone: boolean;

  /**
   * Makes `dest` (must not exist) a read-only snapshot holding at least `volumes` of `pool`, each at
   * `dest/VOLUME`. On failure it may leave a partial `dest`; the caller removes it.
   */
  snapshot(pool: string, dest: string, volumes: string[], options: DriverOptions): Promise<void>;

  /** Makes `dest` (must not exist) a writable copy of `volumes` of the snapshot directory `src`. */
  clone(src: string, dest: string, volumes: string[], options: DriverOptions): Promise<void>;

  /** Copies the regular file `src` to `target` (must not exist): a clone when `instantClone`. */
  restoreFile(
    src: string,
    target: string,
    options: DriverOptions,
  ): Promise<{ cloned: boolean; bytes: number }>;
}

export interface DriverOptions {
  signal?: AbortSignal;
  onProgress?: ProgressFn;
}
