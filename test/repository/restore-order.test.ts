import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  initRepository,
  MemoryBackend,
  RepositoryError,
  type StoredFile,
} from '../../src/repository/index.js';
import { bufferSink, bufferSource, FAST, fileEntry, PASS, pseudoRandom } from './helpers.js';

const CS = 1 << 16;
const PACK = 1 << 20;
const N = 96;

/**
 * A file whose chunks lie in many packs (16 chunks each) of three backups, not in file order: backup 1 stores
 * 96 chunks; backup 2 changes every third chunk; backup 3 changes chunks 1, 40 and 80, copies chunk 0 to
 * chunks 21 and 67 (one chunk, three places), and zeroes chunks 50 and 51 and the last one.
 */
async function scattered() {
  const backend = new MemoryBackend();
  const repo = await initRepository(backend, PASS, { ...FAST, chunkSize: CS, packSize: PACK });
  const v1 = pseudoRandom(N * CS, 'v1');
  const w1 = await repo.writer();
  const f1 = await w1.addFile(bufferSource('disk', v1));
  await w1.commit(fileEntry([f1], 'b1'));
  const v2 = Buffer.from(v1);
  for (let i = 0; i < N; i += 3) pseudoRandom(CS, `v2-${i}`).copy(v2, i * CS);
  const w2 = await repo.writer();
  const f2 = await w2.addFile(bufferSource('disk', v2));
  await w2.commit(fileEntry([f2], 'b2'));
  const v3 = Buffer.from(v2);
  for (const i of [1, 40, 80]) pseudoRandom(CS, `v3-${i}`).copy(v3, i * CS);
  v3.copy(v3, 21 * CS, 0, CS);
  v3.copy(v3, 67 * CS, 0, CS);
  v3.fill(0, 50 * CS, 52 * CS);
  v3.fill(0, (N - 1) * CS);
  const before = new Set(backend.keys('packs/'));
  const w3 = await repo.writer();
  const f3 = await w3.addFile(bufferSource('disk', v3));
  await w3.commit(fileEntry([f3], 'b3'));
  // Backup 3 stored chunks 1, 40 and 80 (random: raw, CS + 29 bytes sealed each), in that order, in one pack.
  const newPacks = backend.keys('packs/').filter((k) => !before.has(k));
  return { backend, repo, data: v3, file: f3, newPacks };
}

/** A sink that records every write, each completing after a delay that reverses their order in pairs. */
function recordingSink(size: number) {
  const data = Buffer.alloc(size);
  const writes: { offset: number; length: number }[] = [];
  let n = 0;
  return {
    data,
    writes,
    async write(offset: number, d: Buffer) {
      assert.ok(offset >= 0 && offset + d.length <= size, `write ${offset}+${d.length} within ${size}`);
      writes.push({ offset, length: d.length });
      const copy = Buffer.from(d);
      // Every other write settles later than the next one: the repository must not rely on write order.
      for (let k = 0; k < (n++ % 2) * 3; k++) await new Promise((r) => setImmediate(r));
      copy.copy(data, offset);
    },
  };
}

function packsOf(backend: MemoryBackend): number {
  return backend.keys('packs/').length;
}

