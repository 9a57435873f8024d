import assert from 'node:assert/strict';
import { readFile, stat } from 'node:fs/promises';
import { test } from 'node:test';
import { isBtrfs, layout } from '../../src/arrays/fs/layout.js';
import { labDiskChunk } from '../../src/lab/diskdata.js';
import { canMountLoopBtrfs, isMountPoint } from '../../src/lab/loop-btrfs.js';
import { execFile } from '../../src/util/exec.js';
import { pathExists } from '../../src/util/fs.js';
import { STANDARD_SPEC, standardSpec, startLab } from '../helpers/lab.js';
import { requireCapability } from '../helpers/require.js';

test('a lab on a btrfs loop image has its pool as a subvolume, and lab down unmounts it', async (t) => {
  const can = await canMountLoopBtrfs();
  if (!requireCapability(t, can.ok, can.reason)) return;
  const lab = await startLab(await standardSpec(), { btrfs: true });
  const { arrayPath, btrfsImage } = lab.state;
  try {
    assert.ok(btrfsImage);
    assert.equal(await isMountPoint(arrayPath), true);
    assert.equal(await isBtrfs(arrayPath), true);
    const pool = layout.pool(arrayPath);
    // `btrfs subvolume show` fails on a plain directory.
    const { stdout } = await execFile('btrfs', ['subvolume', 'show', pool]);
    assert.match(stdout, /Subvolume ID:\s+\d+/);
    const web01 = lab.vm('web01');
    const disk = web01.disks[0]!;
    assert.ok(disk.path.startsWith(`${layout.volume(arrayPath, 'ds-a')}/`));
    assert.ok((await readFile(disk.path)).equals(labDiskChunk('web01', 0, 0, disk.sizeMB * 1024 * 1024)));
    // A read-only snapshot of the pool, as the btrfs driver makes: lab down must still remove everything.
    await execFile('btrfs', ['subvolume', 'snapshot', '-r', pool, layout.snapshot(arrayPath, 'test-snap')]);
  } finally {
    await lab.stop();
  }
  assert.equal(await isMountPoint(arrayPath), false);
  assert.equal(await pathExists(btrfsImage!), false);
  assert.equal(await pathExists(lab.dir), false);
});

test('on a btrfs array directory (no loop image of its own) lab down removes read-only snapshots too', async (t) => {
  const can = await canMountLoopBtrfs();
  if (!requireCapability(t, can.ok, can.reason)) return;
  // The lab dir itself lives on a btrfs mount made here, so the array is btrfs without the lab's own image.
  const { mkdtemp, rm, writeFile } = await import('node:fs/promises');
  const { tmpdir } = await import('node:os');
  const { join } = await import('node:path');
  const { mountLoopBtrfs, unmountLoopBtrfs } = await import('../../src/lab/loop-btrfs.js');
  const { labDown, labUp } = await import('../../src/lab/index.js');
  const root = await mkdtemp(join(tmpdir(), 'snapkeeper-lab-outer-'));
  const image = join(root, 'outer.img');
  const mnt = join(root, 'mnt');
  await mountLoopBtrfs(image, mnt, 256 * 1024 * 1024);
  try {
    const specFile = join(root, 'spec.json');
    await writeFile(specFile, await readFile(STANDARD_SPEC, 'utf8'));
    const dir = join(mnt, 'lab');
    const state = await labUp({ specFile, dir });
    assert.equal(state.btrfsImage, undefined);
    const pool = layout.pool(state.arrayPath);
    assert.equal((await stat(pool)).ino, 256, 'the pool is a subvolume');
    await execFile('btrfs', ['subvolume', 'snapshot', '-r', pool, layout.snapshot(state.arrayPath, 'ro')]);
    await labDown(dir);
    assert.equal(await pathExists(dir), false);
  } finally {
    await unmountLoopBtrfs(image, mnt);
    await rm(root, { recursive: true, force: true });
  }
});
