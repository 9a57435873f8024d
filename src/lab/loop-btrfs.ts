import { mkdir, rm, stat } from 'node:fs/promises';
import { execFile } from '../util/exec.js';

/**
 * A btrfs file system in a sparse image file, loop-mounted at `mountPoint`. Needs root and btrfs-progs.
 * Used by the lab (`lab up --btrfs-image`) and by tests that exercise the btrfs driver for real.
 */
export async function mountLoopBtrfs(image: string, mountPoint: string, sizeBytes: number): Promise<void> {
  await execFile('truncate', ['-s', String(sizeBytes), image]);
  await execFile('mkfs.btrfs', ['-q', '-f', image]);
  await mkdir(mountPoint, { recursive: true });
  await execFile('mount', ['-o', 'loop', image, mountPoint]);
}

/** Unmounts (if mounted) and deletes the image. Idempotent. */
export async function unmountLoopBtrfs(image: string, mountPoint: string): Promise<void> {
  if (await isMountPoint(mountPoint)) {
    // A lazy unmount would hide a leak; a plain one fails loudly if something still uses the file system.
    await execFile('umount', [mountPoint]);
  }
  await rm(image, { force: true });
}

export async function isMountPoint(path: string): Promise<boolean> {
  try {
    const [self, parent] = await Promise.all([stat(path), stat(`${path}/..`)]);
    return self.dev !== parent.dev;
  } catch {
    return false;
  }
}

/** Whether this process can make loop-mounted btrfs images (root and mkfs.btrfs present). */
export async function canMountLoopBtrfs(): Promise<{ ok: boolean; reason: string }> {
  if (typeof process.getuid !== 'function' || process.getuid() !== 0) {
    return { ok: false, reason: 'needs root to loop-mount a btrfs image' };
  }
  try {
    await execFile('sh', ['-c', 'command -v mkfs.btrfs && command -v btrfs']);
  } catch {
    return { ok: false, reason: 'btrfs-progs is not installed (mkfs.btrfs, btrfs)' };
  }
  return { ok: true, reason: '' };
}
