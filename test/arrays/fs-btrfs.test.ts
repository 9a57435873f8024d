import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { type TestContext, test } from 'node:test';
import { btrfsSupport, type FsArray, openFsArray } from '../../src/arrays/fs/index.js';
import { isBtrfs } from '../../src/arrays/fs/layout.js';
import { isSubvolume } from '../../src/arrays/fs/tree.js';
import type { ArrayVolume } from '../../src/arrays/types.js';
import { SnapkeeperError, UsageError } from '../../src/errors.js';
import { isMountPoint } from '../../src/lab/loop-btrfs.js';
import { execFile } from '../../src/util/exec.js';
import { fileBtrfs, withLoopBtrfs } from '../helpers/btrfs.js';
import { requireCapability } from '../helpers/require.js';
import { makeFsArray, removeFsArray } from './fs-factory.js';
import { fsDriverSuites, treeDigest } from './fs-suite.js';

// One loop-mounted btrfs for the file; every test makes its own array on it.
const btrfs = fileBtrfs();
const capability = btrfs.capability;

fsDriverSuites('btrfs', () => btrfs.mountPoint(), {
  atomicGroups: true,
  instantClone: true,
  changedRanges: true,
  capability: () => capability,
});

test('btrfs snapshots and clones are subvolumes, and auto picks btrfs', async (t) => {
  const cap = await capability;
  if (!requireCapability(t, cap.ok, cap.reason)) return;
  const { array, root, cleanup } = await makeFsArray(btrfs.mountPoint(), 'btrfs');
  try {
    assert.deepEqual(await btrfsSupport(root), { ok: true, reason: '' });
    const auto = await openFsArray({ name: 'auto', path: root, driver: 'auto' });
    assert.equal(auto.driver, 'btrfs');
    const [v] = await array.listVolumes();
    const snap = await array.snapshotGroup([v!.name], { label: 'sub' });
    const clone = await array.cloneSnapshot(snap.id, { label: 'sub-clone' });
    assert.ok(await isSubvolume(`${root}/snapshots/${snap.id}`));
    assert.ok(await isSubvolume(clone.path));
  } finally {
    await cleanup();
  }
});

test('on btrfs: a plain-directory pool gets reflink from auto and a clear refusal from btrfs', async (t) => {
  const cap = await capability;
  if (!requireCapability(t, cap.ok, cap.reason)) return;
  const root = await mkdtemp(join(btrfs.mountPoint(), 'plain-'));
  try {
    // An array whose pool is not a subvolume, as one made by hand or copied in would be.
    await mkdir(join(root, 'pool', 'vol-a'), { recursive: true });
    await writeFile(
      join(root, 'array.json'),
      JSON.stringify({ format: 1, serial: 'abc', volumes: [{ name: 'vol-a', lun: 'naa.6x' }] }),
    );
    assert.equal((await openFsArray({ name: 'plain', path: root, driver: 'auto' })).driver, 'reflink');
    await assert.rejects(openFsArray({ name: 'plain', path: root, driver: 'btrfs' }), (err: unknown) => {
      assert.ok(err instanceof UsageError);
      assert.match(err.message, /plain.*btrfs.*not a btrfs subvolume/);
      return true;
    });
  } finally {
    await removeFsArray(root);
  }
});

test('after a change of driver, btrfs clones and deletes snapshots the reflink driver made', async (t) => {
  const cap = await capability;
  if (!requireCapability(t, cap.ok, cap.reason)) return;
  const { root, cleanup } = await makeFsArray(btrfs.mountPoint(), 'reflink');
  try {
    const before = await openFsArray({ name: 'a', path: root, driver: 'reflink' });
    const [v] = await before.listVolumes();
    await writeFile(join(v!.path, 'disk'), randomBytes(1024 * 1024));
    const expected = await treeDigest(v!.path);
    const snap = await before.snapshotGroup([v!.name], { label: 'old' });
    assert.equal(await isSubvolume(`${root}/snapshots/${snap.id}`), false);

    const now = await openFsArray({ name: 'a', path: root, driver: 'btrfs' });
    const clone = await now.cloneSnapshot(snap.id, { label: 'new-clone' });
    assert.ok(await isSubvolume(clone.path));
    assert.deepEqual(await treeDigest(join(clone.path, v!.name)), expected);
    assert.equal((await now.listSnapshots())[0]?.driver, 'reflink');
    await now.deleteClone(clone.id);
    await now.deleteSnapshot(snap.id);
    assert.deepEqual(await now.listSnapshots(), []);
    assert.deepEqual(await now.listClones(), []);
  } finally {
    await cleanup();
  }
});

test('withLoopBtrfs mounts a btrfs for one test and removes it when the test ends', async (t) => {
  const cap = await capability;
  if (!requireCapability(t, cap.ok, cap.reason)) return;
  let mountPoint = '';
  await t.test('inner', async (inner) => {
    mountPoint = await withLoopBtrfs(inner, 256 * 1024 * 1024);
    assert.ok(await isMountPoint(mountPoint));
    assert.ok(await isBtrfs(mountPoint));
  });
  assert.equal(await isMountPoint(mountPoint), false);
  await assert.rejects(stat(mountPoint), { code: 'ENOENT' });
});

