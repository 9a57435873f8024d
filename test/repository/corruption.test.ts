import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { AAD, FLAG_RAW, seal } from '../../src/repository/crypto.js';
import { readConfig, unlock } from '../../src/repository/format.js';
import {
  initRepository,
  MemoryBackend,
  type Repository,
  RepositoryError,
} from '../../src/repository/index.js';
import { parsePackHeader } from '../../src/repository/index-file.js';
import { bufferSink, bufferSource, FAST, fileEntry, PASS, pseudoRandom } from './helpers.js';

const CS = 1 << 16;

/** A repository with one backup of a 12-chunk file in packs of ~4 chunks; returns what a test needs. */
async function setup(formatVersion?: number) {
  const backend = new MemoryBackend();
  const repo = await initRepository(backend, PASS, {
    ...FAST,
    chunkSize: CS,
    packSize: 1 << 20,
    formatVersion,
  });
  const data = pseudoRandom(12 * CS, 'corrupt');
  const w = await repo.writer();
  const f = await w.addFile(bufferSource('disk', data));
  const s = await w.commit(fileEntry([f]));
  return { backend, repo, data, file: f, manifestId: s.id };
}

/** Restores and expects a RepositoryError with `code`; the sink never receives wrong bytes. */
async function restoreFails(
  repo: Repository,
  file: Parameters<Repository['restoreFile']>[0],
  data: Buffer,
  code: string,
) {
  const written: { offset: number; data: Buffer }[] = [];
  const sink = {
    async write(offset: number, d: Buffer) {
      written.push({ offset, data: Buffer.from(d) });
    },
  };
  await assert.rejects(repo.restoreFile(file, sink), (e: unknown) => {
    assert.ok(e instanceof RepositoryError, String(e));
    assert.equal(e.code, code);
    assert.equal(e.exitCode, 2);
    return true;
  });
  for (const w of written) {
    assert.ok(w.data.equals(data.subarray(w.offset, w.offset + w.data.length)), `wrong bytes at ${w.offset}`);
  }
  return written;
}

