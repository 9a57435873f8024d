/**
 * The storage array seam. An adapter knows the array's volumes and can snapshot a group of them at one
 * point in time, list and delete snapshots, and give writable clones of a snapshot for restore and mount.
 * The engine takes only this interface; the `fs` adapter (btrfs, reflink and copy drivers) implements it and
 * every implementation passes the conformance suite in test/arrays/conformance.ts.
 */

export interface ArrayVolume {
  /** Volume name, unique within the array. A datastore of the same name is laid on it by the lab. */
  name: string;
  /** Absolute path where the volume's files live (what a datastore on it points at). */
  path: string;
  /** SCSI canonical name the volume is exported as (`naa.6...`), matched against VMFS extents. */
  lun: string;
}

/**
 * `atomic`: every volume of the snapshot was captured at one point in time.
 * `sequential`: volumes were captured one after the other; writes in between may be missing or present.
 */
export type PointInTime = 'atomic' | 'sequential';

export interface ArraySnapshot {
  /** Array-unique id. Embeds the label, so a snapshot half-made by a crashed run can be traced back. */
  id: string;
  /** Caller's label; the engine uses the backup id. */
  label: string;
  createdAt: string;
  /** Volume names the caller asked for (the consistency group). */
  volumes: string[];
  pointInTime: PointInTime;
  /** Driver that made it (`btrfs`, `reflink`, `copy`). */
  driver: string;
  /** False while being made or when a crash interrupted it: such a snapshot is never used, only deleted. */
  complete: boolean;
}

export interface ArrayClone {
  id: string;
  label: string;
  snapshotId: string;
  createdAt: string;
  /** Writable root of the clone; volume `v` is at `volumePath(v)`. */
  path: string;
  volumes: string[];
}

export interface SnapshotOptions {
  /** Stored with the snapshot and embedded in its id (letters, digits, `-`, `_`, `.` only). */
  label: string;
  signal?: AbortSignal;
  /** Bytes copied so far out of total, for drivers that copy. */
  onProgress?: (done: number, total: number) => void;
}

export interface StorageArray {
  readonly name: string;
  /** Driver in use (`btrfs`, `reflink`, `copy`). */
  readonly driver: string;
  /** True when `snapshotGroup` captures any set of volumes at one point in time. */
  readonly atomicGroups: boolean;
  /** True when clones and file restores are instant (no data copied). */
  readonly instantClone: boolean;

  listVolumes(): Promise<ArrayVolume[]>;

  /**
   * Snapshots `volumes` (names) at one point in time when `atomicGroups`, else one after the other.
   * Read-only afterwards. On failure nothing is left behind that `listSnapshots` would call complete.
   */
  snapshotGroup(volumes: string[], options: SnapshotOptions): Promise<ArraySnapshot>;

  /** All snapshots, complete or not, oldest first. */
  listSnapshots(): Promise<ArraySnapshot[]>;

  /** Deletes a snapshot. Idempotent: deleting a snapshot that does not exist succeeds. */
  deleteSnapshot(id: string): Promise<void>;

  /** Read-only path of volume `volume` inside snapshot `id`. Throws NotFoundError if either is unknown. */
  snapshotVolumePath(id: string, volume: string): Promise<string>;

  /** Writable clone of a snapshot (instant on btrfs and reflink). The snapshot is never changed. */
  cloneSnapshot(id: string, options: SnapshotOptions): Promise<ArrayClone>;
  listClones(): Promise<ArrayClone[]>;
  /** Idempotent like deleteSnapshot. */
  deleteClone(id: string): Promise<void>;

  /**
   * Copies one file out of a snapshot to `target` (a path on one of the array's volumes): a clone where the
   * driver allows (btrfs, reflink), a copy with progress otherwise. `target` must not exist.
   */
  restoreFile(
    snapshotId: string,
    volume: string,
    relativePath: string,
    target: string,
    options?: { signal?: AbortSignal; onProgress?: (done: number, total: number) => void },
  ): Promise<{ cloned: boolean; bytes: number }>;
}
