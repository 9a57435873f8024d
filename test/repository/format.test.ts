import assert from 'node:assert/strict';
import { createHash, createHmac } from 'node:crypto';
import { describe, it } from 'node:test';
import { Blake3Hasher, blake3 } from '@napi-rs/blake-hash';
import { ExitCode } from '../../src/errors.js';
import { hashes } from '../../src/repository/crypto.js';
import { readConfig, unlock } from '../../src/repository/format.js';
import {
  FORMAT_NAME,
  initRepository,
  MemoryBackend,
  openRepository,
  type Repository,
  RepositoryError,
} from '../../src/repository/index.js';
import { bufferSink, bufferSource, FAST, fileEntry, PASS, pseudoRandom } from './helpers.js';

const isRepoError = (code: string, exit: ExitCode) => (e: unknown) =>
  e instanceof RepositoryError && e.code === code && e.exitCode === exit;

describe('repository format: config, keys, passphrase', () => {
  it('init writes a plain JSON config naming the format, and a key file that holds no secret in clear', async () => {
    const backend = new MemoryBackend();
    const repo = await initRepository(backend, PASS, { ...FAST, chunkSize: 1 << 18 });
    const config = JSON.parse(backend.bytes('config')!.toString('utf8'));
    assert.equal(config.format, FORMAT_NAME);
    assert.equal(config.version, 2);
    assert.equal(config.id, repo.id);
    assert.deepEqual(config.chunker, { kind: 'fixed', size: 1 << 18 });
    const keyNames = backend.keys('keys/');
    assert.equal(keyNames.length, 1);
    const keyText = backend.bytes(keyNames[0]!)!.toString('utf8');
    const key = JSON.parse(keyText);
    assert.deepEqual(
      { name: key.kdf.name, N: key.kdf.N, r: key.kdf.r, p: key.kdf.p },
      {
        name: 'scrypt',
        N: 1 << 15,
        r: 8,
        p: 1,
      },
    );
    assert.ok(!keyText.includes(PASS));
    await repo.close();
    await assert.rejects(
      initRepository(backend, PASS, FAST),
      isRepoError('REPOSITORY_EXISTS', ExitCode.usage),
    );
  });

  it('a wrong passphrase is refused with REPOSITORY_PASSPHRASE (exit 3), the passphrase in no message', async () => {
    const backend = new MemoryBackend();
    await (await initRepository(backend, PASS, FAST)).close();
    const wrong = 'not the passphrase at all';
    await assert.rejects(openRepository(backend, wrong), (e: unknown) => {
      assert.ok(isRepoError('REPOSITORY_PASSPHRASE', ExitCode.usage)(e));
      assert.ok(!(e as Error).message.includes(wrong));
      assert.match((e as Error).message, /wrong passphrase/);
      return true;
    });
    await assert.rejects(openRepository(backend, ''), { code: 'REPOSITORY_PASSPHRASE_EMPTY' });
  });

  it('a key file that does not parse or names a weak KDF is passed over; the good one still opens', async () => {
    const backend = new MemoryBackend();
    await (await initRepository(backend, PASS, FAST)).close();
    backend.put('keys/0-garbage', Buffer.from('not json'));
    backend.put(
      'keys/1-weak',
      Buffer.from(
        JSON.stringify({ version: 1, kdf: { name: 'scrypt', N: 2, r: 8, p: 1, salt: 'AA==' }, data: '' }),
      ),
    );
    await (await openRepository(backend, PASS, FAST)).close();
    await assert.rejects(openRepository(backend, 'wrong one'), (e: unknown) => {
      assert.ok(isRepoError('REPOSITORY_PASSPHRASE', ExitCode.usage)(e));
      assert.match((e as Error).message, /keys\/0-garbage does not parse/);
      assert.match((e as Error).message, /keys\/1-weak: scrypt N=2/);
      return true;
    });
  });

  it('another format or version is refused with REPOSITORY_FORMAT naming what was found', async () => {
    const cases: [string, RegExp][] = [
      [JSON.stringify({ format: FORMAT_NAME, version: 3 }), /found .* version 3; .* versions 1 and 2/],
      [JSON.stringify({ format: 'restic', version: 1 }), /format "restic"/],
      ['{"version":1', /not JSON/],
    ];
    for (const [text, message] of cases) {
      const backend = new MemoryBackend();
      backend.put('config', Buffer.from(text));
      await assert.rejects(openRepository(backend, PASS), (e: unknown) => {
        assert.ok(isRepoError('REPOSITORY_FORMAT', ExitCode.usage)(e), String(e));
        assert.match((e as Error).message, message);
        return true;
      });
    }
    await assert.rejects(openRepository(new MemoryBackend(), PASS), { code: 'REPOSITORY_NOT_FOUND' });
  });

  it('bad init options are refused as usage errors, nothing written', async () => {
    const backend = new MemoryBackend();
    await assert.rejects(initRepository(backend, PASS, { chunkSize: 12345 }), { code: 'REPOSITORY_OPTIONS' });
    await assert.rejects(initRepository(backend, PASS, { kdf: { N: 1 << 10 } }), /scrypt N=1024/);
    assert.deepEqual(backend.keys(), []);
  });

  it('chunk ids are keyed: the same bytes get other ids in another repository, never a plain hash', async () => {
    const data = pseudoRandom(1 << 16, 'keyed');
    const ids: string[] = [];
    for (let i = 0; i < 2; i++) {
      const repo = await initRepository(new MemoryBackend(), PASS, { ...FAST, chunkSize: 1 << 16 });
      const w = await repo.writer();
      const f = await w.addFile(bufferSource('a', data));
      await w.abort();
      await repo.close();
      ids.push(f.chunks[0]!);
    }
    assert.notEqual(ids[0], ids[1]);
    assert.notEqual(ids[0], createHash('sha256').update(data).digest('hex'));
    assert.notEqual(ids[0], blake3(data).toString('hex'));
  });

  it('passwd: a new key file replaces the old, the data is not rewritten, the old passphrase stops working', async () => {
    const backend = new MemoryBackend();
    const repo = await initRepository(backend, PASS, FAST);
    const data = pseudoRandom(3 << 20, 'passwd');
    const w = await repo.writer();
    const f = await w.addFile(bufferSource('disk', data));
    const s = await w.commit(fileEntry([f]));
    const before = backend.keys().filter((k) => !k.startsWith('keys/') && !k.startsWith('locks/'));
    const oldKey = backend.keys('keys/');
    await repo.changePassphrase('a new passphrase');
    await repo.close();
    assert.deepEqual(
      backend.keys().filter((k) => !k.startsWith('keys/') && !k.startsWith('locks/')),
      before,
      'no object but the key files changed',
    );
    const newKey = backend.keys('keys/');
    assert.equal(newKey.length, 1);
    assert.notDeepEqual(newKey, oldKey);
    await assert.rejects(openRepository(backend, PASS), { code: 'REPOSITORY_PASSPHRASE' });
    const again = await openRepository(backend, 'a new passphrase', FAST);
    const sink = bufferSink(data.length);
    await again.restoreFile((await again.loadManifest(s.id)).body.vms[0]!.files[0]!, sink);
    assert.ok(sink.data.equals(data));
    await again.close();
  });
});

