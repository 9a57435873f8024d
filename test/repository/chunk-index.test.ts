import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { describe, it } from 'node:test';
import { ChunkIdSet, ChunkIndex, type PackEntry } from '../../src/repository/index-file.js';

const id = (n: number) => createHash('sha256').update(`chunk-${n}`).digest('hex');

function pack(name: string, ids: number[], base = 0): PackEntry {
  return {
    id: createHash('sha256').update(name).digest('hex'),
    size: 1000 * ids.length,
    created: '2026-12-02T00:00:00.000Z',
    blobs: ids.map((n, k) => ({ id: id(n), offset: base + 1000 * k, length: 1000, rawLength: 65536 })),
  };
}

describe('ChunkIndex (compact table)', () => {
  it('finds every chunk through growth; duplicates across packs kept, the first found first', () => {
    const index = new ChunkIndex();
    const a = pack(
      'a',
      Array.from({ length: 50_000 }, (_, i) => i),
    );
    const b = pack(
      'b',
      Array.from({ length: 50_000 }, (_, i) => i + 40_000),
    );
    index.add({ version: 1, created: '', packs: [a, b] });
    index.addPack(a); // named by a second index file: not added twice
    assert.equal(index.packCount, 2);
    assert.equal(index.chunkCount, 90_000);
    for (const n of [0, 1, 39_999, 40_000, 49_999, 50_000, 89_999]) {
      const loc = index.get(id(n));
      assert.ok(loc, `chunk ${n}`);
      assert.equal(loc.pack, n < 50_000 ? a.id : b.id);
      assert.equal(loc.offset, n < 50_000 ? 1000 * n : 1000 * (n - 40_000));
      assert.equal(loc.rawLength, 65536);
    }
    assert.equal(index.has(id(90_000)), false);
    assert.equal(index.has('zero'), false);
    assert.equal(index.get('not hex at all'), undefined);
    const entries = index.packEntries();
    assert.deepEqual(entries, [a, b], 'every blob of every pack, in offset order');
  });

  it('holds a million chunks in under 100 bytes each', () => {
    const index = new ChunkIndex();
    index.addPack(
      pack(
        'big',
        Array.from({ length: 1 << 20 }, (_, i) => i),
      ),
    );
    assert.equal(index.chunkCount, 1 << 20);
    assert.ok(
      index.tableBytes / (1 << 20) < 100,
      `${(index.tableBytes / (1 << 20)).toFixed(1)} bytes a chunk`,
    );
    assert.ok(index.has(id(123_456)));
  });

  it('ChunkIdSet remembers ids', () => {
    const set = new ChunkIdSet();
    for (let i = 0; i < 5000; i++) set.add(id(i));
    assert.ok(set.has(id(4999)));
    assert.ok(!set.has(id(5000)));
  });
});
