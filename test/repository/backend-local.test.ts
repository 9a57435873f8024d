import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdir, mkdtemp, readdir, rm, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { promisify } from 'node:util';
import type { SnapkeeperError } from '../../src/errors.js';
import { LocalBackend, StorageError } from '../../src/repository/index.js';
import { isRoot, requireCapability } from '../helpers/require.js';
import { backendConformance } from './backend-conformance.js';

const run = promisify(execFile);

async function tempDir(): Promise<string> {
  return mkdtemp(join(tmpdir(), 'snapkeeper-local-backend-'));
}

backendConformance(
  'local',
  async () => {
    const dir = await tempDir();
    // A root that does not exist yet: the first save makes it.
    const backend = new LocalBackend({ path: join(dir, 'repo') });
    return { backend, cleanup: () => rm(dir, { recursive: true, force: true }) };
  },
  { conditionalWrite: true, objectLock: false, largeObjectBytes: 48 * 1024 * 1024, manyKeys: 1100 },
);

async function allFiles(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const e of await readdir(dir, { withFileTypes: true, recursive: true })) {
    if (e.isFile()) out.push(join(e.parentPath ?? (e as unknown as { path: string }).path, e.name));
  }
  return out.sort();
}

describe('LocalBackend', () => {
  it('maps keys to paths under its directory and refuses keys that could leave it', async (t) => {
    const dir = await tempDir();
    t.after(() => rm(dir, { recursive: true, force: true }));
    const b = new LocalBackend({ path: dir });
    assert.equal(b.pathOf('packs/ab/abc'), join(dir, 'packs', 'ab', 'abc'));
    for (const key of [
      '',
      '..',
      '../x',
      'a/../../b',
      '/etc/passwd',
      'a//b',
      'a/',
      '.tmp-123',
      'a/.hidden',
      'a\\b',
      'a\0b',
    ]) {
      await assert.rejects(b.save(key, Buffer.from('x')), (err: Error) => {
        assert.ok(err instanceof StorageError, `${JSON.stringify(key)}: ${String(err)}`);
        assert.equal(err.code, 'OBJECT_KEY_INVALID');
        return true;
      });
      await assert.rejects(b.load(key), { code: 'OBJECT_KEY_INVALID' });
    }
    assert.deepEqual(await allFiles(dir), []);
  });

  it("never lists a writer's temp file; removeTemporaries deletes only old ones", async (t) => {
    const dir = await tempDir();
    t.after(() => rm(dir, { recursive: true, force: true }));
    const b = new LocalBackend({ path: dir });
    await b.save('packs/aa/one', Buffer.from('1'));
    // What a writer killed between its write and its link leaves behind.
    const old = join(dir, 'packs', 'aa', '.tmp-0123456789abcdef');
    const young = join(dir, 'packs', 'aa', '.tmp-fedcba9876543210');
    await writeFile(old, 'partial');
    await writeFile(young, 'partial');
    const hourAgo = new Date(Date.now() - 2 * 3_600_000);
    await utimes(old, hourAgo, hourAgo);
    const keys: string[] = [];
    for await (const o of b.list('')) keys.push(o.key);
    assert.deepEqual(keys, ['packs/aa/one']);
    assert.equal(await b.removeTemporaries(), 1);
    assert.deepEqual(
      (await allFiles(dir)).map((f) => f.slice(dir.length + 1)),
      ['packs/aa/.tmp-fedcba9876543210', 'packs/aa/one'],
    );
  });

  it('refuses a retention it cannot keep', async (t) => {
    const dir = await tempDir();
    t.after(() => rm(dir, { recursive: true, force: true }));
    const b = new LocalBackend({ path: dir });
    await assert.rejects(b.save('k', Buffer.from('x'), { retainUntil: new Date(Date.now() + 1000) }), {
      code: 'OBJECT_LOCK_UNSUPPORTED',
    });
    assert.equal(await b.stat('k'), undefined);
  });

  it('a full disk: STORAGE_FULL naming the repository and the key, no partial object, room reused after', async (t) => {
    if (!requireCapability(t, isRoot, 'mounting a loop ext4 file system needs root')) return;
    const dir = await tempDir();
    const image = join(dir, 'small.img');
    const mnt = join(dir, 'mnt');
    await mkdir(mnt);
    await run('truncate', ['-s', '40M', image]);
    await run('mkfs.ext4', ['-q', '-F', '-m', '0', image]);
    await run('mount', ['-o', 'loop', image, mnt]);
    t.after(async () => {
      await run('umount', [mnt]).catch(() => {});
      await rm(dir, { recursive: true, force: true });
    });
    const repo = join(mnt, 'repo');
    const b = new LocalBackend({ path: repo });
    const first = Buffer.alloc(20 * 1024 * 1024, 1);
    await b.save('packs/aa/first', first);
    const second = Buffer.alloc(24 * 1024 * 1024, 2);
    await assert.rejects(b.save('packs/bb/second', second), (err: Error) => {
      assert.ok(err instanceof StorageError, String(err));
      assert.equal((err as SnapkeeperError).code, 'STORAGE_FULL');
      assert.equal((err as SnapkeeperError).exitCode, 2);
      assert.ok(err.message.includes(repo), err.message);
      assert.ok(err.message.includes('packs/bb/second'), err.message);
      return true;
    });
    assert.equal(await b.stat('packs/bb/second'), undefined);
    // No temp file, no partial object: only the first object's file is on the disk.
    assert.deepEqual(await allFiles(repo), [join(repo, 'packs', 'aa', 'first')]);
    assert.deepEqual(await b.load('packs/aa/first'), first);
    await b.remove('packs/aa/first');
    await b.save('packs/bb/second', second);
    assert.deepEqual(await b.load('packs/bb/second'), second);
  });
});
