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
    const handle = await open(path, 'wx', 0o644);
    let closed = false;
    const close = async () => {
      if (closed) return;
      closed = true;
      await handle.close();
    };
    return {
      async write(offset, data) {
        let done = 0;
        while (done < data.length) {
          const { bytesWritten } = await handle.write(data, done, data.length - done, offset + done);
          done += bytesWritten;
        }
      },
      async finish(size) {
        try {
          await handle.truncate(size);
          await handle.datasync();
        } finally {
          await close();
        }
      },
      abandon: close,
    };
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
