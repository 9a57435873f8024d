import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { describe, type TestContext, test } from 'node:test';
import { setImmediate as nextTurn } from 'node:timers/promises';
import type { ArrayVolume, ByteRange, StorageArray } from '../../src/arrays/types.js';
import { ConflictError, NotFoundError, UsageError } from '../../src/errors.js';
import { requireCapability } from '../helpers/require.js';

/**
 * What a host does to the files behind an array's exports (a volume's `path`, a clone's `volumeExports`):
 * on the fs array, plain file-system calls; on the memory array, its host methods. The suite touches data
 * only through this and the StorageArray interface, so it assumes no layout a block array could not have.
 */
export interface HostFiles {
  /** Writes a file (parents made): all of it without `offset`, else in place at `offset`; durable on return. */
  write(path: string, data: Uint8Array | string, offset?: number): Promise<void>;
  truncate(path: string, size: number): Promise<void>;
  read(path: string): Promise<Buffer>;
  mkdir(path: string): Promise<void>;
  /** A file or a directory tree. */
  remove(path: string): Promise<void>;
  /** Files and directories in a directory (nothing else), sorted by name. */
  list(path: string): Promise<{ name: string; type: 'file' | 'directory' }[]>;
  exists(path: string): Promise<boolean>;
}

/** A writer of n to file A then n to file B (each durable), n = 1, 2, ..., until stopped. */
export interface CounterWriter {
  stop(): Promise<void>;
}

/** What a factory returns: an array with at least three empty volumes, host access to it, and its removal. */
export interface ArrayUnderTest {
  array: StorageArray;
  host: HostFiles;
  /** Whatever the array still keeps for snapshots and clones (entries on disk, in memory): none once deleted. */
  leftovers(): Promise<string[]>;
  /** Starts a counter writer on two files (created holding counter 0); resolves once both hold 1. */
  startCounterWriter(fileA: string, fileB: string): Promise<CounterWriter>;
  cleanup(): Promise<void>;
}

export interface ConformanceExpectations {
  atomicGroups: boolean;
  instantClone: boolean;
  /** Whether the array has the changedRanges capability (declared, so a missing one is never silently skipped). */
  changedRanges: boolean;
  /** When the factory needs something this machine may lack (root, btrfs): checked before every test. */
  capability?: () => Promise<{ ok: boolean; reason: string }>;
}

const MiB = 1024 * 1024;
export const COUNTER_WIDTH = 12;

/** `path` joined with `/`-separated parts (export paths are host paths, always `/`-separated). */
export function at(path: string, ...parts: string[]): string {
  return [path, ...parts].join('/');
}