const CS = 1 << 16;

/** The master keys, unlocked as a second reader would (the tests check ids against the documented formula). */
async function masterKeys(backend: MemoryBackend) {
  return (await unlock(backend, await readConfig(backend), PASS)).keys;
}

/** Every pack, index and manifest whose name is not `name(bytes)`. */
function misnamed(backend: MemoryBackend, name: (data: Buffer) => string): string[] {
  const keys = ['packs/', 'index/', 'manifests/'].flatMap((p) => backend.keys(p));
  assert.ok(keys.length >= 3, 'a pack, an index and a manifest at least');
  return keys.filter((k) => k.slice(k.lastIndexOf('/') + 1) !== name(backend.bytes(k)!));
}

async function restored(repo: Repository, backupId: string): Promise<Buffer> {
  const file = (await repo.loadManifest(backupId)).body.vms[0]!.files[0]!;
  const sink = bufferSink(file.size);
  await repo.restoreFile(file, sink);
  return sink.data;
}

/** The file's chunks that are not all zero, with their ids. */
function dataChunks(data: Buffer, ids: string[]): [Buffer, string][] {
  return ids
    .map((id, i): [Buffer, string] => [data.subarray(i * CS, (i + 1) * CS), id])
    .filter(([, id]) => id !== 'zero');
}

