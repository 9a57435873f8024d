import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { initRepository, MemoryBackend, type Repository } from '../../src/repository/index.js';
import { chunkSizeFor } from '../../src/repository/writer.js';
import {
  bufferSink,
  bufferSource,
  FAST,
  fileEntry,
  PASS,
  positionalSource,
  pseudoRandom,
} from './helpers.js';

const CS = 1 << 16;

async function restore(repo: Repository, manifestId: string, path: string): Promise<Buffer> {
  const m = await repo.loadManifest(manifestId);
  const file = m.body.vms[0]!.files.find((f) => f.path === path)!;
  const sink = bufferSink(file.size);
  await repo.restoreFile(file, sink);
  return sink.data;
}

describe('repository: write and restore', () => {
  it('restores files byte for byte, whatever their size', async () => {
    const backend = new MemoryBackend();
    const repo = await initRepository(backend, PASS, { ...FAST, chunkSize: CS, packSize: 1 << 20 });
    const files = new Map<string, Buffer>([
      ['empty', Buffer.alloc(0)],
      ['one-byte', Buffer.from([7])],
      ['one-chunk', pseudoRandom(CS, 'one')],
      ['odd', pseudoRandom(5 * CS + 4321, 'odd')],
      // Compressible (text-like) and incompressible data, both kept in the form that is smaller.
      ['text.vmx', Buffer.from('displayName = "web01"\n'.repeat(20_000))],
    ]);
    const progress: number[] = [];
    const w = await repo.writer({ onProgress: (p) => progress.push(p.bytesDone) });
    const stored = await Promise.all([...files].map(([path, data]) => w.addFile(bufferSource(path, data))));
    const s = await w.commit(fileEntry(stored));
    for (const [path, data] of files) assert.ok((await restore(repo, s.id, path)).equals(data), path);
    assert.equal(
      progress.at(-1),
      [...files.values()].reduce((n, d) => n + d.length, 0),
    );
    const summary = (await repo.listManifests())[0]!;
    assert.equal(summary.id, s.id);
    assert.equal(
      summary.vms[0]!.bytes,
      [...files.values()].reduce((n, d) => n + d.length, 0),
    );
    assert.equal((await repo.loadManifest('b1')).id, s.id, 'found by backup id');
    await assert.rejects(repo.loadManifest('b2'), { code: 'REPOSITORY_BACKUP_NOT_FOUND', exitCode: 3 });
    const text = backend
      .keys('packs/')
      .map((k) => backend.bytes(k)!.toString('latin1'))
      .join('');
    assert.ok(!text.includes('displayName'), 'nothing stored in clear');
    await repo.close();
  });

  it('flush: a writer ends without a manifest; a later writer commits one naming its chunks, reusing them', async () => {
    const backend = new MemoryBackend();
    const repo = await initRepository(backend, PASS, { ...FAST, chunkSize: CS, packSize: 1 << 20 });
    const disk = pseudoRandom(9 * CS + 100, 'disk');
    const part = await repo.writer();
    const stored = await part.addFile(bufferSource('disk-flat.vmdk', disk));
    await part.flush();
    assert.ok(backend.keys('index/').length > 0, 'the flushed data is indexed');
    assert.equal(backend.keys('manifests/').length, 0, 'no manifest yet');
    await assert.rejects(part.addFile(bufferSource('late', disk)), /committed, flushed or aborted/);
    let added = -1;
    const coordinator = await repo.writer({ onProgress: (p) => (added = p.bytesAdded) });
    const again = await coordinator.addFile(bufferSource('disk-flat.vmdk', disk));
    assert.deepEqual(again.chunks, stored.chunks);
    const s = await coordinator.commit(fileEntry([stored]));
    assert.ok(added < CS, `the second writer stored no chunk again (${added} bytes added: the manifest)`);
    assert.ok((await restore(repo, s.id, 'disk-flat.vmdk')).equals(disk));
    await repo.close();
  });

  it('compresses chunks whose sample compresses; stores random ones raw; both restore', async () => {
    const backend = new MemoryBackend();
    const repo = await initRepository(backend, PASS, { ...FAST, chunkSize: CS, packSize: 1 << 20 });
    const text = Buffer.from('scsi0:0.fileName = "disk-flat.vmdk"\n'.repeat((16 * CS) / 32)).subarray(
      0,
      16 * CS,
    );
    const noise = pseudoRandom(16 * CS, 'noise');
    let added = 0;
    const w = await repo.writer({ onProgress: (p) => (added = p.bytesAdded) });
    const stored = await Promise.all([
      w.addFile(bufferSource('text', text)),
      w.addFile(bufferSource('noise', noise)),
    ]);
    const s = await w.commit(fileEntry(stored));
    // Random chunks cost their size plus the seal (29 bytes each); the text's 16 chunks compress to a few
    // hundred bytes each (packs, index and manifest add a few KiB).
    assert.ok(added > noise.length && added < noise.length + CS / 4, `${added} bytes added`);
    assert.ok((await restore(repo, s.id, 'text')).equals(text));
    assert.ok((await restore(repo, s.id, 'noise')).equals(noise));
    await repo.close();
  });

  it('deduplicates across files and backups; all-zero chunks are stored nowhere', async () => {
    const backend = new MemoryBackend();
    const repo = await initRepository(backend, PASS, { ...FAST, chunkSize: CS });
    const a = Buffer.concat([pseudoRandom(20 * CS, 'dedup'), Buffer.alloc(30 * CS)]);
    let added = 0;
    const w1 = await repo.writer({ onProgress: (p) => (added = p.bytesAdded) });
    const f1 = await w1.addFile(bufferSource('a', a));
    const f2 = await w1.addFile(bufferSource('copy-of-a', a));
    await w1.commit(fileEntry([f1, f2]));
    assert.deepEqual(f1.chunks, f2.chunks);
    assert.equal(f1.chunks.filter((c) => c === 'zero').length, 30);
    assert.ok(added < 20 * CS + 100_000, `first backup added ${added} bytes for 20 chunks of data`);
    assert.ok(added > 20 * CS);

    // The second backup: same data plus one changed chunk; only that one is added.
    const b = Buffer.from(a);
    b.fill(1, 3 * CS, 3 * CS + 10);
    let added2 = 0;
    const w2 = await repo.writer({ onProgress: (p) => (added2 = p.bytesAdded) });
    const g = await w2.addFile(bufferSource('a', b));
    const s2 = await w2.commit(fileEntry([g], 'b2'));
    assert.equal(g.chunks.filter((c, i) => c !== f1.chunks[i]).length, 1);
    assert.ok(added2 < 2 * CS, `second backup added ${added2} bytes`);
    assert.ok((await restore(repo, s2.id, 'a')).equals(b));
    const check = await repo.check({ readData: true });
    assert.deepEqual(check.issues, []);
    assert.equal(check.chunks, 21);
    await repo.close();
  });

  it('the changed-range path reads only changed chunks and gives the same bytes as a full read', async () => {
    const backend = new MemoryBackend();
    const repo = await initRepository(backend, PASS, { ...FAST, chunkSize: CS });
    const v1 = Buffer.concat([pseudoRandom(40 * CS, 'v1'), Buffer.alloc(8 * CS), pseudoRandom(777, 'tail')]);
    const w1 = await repo.writer();
    const prev = await w1.addFile(bufferSource('disk', v1));
    await w1.commit(fileEntry([prev], 'b1'));

    // v2: a 4 KiB write inside chunk 5, one across chunks 9 and 10, the zero area gets data, the file grows.
    const v2 = Buffer.concat([v1, pseudoRandom(CS + 5, 'grown')]);
    const changedRanges = [
      { offset: 5 * CS + 4096, length: 4096 },
      { offset: 10 * CS - 2048, length: 4096 },
      { offset: 41 * CS, length: 100 },
      { offset: v1.length, length: v2.length - v1.length },
    ];
    for (const r of changedRanges) pseudoRandom(r.length, `change-${r.offset}`).copy(v2, r.offset);
    const w2 = await repo.writer();
    const partial = bufferSource('disk', v2, { previous: prev, changedRanges });
    const viaRanges = await w2.addFile(partial);
    const full = bufferSource('disk', v2);
    const viaFull = await w2.addFile(full);
    const s2 = await w2.commit(fileEntry([viaRanges], 'b2'));
    assert.deepEqual(viaRanges.chunks, viaFull.chunks);
    assert.equal(full.bytesRead, v2.length);
    // Chunks 5, 9, 10, 41, and from the old last chunk (48, short before) to the end: 48, 49.
    const expectRead = [5, 9, 10, 41, 48, 49].reduce((n, i) => n + Math.min(CS, v2.length - i * CS), 0);
    assert.equal(partial.bytesRead, expectRead);
    assert.ok((await restore(repo, s2.id, 'disk')).equals(v2));
    await repo.close();
  });

  /**
   * Two backups of a 200-chunk file: the second changes `ranges` and is offloaded through `makeSource` (with the
   * changed ranges) and again by a full read. Checks both give the same chunks and the backup restores.
   */
  async function changedRunsOffload(
    seed: string,
    ranges: { offset: number; length: number }[],
    makeSource: typeof bufferSource | typeof positionalSource,
  ) {
    const backend = new MemoryBackend();
    const repo = await initRepository(backend, PASS, { ...FAST, chunkSize: CS, packSize: 1 << 20 });
    const v1 = pseudoRandom(200 * CS, `${seed}-v1`);
    const w1 = await repo.writer();
    const prev = await w1.addFile(bufferSource('disk', v1));
    await w1.commit(fileEntry([prev], 'b1'));
    const v2 = Buffer.from(v1);
    for (const r of ranges) pseudoRandom(r.length, `${seed}-${r.offset}`).copy(v2, r.offset);
    const w2 = await repo.writer();
    const partial = makeSource('disk', v2, { previous: prev, changedRanges: ranges });
    const viaRanges = await w2.addFile(partial);
    const viaFull = await w2.addFile(bufferSource('disk', v2));
    const s2 = await w2.commit(fileEntry([viaRanges], 'b2'));
    assert.deepEqual(viaRanges.chunks, viaFull.chunks);
    assert.ok((await restore(repo, s2.id, 'disk')).equals(v2));
    await repo.close();
    return partial;
  }

  it('many changed ranges (read in several lanes at once) give the same chunks as a full read', async () => {
    // 40 runs of one or two chunks, every fifth chunk: at least 16 runs, so four lanes read them.
    const ranges = Array.from({ length: 40 }, (_, k) => ({
      offset: k * 5 * CS + 100,
      length: k % 3 === 0 ? CS + 200 : 300,
    }));
    const partial = await changedRunsOffload('lanes', ranges, bufferSource);
    assert.equal(
      partial.bytesRead,
      ranges.reduce((n, r) => n + (r.length > CS ? 2 : 1) * CS, 0),
    );
  });

  it('a positional source is opened twice per lane, not once per changed run, and gives the same chunks', async () => {
    // 40 runs of one or three chunks.
    const ranges = Array.from({ length: 40 }, (_, k) => ({
      offset: k * 5 * CS + 7,
      length: k % 4 === 0 ? 2 * CS : 500,
    }));
    const partial = (await changedRunsOffload('span', ranges, positionalSource)) as ReturnType<
      typeof positionalSource
    >;
    // Four lanes, each: its first run, then one stream for the span of the rest.
    assert.equal(partial.opens, 8);
    assert.equal(
      partial.bytesRead,
      ranges.reduce((n, r) => n + (r.length > CS ? 3 : 1) * CS, 0),
    );
  });

  it('a previous chunk that is no longer stored is read again, not trusted', async () => {
    const backend = new MemoryBackend();
    const repo = await initRepository(backend, PASS, { ...FAST, chunkSize: CS });
    const data = pseudoRandom(4 * CS, 'gone');
    const w1 = await repo.writer();
    const prev = await w1.addFile(bufferSource('disk', data));
    const s1 = await w1.commit(fileEntry([prev]));
    await repo.forget(s1.id);
    assert.equal((await repo.prune({ safetyDelayMs: 0 })).packsDeleted, 1);
    const w2 = await repo.writer();
    const src = bufferSource('disk', data, { previous: prev, changedRanges: [] });
    const f = await w2.addFile(src);
    const s2 = await w2.commit(fileEntry([f], 'b2'));
    assert.equal(src.bytesRead, data.length);
    assert.ok((await restore(repo, s2.id, 'disk')).equals(data));
    assert.deepEqual((await repo.check({ readData: true })).issues, []);
    await repo.close();
  });

  it('a source that ends early fails the file; abort leaves a repository that checks clean', async () => {
    const backend = new MemoryBackend();
    const repo = await initRepository(backend, PASS, { ...FAST, chunkSize: CS });
    const w = await repo.writer();
    const short = { ...bufferSource('disk', pseudoRandom(3 * CS, 's')), size: 4 * CS };
    await assert.rejects(w.addFile(short), { code: 'SOURCE_SHORT' });
    await w.abort();
    assert.deepEqual(backend.keys('locks/'), [], 'the writer let go of its lock');
    assert.deepEqual((await repo.check({ readData: true })).issues, []);
    await repo.close();
  });
});

