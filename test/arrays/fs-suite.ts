import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { createReadStream } from 'node:fs';
import {
  lstat,
  mkdir,
  mkdtemp,
  readdir,
  readFile,
  readlink,
  rm,
  stat,
  symlink,
  writeFile,
} from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { describe, type TestContext, test } from 'node:test';
import type { FsDriverChoice } from '../../src/arrays/fs/index.js';
import { layout } from '../../src/arrays/fs/layout.js';
import type { ArrayVolume } from '../../src/arrays/types.js';
import { NotFoundError, UsageError } from '../../src/errors.js';
import { isRoot } from '../helpers/require.js';
import { arrayConformance, type ConformanceExpectations, readAll, withArray } from './conformance.js';
import { type FsArrayUnderTest, makeFsArray } from './fs-factory.js';

/**
 * Both suites an fs driver must pass, the array conformance suite and the fs specifics, on arrays made under
 * `parent()` (read when a test runs: the directory may be made in a `before`).
 */
export function fsDriverSuites(
  driver: FsDriverChoice,
  parent: () => string,
  expectations: ConformanceExpectations,
): void {
  const name = `fs (${driver} driver)`;
  const factory = () => makeFsArray(parent(), driver);
  arrayConformance(name, factory, expectations);
  fsArraySpecifics(name, factory, expectations);
}

/**
 * What only the fs array promises, on top of the conformance suite: its volumes and snapshots are
 * directories on the host, its snapshots are read-only there, its crash order (metadata written last, deleted
 * first), and how symbolic links inside a volume are followed or refused. Every fs driver runs it.
 */
