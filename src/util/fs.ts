import { lstat } from 'node:fs/promises';

/** True when something (a file, directory or link, even a dangling one) exists at `path`. */
export async function pathExists(path: string): Promise<boolean> {
  try {
    await lstat(path);
    return true;
  } catch {
    return false;
  }
}
