import { constants } from 'node:fs';
import {
  chmod,
  copyFile,
  lchown,
  lstat,
  lutimes,
  mkdir,
  open,
  readdir,
  readlink,
  rm,
  stat,
  symlink,
  utimes,
} from 'node:fs/promises';
import { join } from 'node:path';
import { execFile } from '../../util/exec.js';
import { isBtrfs } from './layout.js';

/** File-tree helpers shared by the drivers: clone or copy a tree, make it read-only or writable, remove it. */

/** Inode number of the root directory of every btrfs subvolume. */
const BTRFS_SUBVOLUME_INO = 256;
/** Copy block; all-zero blocks of this size are skipped to keep holes (VM disks are mostly sparse). */
const BLOCK = 1024 * 1024;
const ZERO = Buffer.alloc(BLOCK);

export type ProgressFn = (done: number, total: number) => void;

export interface TreeCopyOptions {
  /** `clone` shares extents (FICLONE, fails where the file system cannot); `copy` copies bytes. */
  how: 'clone' | 'copy';
  /** Drop every write bit after copying (snapshots); else add the owner's write bit (clones). */
  readOnly: boolean;
  signal?: AbortSignal;
  onProgress?: ProgressFn;
}

/** True when `path` is the root of a btrfs subvolume (or snapshot). */
export async function isSubvolume(path: string): Promise<boolean> {
  try {
    const s = await stat(path);
    return s.isDirectory() && s.ino === BTRFS_SUBVOLUME_INO && (await isBtrfs(path));
  } catch {
    return false;
  }
}

/** Sum of the sizes of the regular files under `dir`. */
export async function treeBytes(dir: string): Promise<number> {
  let total = 0;
  for (const e of await readdir(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) total += await treeBytes(p);
    else if (e.isFile()) total += (await lstat(p)).size;
  }
  return total;
}

/**
 * Copies the directory trees `names` of `srcRoot` into `destRoot` (created, must not exist), one after the
 * other, keeping modes, times, symbolic links and holes. Sockets and devices are skipped: volumes hold files.
 */
export async function copyTrees(
  srcRoot: string,
  destRoot: string,
  names: string[],
  options: TreeCopyOptions,
): Promise<void> {
  let total = 0;
  if (options.onProgress) for (const n of names) total += await treeBytes(join(srcRoot, n));
  const progress = { done: 0, total };
  await mkdir(destRoot);
  for (const n of names) await copyDir(join(srcRoot, n), join(destRoot, n), options, progress);
  // The root itself only holds volume directories; it is made read-only too so nothing can be added.
  if (options.readOnly) await chmod(destRoot, 0o555);
}

async function copyDir(
  src: string,
  dest: string,
  options: TreeCopyOptions,
  progress: { done: number; total: number },
): Promise<void> {
  options.signal?.throwIfAborted();
  const s = await lstat(src);
  await mkdir(dest, { mode: 0o700 });
  for (const e of await readdir(src, { withFileTypes: true })) {
    const from = join(src, e.name);
    const to = join(dest, e.name);
    if (e.isDirectory()) await copyDir(from, to, options, progress);
    else if (e.isSymbolicLink()) {
      await symlink(await readlink(from), to);
      const l = await lstat(from);
      await keepOwner(to, l);
      await lutimes(to, l.atime, l.mtime);
    } else if (e.isFile()) {
      options.signal?.throwIfAborted();
      const f = await lstat(from);
      if (options.how === 'clone') {
        await copyFile(from, to, constants.COPYFILE_EXCL | constants.COPYFILE_FICLONE_FORCE);
        progress.done += f.size;
        options.onProgress?.(progress.done, Math.max(progress.total, progress.done));
      } else {
        const base = progress.done;
        await copyFileSparse(from, to, {
          signal: options.signal,
          onProgress: (d) => {
            progress.done = base + d;
            options.onProgress?.(progress.done, Math.max(progress.total, progress.done));
          },
        });
      }
      await keepOwner(to, f);
      await chmod(to, finalMode(f.mode, options.readOnly));
      await utimes(to, f.atime, f.mtime);
    }
  }
  // Directory mode and times last: adding entries would change the times, and a read-only directory
  // could not receive entries (for non-root users).
  await keepOwner(dest, s);
  await chmod(dest, finalMode(s.mode, options.readOnly));
  await utimes(dest, s.atime, s.mtime);
}

/** Root copies keep owners (before chmod: a change of owner clears set-id bits). Others cannot, and own the copy. */
async function keepOwner(path: string, s: { uid: number; gid: number }): Promise<void> {
  if (process.getuid?.() === 0) await lchown(path, s.uid, s.gid);
}

function finalMode(mode: number, readOnly: boolean): number {
  const perm = mode & 0o7777;
  return readOnly ? perm & ~0o222 : perm | 0o200;
}

/**
 * Copies one regular file to `dest` (must not exist) byte by byte, leaving holes where the source has
 * all-zero 1 MiB blocks. Reads until end of file, so a file growing meanwhile is copied up to where it ended.
 * Removes `dest` when it fails or is aborted. Returns the size copied.
 */
export async function copyFileSparse(
  src: string,
  dest: string,
  options: { signal?: AbortSignal; onProgress?: ProgressFn } = {},
): Promise<number> {
  options.signal?.throwIfAborted();
  const input = await open(src, 'r');
  let output: Awaited<ReturnType<typeof open>> | undefined;
  try {
    output = await open(dest, 'wx', 0o600);
    const total = (await input.stat()).size;
    const buf = Buffer.allocUnsafe(BLOCK);
    let pos = 0;
    for (;;) {
      options.signal?.throwIfAborted();
      const { bytesRead } = await input.read(buf, 0, BLOCK, pos);
      if (bytesRead === 0) break;
      const chunk = buf.subarray(0, bytesRead);
      if (!chunk.equals(ZERO.subarray(0, bytesRead))) await output.write(chunk, 0, bytesRead, pos);
      pos += bytesRead;
      options.onProgress?.(pos, Math.max(total, pos));
    }
    // Trailing holes are not written at all: the size comes from truncate.
    await output.truncate(pos);
    await output.close();
    output = undefined;
    return pos;
  } catch (err) {
    if (output) {
      await output.close().catch(() => {});
      await rm(dest, { force: true }).catch(() => {});
    }
    throw err;
  } finally {
    await input.close();
  }
}

/** Adds the owner's write and search bits to every directory under `path`, so that a non-root user can remove it. */
async function makeDirsWritable(path: string): Promise<void> {
  const s = await lstat(path);
  if (!s.isDirectory()) return;
  if ((s.mode & 0o300) !== 0o300) await chmod(path, (s.mode & 0o7777) | 0o700);
  for (const e of await readdir(path, { withFileTypes: true })) {
    if (e.isDirectory()) await makeDirsWritable(join(path, e.name));
  }
}

/**
 * Removes a snapshot or clone directory, whichever driver made it: a btrfs subvolume is deleted as such
 * (rm cannot remove a read-only one), a plain tree is made writable and removed. Missing is success.
 */
export async function removeTree(path: string): Promise<void> {
  try {
    await lstat(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw err;
  }
  if (await isSubvolume(path)) {
    await execFile('btrfs', ['subvolume', 'delete', path]);
    return;
  }
  await makeDirsWritable(path);
  await rm(path, { recursive: true, force: true });
}

/** Flushes the whole file system holding `path` (syncfs): cheaper than one fsync per copied file. */
export async function syncFileSystem(path: string): Promise<void> {
  await execFile('sync', ['-f', path]);
}
