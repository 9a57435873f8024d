import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { describe, it } from 'node:test';
import { ExitCode } from '../../src/errors.js';
import {
  FORMAT_NAME,
  initRepository,
  MemoryBackend,
  openRepository,
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
    assert.equal(config.version, 1);
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

  it('another format or version is refused with REPOSITORY_FORMAT naming what was found', async () => {
    const cases: [string, RegExp][] = [
      [JSON.stringify({ format: FORMAT_NAME, version: 2 }), /version 2/],
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

  it('chunk ids are keyed: the same bytes get other ids in another repository, never their SHA-256', async () => {
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
