import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { type FsDriverChoice, initFsArray, layout, openFsArray } from '../../src/arrays/fs/index.js';
import { removeTree } from '../../src/arrays/fs/tree.js';
import type { ArrayUnderTest } from './conformance.js';

export const TEST_VOLUMES = ['vol-a', 'vol-b', 'vol-c'];

/** A fresh fs array with three empty volumes in a new directory under `parent`, opened with `driver`. */
export async function makeFsArray(parent: string, driver: FsDriverChoice): Promise<ArrayUnderTest> {
  const root = await mkdtemp(join(parent, 'array-'));
  await initFsArray(root, TEST_VOLUMES);
  const array = await openFsArray({ name: 'test-array', path: root, driver });
  return { array, root, cleanup: () => removeFsArray(root) };
}

/** Removes an fs array whatever its drivers made (btrfs subvolumes need `btrfs subvolume delete`). */
export async function removeFsArray(root: string): Promise<void> {
  for (const dir of [layout.snapshots(root), layout.clones(root)]) {
    const names = await readdir(dir).catch(() => [] as string[]);
    for (const n of names) await removeTree(join(dir, n));
  }
  await removeTree(layout.pool(root));
  await rm(root, { recursive: true, force: true });
}
