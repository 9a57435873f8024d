import { mkdir, readdir, rename, rm, writeFile } from 'node:fs/promises';
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
  /** Renames a file or directory within one volume. */
  move(from: string, to: string): Promise<void>;
  /** Removes a file or a directory tree; missing is fine. */
  remove(path: string): Promise<void>;
  /** Names in a directory; none when it does not exist. */
  list(dir: string): Promise<string[]>;
}

/** The host's own file system: what the fs array's exports are. */
export const hostExportFiles: ExportFiles = {
  exists: pathExists,
  async makeDirectory(path) {
    await mkdir(path, { recursive: true });
  },
  writeNewFile: (path, text) => writeFile(path, text, { flag: 'wx' }),
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
