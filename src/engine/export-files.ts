import { mkdir, open, readdir, rename, rm, writeFile } from 'node:fs/promises';
import { pathExists } from '../util/fs.js';

/**
 * The files behind the datastores, as the host sees them at the arrays' exports (a live volume's `path` and
 * below): what restore does besides cloning files out of a snapshot (make a VM directory, write a rewritten
 * disk descriptor, move a replaced VM's directory aside and back, delete what an undo takes back). The
 * engine never reaches a datastore's files any other way, so engine tests run on a memory array's exports
 * and the CLI on the host's file system. Paths are absolute host paths inside a volume's export.
 */
export interface ExportFiles {
  /** True when anything is at `path`. */
  exists(path: string): Promise<boolean>;
  /** Makes a directory and its parents; an existing directory is fine. */
  makeDirectory(path: string): Promise<void>;
  /** Writes a new file; an existing one is an error (nothing is overwritten). */
  writeNewFile(path: string, text: string): Promise<void>;
  /**
   * Creates a new binary file to be written at offsets (a restore from a repository writes a disk's extents
   * so, leaving holes where its chunks are zero); an existing one is an error (nothing is overwritten).
   */
  createNewFile(path: string): Promise<NewFile>;
  /** Renames a file or directory within one volume. */
  move(from: string, to: string): Promise<void>;
  /** Removes a file or a directory tree; missing is fine. */
  remove(path: string): Promise<void>;
  /** Names in a directory; none when it does not exist. */
  list(dir: string): Promise<string[]>;
}

/** A file being written by `createNewFile`: bytes at offsets, then `finish` with its size (or `abandon`). */
export interface NewFile {
  write(offset: number, data: Buffer): Promise<void>;
  /** Sets the size (trailing zeros are a hole), makes the bytes durable and closes the file. */
  finish(size: number): Promise<void>;
  /** Closes the file as it is; the caller's undo removes it. */
  abandon(): Promise<void>;
}

/** The host's own file system: what the fs array's exports are. */
export const hostExportFiles: ExportFiles = {
  exists: pathExists,
  async makeDirectory(path) {
    await mkdir(path, { recursive: true });
  },
  writeNewFile: (path, text) => writeFile(path, text, { flag: 'wx' }),
  async createNewFile(path) {
    return new SyncingFile(await open(path, 'wx', 0o644));
  },
  move: rename,
  remove: (path) => rm(path, { recursive: true, force: true }),
  async list(dir) {
    try {
      return await readdir(dir);
    } catch {
      return [];
    }
  },
};

/** What `SyncingFile` uses of a file handle: a FileHandle is one (tests pass one that counts or fails). */
export interface SyncableHandle {
  write(buffer: Buffer, offset: number, length: number, position: number): Promise<{ bytesWritten: number }>;
  datasync(): Promise<void>;
  truncate(length: number): Promise<void>;
  close(): Promise<void>;
}

/**
 * Bytes written between two background syncs of a `SyncingFile`. Measured restoring the 2 GiB reference image
 * (1.5 GB written; bench/offload/step.js, shared 2-core machine, median of 3): the final sync took 2.0 s
 * without background syncs, 0.20 s syncing every 32 MiB, 0.21 s every 64, 0.43 s every 128 and 0.52 s every
 * 256, the CPU time alike (6.7 to 7.3 cpu-s, within the noise).
 */
export const SYNC_EVERY_BYTES = 64 << 20;

/**
 * A new file written at offsets (in any order, several writes at once) that starts a data sync of what was
 * written so far every `syncEvery` bytes, in the background while later writes go on, so the disk's
 * writeback overlaps the writing: the final sync in `finish` has little left, and a restore of a large disk
 * does not leave gigabytes of dirty page cache behind. At most one sync runs at a time; writes wait for it
 * only once `2 x syncEvery` bytes are waiting behind it (the disk is slower than the writer), which bounds
 * the dirty pages to a few times `syncEvery` plus the writes already under way. A failed sync fails the file
 * for good: Linux reports a writeback error once and may drop the dirty pages, so a later sync succeeding
 * would prove nothing; every later write and `finish` reject with it. `finish` resolves only after its own
 * final sync.
 */
export class SyncingFile implements NewFile {
  private unsynced = 0;
  private syncing: Promise<void> | undefined;
  private failure: { err: unknown } | undefined;
  private closed = false;

  constructor(
    private readonly handle: SyncableHandle,
    private readonly syncEvery = SYNC_EVERY_BYTES,
  ) {
    if (!Number.isSafeInteger(syncEvery) || syncEvery <= 0) {
      throw new RangeError(`syncEvery must be a positive number of bytes, not ${syncEvery}`);
    }
  }

  async write(offset: number, data: Buffer): Promise<void> {
    this.throwIfFailed();
    if (this.syncing !== undefined && this.unsynced >= 2 * this.syncEvery) await this.syncing;
    this.throwIfFailed();
    let done = 0;
    while (done < data.length) {
      const { bytesWritten } = await this.handle.write(data, done, data.length - done, offset + done);
      done += bytesWritten;
    }
    this.unsynced += data.length;
    if (this.syncing === undefined && this.unsynced >= this.syncEvery) this.startSync();
  }

  async finish(size: number): Promise<void> {
    try {
      await this.syncing;
      this.throwIfFailed();
      await this.handle.truncate(size);
      await this.handle.datasync();
    } finally {
      await this.close();
    }
  }

  async abandon(): Promise<void> {
    await this.close();
  }

  private startSync(): void {
    // What is written from here on may miss this sync: it counts towards the next.
    this.unsynced = 0;
    this.syncing = this.handle.datasync().then(
      () => {
        this.syncing = undefined;
      },
      (err: unknown) => {
        this.failure ??= { err };
        this.syncing = undefined;
      },
    );
  }

  private throwIfFailed(): void {
    if (this.failure !== undefined) throw this.failure.err;
  }

  /** Never while a sync runs: the descriptor could be reused under it. */
  private async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.syncing;
    await this.handle.close();
  }
}
