import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { openFsArray, reflinkSupport } from '../../src/arrays/fs/index.js';
import { openArray } from '../../src/arrays/index.js';
import { NotFoundError, UsageError } from '../../src/errors.js';
import { makeFsArray, TEST_VOLUMES } from './fs-factory.js';

// Driver choice on file systems that are not btrfs: the temporary directory and /dev/shm (tmpfs).
let parent = '';
before(async () => {
  parent = await mkdtemp(join(tmpdir(), 'snapkeeper-fs-detect-'));
});
after(async () => {
  await rm(parent, { recursive: true, force: true });
});

/** Whether coreutils can clone a file in `dir`: an independent opinion to check the probe against. */
function cpCanReflink(dir: string): boolean {
  const src = join(dir, `probe-${randomBytes(4).toString('hex')}`);
  spawnSync('sh', ['-c', 'head -c 4096 /dev/urandom > "$1"', 'sh', src]);
  const r = spawnSync('cp', ['--reflink=always', src, `${src}.clone`]);
  spawnSync('rm', ['-f', src, `${src}.clone`]);
  return r.status === 0;
}

for (const where of ['tmpdir', '/dev/shm'] as const) {
  test(`auto picks reflink or copy by probe on a non-btrfs file system (${where})`, async (t) => {
    const dir =
      where === 'tmpdir' ? parent : await mkdtemp('/dev/shm/snapkeeper-detect-').catch(() => undefined);
    if (!dir) return t.skip('no /dev/shm here');
    const { array, root, cleanup } = await makeFsArray(dir, 'auto');
    try {
      const expected = cpCanReflink(join(root, 'pool')) ? 'reflink' : 'copy';
      assert.equal(array.driver, expected);
      assert.equal((await reflinkSupport(root)).ok, expected === 'reflink');
      assert.equal(array.atomicGroups, false);
      assert.equal(array.instantClone, expected === 'reflink');
    } finally {
      await cleanup();
      if (where !== 'tmpdir') await rm(dir, { recursive: true, force: true });
    }
  });
}

test('an explicit driver the file system cannot do is a UsageError naming array, driver and why', async () => {
  const { root, cleanup } = await makeFsArray(parent, 'copy');
  try {
    await assert.rejects(openFsArray({ name: 'prod-array', path: root, driver: 'btrfs' }), (err: unknown) => {
      assert.ok(err instanceof UsageError);
      assert.equal(err.code, 'ARRAY_DRIVER_UNSUPPORTED');
      assert.match(err.message, /prod-array/);
      assert.match(err.message, /btrfs/);
      assert.match(err.message, /not on a btrfs file system/);
      return true;
    });
    if (!cpCanReflink(join(root, 'pool'))) {
      await assert.rejects(
        openFsArray({ name: 'prod-array', path: root, driver: 'reflink' }),
        (err: unknown) => {
          assert.ok(err instanceof UsageError);
          assert.match(err.message, /prod-array.*reflink.*FICLONE/);
          return true;
        },
      );
    }
  } finally {
    await cleanup();
  }
});

test('opening a directory that holds no array is a UsageError', async () => {
  await assert.rejects(openFsArray({ name: 'x', path: join(parent, 'nothing-here'), driver: 'auto' }), {
    name: 'UsageError',
    code: 'ARRAY_NOT_FOUND',
  });
  const bad = await mkdtemp(join(parent, 'bad-'));
  await writeFile(join(bad, 'array.json'), '{"format": 2}');
  await assert.rejects(openFsArray({ name: 'x', path: bad, driver: 'copy' }), { code: 'ARRAY_INVALID' });
});

test('openArray opens an fs array from its configuration entry', async () => {
  const { root, cleanup } = await makeFsArray(parent, 'copy');
  try {
    const array = await openArray({ name: 'lab', type: 'fs', path: root, driver: 'copy' });
    assert.equal(array.name, 'lab');
    assert.equal(array.driver, 'copy');
    assert.deepEqual(
      (await array.listVolumes()).map((v) => v.name),
      TEST_VOLUMES,
    );
    await assert.rejects(array.snapshotGroup(['vol-x'], { label: 'l' }), NotFoundError);
  } finally {
    await cleanup();
  }
});
