import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { createReadStream } from 'node:fs';
import {
  lstat,
  mkdir,
  mkdtemp,
  open,
  readdir,
  readFile,
  readlink,
  rm,
  stat,
  symlink,
  unlink,
  writeFile,
} from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { describe, type TestContext, test } from 'node:test';
import { layout } from '../../src/arrays/fs/layout.js';
import type { ArrayVolume, StorageArray } from '../../src/arrays/types.js';
import { ConflictError, NotFoundError, UsageError } from '../../src/errors.js';
import { isRoot, requireCapability } from '../helpers/require.js';

/** What a factory returns: an array with at least three empty volumes, its root directory, and its removal. */
export interface ArrayUnderTest {
  array: StorageArray;
  root: string;
  cleanup(): Promise<void>;
}

export interface ConformanceExpectations {
  atomicGroups: boolean;
  instantClone: boolean;
  /** When the factory needs something this machine may lack (root, btrfs): checked before every test. */
  capability?: () => Promise<{ ok: boolean; reason: string }>;
}

const MiB = 1024 * 1024;

/**
 * The suite every StorageArray implementation passes (restic's backend suite, kysely's adapter loop): an
 * adapter's test file only supplies a factory and declares its guarantees. Each test gets a fresh array.
 */
export function arrayConformance(
  name: string,
  factory: () => Promise<ArrayUnderTest>,
  expectations: ConformanceExpectations,
): void {
  /** Runs `body` on a fresh array, removed afterwards whatever happens. */
  const withArray = async (
    t: TestContext,
    body: (a: ArrayUnderTest, vols: ArrayVolume[]) => Promise<void>,
  ) => {
    if (expectations.capability) {
      const cap = await expectations.capability();
      if (!requireCapability(t, cap.ok, cap.reason)) return;
    }
    const under = await factory();
    try {
      const vols = await under.array.listVolumes();
      assert.ok(vols.length >= 3, 'the factory must give an array with at least three volumes');
      await body(under, vols);
    } finally {
      await under.cleanup();
    }
  };

  describe(`StorageArray conformance: ${name}`, () => {
    test('declares its guarantees', (t) =>
      withArray(t, async ({ array }) => {
        assert.equal(array.atomicGroups, expectations.atomicGroups);
        assert.equal(array.instantClone, expectations.instantClone);
        assert.ok(array.name.length > 0);
      }));

    test('lists volumes with existing paths and distinct LUNs', (t) =>
      withArray(t, async (_a, vols) => {
        assert.equal(new Set(vols.map((v) => v.name)).size, vols.length);
        assert.equal(new Set(vols.map((v) => v.lun)).size, vols.length);
        for (const v of vols) {
          assert.match(v.lun, /^naa\.6[0-9a-f]{31}$/);
          assert.ok((await stat(v.path)).isDirectory(), `${v.path} is a directory`);
        }
      }));

    test('a snapshot holds the volume as it was, and later changes do not reach it', (t) =>
      withArray(t, async ({ array }, [v0]) => {
        await populate(v0!.path);
        const before = await treeDigest(v0!.path);
        const progress: [number, number][] = [];
        const snap = await array.snapshotGroup([v0!.name], {
          label: 'bk-1',
          onProgress: (d, total) => progress.push([d, total]),
        });
        assert.equal(snap.complete, true);
        assert.equal(snap.label, 'bk-1');
        assert.ok(snap.id.includes('bk-1'), `id ${snap.id} embeds the label`);
        assert.deepEqual(snap.volumes, [v0!.name]);
        assert.equal(snap.driver, array.driver);
        assert.equal(snap.pointInTime, expectations.atomicGroups ? 'atomic' : 'sequential');
        assert.ok(!Number.isNaN(Date.parse(snap.createdAt)));
        if (!expectations.instantClone) {
          // A copying driver reports progress up to the total it announced.
          const last = progress.at(-1);
          assert.ok(last, 'a copying driver reports progress');
          assert.equal(last[0], last[1]);
          assert.ok(last[1] >= 32 * MiB);
        }

        const snapPath = await array.snapshotVolumePath(snap.id, v0!.name);
        assert.deepEqual(await treeDigest(snapPath), before);

        // Change the live volume every way: overwrite, append, delete, add, rename a directory.
        await writeFile(join(v0!.path, 'a/b/c/deep.txt'), 'changed');
        const fh = await open(join(v0!.path, 'big.bin'), 'r+');
        await fh.write(Buffer.alloc(4096, 7), 0, 4096, 5 * MiB);
        await fh.close();
        await writeFile(join(v0!.path, 'big.bin'), 'x', { flag: 'a' });
        await unlink(join(v0!.path, 'empty'));
        await writeFile(join(v0!.path, 'new.txt'), 'new');
        await rm(join(v0!.path, 'a/b'), { recursive: true });
        assert.notDeepEqual(await treeDigest(v0!.path), before);
        assert.deepEqual(await treeDigest(snapPath), before);
      }));

    test('a snapshot is read-only', (t) =>
      withArray(t, async ({ array }, [v0]) => {
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

    test('a group of two of three volumes holds exactly those two', (t) =>
      withArray(t, async ({ array }, [v0, v1, v2]) => {
        for (const v of [v0!, v1!, v2!]) await writeFile(join(v.path, 'who'), v.name);
        const snap = await array.snapshotGroup([v0!.name, v2!.name], { label: 'group' });
        assert.deepEqual(snap.volumes, [v0!.name, v2!.name]);
        for (const v of [v0!, v2!]) {
          assert.equal(
            await readFile(join(await array.snapshotVolumePath(snap.id, v.name), 'who'), 'utf8'),
            v.name,
          );
        }
        await assert.rejects(array.snapshotVolumePath(snap.id, v1!.name), NotFoundError);
        await assert.rejects(array.snapshotVolumePath(`${snap.id}x`, v0!.name), NotFoundError);
        await assert.rejects(
          array.snapshotVolumePath('no-such--20200101T000000-abcd', v0!.name),
          NotFoundError,
        );

        const count = (await array.listSnapshots()).length;
        await assert.rejects(
          array.snapshotGroup([v0!.name, 'no-such-volume'], { label: 'bad' }),
          NotFoundError,
        );
        await assert.rejects(array.snapshotGroup([], { label: 'bad' }), UsageError);
        await assert.rejects(array.snapshotGroup([v0!.name], { label: 'bad/label' }), UsageError);
        await assert.rejects(array.snapshotGroup([v0!.name], { label: '' }), UsageError);
        assert.equal((await array.listSnapshots()).length, count, 'refused snapshots leave nothing');
      }));

    test('snapshots are listed oldest first and deletion is idempotent', (t) =>
      withArray(t, async ({ array, root }, [v0]) => {
        await writeFile(join(v0!.path, 'f'), 'x');
        const a = await array.snapshotGroup([v0!.name], { label: 'first' });
        const b = await array.snapshotGroup([v0!.name], { label: 'second' });
        const listed = await array.listSnapshots();
        assert.deepEqual(
          listed.map((s) => [s.id, s.label, s.complete]),
          [
            [a.id, 'first', true],
            [b.id, 'second', true],
          ],
        );
        await array.deleteSnapshot(a.id);
        assert.deepEqual(
          (await array.listSnapshots()).map((s) => s.id),
          [b.id],
        );
        await array.deleteSnapshot(a.id);
        await array.deleteSnapshot('never-was--20200101T000000-abcd');
        await array.deleteSnapshot('../../etc');
        await array.deleteSnapshot(b.id);
        assert.deepEqual(await array.listSnapshots(), []);
        assert.deepEqual(await readdir(layout.snapshots(root)), [], 'nothing left on disk');
        assert.equal(await readFile(join(v0!.path, 'f'), 'utf8'), 'x', 'the volume is untouched');
      }));

    test('an interrupted snapshot is listed incomplete, never used, and deletable', (t) =>
      withArray(t, async ({ array, root }, [v0]) => {
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
        await assert.rejects(array.cloneSnapshot(halfId, { label: 'c' }), NotFoundError);
        await array.deleteSnapshot(snap.id);
        await array.deleteSnapshot(halfId);
        assert.deepEqual(await array.listSnapshots(), []);
        assert.deepEqual(await readdir(layout.snapshots(root)), []);
      }));

    test('a failed or aborted snapshot leaves nothing complete behind', (t) =>
      withArray(t, async ({ array }, [v0]) => {
        await writeFile(join(v0!.path, 'big.bin'), randomBytes(4 * MiB));
        await writeFile(join(v0!.path, 'other.bin'), randomBytes(4 * MiB));
        const aborted = new AbortController();
        aborted.abort();
        await assert.rejects(
          array.snapshotGroup([v0!.name], { label: 'pre-aborted', signal: aborted.signal }),
        );

        // Abort from the first progress report: copying drivers stop midway; others may finish first.
        const midway = new AbortController();
        const outcome = await array
          .snapshotGroup([v0!.name], {
            label: 'midway',
            signal: midway.signal,
            onProgress: () => midway.abort(),
          })
          .then(
            () => 'done',
            () => 'failed',
          );
        const listed = await array.listSnapshots();
        assert.equal(
          listed.filter((s) => s.label === 'pre-aborted').length,
          0,
          'an aborted snapshot leaves no directory',
        );
        const mid = listed.filter((s) => s.label === 'midway');
        if (outcome === 'failed') assert.equal(mid.length, 0, 'an aborted snapshot leaves no directory');
        else assert.ok(mid.length === 1 && mid[0]!.complete);
        if (!expectations.instantClone)
          assert.equal(outcome, 'failed', 'a copying driver honours the signal');
      }));

    test('a clone is writable and changes to it reach neither the snapshot nor the volume', (t) =>
      withArray(t, async ({ array }, [v0, v1]) => {
        await mkdir(join(v0!.path, 'vm'));
        await writeFile(join(v0!.path, 'vm/disk.vmdk'), randomBytes(3 * MiB));
        await writeFile(join(v1!.path, 'other'), 'v1');
        const volumeBefore = await treeDigest(v0!.path);
        const snap = await array.snapshotGroup([v0!.name, v1!.name], { label: 'for-clone' });
        const snapPath = await array.snapshotVolumePath(snap.id, v0!.name);
        const clone = await array.cloneSnapshot(snap.id, { label: 'restore-1' });
        assert.equal(clone.snapshotId, snap.id);
        assert.equal(clone.label, 'restore-1');
        assert.deepEqual(clone.volumes, [v0!.name, v1!.name]);
        const clonePath = join(clone.path, v0!.name);
        assert.deepEqual(await treeDigest(clonePath), volumeBefore);
        assert.equal(await readFile(join(clone.path, v1!.name, 'other'), 'utf8'), 'v1');

        await writeFile(join(clonePath, 'vm/disk.vmdk'), 'rewritten in the clone');
        await writeFile(join(clonePath, 'vm/new-file'), 'new');
        await mkdir(join(clonePath, 'newdir'));
        assert.deepEqual(await treeDigest(snapPath), volumeBefore);
        assert.deepEqual(await treeDigest(v0!.path), volumeBefore);

        assert.deepEqual(
          (await array.listClones()).map((c) => [c.id, c.snapshotId, c.path]),
          [[clone.id, snap.id, clone.path]],
        );
        await assert.rejects(
          array.cloneSnapshot('none--20200101T000000-abcd', { label: 'x' }),
          NotFoundError,
        );
        await array.deleteClone(clone.id);
        await array.deleteClone(clone.id);
        assert.deepEqual(await array.listClones(), []);
        await assert.rejects(stat(clone.path), { code: 'ENOENT' });
        assert.deepEqual(await treeDigest(snapPath), volumeBefore, 'deleting a clone leaves its snapshot');
      }));

    test('restoreFile gives identical bytes and refuses to overwrite', (t) =>
      withArray(t, async ({ array }, [v0, v1]) => {
        await mkdir(join(v0!.path, 'vm'));
        const data = randomBytes(6 * MiB + 123);
        await writeFile(join(v0!.path, 'vm/disk-flat.vmdk'), data);
        const snap = await array.snapshotGroup([v0!.name], { label: 'restore-src' });
        await writeFile(join(v0!.path, 'vm/disk-flat.vmdk'), 'overwritten after the snapshot');

        const target = join(v1!.path, 'restored-flat.vmdk');
        const progress: number[] = [];
        const result = await array.restoreFile(snap.id, v0!.name, 'vm/disk-flat.vmdk', target, {
          onProgress: (d) => progress.push(d),
        });
        assert.deepEqual(result, { cloned: expectations.instantClone, bytes: data.length });
        assert.ok((await readFile(target)).equals(data));
        assert.notEqual((await stat(target)).mode & 0o200, 0, 'the restored file is writable by its owner');
        if (!expectations.instantClone) assert.equal(progress.at(-1), data.length);
        // The restored file is independent of the snapshot.
        await writeFile(target, 'changed');
        const snapFile = join(await array.snapshotVolumePath(snap.id, v0!.name), 'vm/disk-flat.vmdk');
        assert.ok((await readFile(snapFile)).equals(data));

        await assert.rejects(
          array.restoreFile(snap.id, v0!.name, 'vm/disk-flat.vmdk', target),
          ConflictError,
        );
        assert.equal(await readFile(target, 'utf8'), 'changed', 'a refused restore leaves the target alone');
        await assert.rejects(
          array.restoreFile(snap.id, v0!.name, 'vm/missing', join(v1!.path, 'm')),
          NotFoundError,
        );
        await assert.rejects(
          array.restoreFile(snap.id, v0!.name, '../../array.json', join(v1!.path, 'e')),
          UsageError,
        );
        await assert.rejects(
          array.restoreFile('none--20200101T000000-abcd', v0!.name, 'vm/disk-flat.vmdk', join(v1!.path, 'n')),
          NotFoundError,
        );
      }));

    test('restoreFile stays inside the snapshot volume, even through a linked directory', (t) =>
      withArray(t, async ({ array, root }, [v0, v1]) => {
        await mkdir(join(v0!.path, 'vm'));
        await writeFile(join(v0!.path, 'vm/disk'), 'inside');
        // A directory link out of the volume (to the array root) and one that stays inside it.
        await symlink(root, join(v0!.path, 'escape'));
        await symlink('vm', join(v0!.path, 'alias'));
        const snap = await array.snapshotGroup([v0!.name], { label: 'links' });
        const target = join(v1!.path, 'out');
        await assert.rejects(
          array.restoreFile(snap.id, v0!.name, 'escape/array.json', target),
          (err: unknown) => err instanceof UsageError && err.code === 'ARRAY_INVALID_PATH',
        );
        await assert.rejects(lstat(target), { code: 'ENOENT' }, 'nothing was restored');
        await array.restoreFile(snap.id, v0!.name, 'alias/disk', target);
        assert.equal(await readFile(target, 'utf8'), 'inside');
        // The last component must be a file itself, not a link to one.
        await assert.rejects(
          array.restoreFile(snap.id, v0!.name, 'alias', join(v1!.path, 'x')),
          NotFoundError,
        );
      }));

    test('restoreFile refuses a target outside the array pool', (t) =>
      withArray(t, async ({ array, root }, [v0, v1]) => {
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
          // A real directory inside a volume is fine.
          await mkdir(join(v1!.path, 'dir'));
          await array.restoreFile(snap.id, v0!.name, 'disk', join(v1!.path, 'dir', 'x'));
          assert.equal(await readFile(join(v1!.path, 'dir', 'x'), 'utf8'), 'data');
        } finally {
          await rm(outside, { recursive: true, force: true });
        }
      }));

    test('a group snapshot is one point in time across volumes', { timeout: 120_000 }, (t) =>
      withArray(t, async ({ array }, [vA, vB]) => {
        const fileA = join(vA!.path, 'counter');
        const fileB = join(vB!.path, 'counter');
        const writer = await startCounterWriter(fileA, fileB);
        const pairs: [number, number][] = [];
        try {
          for (let i = 0; i < 12; i++) {
            const snap = await array.snapshotGroup([vA!.name, vB!.name], { label: `pit-${i}` });
            const a = await readCounter(join(await array.snapshotVolumePath(snap.id, vA!.name), 'counter'));
            const b = await readCounter(join(await array.snapshotVolumePath(snap.id, vB!.name), 'counter'));
            pairs.push([a, b]);
            await array.deleteSnapshot(snap.id);
          }
        } finally {
          writer.kill('SIGKILL');
          await once(writer, 'exit');
        }
        // The writer writes A then B (each made durable), so at any one instant B <= A <= B + 1. A driver that
        // captures A before B sees B run ahead of A under load.
        const torn = pairs.filter(([a, b]) => !(b <= a && a <= b + 1));
        assert.ok(new Set(pairs.map(([a]) => a)).size > 1, 'the writer kept writing during the snapshots');
        if (expectations.atomicGroups) assert.deepEqual(torn, [], `torn pairs in ${JSON.stringify(pairs)}`);
        else
          t.diagnostic(`sequential driver: ${torn.length} of ${pairs.length} snapshots torn across volumes`);
      }),
    );
  });
}

/** Nested directories, a 32 MiB random file, an empty file, a sparse file with a hole, a symbolic link. */
async function populate(dir: string): Promise<void> {
  await mkdir(join(dir, 'a/b/c'), { recursive: true });
  await writeFile(join(dir, 'a/b/c/deep.txt'), 'deep');
  await writeFile(join(dir, 'a/top.txt'), 'top');
  await writeFile(join(dir, 'big.bin'), randomBytes(32 * MiB));
  await writeFile(join(dir, 'empty'), '');
  const fh = await open(join(dir, 'sparse.bin'), 'w');
  await fh.write(randomBytes(4096), 0, 4096, 0);
  await fh.write(randomBytes(4096), 0, 4096, 9 * MiB);
  await fh.truncate(12 * MiB);
  await fh.close();
  await symlink('a/top.txt', join(dir, 'link'));
}

/** Path -> kind and content hash of everything under `dir`, for equality checks. */
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

const COUNTER_WIDTH = 12;

async function readCounter(path: string): Promise<number> {
  const text = await readFile(path, 'utf8');
  assert.match(text, /^\d{12}$/, `counter file ${path} holds ${JSON.stringify(text)}`);
  return Number(text);
}

/**
 * A separate process that writes n to A, makes it durable, then n to B, durably, for n = 1, 2, ...
 * Durable writes matter: a file system is free to write back unsynced pages in any order, so without them
 * even a crash-consistent snapshot could show B ahead of A. Resolves once both files hold a counter.
 */
async function startCounterWriter(fileA: string, fileB: string): Promise<ChildProcess> {
  const zero = '0'.repeat(COUNTER_WIDTH);
  await writeFile(fileA, zero);
  await writeFile(fileB, zero);
  const script = `
    const fs = require('node:fs');
    const a = fs.openSync(process.argv[1], 'r+');
    const b = fs.openSync(process.argv[2], 'r+');
    const put = (fd, n) => { fs.writeSync(fd, String(n).padStart(${COUNTER_WIDTH}, '0'), 0); fs.fdatasyncSync(fd); };
    put(a, 1); put(b, 1);
    process.stdout.write('ready\\n');
    for (let n = 2; ; n++) { put(a, n); put(b, n); }
  `;
  const child = spawn(process.execPath, ['-e', script, fileA, fileB], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const [line] = (await Promise.race([
    once(child.stdout!, 'data'),
    once(child, 'exit').then(() => {
      throw new Error('the counter writer exited before it was ready');
    }),
  ])) as [Buffer];
  assert.equal(line.toString().trim(), 'ready');
  return child;
}
