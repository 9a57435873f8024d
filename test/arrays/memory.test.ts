import assert from 'node:assert/strict';
import { test } from 'node:test';
import { setImmediate as nextTurn } from 'node:timers/promises';
import { MemoryArray, type MemoryArrayOptions } from '../../src/arrays/index.js';
import { NotFoundError, SnapkeeperError, UsageError } from '../../src/errors.js';
import { type ArrayUnderTest, arrayConformance, COUNTER_WIDTH, readAll } from './conformance.js';

const VOLUMES = ['vol-a', 'vol-b', 'vol-c'].map((name, i) => ({
  name,
  lun: `naa.6${String(i + 1).repeat(31)}`,
}));

function memoryArray(options: Partial<MemoryArrayOptions> = {}): MemoryArray {
  return new MemoryArray({ name: 'mem', volumes: VOLUMES, ...options });
}

function makeMemoryArray(options: Partial<MemoryArrayOptions> = {}): () => Promise<ArrayUnderTest> {
  return async () => {
    const array = memoryArray(options);
    return {
      array,
      host: {
        write: async (path, data, offset) => array.writePath(path, data, offset),
        truncate: async (path, size) => array.truncatePath(path, size),
        read: async (path) => array.readPath(path),
        mkdir: async (path) => array.mkdirPath(path),
        remove: async (path) => array.removePath(path),
        list: async (path) => array.listPath(path).map(({ name, type }) => ({ name, type })),
        exists: async (path) => array.statPath(path) !== undefined,
      },
      async leftovers() {
        return [...(await array.listSnapshots()), ...(await array.listClones())].map((x) => x.id);
      },
      async startCounterWriter(fileA, fileB) {
        const put = (file: string, n: number) =>
          array.writePath(file, String(n).padStart(COUNTER_WIDTH, '0'));
        put(fileA, 0);
        put(fileB, 0);
        let stopped = false;
        // In process: A then B, one event-loop turn apart, so a capture between volumes can see them differ.
        const loop = (async () => {
          for (let n = 1; !stopped; n++) {
            put(fileA, n);
            await nextTurn();
            put(fileB, n);
            await nextTurn();
          }
        })();
        put(fileA, 1);
        put(fileB, 1);
        return {
          async stop() {
            stopped = true;
            await loop;
          },
        };
      },
      cleanup: async () => {},
    };
  };
}

arrayConformance('memory (atomic, instant clones)', makeMemoryArray(), {
  atomicGroups: true,
  instantClone: true,
  changedRanges: true,
});

arrayConformance(
  'memory (sequential, copying)',
  makeMemoryArray({ atomicGroups: false, instantClone: false }),
  {
    atomicGroups: false,
    instantClone: false,
    changedRanges: true,
  },
);

test('failNext makes the next call of one method reject once, with the given error or a named one', async () => {
  const array = memoryArray();
  array.writeFile('vol-a', 'vm/disk', 'data');
  const mine = new Error('array offline');
  array.failNext('snapshotGroup', mine);
  array.failNext('snapshotGroup');
  await assert.rejects(array.snapshotGroup(['vol-a'], { label: 'one' }), (err) => err === mine);
  await assert.rejects(
    array.snapshotGroup(['vol-a'], { label: 'two' }),
    (err: unknown) =>
      err instanceof SnapkeeperError &&
      err.code === 'ARRAY_FAULT_INJECTED' &&
      /snapshotGroup/.test(err.message),
  );
  assert.deepEqual(await array.listSnapshots(), [], 'a failed call changes nothing');
  const snap = await array.snapshotGroup(['vol-a'], { label: 'three' });

  for (const method of ['deleteSnapshot', 'cloneSnapshot', 'restoreFile'] as const) array.failNext(method);
  await assert.rejects(array.deleteSnapshot(snap.id), SnapkeeperError);
  await assert.rejects(array.cloneSnapshot(snap.id, { label: 'c' }), SnapkeeperError);
  await assert.rejects(
    array.restoreFile(snap.id, 'vol-a', 'vm/disk', '/memory/mem/vol-b/x'),
    SnapkeeperError,
  );
  assert.equal((await array.listSnapshots()).length, 1);
  assert.deepEqual(await array.listClones(), []);
  assert.equal(array.statPath('/memory/mem/vol-b/x'), undefined);
  // Once only: the same calls now succeed.
  await array.restoreFile(snap.id, 'vol-a', 'vm/disk', '/memory/mem/vol-b/x');
  assert.equal(array.readVolumeFile('vol-b', 'x').toString(), 'data');
  await array.cloneSnapshot(snap.id, { label: 'c' });
  await array.deleteSnapshot(snap.id);
  assert.deepEqual(await array.listSnapshots(), []);
});