describe('repository: restore reads by pack and writes out of order', () => {
  it('gives the bytes back when chunks lie in many packs, out of file order, with duplicates and zeros', async () => {
    const { backend, repo, data, file } = await scattered();
    assert.ok(packsOf(backend) >= 6, `${packsOf(backend)} packs`);
    // The indexes are read by the first restore (and kept): the second's loads are all of packs.
    await repo.restoreFile(file, bufferSink(file.size));
    const loadsBefore = backend.calls.load;
    const sink = recordingSink(file.size);
    await repo.restoreFile(file, sink);
    assert.ok(sink.data.equals(data), 'restored bytes equal the file');
    // Every pack holding a chunk of the file is loaded once (its blobs lie within 4 MiB of each other).
    const needed = new Set(file.chunks.filter((c) => c !== 'zero'));
    assert.ok(
      backend.calls.load - loadsBefore <= packsOf(backend),
      `${backend.calls.load - loadsBefore} loads for ${needed.size} chunks in ${packsOf(backend)} packs`,
    );
    // No byte is written twice; zero chunks are not written (but for the file's last byte, for its size).
    const covered = new Uint8Array(file.size);
    for (const w of sink.writes) {
      for (let b = w.offset; b < w.offset + w.length; b++) {
        assert.equal(covered[b], 0, `byte ${b} written twice`);
        covered[b] = 1;
      }
    }
    for (const i of [50, 51]) assert.equal(covered.subarray(i * CS, (i + 1) * CS).indexOf(1), -1);
    assert.equal(covered.subarray((N - 1) * CS, file.size - 1).indexOf(1), -1, 'the zero tail is a hole');
    // The chunk at three places is written at each of them.
    for (const i of [0, 21, 67]) assert.ok(covered[i * CS] === 1 && covered[(i + 1) * CS - 1] === 1);
    // Some write comes before one at a lower offset: the order is the packs', not the file's.
    assert.ok(
      sink.writes.some((w, k) => k > 0 && w.offset < sink.writes[k - 1]!.offset),
      'writes out of file order',
    );
    await repo.close();
  });

  it('restores the same bytes twice in a row (the second from the indexes kept)', async () => {
    const { repo, data, file } = await scattered();
    for (let k = 0; k < 2; k++) {
      const sink = bufferSink(file.size);
      await repo.restoreFile(file, sink);
      assert.ok(sink.data.equals(data), `restore ${k + 1}`);
    }
    await repo.close();
  });

  it('a corrupt chunk in the middle stops it: never written, no write after the rejection, progress short', async () => {
    const { backend, repo, data, file, newPacks } = await scattered();
    // The pack backup 3 wrote holds chunks 1, 40 and 80 (in the order their batches were sealed): one bit in
    // the middle of its second blob flipped.
    assert.equal(newPacks.length, 1);
    const pack = newPacks[0]!;
    backend.flipBit(pack, CS + 29 + CS / 2, 2);
    let bad = -1;
    const sink = recordingSink(file.size);
    let done = 0;
    await assert.rejects(repo.restoreFile(file, sink, { onProgress: (d) => (done = d) }), (e: unknown) => {
      assert.ok(e instanceof RepositoryError, String(e));
      assert.equal(e.code, 'CHUNK_CORRUPT');
      bad = [1, 40, 80].find((i) => e.message.includes(file.chunks[i]!)) ?? -1;
      assert.ok(bad >= 0 && e.message.includes(pack), e.message);
      return true;
    });
    const count = sink.writes.length;
    for (let k = 0; k < 20; k++) await new Promise((r) => setImmediate(r));
    assert.equal(sink.writes.length, count, 'no write after restoreFile rejected');
    assert.ok(done < file.size, 'progress never reached the end');
    for (const w of sink.writes) {
      assert.ok(
        w.offset + w.length <= bad * CS || w.offset >= (bad + 1) * CS,
        `the corrupt chunk's range was written (${w.offset}+${w.length})`,
      );
      assert.ok(
        sink.data
          .subarray(w.offset, w.offset + w.length)
          .equals(data.subarray(w.offset, w.offset + w.length)),
        `wrong bytes at ${w.offset}`,
      );
    }
    await repo.close();
  });

  it('a chunk in no index: CHUNK_MISSING before anything is written', async () => {
    const { repo, file } = await scattered();
    const broken: StoredFile = {
      ...file,
      chunks: file.chunks.map((c, i) => (i === 60 ? 'f'.repeat(64) : c)),
    };
    const sink = recordingSink(file.size);
    await assert.rejects(repo.restoreFile(broken, sink), { code: 'CHUNK_MISSING', exitCode: 2 });
    assert.equal(sink.writes.length, 0);
    await repo.close();
  });
});

describe('repository: restore places each plaintext straight into its slot', () => {
  /** 16 chunks, raw (random) and zstd (text, a different one each) in turn: chunk 15 is zstd, chunk 14 raw. */
  async function mixed() {
    const repo = await initRepository(new MemoryBackend(), PASS, { ...FAST, chunkSize: CS });
    const data = Buffer.concat(
      Array.from({ length: 16 }, (_, i) =>
        i % 2 === 0
          ? pseudoRandom(CS, `raw-${i}`)
          : Buffer.from(`chunk ${i}: scsi0:0.fileName = "disk-flat.vmdk"\n`.repeat(CS / 32)).subarray(0, CS),
      ),
    );
    const w = await repo.writer();
    const file = await w.addFile(bufferSource('disk', data));
    await w.commit(fileEntry([file]));
    return { repo, data, file };
  }

  it('gives back zstd and raw chunks side by side byte for byte', async () => {
    const { repo, data, file } = await mixed();
    const sink = recordingSink(file.size);
    await repo.restoreFile(file, sink);
    assert.ok(sink.data.equals(data));
    await repo.close();
  });

  it('a stored chunk longer than its place in the file is CHUNK_CORRUPT and nothing of its load is written', async () => {
    const { repo, file } = await mixed();
    // The manifest says the file ends 100 bytes into its last chunk: the stored chunk holds 100 more.
    const cases = [
      { chunks: 16, reason: `does not decompress into ${CS - 100} bytes` },
      { chunks: 15, reason: `is ${CS} bytes, not ${CS - 100}` },
    ];
    for (const c of cases) {
      const short: StoredFile = {
        ...file,
        size: c.chunks * CS - 100,
        chunks: file.chunks.slice(0, c.chunks),
      };
      const sink = recordingSink(short.size);
      await assert.rejects(repo.restoreFile(short, sink), (e: unknown) => {
        assert.ok(e instanceof RepositoryError, String(e));
        assert.equal(e.code, 'CHUNK_CORRUPT');
        assert.ok(e.message.includes(file.chunks[c.chunks - 1]!) && e.message.includes(c.reason), e.message);
        return true;
      });
      // The file's chunks are all in one pack, read in one load: none of them is written.
      assert.equal(sink.writes.length, 0, `${c.chunks} chunks`);
    }
    await repo.close();
  });
});
