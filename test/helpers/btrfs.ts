import { randomBytes } from 'node:crypto';
import { rmdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before } from 'node:test';
import { canMountLoopBtrfs, mountLoopBtrfs, unmountLoopBtrfs } from '../../src/lab/loop-btrfs.js';

export { canMountLoopBtrfs };

/** 640 MiB sparse: above btrfs's ~120 MiB minimum with room for a few 32 MiB test files and their copies. */
const DEFAULT_SIZE = 640 * 1024 * 1024;

export interface LoopBtrfs {
  mountPoint: string;
  /** Unmounts and deletes the image and mount point. Idempotent. */
  cleanup(): Promise<void>;
}

/**
 * Makes a fresh btrfs file system in a sparse image under the temporary directory and mounts it.
 * For `before`/`after` hooks; the caller must call `cleanup`. Needs root (see canMountLoopBtrfs).
 */
export async function mountTestBtrfs(sizeBytes = DEFAULT_SIZE): Promise<LoopBtrfs> {
  const tag = randomBytes(4).toString('hex');
  const image = join(tmpdir(), `snapkeeper-test-${tag}.btrfs`);
  const mountPoint = join(tmpdir(), `snapkeeper-test-${tag}.mnt`);
  let done = false;
  const cleanup = async () => {
    if (done) return;
    await unmountLoopBtrfs(image, mountPoint);
    await rmdir(mountPoint).catch(() => {});
    done = true;
  };
  try {
    await mountLoopBtrfs(image, mountPoint, sizeBytes);
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

/**
 * One loop-mounted btrfs shared by every test of a file: mounted in `before` when this machine can, removed
 * in `after`. `capability` says whether it can (tests pass it to requireCapability); `mountPoint()` is valid
 * inside tests once `before` has run.
 */
export function fileBtrfs(): {
  capability: Promise<{ ok: boolean; reason: string }>;
  mountPoint(): string;
} {
  let fs: LoopBtrfs | undefined;
  const capability = canMountLoopBtrfs();
  before(async () => {
    if ((await capability).ok) fs = await mountTestBtrfs();
  });
  after(async () => {
    await fs?.cleanup();
  });
  return {
    capability,
    mountPoint() {
      if (!fs) throw new Error('no btrfs mounted for this file (see capability)');
      return fs.mountPoint;
    },
  };
}