test('host methods: write in place, read back, remove, and bad paths refused', () => {
  const array = memoryArray();
  array.writeFile('vol-a', 'dir/f', 'hello world');
  array.writeFile('vol-a', 'dir/f', 'HELLO', 0);
  array.writeFile('vol-a', 'dir/f', '!', 20);
  const text = array.readVolumeFile('vol-a', 'dir/f');
  assert.deepEqual(text, Buffer.concat([Buffer.from('HELLO world'), Buffer.alloc(9), Buffer.from('!')]));
  assert.deepEqual(array.listPath('/memory/mem/vol-a'), [{ name: 'dir', type: 'directory', size: 0 }]);
  array.removeFile('vol-a', 'dir');
  assert.throws(() => array.readVolumeFile('vol-a', 'dir/f'), NotFoundError);
  array.removeFile('vol-a', 'never-was');
  assert.throws(() => array.writeFile('vol-a', '../vol-b/x', 'x'), UsageError);
  assert.throws(() => array.writeFile('no-such', 'x', 'x'), NotFoundError);
  assert.throws(() => array.writePath('/elsewhere/x', 'x'), UsageError);
  assert.throws(() => new MemoryArray({ name: 'bad/name', volumes: [] }), UsageError);
  assert.throws(() => new MemoryArray({ name: 'm', volumes: [VOLUMES[0]!, VOLUMES[0]!] }), UsageError);
});

test('snapshots of a big sparse file share its blocks: cheap to take, and exact changed ranges', async () => {
  const array = memoryArray();
  const GiB = 1024 ** 3;
  array.writeFile('vol-a', 'thin.vmdk', Buffer.alloc(4096, 1), 0);
  array.writeFile('vol-a', 'thin.vmdk', Buffer.alloc(4096, 2), GiB - 4096);
  const snaps = [];
  for (let i = 0; i < 50; i++) snaps.push(await array.snapshotGroup(['vol-a'], { label: `s${i}` }));
  array.writeFile('vol-a', 'thin.vmdk', Buffer.alloc(10, 3), 8192 + 5);
  const last = await array.snapshotGroup(['vol-a'], { label: 'last' });
  assert.deepEqual(await array.statFile(last.id, 'vol-a', 'thin.vmdk'), { size: GiB });
  assert.deepEqual(await array.changedRanges(snaps[0]!.id, last.id, 'vol-a', 'thin.vmdk'), [
    { offset: 8192, length: 4096 },
  ]);
  assert.deepEqual(await array.changedRanges(snaps[0]!.id, snaps[49]!.id, 'vol-a', 'thin.vmdk'), []);
  const tail = await readAll(array, snaps[0]!.id, 'vol-a', 'thin.vmdk', { offset: GiB - 4096 });
  assert.ok(tail.equals(Buffer.alloc(4096, 2)));
});

test('snapshotVolumePath is a virtual path that readPath understands, read-only', async () => {
  const array = memoryArray();
  array.writeFile('vol-a', 'f', 'data');
  const snap = await array.snapshotGroup(['vol-a'], { label: 's' });
  const path = await array.snapshotVolumePath(snap.id, 'vol-a');
  assert.equal(array.readPath(`${path}/f`).toString(), 'data');
  assert.throws(() => array.writePath(`${path}/f`, 'x'), UsageError);
  assert.equal(await array.resolveExport(`${path}/f`), undefined);
});