/**
 * A btrfs fs array for a test that makes its snapshots directory immutable (`chattr +i`): `use` gets the
 * array, that directory and the first volume; afterwards the directory is made mutable again and the array
 * removed, whatever happened. Skipped (or failed under SNAPKEEPER_REQUIRE_ALL) without btrfs.
 */
async function withBtrfsArray(
  t: TestContext,
  use: (array: FsArray, snapshots: string, volume: ArrayVolume) => Promise<void>,
): Promise<void> {
  const cap = await capability;
  if (!requireCapability(t, cap.ok, cap.reason)) return;
  const { array, root, cleanup } = await makeFsArray(btrfs.mountPoint(), 'btrfs');
  const snapshots = join(root, 'snapshots');
  try {
    const [v] = await array.listVolumes();
    await use(array, snapshots, v!);
  } finally {
    await execFile('chattr', ['-i', snapshots]).catch(() => {});
    await cleanup();
  }
}

test('a failed btrfs snapshot is ARRAY_SNAPSHOT_FAILED naming the array, not a bare EXEC_FAILED', async (t) => {
  await withBtrfsArray(t, async (array, snapshots, v) => {
    // An immutable directory refuses new entries, for root too: `btrfs subvolume snapshot` fails.
    await execFile('chattr', ['+i', snapshots]);
    await assert.rejects(array.snapshotGroup([v.name], { label: 'immutable' }), (err: unknown) => {
      assert.ok(err instanceof SnapkeeperError, String(err));
      assert.equal(err.code, 'ARRAY_SNAPSHOT_FAILED');
      assert.match(err.message, /^array "test-array" \(btrfs\): snapshot of vol-a failed: .*btrfs/);
      assert.ok(!(err instanceof UsageError));
      return true;
    });
    await execFile('chattr', ['-i', snapshots]);
    assert.deepEqual(await array.listSnapshots(), [], 'nothing is left behind');
  });
});

test('a failed btrfs delete is ARRAY_DELETE_FAILED naming the array', async (t) => {
  await withBtrfsArray(t, async (array, snapshots, v) => {
    const snap = await array.snapshotGroup([v.name], { label: 'keep' });
    // The metadata goes first; then the immutable parent makes `btrfs subvolume delete` fail.
    await rm(join(snapshots, `${snap.id}.json`));
    await execFile('chattr', ['+i', snapshots]);
    await assert.rejects(array.deleteSnapshot(snap.id), (err: unknown) => {
      assert.ok(err instanceof SnapkeeperError, String(err));
      assert.equal(err.code, 'ARRAY_DELETE_FAILED');
      assert.match(
        err.message,
        new RegExp(`^array "test-array" \\(btrfs\\): deleting snapshot ${snap.id} failed`),
      );
      return true;
    });
  });
});

/** The pid of a running process whose arguments start with `args`, if any (read from /proc). */
async function findProcess(args: string[]): Promise<number | undefined> {
  for (const name of await readdir('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    const cmdline = await readFile(`/proc/${name}/cmdline`, 'utf8').catch(() => '');
    if (cmdline.startsWith(`${args.join('\0')}\0`)) return Number(name);
  }
  return undefined;
}

test('an abort while btrfs runs rejects with the signal reason, not EXEC_FAILED', async (t) => {
  const cap = await capability;
  if (!requireCapability(t, cap.ok, cap.reason)) return;
  // A private file system: frozen, it holds `btrfs subvolume snapshot` until thawed, so the abort lands
  // while the program runs.
  const mnt = await withLoopBtrfs(t, 256 * 1024 * 1024);
  const { array, root, cleanup } = await makeFsArray(mnt, 'btrfs');
  let frozen = false;
  let btrfsPid: number | undefined;
  try {
    const [v] = await array.listVolumes();
    await execFile('fsfreeze', ['-f', mnt]);
    frozen = true;
    const controller = new AbortController();
    const reason = new Error('stop now');
    const run = array.snapshotGroup([v!.name], { label: 'aborted', signal: controller.signal });
    run.catch(() => {}); // awaited below
    // Wait (bounded) until the btrfs program is running: an abort before it would not test this path.
    for (let i = 0; i < 2000 && btrfsPid === undefined; i++) {
      btrfsPid =
        (await findProcess(['btrfs', 'subvolume', 'snapshot', '-r', join(root, 'pool')])) ?? undefined;
      if (btrfsPid === undefined) await new Promise((r) => setTimeout(r, 5));
    }
    assert.ok(btrfsPid !== undefined, 'btrfs subvolume snapshot started');
    controller.abort(reason);
    await execFile('fsfreeze', ['-u', mnt]);
    frozen = false;
    await assert.rejects(run, (err: unknown) => err === reason);
  } finally {
    if (frozen) await execFile('fsfreeze', ['-u', mnt]).catch(() => {});
    // The killed program may still be finishing after the thaw: let it go before removing the array.
    for (
      let i = 0;
      i < 2000 &&
      btrfsPid !== undefined &&
      (await findProcess(['btrfs', 'subvolume', 'snapshot', '-r', join(root, 'pool')])) !== undefined;
      i++
    ) {
      await new Promise((r) => setTimeout(r, 5));
    }
    await cleanup();
  }
});