describe('repository: damage is detected by check --read-data and by restore', () => {
  it('a bit flip in a chunk: CHUNK_CORRUPT naming the chunk and its pack', async () => {
    const { backend, repo, data, file } = await setup();
    const pack = backend.keys('packs/')[0]!;
    backend.flipBit(pack, 100, 3);
    const plain = await repo.check();
    assert.deepEqual(plain.issues, [], 'structure alone does not see it');
    const report = await repo.check({ readData: true });
    assert.equal(report.ok, false);
    assert.equal(report.issues.length, 1);
    assert.equal(report.issues[0]!.code, 'CHUNK_CORRUPT');
    assert.equal(report.issues[0]!.object, pack);
    const bad = file.chunks.find((id) => report.issues[0]!.message.includes(id));
    assert.ok(bad, 'the message names a chunk of the file');
    await assert.rejects(
      repo.restoreFile(file, bufferSink(data.length)),
      (e: unknown) => e instanceof RepositoryError && e.message.includes(bad) && e.message.includes(pack),
    );
    await restoreFails(repo, file, data, 'CHUNK_CORRUPT');
    await repo.close();
  });

  it('a truncated pack: PACK_TRUNCATED, and restore stops with CHUNK_CORRUPT', async () => {
    const { backend, repo, data, file } = await setup();
    const pack = backend.keys('packs/')[0]!;
    backend.truncate(pack, backend.bytes(pack)!.length - 200_000);
    const report = await repo.check({ readData: true });
    assert.ok(report.issues.some((i) => i.code === 'PACK_TRUNCATED' && i.object === pack));
    assert.ok(report.issues.some((i) => i.code === 'CHUNK_CORRUPT' && i.object === pack));
    await restoreFails(repo, file, data, 'CHUNK_CORRUPT');
    await repo.close();
  });

  it('a missing pack: PACK_MISSING, and restore stops with CHUNK_MISSING naming the pack', async () => {
    const { backend, repo, data, file } = await setup();
    const pack = backend.keys('packs/').at(-1)!;
    await backend.remove(pack);
    const report = await repo.check();
    assert.deepEqual(
      report.issues.map((i) => i.code),
      ['PACK_MISSING'],
    );
    const written = await restoreFails(repo, file, data, 'CHUNK_MISSING');
    assert.ok(written.length < file.chunks.length);
    await repo.close();
  });

  it('a bit flip in an index: INDEX_CORRUPT and the chunks it held are missing', async () => {
    const { backend, repo, data, file } = await setup();
    const [index] = backend.keys('index/');
    backend.flipBit(index!, 40);
    const report = await repo.check({ readData: true });
    assert.equal(report.issues[0]!.code, 'INDEX_CORRUPT');
    assert.equal(report.issues[0]!.object, index);
    assert.ok(report.issues.some((i) => i.code === 'CHUNK_MISSING'));
    await restoreFails(repo, file, data, 'CHUNK_MISSING');
    await repo.close();
  });

  it('a bit flip in a manifest: MANIFEST_CORRUPT from check and from loadManifest; prune refuses', async () => {
    const { backend, repo, manifestId } = await setup();
    backend.flipBit(`manifests/${manifestId}`, 30);
    const report = await repo.check({ readData: true });
    assert.deepEqual(
      report.issues.map((i) => [i.code, i.object]),
      [['MANIFEST_CORRUPT', `manifests/${manifestId}`]],
    );
    await assert.rejects(repo.loadManifest(manifestId), { code: 'MANIFEST_CORRUPT', exitCode: 2 });
    assert.deepEqual(await repo.listManifests(), []);
    await assert.rejects(repo.prune({ safetyDelayMs: 0 }), { code: 'MANIFEST_CORRUPT' });
    assert.equal(backend.keys('packs/').length > 0, true, 'prune deleted nothing');
    await repo.close();
  });

  it('a blob moved to another chunk id fails authentication (the AEAD binds it to its id)', async () => {
    const { backend, repo, data, file } = await setup();
    // Swap two blobs of equal sealed length inside a pack: each now sits where the index says the other is.
    const pack = backend.keys('packs/')[0]!;
    const buf = backend.bytes(pack)!;
    const sealedLen = CS + 1 + 28; // incompressible: raw flag byte, nonce and tag
    const a = Buffer.from(buf.subarray(0, sealedLen));
    buf.copy(buf, 0, sealedLen, 2 * sealedLen);
    a.copy(buf, sealedLen);
    const report = await repo.check({ readData: true });
    assert.deepEqual(
      report.issues.map((i) => i.code),
      ['CHUNK_CORRUPT', 'CHUNK_CORRUPT'],
    );
    await restoreFails(repo, file, data, 'CHUNK_CORRUPT');
    await repo.close();
  });

  for (const version of [1, 2]) {
    it(`format version ${version}: a blob that authenticates but holds other bytes fails its id check`, async () => {
      // Made with the repository's own key, as only a writer could: the AEAD passes, so only the id check
      // (HMAC-SHA256 or keyed BLAKE3, by version) stands between these bytes and a restored disk.
      const { backend, repo, data, file } = await setup(version);
      const { encKey } = (await unlock(backend, await readConfig(backend), PASS)).keys;
      const pack = backend.keys('packs/')[0]!;
      const buf = backend.bytes(pack)!;
      const blob = parsePackHeader(encKey, buf)!.blobs[0]!;
      const forged = seal(
        encKey,
        [Buffer.from([FLAG_RAW]), pseudoRandom(blob.rawLength, 'other')],
        AAD.chunk(blob.id),
      );
      assert.equal(forged.length, blob.length);
      forged.copy(buf, blob.offset);
      const report = await repo.check({ readData: true });
      assert.deepEqual(
        report.issues.map((i) => i.code),
        ['CHUNK_CORRUPT'],
      );
      assert.match(report.issues[0]!.message, new RegExp(`${blob.id}.*does not match its id`));
      await restoreFails(repo, file, data, 'CHUNK_CORRUPT');
      await repo.close();
    });
  }
});
