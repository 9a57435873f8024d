import { randomBytes } from 'node:crypto';
import { mkdir, rm, rmdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { onPath, run } from '../../src/arrays/fs/run.js';
import { isMountPoint } from '../../src/lab/loop-btrfs.js';
import { isRoot } from './require.js';

/** 640 MiB sparse: above btrfs's ~120 MiB minimum with room for a few 32 MiB test files and their copies. */
const DEFAULT_SIZE = 640 * 1024 * 1024;

export interface LoopBtrfs {
  mountPoint: string;
  /** Unmounts and deletes the image and mount point. Idempotent. */
  cleanup(): Promise<void>;
}

/** Whether this process can loop-mount btrfs images: root and btrfs-progs. */
export async function canMountLoopBtrfs(): Promise<{ ok: boolean; reason: string }> {
  if (!isRoot) return { ok: false, reason: 'needs root to loop-mount a btrfs image' };
  if (!(await onPath('mkfs.btrfs')) || !(await onPath('btrfs'))) {
    return { ok: false, reason: 'btrfs-progs is not installed (mkfs.btrfs, btrfs)' };
  }
  return { ok: true, reason: '' };
}

/**
 * Makes a fresh btrfs file system in a sparse image under the temporary directory and mounts it.
 * For `before`/`after` hooks; the caller must call `cleanup`. Needs root (see canMountLoopBtrfs).
 *
 * Same steps as src/lab/loop-btrfs.ts, but through arrays/fs/run.ts: util/exec.ts's execFile can die of an
 * uncaught EPIPE when the child does not read its input, which made these hooks fail now and then.
 */
export async function mountTestBtrfs(sizeBytes = DEFAULT_SIZE): Promise<LoopBtrfs> {
  const tag = randomBytes(4).toString('hex');
  const image = join(tmpdir(), `snapkeeper-test-${tag}.btrfs`);
  const mountPoint = join(tmpdir(), `snapkeeper-test-${tag}.mnt`);
  let done = false;
  const cleanup = async () => {
    if (done) return;
    // A plain (not lazy) unmount: a leak of open files or mounts fails loudly here.
    if (await isMountPoint(mountPoint)) await run('umount', [mountPoint]);
    await rm(image, { force: true });
    await rmdir(mountPoint).catch(() => {});
    done = true;
  };
  try {
    await run('truncate', ['-s', String(sizeBytes), image]);
    await run('mkfs.btrfs', ['-q', '-f', image]);
    await mkdir(mountPoint, { recursive: true });
    await run('mount', ['-o', 'loop', image, mountPoint]);
  } catch (err) {
    await cleanup().catch(() => {});
    throw err;
  }
  return { mountPoint, cleanup };
}

/**
 * Mounts a fresh btrfs file system for one test (pass the TestContext) or one file (pass `{ after }` from
 * node:test) and registers its cleanup there. Returns the mount point.
 */
export async function withLoopBtrfs(
  hooks: { after(fn: () => Promise<void>): unknown },
  sizeBytes?: number,
): Promise<string> {
  const fs = await mountTestBtrfs(sizeBytes);
  hooks.after(() => fs.cleanup());
  return fs.mountPoint;
}
