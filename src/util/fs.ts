import { lstat, open, rename, rm } from 'node:fs/promises';
import { dirname } from 'node:path';

/** True when something (a file, directory or link, even a dangling one) exists at `path`. */
export async function pathExists(path: string): Promise<boolean> {
  try {
    await lstat(path);
    return true;
  } catch {
    return false;
  }
}

/** The temporary file `writeFileDurable` writes before renaming it to `path` (a crash may leave it). */
export function durableTempPath(path: string): string {
  return `${path}.tmp`;
}

/**
 * Replaces `path` so that readers, even after a crash, see either the old file or the whole new one:
 * writes `path.tmp` with `mode`, fsyncs it, renames it over `path` and fsyncs the directory.
 */
export async function writeFileDurable(path: string, data: string | Uint8Array, mode = 0o644): Promise<void> {
  const tmp = durableTempPath(path);
  const fh = await open(tmp, 'w', mode);
  try {
    // The mode of `open` applies only to a new file; a temporary file a crash left behind keeps its own.
    await fh.chmod(mode);
    await fh.writeFile(data);
    await fh.sync();
  } catch (err) {
    await fh.close().catch(() => {});
    await rm(tmp, { force: true }).catch(() => {});
    throw err;
  }
  await fh.close();
  await rename(tmp, path);
  await syncDir(dirname(path));
}

/** `writeFileDurable` of `value` as indented JSON with a final newline. */
export async function writeJsonDurable(path: string, value: unknown, mode = 0o644): Promise<void> {
  await writeFileDurable(path, `${JSON.stringify(value, null, 2)}\n`, mode);
}

/** fsync of a directory, so that a rename or a new entry in it survives a crash. */
export async function syncDir(dir: string): Promise<void> {
  const fh = await open(dir, 'r');
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}