describe('repository: chunk size per file', () => {
  it('keeps a file within a million chunks, and a disk on its previous chunk size', () => {
    const GiB = 2 ** 30;
    const K = 1 << 10;
    const table: [number, number, number | undefined, number][] = [
      [0, 64 * K, undefined, 64 * K],
      [64 * GiB, 64 * K, undefined, 64 * K],
      [64 * GiB + 1, 64 * K, undefined, 256 * K],
      [300 * GiB, 64 * K, undefined, 1024 * K],
      [2048 * GiB, 64 * K, undefined, 4096 * K],
      [10 * GiB, 1024 * K, undefined, 1024 * K],
      // A disk that grew past 64 GiB keeps its 64 KiB chunks only while it fits.
      [65 * GiB, 64 * K, 64 * K, 256 * K],
      [200 * GiB, 64 * K, 256 * K, 256 * K],
      [10 * GiB, 64 * K, 256 * K, 256 * K],
    ];
    for (const [size, base, prev, expected] of table) {
      const previous = prev === undefined ? undefined : { path: 'd', size, chunkSize: prev, chunks: [] };
      assert.equal(
        chunkSizeFor(size, base, previous),
        expected,
        `${size} bytes, base ${base}, previous ${prev}`,
      );
    }
  });
});

describe('repository: abort', () => {
  it('an aborted signal stops addFile; the writer aborts and the repository checks clean', async () => {
    const backend = new MemoryBackend();
    const repo = await initRepository(backend, PASS, { ...FAST, chunkSize: CS, packSize: 1 << 20 });
    const ac = new AbortController();
    const w = await repo.writer({
      signal: ac.signal,
      onProgress: (p) => {
        if (p.bytesDone >= 8 << 20) ac.abort();
      },
    });
    await assert.rejects(w.addFile(bufferSource('disk', pseudoRandom(64 << 20, 'abort'))), {
      name: 'AbortError',
    });
    await w.abort();
    assert.deepEqual(backend.keys('locks/'), []);
    assert.deepEqual(backend.keys('manifests/'), []);
    assert.deepEqual((await repo.check({ readData: true })).issues, []);
    await repo.close();
  });
});
