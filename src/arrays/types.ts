import type { Readable } from 'node:stream';

/**
 * The storage array seam. An adapter knows the array's volumes and can snapshot a group of them at one
 * point in time, list and delete snapshots, read the files of a snapshot, and give writable clones of a
 * snapshot for restore and mount. The engine takes only this interface and never builds a path into an
 * array: files of a snapshot are named by (snapshot id, volume, path relative to the volume), and a path the
 * host sees (a datastore's URL) is mapped back to a volume or clone by `resolveExport`. The `fs` adapter
 * (btrfs, reflink and copy drivers) and the memory array implement it, and every implementation passes the
 * conformance suite in test/arrays/conformance.ts, which is written so that a block array (SAN LUNs) could too.
 *
 * Relative paths (`relativePath`, `relativeDir`) use `/` between components and are confined to their
 * volume: an absolute path or a `..` component is a UsageError (`ARRAY_INVALID_PATH`).
 */

export interface ArrayVolume {
  /** Volume name, unique within the array. A datastore of the same name is laid on it by the lab. */
  name: string;
  /**
   * Host-visible absolute path of the volume's export: what a datastore on it points at. The engine compares
   * datastore URLs with it and gives it to vCenter; it never builds paths into a snapshot from it.
   */
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
  /**
   * Writable root of the clone on the host. Replaced by `volumeExports`: a block array has no such root.
   * Kept until the engine has moved (it joins volume names to it).
   */
  path: string;
  volumes: string[];
  /** Host-visible path of each cloned volume (by volume name): where a datastore on the clone is mounted. */
  volumeExports: Record<string, string>;
}

/** A byte range of a file: `length` bytes from `offset`. */
export interface ByteRange {
  offset: number;
  length: number;
}

/** One entry of a directory in a snapshot. Symbolic links and special files are not listed. */
export interface ArrayFileEntry {
  name: string;
  type: 'file' | 'directory';
  /** Size in bytes of a file; 0 for a directory. */
  size: number;
}

export interface ReadFileOptions {
  /** First byte to read (default 0). Past the end of the file, the stream is empty. */
  offset?: number;
  /** Most bytes to read (default: to the end of the file). */
  length?: number;
  /** Aborting destroys the stream with the signal's reason. */
  signal?: AbortSignal;
}

/** What a host-visible path belongs to (see `StorageArray.resolveExport`). */
export interface ExportLocation {
  /** `volume`: a live volume of the array; `clone`: a volume of a clone, `cloneId` names it. */
  kind: 'volume' | 'clone';
  cloneId?: string;
  volume: string;
  /** The rest of the path below the volume, `/`-separated, `''` for the volume itself. */
  subPath: string;
}

/**
 * The capability to tell which byte ranges of a file changed between two snapshots, so that an incremental
 * copy reads only those. Arrays that have it implement `StorageArray.changedRanges`.
 */
export interface ChangedRangeReporter {
  /**
   * The byte ranges of `relativePath` in `snapshotId` that may differ from the same file in `baseSnapshotId`,
   * sorted, not overlapping, within the file's size in `snapshotId`. A superset of what changed is allowed,
   * a subset never: reading the base file and laying these ranges read from `snapshotId` over it (then
   * cutting it to the new size) gives exactly the file in `snapshotId`. Resolves `undefined` when it cannot
   * tell (the file is absent from the base, its extents are unknown): read the whole file then.
   * NotFoundError for an unknown snapshot or volume, or a file absent from `snapshotId`.
   */
  changedRanges(
    baseSnapshotId: string,
    snapshotId: string,
    volume: string,
    relativePath: string,
    options?: { signal?: AbortSignal },
  ): Promise<ByteRange[] | undefined>;
}

/** How `restoreFile` is told to stop and how it reports the bytes copied so far (drivers that copy). */
export interface RestoreFileOptions {
  signal?: AbortSignal;
  onProgress?: (done: number, total: number) => void;
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

  /**
   * Read-only host path of volume `volume` inside snapshot `id`. Throws NotFoundError if either is unknown.
   * Replaced by `statFile`, `listFiles` and `readFile` (a block array has no such path; the memory array's is
   * virtual); kept until the engine has moved.
   */
  snapshotVolumePath(id: string, volume: string): Promise<string>;

  /**
   * Size of a regular file of a snapshot. NotFoundError (`SNAPSHOT_NOT_FOUND`, `VOLUME_NOT_FOUND`,
   * `FILE_NOT_FOUND`) when the snapshot is unknown or incomplete, does not hold the volume, or holds no
   * regular file there (a directory or a link is not one).
   */
  statFile(snapshotId: string, volume: string, relativePath: string): Promise<{ size: number }>;

  /**
   * Files and directories directly in `relativeDir` (`''` for the volume's root) of a snapshot, sorted by
   * name. NotFoundError as `statFile`, `FILE_NOT_FOUND` when there is no such directory.
   */
  listFiles(snapshotId: string, volume: string, relativeDir: string): Promise<ArrayFileEntry[]>;

  /**
   * The bytes of a regular file of a snapshot as a stream (all of it, or `length` bytes from `offset`).
   * Errors as `statFile`, raised before the stream is returned; a negative or fractional offset or length
   * is a UsageError (`ARRAY_INVALID_RANGE`).
   */
  readFile(
    snapshotId: string,
    volume: string,
    relativePath: string,
    options?: ReadFileOptions,
  ): Promise<Readable>;

  /** Optional capability, see ChangedRangeReporter. Absent where the array cannot tell (the copy driver). */
  changedRanges?: ChangedRangeReporter['changedRanges'];

  /**
   * Which live volume or clone volume a host-visible path (a datastore's URL without `file://`) lies in, or
   * `undefined` when it is none of this array's. Purely by name: a clone need not exist any more, so a
   * datastore left pointing into a deleted clone is still recognised.
   */
  resolveExport(path: string): Promise<ExportLocation | undefined>;

  /** Writable clone of a snapshot (instant on btrfs and reflink). The snapshot is never changed. */
  cloneSnapshot(id: string, options: SnapshotOptions): Promise<ArrayClone>;
  listClones(): Promise<ArrayClone[]>;
  /** Idempotent like deleteSnapshot. */
  deleteClone(id: string): Promise<void>;

  /**
   * Copies one file out of a snapshot to `target` (a host path inside one of the array's live volumes, in a
   * directory that exists): a clone where the driver allows (btrfs, reflink), a copy with progress
   * otherwise. `target` must not exist (ConflictError `TARGET_EXISTS`).
   */
  restoreFile(
    snapshotId: string,
    volume: string,
    relativePath: string,
    target: string,
    options?: RestoreFileOptions,
  ): Promise<{ cloned: boolean; bytes: number }>;
}