export function fsArraySpecifics(
  name: string,
  factory: () => Promise<FsArrayUnderTest>,
  expectations: ConformanceExpectations,
): void {
  const use = (t: TestContext, body: (a: FsArrayUnderTest, vols: ArrayVolume[]) => Promise<void>) =>
    withArray(t, factory, expectations.capability, body);

  describe(`fs array specifics: ${name}`, () => {
    test('volumes are directories under the pool; other paths of the array are no export', (t) =>
      use(t, async ({ array, root }, vols) => {
        for (const v of vols) {
          assert.ok((await stat(v.path)).isDirectory(), `${v.path} is a directory`);
          assert.equal(v.path, layout.volume(root, v.name));
        }
        for (const p of [
          root,
          layout.pool(root),
          layout.clones(root),
          layout.snapshots(root),
          join(layout.pool(root), 'unknown-vol'),
        ]) {
          assert.equal(await array.resolveExport(p), undefined, p);
        }
        const snap = await array.snapshotGroup([vols[0]!.name], { label: 's' });
        const clone = await array.cloneSnapshot(snap.id, { label: 'c' });
        assert.equal(clone.volumeExports[vols[0]!.name], join(clone.path, vols[0]!.name));
        assert.equal(await array.resolveExport(clone.path), undefined, 'a clone root is no volume');
      }));

    test('snapshotVolumePath shows the volume as it was, links included; listFiles leaves links out', (t) =>
      use(t, async ({ array }, [v0]) => {
        await mkdir(join(v0!.path, 'a'));
        await writeFile(join(v0!.path, 'a/top.txt'), 'top');
        await symlink('a/top.txt', join(v0!.path, 'link'));
        const before = await treeDigest(v0!.path);
        const snap = await array.snapshotGroup([v0!.name], { label: 'links' });
        assert.deepEqual(await treeDigest(await array.snapshotVolumePath(snap.id, v0!.name)), before);
        assert.deepEqual(
          (await array.listFiles(snap.id, v0!.name, '')).map((e) => e.name),
          ['a'],
        );
      }));

    test('a snapshot is read-only', (t) =>
      use(t, async ({ array }, [v0]) => {
        await mkdir(join(v0!.path, 'dir'));
        await writeFile(join(v0!.path, 'dir/f.txt'), 'original');
        const snap = await array.snapshotGroup([v0!.name], { label: 'ro' });
        const snapPath = await array.snapshotVolumePath(snap.id, v0!.name);
        const dirMode = (await stat(join(snapPath, 'dir'))).mode;
        const fileMode = (await stat(join(snapPath, 'dir/f.txt'))).mode;
        const refused = async (fn: () => Promise<unknown>) => {
          try {
            await fn();
            return false;
          } catch (err) {
            assert.ok(
              ['EROFS', 'EACCES', 'EPERM'].includes((err as NodeJS.ErrnoException).code ?? ''),
              String(err),
            );
            return true;
          }
        };
        const addRefused = await refused(() =>
          writeFile(join(snapPath, 'dir/intruder'), 'x', { flag: 'wx' }),
        );
        const changeRefused = await refused(() => writeFile(join(snapPath, 'dir/f.txt'), 'changed'));
        if (!addRefused || !changeRefused) {
          // Only root gets through, and only because it ignores mode bits: those must still say read-only.
          assert.ok(isRoot, 'a non-root user could write into a snapshot');
          assert.equal(dirMode & 0o222, 0, 'snapshot directory has no write bits');
          assert.equal(fileMode & 0o222, 0, 'snapshot file has no write bits');
          assert.ok(!array.atomicGroups, 'an atomic (btrfs) snapshot must refuse even root');
        } else {
          assert.equal(await readFile(join(snapPath, 'dir/f.txt'), 'utf8'), 'original');
        }
      }));

    test('an interrupted snapshot is listed incomplete, never used, and deletable', (t) =>
      use(t, async ({ array, root }, [v0]) => {
        await writeFile(join(v0!.path, 'f'), 'x');
        // A crash after the data but before the metadata: the directory is there, the metadata is not.
        const snap = await array.snapshotGroup([v0!.name], { label: 'crash-late' });
        await rm(layout.snapshotMeta(root, snap.id));
        // Metadata that is not what the array wrote (torn by a foreign tool, another version) is not trusted.
        const garbled = await array.snapshotGroup([v0!.name], { label: 'garbled' });
        await writeFile(layout.snapshotMeta(root, garbled.id), '{"id": 42}');
        // A crash halfway through copying, as a copying driver would leave it.
        const halfId = 'crash-early--20200102T030405-beef';
        await mkdir(join(layout.snapshot(root, halfId), v0!.name), { recursive: true });
        await writeFile(join(layout.snapshot(root, halfId), v0!.name, 'partial'), 'half');

        const listed = await array.listSnapshots();
        const byId = new Map(listed.map((s) => [s.id, s]));
        assert.equal(byId.get(snap.id)?.complete, false);
        assert.equal(byId.get(snap.id)?.label, 'crash-late');
        assert.equal(byId.get(halfId)?.complete, false);
        assert.equal(byId.get(halfId)?.label, 'crash-early');
        assert.equal(listed[0]?.id, halfId, 'oldest first, by the time in the id');
        assert.equal(byId.get(garbled.id)?.complete, false);
        assert.equal(byId.get(garbled.id)?.label, 'garbled');
        await array.deleteSnapshot(garbled.id);

        await assert.rejects(array.snapshotVolumePath(snap.id, v0!.name), NotFoundError);
        await assert.rejects(array.statFile(snap.id, v0!.name, 'f'), NotFoundError);
        await assert.rejects(array.readFile(halfId, v0!.name, 'partial'), NotFoundError);
        await assert.rejects(array.cloneSnapshot(halfId, { label: 'c' }), NotFoundError);
        await array.deleteSnapshot(snap.id);
        await array.deleteSnapshot(halfId);
        assert.deepEqual(await array.listSnapshots(), []);
        assert.deepEqual(await readdir(layout.snapshots(root)), []);
      }));

    test('reads and restoreFile stay inside the snapshot volume, even through a linked directory', (t) =>
      use(t, async ({ array, root }, [v0, v1]) => {
        await mkdir(join(v0!.path, 'vm'));
        await writeFile(join(v0!.path, 'vm/disk'), 'inside');
        // A directory link out of the volume (to the array root) and one that stays inside it.
        await symlink(root, join(v0!.path, 'escape'));
        await symlink('vm', join(v0!.path, 'alias'));
        const snap = await array.snapshotGroup([v0!.name], { label: 'links' });
        const target = join(v1!.path, 'out');
        const escapes = (err: unknown) => err instanceof UsageError && err.code === 'ARRAY_INVALID_PATH';
        await assert.rejects(array.restoreFile(snap.id, v0!.name, 'escape/array.json', target), escapes);
        await assert.rejects(array.statFile(snap.id, v0!.name, 'escape/array.json'), escapes);
        await assert.rejects(array.readFile(snap.id, v0!.name, 'escape/array.json'), escapes);
        await assert.rejects(array.listFiles(snap.id, v0!.name, 'escape'), escapes);
        await assert.rejects(array.listFiles(snap.id, v0!.name, 'escape/pool'), escapes);
        await assert.rejects(lstat(target), { code: 'ENOENT' }, 'nothing was restored');
        await array.restoreFile(snap.id, v0!.name, 'alias/disk', target);
        assert.equal(await readFile(target, 'utf8'), 'inside');
        assert.notEqual((await stat(target)).mode & 0o200, 0, 'the restored file is writable by its owner');
        assert.equal((await readAll(array, snap.id, v0!.name, 'alias/disk')).toString(), 'inside');
        // The last component must be a file itself, not a link to one.
        await assert.rejects(
          array.restoreFile(snap.id, v0!.name, 'alias', join(v1!.path, 'x')),
          NotFoundError,
        );
        await assert.rejects(array.statFile(snap.id, v0!.name, 'alias'), NotFoundError);
      }));

    test('restoreFile refuses a target outside the array pool, links included', (t) =>
      use(t, async ({ array, root }, [v0, v1]) => {
        await writeFile(join(v0!.path, 'disk'), 'data');
        const snap = await array.snapshotGroup([v0!.name], { label: 'targets' });
        const outside = await mkdtemp(join(tmpdir(), 'restore-outside-'));
        try {
          // Outside the array, in the array root, directly in the pool, and inside a volume through a link
          // that leads outside: all refused, and nothing is written.
          await symlink(outside, join(v1!.path, 'link'));
          const targets = [
            join(outside, 'x'),
            join(root, 'x'),
            join(layout.pool(root), 'x'),
            join(v1!.path, 'link', 'x'),
            join(v1!.path, 'missing-dir', 'x'),
          ];
          for (const target of targets) {
            await assert.rejects(
              array.restoreFile(snap.id, v0!.name, 'disk', target),
              (err: unknown) => err instanceof UsageError && err.code === 'ARRAY_INVALID_PATH',
              target,
            );
          }
          assert.deepEqual(await readdir(outside), []);
          await assert.rejects(lstat(join(root, 'x')), { code: 'ENOENT' });
          await assert.rejects(lstat(join(layout.pool(root), 'x')), { code: 'ENOENT' });
        } finally {
          await rm(outside, { recursive: true, force: true });
        }
      }));

    test('a file of the snapshot is read as it is, its size from the snapshot', (t) =>
      use(t, async ({ array }, [v0]) => {
        const data = randomBytes(100_000);
        await writeFile(join(v0!.path, 'f'), data);
        const snap = await array.snapshotGroup([v0!.name], { label: 'bytes' });
        const onDisk = join(await array.snapshotVolumePath(snap.id, v0!.name), 'f');
        assert.ok((await readFile(onDisk)).equals(await readAll(array, snap.id, v0!.name, 'f')));
        assert.equal((await array.statFile(snap.id, v0!.name, 'f')).size, (await stat(onDisk)).size);
      }));
  });
}

/** Path -> kind and content hash of everything under `dir`, links included, for equality checks. */
export async function treeDigest(dir: string): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  const walk = async (d: string) => {
    for (const e of (await readdir(d, { withFileTypes: true })).sort((x, y) => (x.name < y.name ? -1 : 1))) {
      const p = join(d, e.name);
      const rel = relative(dir, p);
      if (e.isDirectory()) {
        out[rel] = 'dir';
        await walk(p);
      } else if (e.isSymbolicLink()) out[rel] = `link:${await readlink(p)}`;
      else if (e.isFile()) out[rel] = `file:${(await lstat(p)).size}:${await sha256(p)}`;
      else out[rel] = 'other';
    }
  };
  await walk(dir);
  return out;
}

async function sha256(path: string): Promise<string> {
  const h = createHash('sha256');
  for await (const chunk of createReadStream(path)) h.update(chunk as Buffer);
  return h.digest('hex');
}
