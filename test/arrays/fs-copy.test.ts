import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { chown, mkdir, mkdtemp, open, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { layout, openFsArray } from '../../src/arrays/fs/index.js';
import { isRoot, requireCapability } from '../helpers/require.js';
import { makeFsArray, removeFsArray } from './fs-factory.js';
import { fsDriverSuites } from './fs-suite.js';

// The copy driver works on any file system: a plain temporary directory, no root needed.
let parent = '';
before(async () => {
  parent = await mkdtemp(join(tmpdir(), 'snapkeeper-fs-copy-'));
});
after(async () => {
  await rm(parent, { recursive: true, force: true });
});

fsDriverSuites('copy', () => parent, { atomicGroups: false, instantClone: false, changedRanges: false });

const MiB = 1024 * 1024;

test('copy driver keeps holes: a mostly empty file takes little space in the snapshot', async () => {
  const { array, root, cleanup } = await makeFsArray(parent, 'copy');
  try {
    const [v] = await array.listVolumes();
    const fh = await open(join(v!.path, 'thin.vmdk'), 'w');
    await fh.write(Buffer.alloc(4096, 1), 0, 4096, 20 * MiB);
    await fh.truncate(64 * MiB);
    await fh.close();
    const snap = await array.snapshotGroup([v!.name], { label: 'sparse' });
    const copied = await stat(join(await array.snapshotVolumePath(snap.id, v!.name), 'thin.vmdk'));
    assert.equal(copied.size, 64 * MiB);
    assert.ok(copied.blocks * 512 <= 2 * MiB, `allocated ${copied.blocks * 512} bytes for 4 KiB of data`);
    assert.ok(root.length > 0);
  } finally {
    await cleanup();
  }
});

test('a process killed in the middle of a snapshot leaves an incomplete one that recovery deletes', async () => {
  const { array, root, cleanup } = await makeFsArray(parent, 'copy');
  try {
    const [v] = await array.listVolumes();
    for (let i = 0; i < 4; i++) await writeFile(join(v!.path, `disk-${i}.bin`), Buffer.alloc(4 * MiB, i + 1));
    // A real crash: another process starts the snapshot and is killed by SIGKILL at its first progress report.
    const fsIndex = fileURLToPath(new URL('../../src/arrays/fs/index.js', import.meta.url));
    const script = `
      const { openFsArray } = await import(${JSON.stringify(fsIndex)});
      const array = await openFsArray({ name: 'crash', path: ${JSON.stringify(root)}, driver: 'copy' });
      await array.snapshotGroup([${JSON.stringify(v!.name)}], {
        label: 'killed', onProgress: () => process.kill(process.pid, 'SIGKILL'),
      });
    `;
    const child = spawn(process.execPath, ['--input-type=module', '-e', script], { stdio: 'inherit' });
    const [, signal] = await once(child, 'exit');
    assert.equal(signal, 'SIGKILL');

    const listed = await array.listSnapshots();
    assert.equal(listed.length, 1);
    assert.equal(listed[0]!.label, 'killed');
    assert.equal(listed[0]!.complete, false);
    const reopened = await openFsArray({ name: 'again', path: root, driver: 'copy' });
    await reopened.deleteSnapshot(listed[0]!.id);
    assert.deepEqual(await readdir(layout.snapshots(root)), []);
  } finally {
    await cleanup();
  }
});

test('as root, snapshots and clones keep file owners', async (t) => {
  if (!requireCapability(t, isRoot, 'needs root to give files to another user')) return;
  const { array, cleanup } = await makeFsArray(parent, 'copy');
  try {
    const [v] = await array.listVolumes();
    await mkdir(join(v!.path, 'home'));
    await writeFile(join(v!.path, 'home/owned'), 'x');
    await chown(join(v!.path, 'home'), 4242, 4343);
    await chown(join(v!.path, 'home/owned'), 4242, 4343);
    const snap = await array.snapshotGroup([v!.name], { label: 'owners' });
    const clone = await array.cloneSnapshot(snap.id, { label: 'owners-clone' });
    for (const base of [await array.snapshotVolumePath(snap.id, v!.name), join(clone.path, v!.name)]) {
      for (const p of ['home', 'home/owned']) {
        const s = await stat(join(base, p));
        assert.deepEqual([s.uid, s.gid], [4242, 4343], `${base}/${p}`);
      }
    }
  } finally {
    await cleanup();
  }
});

test('removeFsArray leaves nothing', async () => {
  const { root } = await makeFsArray(parent, 'copy');
  await removeFsArray(root);
  await assert.rejects(stat(root), { code: 'ENOENT' });
});