const blake3Hex = (data: Buffer) => blake3(data).toString('hex');
const sha256Hex = (data: Buffer) => createHash('sha256').update(data).digest('hex');

describe('repository format versions: 2 (keyed BLAKE3) for new repositories, 1 (HMAC-SHA256) kept', () => {
  it('the BLAKE3 binding gives the reference test vectors (hash, keyed_hash, derive_key)', () => {
    // From the BLAKE3 team's test_vectors.json (first 32 bytes of each output): input i % 251, this key and
    // context. A binding that hashed otherwise would make repositories no other BLAKE3 reader could check.
    const key = Buffer.from('whats the Elvish word for friend');
    const context = 'BLAKE3 2019-12-27 16:29:52 test vectors context';
    const cases: [number, string, string, string][] = [
      [
        1,
        '2d3adedff11b61f14c886e35afa036736dcd87a74d27b5c1510225d0f592e213',
        '6d7878dfff2f485635d39013278ae14f1454b8c0a3a2d34bc1ab38228a80c95b',
        'b3e2e340a117a499c6cf2398a19ee0d29cca2bb7404c73063382693bf66cb06c',
      ],
      [
        7169,
        'a003fc7a51754a9b3c7fae0367ab3d782dccf28855a03d435f8cfe74605e7817',
        'ed9b1a922c046fdb3d423ae34e143b05ca1bf28b710432857bf738bcedbfa511',
        '554b0a5efea9ef183f2f9b931b7497995d9eb26f5c5c6dad2b97d62fc5ac31d9',
      ],
    ];
    for (const [length, hash, keyed, derived] of cases) {
      const input = Buffer.alloc(length);
      for (let i = 0; i < length; i++) input[i] = i % 251;
      assert.equal(blake3Hex(input), hash);
      assert.equal(Blake3Hasher.newKeyed(key).update(input).digest('hex'), keyed);
      assert.equal(Blake3Hasher.deriveKey(context, input).toString('hex'), derived);
    }
  });

  it('ids depend on the algorithm and the key: never the same between versions, keys, or a plain hash', () => {
    const data = pseudoRandom(CS, 'ids');
    const macKey = Buffer.alloc(32, 1);
    const v1 = hashes({ chunkId: 'hmac-sha256', objectName: 'sha256' }, macKey);
    const v2 = hashes({ chunkId: 'blake3-keyed', objectName: 'blake3' }, macKey);
    const v2other = hashes({ chunkId: 'blake3-keyed', objectName: 'blake3' }, Buffer.alloc(32, 2));
    const ids = [
      v1.chunkId(data),
      v2.chunkId(data),
      v2other.chunkId(data),
      blake3Hex(data),
      // macKey itself as the BLAKE3 key: version 2 keys with a key derived from it, never macKey as it is.
      Blake3Hasher.newKeyed(macKey).update(data).digest('hex'),
    ];
    assert.equal(new Set(ids).size, ids.length, ids.join('\n'));
    for (const id of ids) assert.match(id, /^[0-9a-f]{64}$/);
    assert.equal(v2.chunkId(data), v2.chunkId(Buffer.from(data)), 'the same bytes, the same id');
    assert.equal(v1.contentName(data), sha256Hex(data));
    assert.equal(v2.contentName(data), blake3Hex(data));
  });

  it('a new repository is version 2: keyed BLAKE3 ids as documented, BLAKE3 names; restores, checks clean', async () => {
    const backend = new MemoryBackend();
    const repo = await initRepository(backend, PASS, { ...FAST, chunkSize: CS, packSize: 1 << 20 });
    const config = JSON.parse(backend.bytes('config')!.toString('utf8'));
    assert.equal(config.version, 2);
    assert.equal(config.chunkId, 'blake3-keyed');
    assert.equal(config.objectName, 'blake3');
    const data = Buffer.concat([
      pseudoRandom(20 * CS, 'v2'),
      Buffer.alloc(3 * CS),
      pseudoRandom(999, 'tail'),
    ]);
    const w = await repo.writer();
    const f = await w.addFile(bufferSource('disk', data));
    await w.commit(fileEntry([f]));
    await repo.close();

    // docs/repository-format.md: id = BLAKE3 keyed by derive_key("snapkeeper 2026-12-02 repository chunk
    // id key", macKey), over the chunk's plaintext, hex.
    const { macKey } = await masterKeys(backend);
    const key = Blake3Hasher.deriveKey('snapkeeper 2026-12-02 repository chunk id key', macKey);
    const chunks = dataChunks(data, f.chunks);
    assert.equal(chunks.length, 21);
    for (const [chunk, id] of chunks)
      assert.equal(id, Blake3Hasher.newKeyed(key).update(chunk).digest('hex'));
    assert.deepEqual(misnamed(backend, blake3Hex), []);

    const again = await openRepository(backend, PASS, FAST);
    assert.ok((await restored(again, 'b1')).equals(data));
    const report = await again.check({ readData: true });
    assert.deepEqual(report.issues, []);
    assert.equal(report.chunks, 21);
    await again.close();
  });

  it('a version-1 repository stays version 1: incremental offload, dedup, restore, check, prune', async () => {
    const backend = new MemoryBackend();
    const repo = await initRepository(backend, PASS, {
      ...FAST,
      chunkSize: CS,
      packSize: 1 << 20,
      formatVersion: 1,
    });
    const configBytes = Buffer.from(backend.bytes('config')!);
    const config = JSON.parse(configBytes.toString('utf8'));
    // Exactly the fields a version-1 config always had: an older snapkeeper reads it as its own.
    assert.deepEqual(Object.keys(config), [
      'format',
      'version',
      'id',
      'created',
      'chunker',
      'compression',
      'encryption',
      'chunkId',
      'packSize',
      'kdf',
    ]);
    assert.equal(config.version, 1);
    assert.equal(config.chunkId, 'hmac-sha256');
    const v1 = Buffer.concat([pseudoRandom(12 * CS, 'old'), Buffer.alloc(4 * CS)]);
    const w1 = await repo.writer();
    const f1 = await w1.addFile(bufferSource('disk', v1));
    await w1.commit(fileEntry([f1], 'b1'));
    await repo.close();

    const reopened = await openRepository(backend, PASS, FAST);
    // The second backup changes chunks 0..7 and reads only them; chunks 8..11 keep their ids unread.
    const v2 = Buffer.from(v1);
    pseudoRandom(8 * CS, 'new').copy(v2, 0);
    let added = 0;
    const w2 = await reopened.writer({ onProgress: (p) => (added = p.bytesAdded) });
    const source = bufferSource('disk', v2, { previous: f1, changedRanges: [{ offset: 0, length: 8 * CS }] });
    const f2 = await w2.addFile(source);
    await w2.commit(fileEntry([f2], 'b2'));
    assert.equal(source.bytesRead, 8 * CS);
    assert.deepEqual(f2.chunks.slice(8), f1.chunks.slice(8));
    assert.ok(f2.chunks.slice(0, 8).every((id, i) => id !== f1.chunks[i]));
    assert.ok(added < 9 * CS, `the second backup added ${added} bytes for 8 new chunks`);
    // A full read of the same data stores nothing new: its chunks dedup against the stored ones.
    let addedAgain = 0;
    const w3 = await reopened.writer({ onProgress: (p) => (addedAgain = p.bytesAdded) });
    const f3 = await w3.addFile(bufferSource('disk', v2));
    await w3.abort();
    assert.deepEqual(f3.chunks, f2.chunks);
    assert.equal(addedAgain, 0);

    const { macKey } = await masterKeys(backend);
    for (const [chunk, id] of [...dataChunks(v1, f1.chunks), ...dataChunks(v2, f2.chunks)]) {
      assert.equal(id, createHmac('sha256', macKey).update(chunk).digest('hex'));
    }
    assert.deepEqual(misnamed(backend, sha256Hex), []);
    assert.ok((await restored(reopened, 'b1')).equals(v1));
    assert.ok((await restored(reopened, 'b2')).equals(v2));
    assert.deepEqual((await reopened.check({ readData: true })).issues, []);

    // Prune rewrites b1's pack (4 of its 12 chunks still needed): the new pack and index are SHA-256 named.
    await reopened.forget((await reopened.loadManifest('b1')).id);
    const pruned = await reopened.prune({ safetyDelayMs: 0, now: new Date(Date.now() + 1000) });
    assert.equal(pruned.packsRewritten, 1);
    assert.deepEqual(misnamed(backend, sha256Hex), []);
    assert.deepEqual((await reopened.check({ readData: true })).issues, []);
    assert.ok((await restored(reopened, 'b2')).equals(v2));
    await reopened.close();
    assert.ok(backend.bytes('config')!.equals(configBytes), 'the config is never rewritten');
  });

  it('an unknown version or algorithm is refused with REPOSITORY_FORMAT naming it, before any key', async () => {
    const base = (await (async () => {
      const b = new MemoryBackend();
      await (await initRepository(b, PASS, FAST)).close();
      return JSON.parse(b.bytes('config')!.toString('utf8'));
    })()) as Record<string, unknown>;
    const cases: [Record<string, unknown>, RegExp][] = [
      [{ version: 3 }, /version 3; this snapkeeper reads only snapkeeper-repository versions 1 and 2/],
      [
        { chunkId: 'blake3' },
        /version 2 with chunk id algorithm "blake3" .*knows version 2 only with "blake3-keyed"/,
      ],
      [{ objectName: 'sha3-256' }, /object name algorithm "sha3-256"/],
      [{ objectName: undefined }, /object name algorithm undefined/],
      // A version-1 config cannot claim the version-2 functions, nor the reverse.
      [{ version: 1, objectName: undefined }, /version 1 with chunk id algorithm "blake3-keyed"/],
      [{ chunkId: 'hmac-sha256', objectName: 'sha256' }, /version 2 with chunk id algorithm "hmac-sha256"/],
    ];
    for (const [change, message] of cases) {
      const backend = new MemoryBackend();
      backend.put('config', Buffer.from(JSON.stringify({ ...base, ...change })));
      // No key file: a refusal that came from trying keys would be KEY_CORRUPT, not REPOSITORY_FORMAT.
      await assert.rejects(openRepository(backend, PASS, FAST), (e: unknown) => {
        assert.ok(isRepoError('REPOSITORY_FORMAT', ExitCode.usage)(e), String(e));
        assert.match((e as Error).message, message);
        return true;
      });
    }
    await assert.rejects(initRepository(new MemoryBackend(), PASS, { ...FAST, formatVersion: 3 }), {
      code: 'REPOSITORY_OPTIONS',
      message: /format version 3 is not one of 1, 2/,
    });
  });
});