/** Runs `body` on a fresh array from `factory` (skipped or failed per `capability`), removed afterwards. */
export async function withArray<T extends ArrayUnderTest>(
  t: TestContext,
  factory: () => Promise<T>,
  capability: (() => Promise<{ ok: boolean; reason: string }>) | undefined,
  body: (a: T, vols: ArrayVolume[]) => Promise<void>,
): Promise<void> {
  if (capability) {
    const cap = await capability();
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
}

/**
 * The suite every StorageArray implementation passes (restic's backend suite, kysely's adapter loop): an
 * adapter's test file only supplies a factory and declares its guarantees. Each test gets a fresh array.
 */
export function arrayConformance(
  name: string,
  factory: () => Promise<ArrayUnderTest>,
  expectations: ConformanceExpectations,
): void {
  const use = (t: TestContext, body: (a: ArrayUnderTest, vols: ArrayVolume[]) => Promise<void>) =>
    withArray(t, factory, expectations.capability, body);

  describe(`StorageArray conformance: ${name}`, () => {
    test('declares its guarantees', (t) =>
      use(t, async ({ array }) => {
        assert.equal(array.atomicGroups, expectations.atomicGroups);
        assert.equal(array.instantClone, expectations.instantClone);
        assert.equal(typeof array.changedRanges === 'function', expectations.changedRanges);
        assert.ok(array.name.length > 0);
      }));

    test('lists volumes with distinct LUNs, and maps their export paths back to them', (t) =>
      use(t, async ({ array }, vols) => {
        assert.equal(new Set(vols.map((v) => v.name)).size, vols.length);
        assert.equal(new Set(vols.map((v) => v.lun)).size, vols.length);
        for (const v of vols) {
          assert.match(v.lun, /^naa\.6[0-9a-f]{31}$/);
          assert.ok(v.path.startsWith('/'), `${v.path} is absolute`);
          assert.deepEqual(await array.resolveExport(v.path), {
            kind: 'volume',
            volume: v.name,
            subPath: '',
          });
          assert.deepEqual(await array.resolveExport(at(v.path, 'vm', 'disk.vmdk')), {
            kind: 'volume',
            volume: v.name,
            subPath: 'vm/disk.vmdk',
          });
        }
        assert.equal(await array.resolveExport('/nowhere-near/the-array'), undefined);
        assert.equal(await array.resolveExport('relative/path'), undefined);
        assert.equal(await array.resolveExport(at(vols[0]!.path, '..', 'not-a-volume', 'x')), undefined);
      }));

    test('a snapshot holds the volume as it was, and later changes do not reach it', (t) =>
      use(t, async ({ array, host }, [v0]) => {
        await populate(host, v0!.path);
        const before = await hostDigest(host, v0!.path);
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
        assert.deepEqual(await snapshotDigest(array, snap.id, v0!.name), before);

        // Change the live volume every way: overwrite, write in place, append, delete, add, remove a directory.
        await host.write(at(v0!.path, 'a/b/c/deep.txt'), 'changed');
        await host.write(at(v0!.path, 'big.bin'), Buffer.alloc(4096, 7), 5 * MiB);
        await host.write(at(v0!.path, 'big.bin'), 'x', 32 * MiB);
        await host.remove(at(v0!.path, 'empty'));
        await host.write(at(v0!.path, 'new.txt'), 'new');
        await host.remove(at(v0!.path, 'a/b'));
        assert.notDeepEqual(await hostDigest(host, v0!.path), before);
        assert.deepEqual(await snapshotDigest(array, snap.id, v0!.name), before);
      }));

    test('statFile, listFiles and readFile give the files of a snapshot, whole or in ranges', (t) =>
      use(t, async ({ array, host }, [v0, v1]) => {
        const data = randomBytes(3 * MiB + 777);
        await host.write(at(v0!.path, 'vm/disk-flat.vmdk'), data);
        await host.write(at(v0!.path, 'vm/disk.vmdk'), 'descriptor');
        await host.write(at(v0!.path, 'vm/zero'), '');
        await host.mkdir(at(v0!.path, 'vm/sub'));
        await host.write(at(v0!.path, 'top'), 't');
        const snap = await array.snapshotGroup([v0!.name], { label: 'reads' });
        await host.write(at(v0!.path, 'vm/disk-flat.vmdk'), 'changed after the snapshot');

        assert.deepEqual(await array.statFile(snap.id, v0!.name, 'vm/disk-flat.vmdk'), { size: data.length });
        assert.deepEqual(await array.statFile(snap.id, v0!.name, 'vm/zero'), { size: 0 });
        assert.deepEqual(await array.listFiles(snap.id, v0!.name, ''), [
          { name: 'top', type: 'file', size: 1 },
          { name: 'vm', type: 'directory', size: 0 },
        ]);
        assert.deepEqual(await array.listFiles(snap.id, v0!.name, 'vm'), [
          { name: 'disk-flat.vmdk', type: 'file', size: data.length },
          { name: 'disk.vmdk', type: 'file', size: 10 },
          { name: 'sub', type: 'directory', size: 0 },
          { name: 'zero', type: 'file', size: 0 },
        ]);
        assert.deepEqual(await array.listFiles(snap.id, v0!.name, 'vm/sub'), []);

        const read = (options?: { offset?: number; length?: number }) =>
          readAll(array, snap.id, v0!.name, 'vm/disk-flat.vmdk', options);
        assert.ok((await read()).equals(data));
        assert.ok((await read({ offset: 1000, length: 5000 })).equals(data.subarray(1000, 6000)));
        assert.ok((await read({ offset: 2 * MiB + 3 })).equals(data.subarray(2 * MiB + 3)));
        assert.ok((await read({ length: 17 })).equals(data.subarray(0, 17)));
        assert.ok((await read({ offset: data.length - 10, length: 100 })).equals(data.subarray(-10)));
        assert.equal((await read({ offset: data.length + 5 })).length, 0);
        assert.equal((await read({ offset: 10, length: 0 })).length, 0);
        assert.equal((await readAll(array, snap.id, v0!.name, 'vm/zero')).length, 0);
        for (const bad of [{ offset: -1 }, { length: -5 }, { offset: 1.5 }]) {
          await assert.rejects(
            array.readFile(snap.id, v0!.name, 'vm/disk-flat.vmdk', bad),
            (err: unknown) => err instanceof UsageError && err.code === 'ARRAY_INVALID_RANGE',
            JSON.stringify(bad),
          );
        }
        const aborted = new AbortController();
        const stream = await array.readFile(snap.id, v0!.name, 'vm/disk-flat.vmdk', {
          signal: aborted.signal,
        });
        const reason = new Error('stop reading');
        aborted.abort(reason);
        await assert.rejects(async () => {
          for await (const _ of stream) {
            // reading until the abort lands
          }
        });

        const unknown = 'none--20200101T000000-abcd';
        const notFound = (code: string) => (err: unknown) =>
          err instanceof NotFoundError && err.code === code;
        const calls: [string, (v: string, p: string, s?: string) => Promise<unknown>][] = [
          ['statFile', (v, p, s = snap.id) => array.statFile(s, v, p)],
          ['listFiles', (v, p, s = snap.id) => array.listFiles(s, v, p)],
          ['readFile', (v, p, s = snap.id) => array.readFile(s, v, p)],
        ];
        for (const [what, call] of calls) {
          const file = what === 'listFiles' ? 'vm' : 'vm/disk.vmdk';
          await assert.rejects(call(v0!.name, file, unknown), notFound('SNAPSHOT_NOT_FOUND'), what);
          await assert.rejects(call(v1!.name, file), notFound('VOLUME_NOT_FOUND'), what);
          await assert.rejects(call('no-such-volume', file), notFound('VOLUME_NOT_FOUND'), what);
          await assert.rejects(call(v0!.name, 'vm/missing'), notFound('FILE_NOT_FOUND'), what);
          await assert.rejects(
            call(v0!.name, what === 'listFiles' ? 'top' : 'vm/sub'),
            notFound('FILE_NOT_FOUND'),
            what,
          );
          for (const escaping of ['../x', 'vm/../../x', '/etc/passwd', 'vm/..']) {
            await assert.rejects(
              call(v0!.name, escaping),
              (err: unknown) => err instanceof UsageError && err.code === 'ARRAY_INVALID_PATH',
              `${what} ${escaping}`,
            );
          }
        }
      }));

    test('a group of two of three volumes holds exactly those two', (t) =>
      use(t, async ({ array, host }, [v0, v1, v2]) => {
        for (const v of [v0!, v1!, v2!]) await host.write(at(v.path, 'who'), v.name);
        const snap = await array.snapshotGroup([v0!.name, v2!.name], { label: 'group' });
        assert.deepEqual(snap.volumes, [v0!.name, v2!.name]);
        for (const v of [v0!, v2!]) {
          assert.equal((await readAll(array, snap.id, v.name, 'who')).toString(), v.name);
        }
        await assert.rejects(array.statFile(snap.id, v1!.name, 'who'), NotFoundError);
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
        await assert.rejects(array.snapshotGroup([v0!.name, v0!.name], { label: 'bad' }), UsageError);
        await assert.rejects(array.snapshotGroup([v0!.name], { label: 'bad/label' }), UsageError);
        await assert.rejects(array.snapshotGroup([v0!.name], { label: '' }), UsageError);
        assert.equal((await array.listSnapshots()).length, count, 'refused snapshots leave nothing');
      }));

    test('snapshots are listed oldest first and deletion is idempotent', (t) =>
      use(t, async ({ array, host, leftovers }, [v0]) => {
        await host.write(at(v0!.path, 'f'), 'x');
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
        await assert.rejects(array.statFile(a.id, v0!.name, 'f'), NotFoundError);
        await array.deleteSnapshot(a.id);
        await array.deleteSnapshot('never-was--20200101T000000-abcd');
        await array.deleteSnapshot('../../etc');
        await array.deleteSnapshot(b.id);
        assert.deepEqual(await array.listSnapshots(), []);
        assert.deepEqual(await leftovers(), [], 'nothing left');
        assert.equal((await host.read(at(v0!.path, 'f'))).toString(), 'x', 'the volume is untouched');
      }));

    test('a failed or aborted snapshot leaves nothing complete behind', (t) =>
      use(t, async ({ array, host }, [v0]) => {
        await host.write(at(v0!.path, 'big.bin'), randomBytes(4 * MiB));
        await host.write(at(v0!.path, 'other.bin'), randomBytes(4 * MiB));
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
          'an aborted snapshot leaves nothing',
        );
        const mid = listed.filter((s) => s.label === 'midway');
        if (outcome === 'failed') assert.equal(mid.length, 0, 'an aborted snapshot leaves nothing');
        else assert.ok(mid.length === 1 && mid[0]!.complete);
        if (!expectations.instantClone)
          assert.equal(outcome, 'failed', 'a copying driver honours the signal');
      }));

    test('a clone is writable and changes to it reach neither the snapshot nor the volume', (t) =>
      use(t, async ({ array, host }, [v0, v1]) => {
        await host.write(at(v0!.path, 'vm/disk.vmdk'), randomBytes(3 * MiB));
        await host.write(at(v1!.path, 'other'), 'v1');
        const volumeBefore = await hostDigest(host, v0!.path);
        const snap = await array.snapshotGroup([v0!.name, v1!.name], { label: 'for-clone' });
        const clone = await array.cloneSnapshot(snap.id, { label: 'restore-1' });
        assert.equal(clone.snapshotId, snap.id);
        assert.equal(clone.label, 'restore-1');
        assert.deepEqual(clone.volumes, [v0!.name, v1!.name]);
        assert.deepEqual(Object.keys(clone.volumeExports).sort(), [v0!.name, v1!.name].sort());
        const cloned = clone.volumeExports[v0!.name]!;
        assert.deepEqual(await hostDigest(host, cloned), volumeBefore);
        assert.equal((await host.read(at(clone.volumeExports[v1!.name]!, 'other'))).toString(), 'v1');
        const where = { kind: 'clone', cloneId: clone.id, volume: v0!.name, subPath: 'vm/disk.vmdk' };
        assert.deepEqual(await array.resolveExport(at(cloned, 'vm/disk.vmdk')), where);
        for (const v of [v0!, v1!]) assert.notEqual(clone.volumeExports[v.name], v.path);

        await host.write(at(cloned, 'vm/disk.vmdk'), 'rewritten in the clone');
        await host.write(at(cloned, 'vm/new-file'), 'new');
        await host.mkdir(at(cloned, 'newdir'));
        assert.equal((await host.read(at(cloned, 'vm/new-file'))).toString(), 'new');
        assert.deepEqual(await snapshotDigest(array, snap.id, v0!.name), volumeBefore);
        assert.deepEqual(await hostDigest(host, v0!.path), volumeBefore);

        assert.deepEqual(
          (await array.listClones()).map((c) => [c.id, c.snapshotId, c.volumeExports]),
          [[clone.id, snap.id, clone.volumeExports]],
        );
        await assert.rejects(
          array.cloneSnapshot('none--20200101T000000-abcd', { label: 'x' }),
          NotFoundError,
        );
        await array.deleteClone(clone.id);
        await array.deleteClone(clone.id);
        assert.deepEqual(await array.listClones(), []);
        assert.equal(await host.exists(cloned), false);
        // A datastore left pointing into a deleted clone is still recognised as one.
        assert.deepEqual(await array.resolveExport(at(cloned, 'vm/disk.vmdk')), where);
        assert.deepEqual(
          await snapshotDigest(array, snap.id, v0!.name),
          volumeBefore,
          'deleting a clone leaves its snapshot',
        );
      }));

    test('restoreFile gives identical bytes and refuses to overwrite', (t) =>
      use(t, async ({ array, host }, [v0, v1]) => {
        const data = randomBytes(6 * MiB + 123);
        await host.write(at(v0!.path, 'vm/disk-flat.vmdk'), data);
        const snap = await array.snapshotGroup([v0!.name], { label: 'restore-src' });
        await host.write(at(v0!.path, 'vm/disk-flat.vmdk'), 'overwritten after the snapshot');

        const target = at(v1!.path, 'restored-flat.vmdk');
        const progress: number[] = [];
        const result = await array.restoreFile(snap.id, v0!.name, 'vm/disk-flat.vmdk', target, {
          onProgress: (d) => progress.push(d),
        });
        assert.deepEqual(result, { cloned: expectations.instantClone, bytes: data.length });
        assert.ok((await host.read(target)).equals(data));
        if (!expectations.instantClone) assert.equal(progress.at(-1), data.length);
        // The restored file is independent of the snapshot.
        await host.write(target, 'changed');
        assert.ok((await readAll(array, snap.id, v0!.name, 'vm/disk-flat.vmdk')).equals(data));

        await assert.rejects(
          array.restoreFile(snap.id, v0!.name, 'vm/disk-flat.vmdk', target),
          ConflictError,
        );
        assert.equal(
          (await host.read(target)).toString(),
          'changed',
          'a refused restore leaves the target alone',
        );
        await assert.rejects(
          array.restoreFile(snap.id, v0!.name, 'vm/missing', at(v1!.path, 'm')),
          NotFoundError,
        );
        await assert.rejects(
          array.restoreFile(snap.id, v0!.name, '../../array.json', at(v1!.path, 'e')),
          UsageError,
        );
        await assert.rejects(
          array.restoreFile('none--20200101T000000-abcd', v0!.name, 'vm/disk-flat.vmdk', at(v1!.path, 'n')),
          NotFoundError,
        );
        assert.equal(await host.exists(at(v1!.path, 'e')), false);
      }));

    test('restoreFile refuses a target outside the array volumes', (t) =>
      use(t, async ({ array, host }, [v0, v1]) => {
        await host.write(at(v0!.path, 'disk'), 'data');
        const snap = await array.snapshotGroup([v0!.name], { label: 'targets' });
        const clone = await array.cloneSnapshot(snap.id, { label: 'not-a-target' });
        const targets = [
          `/nowhere-near-the-array-${randomBytes(4).toString('hex')}/x`,
          at(v1!.path, '..', 'x'),
          at(v1!.path, 'missing-dir', 'x'),
          'relative/x',
          at(clone.volumeExports[v0!.name]!, 'x'),
        ];
        for (const target of targets) {
          await assert.rejects(
            array.restoreFile(snap.id, v0!.name, 'disk', target),
            (err: unknown) => err instanceof UsageError && err.code === 'ARRAY_INVALID_PATH',
            target,
          );
        }
        assert.equal(await host.exists(at(clone.volumeExports[v0!.name]!, 'x')), false);
        await host.mkdir(at(v1!.path, 'dir'));
        await array.restoreFile(snap.id, v0!.name, 'disk', at(v1!.path, 'dir', 'x'));
        assert.equal((await host.read(at(v1!.path, 'dir', 'x'))).toString(), 'data');
      }));

    test('changedRanges covers every changed byte, stays small, and gives the same bytes as a full read', (t) =>
      use(t, async ({ array, host }, [v0]) => {
        if (!expectations.changedRanges) {
          assert.equal(array.changedRanges, undefined);
          return;
        }
        const changedRanges = array.changedRanges!.bind(array);
        const size = 16 * MiB;
        const block = 4096;
        const file = at(v0!.path, 'vm/disk-flat.vmdk');
        await host.write(file, randomBytes(size));
        await host.write(at(v0!.path, 'vm/same'), randomBytes(MiB));
        const base = await array.snapshotGroup([v0!.name], { label: 'base' });

        // 1% of the file rewritten in scattered 4 KiB blocks, and growth past the old end.
        const blocks = size / block;
        const rewritten = new Set<number>();
        while (rewritten.size < Math.ceil(blocks / 100)) rewritten.add(Math.floor(Math.random() * blocks));
        for (const b of rewritten) await host.write(file, randomBytes(block), b * block);
        const grown = 10_000;
        await host.write(file, randomBytes(grown), size);
        await host.write(at(v0!.path, 'vm/added-later'), 'new');
        const next = await array.snapshotGroup([v0!.name], { label: 'next' });

        const ranges = await changedRanges(base.id, next.id, v0!.name, 'vm/disk-flat.vmdk');
        assert.ok(ranges !== undefined, 'the extents are known');
        assertSortedDisjoint(ranges, size + grown);
        const covered = (from: number, to: number) =>
          ranges.some((r) => r.offset <= from && to <= r.offset + r.length);
        for (const b of rewritten) assert.ok(covered(b * block, (b + 1) * block), `block ${b} is reported`);
        assert.ok(covered(size, size + grown), 'the growth is reported');
        const total = ranges.reduce((n, r) => n + r.length, 0);
        assert.ok(total < (size + grown) / 10, `${total} bytes reported for ${rewritten.size} blocks`);
        t.diagnostic(
          `${ranges.length} ranges, ${total} bytes for ${rewritten.size} blocks of ${block} and ${grown} grown`,
        );

        // The proof: the base's bytes with the changed ranges of the new snapshot laid over them are the new file.
        const full = await readAll(array, next.id, v0!.name, 'vm/disk-flat.vmdk');
        const rebuilt = Buffer.alloc(full.length);
        (await readAll(array, base.id, v0!.name, 'vm/disk-flat.vmdk')).copy(rebuilt);
        for (const r of ranges) {
          (await readAll(array, next.id, v0!.name, 'vm/disk-flat.vmdk', r)).copy(rebuilt, r.offset);
        }
        assert.ok(rebuilt.equals(full), 'base + changed ranges = the new snapshot');

        assert.deepEqual(await changedRanges(base.id, next.id, v0!.name, 'vm/same'), []);
        assert.equal(await changedRanges(base.id, next.id, v0!.name, 'vm/added-later'), undefined);
        await assert.rejects(
          changedRanges('none--20200101T000000-abcd', next.id, v0!.name, 'vm/same'),
          NotFoundError,
        );
        await assert.rejects(changedRanges(base.id, next.id, v0!.name, 'vm/missing'), NotFoundError);
        await assert.rejects(changedRanges(base.id, next.id, v0!.name, '../vm/same'), UsageError);
      }));

    test('changedRanges of a file that shrank and was rewritten is still a superset', (t) =>
      use(t, async ({ array, host }, [v0]) => {
        if (!expectations.changedRanges) return;
        const file = at(v0!.path, 'f');
        await host.write(file, randomBytes(2 * MiB));
        const base = await array.snapshotGroup([v0!.name], { label: 'base' });
        await host.truncate(file, MiB + 100);
        await host.write(file, randomBytes(300), 5000);
        await host.truncate(file, MiB + 5000);
        const next = await array.snapshotGroup([v0!.name], { label: 'next' });
        const ranges = (await array.changedRanges!(base.id, next.id, v0!.name, 'f'))!;
        assertSortedDisjoint(ranges, MiB + 5000);
        const rebuilt = (await readAll(array, base.id, v0!.name, 'f')).subarray(0, MiB + 5000);
        for (const r of ranges) (await readAll(array, next.id, v0!.name, 'f', r)).copy(rebuilt, r.offset);
        assert.ok(rebuilt.equals(await readAll(array, next.id, v0!.name, 'f')));
      }));

    test('a group snapshot is one point in time across volumes', { timeout: 120_000 }, (t) =>
      use(t, async ({ array, startCounterWriter }, [vA, vB]) => {
        const writer = await startCounterWriter(at(vA!.path, 'counter'), at(vB!.path, 'counter'));
        const pairs: [number, number][] = [];
        try {
          for (let i = 0; i < 12; i++) {
            const snap = await array.snapshotGroup([vA!.name, vB!.name], { label: `pit-${i}` });
            const a = await readCounter(array, snap.id, vA!.name);
            const b = await readCounter(array, snap.id, vB!.name);
            pairs.push([a, b]);
            await array.deleteSnapshot(snap.id);
            await nextTurn();
          }
        } finally {
          await writer.stop();
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

function assertSortedDisjoint(ranges: ByteRange[], size: number): void {
  let end = 0;
  for (const r of ranges) {
    assert.ok(
      Number.isSafeInteger(r.offset) && Number.isSafeInteger(r.length) && r.length > 0,
      JSON.stringify(r),
    );
    assert.ok(r.offset >= end, `ranges sorted and disjoint: ${JSON.stringify(ranges)}`);
    end = r.offset + r.length;
  }
  assert.ok(end <= size, `ranges end at ${end}, within the file's ${size} bytes`);
}

/** A whole file (or a range of it) of a snapshot, through readFile. */
export async function readAll(
  array: StorageArray,
  snapshotId: string,
  volume: string,
  relativePath: string,
  options?: { offset?: number; length?: number },
): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of await array.readFile(snapshotId, volume, relativePath, options)) {
    chunks.push(chunk as Buffer);
  }
  return Buffer.concat(chunks);
}

/** Nested directories, a 32 MiB random file, an empty file, a sparse file with a hole. */
async function populate(host: HostFiles, dir: string): Promise<void> {
  await host.write(at(dir, 'a/b/c/deep.txt'), 'deep');
  await host.write(at(dir, 'a/top.txt'), 'top');
  await host.mkdir(at(dir, 'a/empty-dir'));
  await host.write(at(dir, 'big.bin'), randomBytes(32 * MiB));
  await host.write(at(dir, 'empty'), '');
  await host.write(at(dir, 'sparse.bin'), randomBytes(4096));
  await host.write(at(dir, 'sparse.bin'), randomBytes(4096), 9 * MiB);
  await host.truncate(at(dir, 'sparse.bin'), 12 * MiB);
}

const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');

/** Relative path -> `dir` or `file:size:hash` of everything under `dir`, as the host sees it. */
export async function hostDigest(host: HostFiles, dir: string): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  const walk = async (rel: string) => {
    for (const e of await host.list(rel === '' ? dir : at(dir, rel))) {
      const p = rel === '' ? e.name : `${rel}/${e.name}`;
      if (e.type === 'directory') {
        out[p] = 'dir';
        await walk(p);
      } else {
        const data = await host.read(at(dir, p));
        out[p] = `file:${data.length}:${sha256(data)}`;
      }
    }
  };
  await walk('');
  return out;
}

/** The same digest of a volume in a snapshot, through listFiles and readFile only. */
export async function snapshotDigest(
  array: StorageArray,
  snapshotId: string,
  volume: string,
): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  const walk = async (rel: string) => {
    for (const e of await array.listFiles(snapshotId, volume, rel)) {
      const p = rel === '' ? e.name : `${rel}/${e.name}`;
      if (e.type === 'directory') {
        out[p] = 'dir';
        await walk(p);
      } else {
        const data = await readAll(array, snapshotId, volume, p);
        assert.equal(data.length, e.size, `listed size of ${p}`);
        out[p] = `file:${data.length}:${sha256(data)}`;
      }
    }
  };
  await walk('');
  return out;
}

async function readCounter(array: StorageArray, snapshotId: string, volume: string): Promise<number> {
  const text = (await readAll(array, snapshotId, volume, 'counter')).toString();
  assert.match(text, /^\d{12}$/, `counter in ${volume} of ${snapshotId} holds ${JSON.stringify(text)}`);
  return Number(text);
}
