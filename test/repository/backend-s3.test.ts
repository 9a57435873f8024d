import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { describe, it } from 'node:test';
import { ListMultipartUploadsCommand } from '@aws-sdk/client-s3';
import type { SnapkeeperError } from '../../src/errors.js';
import { freePort, motoClient } from '../../src/lab/moto.js';
import {
  resolveS3Credentials,
  S3Backend,
  type S3BackendOptions,
  StorageError,
} from '../../src/repository/index.js';
import { fileMoto, MOTO_ACCESS_KEY, MOTO_SECRET_KEY, startS3FaultProxy } from '../helpers/moto.js';
import { backendConformance } from './backend-conformance.js';

const moto = fileMoto();
const MiB = 1024 * 1024;

function backendAt(endpoint: string, bucket: string, extra: Partial<S3BackendOptions> = {}): S3Backend {
  return new S3Backend({
    endpoint,
    bucket,
    prefix: 'repos/test',
    pathStyle: true,
    credentials: { accessKeyId: MOTO_ACCESS_KEY, secretAccessKey: MOTO_SECRET_KEY },
    // Small parts so that multipart (and an abort between parts) is exercised with small objects.
    multipartThreshold: 8 * MiB,
    partSize: 5 * MiB,
    retry: { attempts: 5, baseMs: 20, maxMs: 200 },
    ...extra,
  });
}

for (const variant of ['plain', 'object-lock'] as const) {
  backendConformance(
    `s3 (moto, ${variant} bucket)`,
    async () => {
      const lock = variant === 'object-lock';
      const bucket = await moto.bucket({ objectLock: lock });
      const backend = backendAt(moto.endpoint(), bucket, { objectLock: lock });
      return { backend, cleanup: async () => backend.destroy() };
    },
    {
      conditionalWrite: true,
      objectLock: variant === 'object-lock',
      largeObjectBytes: 24 * MiB,
      manyKeys: 1100,
      capability: (t) => moto.require(t),
    },
  );
}

backendConformance(
  's3 (moto, head-then-put)',
  async () => {
    const bucket = await moto.bucket();
    const backend = backendAt(moto.endpoint(), bucket, { conditionalWrite: 'head-then-put' });
    return { backend, cleanup: async () => backend.destroy() };
  },
  // No If-None-Match is sent: the suite checks the declared race window (racing writers, one whole object).
  {
    conditionalWrite: false,
    objectLock: false,
    largeObjectBytes: 24 * MiB,
    manyKeys: 10,
    capability: (t) => moto.require(t),
  },
);

describe('S3Backend against faults (a proxy in front of moto)', () => {
  it('503 SlowDown and 500 are retried with backoff and the save succeeds', async (t) => {
    if (!moto.require(t)) return;
    const bucket = await moto.bucket();
    const proxy = await startS3FaultProxy(moto.endpoint(), [
      { method: 'PUT', action: 'slowdown', times: 1 },
      { method: 'PUT', action: 'status', status: 500, times: 1 },
    ]);
    t.after(() => proxy.close());
    const retries: string[] = [];
    const b = backendAt(proxy.endpoint, bucket, {
      onRetry: (r) => retries.push(`${r.operation} ${r.key}: ${r.reason}`),
    });
    t.after(() => b.destroy());
    await b.save('packs/aa/one', Buffer.from('payload'));
    assert.equal((await b.load('packs/aa/one')).toString(), 'payload');
    assert.deepEqual(
      proxy.seen.filter((s) => s.method === 'PUT').map((s) => s.injected ?? 'forwarded'),
      ['slowdown', 'status', 'forwarded'],
    );
    assert.equal(retries.length, 2);
    assert.match(retries[0]!, /^save packs\/aa\/one: HTTP 503 SlowDown/);
    assert.match(retries[1]!, /^save packs\/aa\/one: HTTP 500 InternalError/);
  });

  it('a known SHA-256 (a content name) signs the save as it is: the server checks the bytes against it', async (t) => {
    if (!moto.require(t)) return;
    const bucket = await moto.bucket();
    const proxy = await startS3FaultProxy(moto.endpoint());
    t.after(() => proxy.close());
    const b = backendAt(proxy.endpoint, bucket, { retry: { attempts: 1, baseMs: 1, maxMs: 1 } });
    t.after(() => b.destroy());
    const data = randomBytes(100_000);
    const sha256 = createHash('sha256').update(data).digest('hex');
    await b.save('packs/aa/named', [data.subarray(0, 40_000), data.subarray(40_000)], { sha256 });
    assert.deepEqual(await b.load('packs/aa/named'), data);
    assert.deepEqual(
      proxy.seen.filter((s) => s.method === 'PUT').map((s) => s.payloadHash),
      [sha256],
    );
    // A hash that is not the bytes' (a damaged buffer, a caller's bug): refused by the server, nothing stored.
    const wrong = createHash('sha256').update('something else').digest('hex');
    await assert.rejects(b.save('packs/aa/wrong', data, { sha256: wrong }), (err: StorageError) => {
      assert.match(err.message, /XAmzContentSHA256Mismatch/);
      return true;
    });
    assert.equal(await b.stat('packs/aa/wrong'), undefined);
  });

  it('dropped connections are retried: a lost request, a lost answer (recognised as its own write)', async (t) => {
    if (!moto.require(t)) return;
    const bucket = await moto.bucket();
    const proxy = await startS3FaultProxy(moto.endpoint());
    t.after(() => proxy.close());
    const b = backendAt(proxy.endpoint, bucket);
    t.after(() => b.destroy());
    proxy.rules = [
      { method: 'PUT', match: /lost-request/, action: 'drop', times: 1 },
      { method: 'PUT', match: /lost-answer/, action: 'drop', when: 'after', times: 1 },
      { method: 'GET', match: /lost-request/, action: 'drop', times: 1 },
    ];
    await b.save('lost-request', Buffer.from('a'));
    // moto stored it but the answer never came: the retry meets 412 and the ETag says it is ours.
    await b.save('lost-answer', Buffer.from('b'));
    assert.equal((await b.load('lost-request')).toString(), 'a');
    assert.equal((await b.load('lost-answer')).toString(), 'b');
    assert.equal(proxy.seen.filter((s) => s.injected === 'drop').length, 3);
    // Someone else's object under the key is still refused after a lost answer.
    proxy.rules = [{ method: 'PUT', match: /lost-answer/, action: 'drop', times: 1 }];
    await assert.rejects(b.save('lost-answer', Buffer.from('c')), { code: 'OBJECT_EXISTS' });
  });

  it('an attempt that gets no answer times out and is retried', async (t) => {
    if (!moto.require(t)) return;
    const bucket = await moto.bucket();
    const proxy = await startS3FaultProxy(moto.endpoint());
    t.after(() => proxy.close());
    const retries: string[] = [];
    const b = backendAt(proxy.endpoint, bucket, {
      attemptTimeoutMs: 500,
      onRetry: (r) => retries.push(`${r.operation} ${r.key}: ${r.reason}`),
    });
    t.after(() => b.destroy());
    await b.save('slow', Buffer.from('s'));
    proxy.rules = [{ method: 'GET', action: 'hang', times: 1 }];
    assert.equal((await b.load('slow')).toString(), 's');
    assert.deepEqual(
      proxy.seen.filter((s) => s.method === 'GET').map((s) => s.injected ?? 'forwarded'),
      ['hang', 'forwarded'],
    );
    assert.equal(retries.length, 1);
    assert.match(retries[0]!, /^load slow: AttemptTimeout no answer within/);
  });

  it('a lost answer to CompleteMultipartUpload: the save succeeds, nothing is left in progress', async (t) => {
    if (!moto.require(t)) return;
    const bucket = await moto.bucket();
    const proxy = await startS3FaultProxy(moto.endpoint(), [
      { method: 'POST', match: /uploadId=/, action: 'drop', when: 'after', times: 1 },
      { method: 'PUT', match: /partNumber=2/, action: 'slowdown', times: 1 },
    ]);
    t.after(() => proxy.close());
    const b = backendAt(proxy.endpoint, bucket);
    t.after(() => b.destroy());
    const data = Buffer.alloc(12 * MiB + 3, 5);
    await b.save('packs/big', data);
    assert.deepEqual(await b.load('packs/big'), data);
    assert.equal(proxy.seen.filter((s) => s.injected).length, 2);
    const client = motoClient(moto.endpoint());
    t.after(() => client.destroy());
    const uploads = await client.send(new ListMultipartUploadsCommand({ Bucket: bucket }));
    assert.deepEqual(uploads.Uploads ?? [], []);
  });

  it('an aborted multipart save leaves no upload in progress', async (t) => {
    if (!moto.require(t)) return;
    const bucket = await moto.bucket();
    const b = backendAt(moto.endpoint(), bucket, { partConcurrency: 1 });
    t.after(() => b.destroy());
    const c = new AbortController();
    const proxy = await startS3FaultProxy(moto.endpoint());
    t.after(() => proxy.close());
    const viaProxy = backendAt(proxy.endpoint, bucket, { partConcurrency: 1 });
    t.after(() => viaProxy.destroy());
    let settled = false;
    const saving = viaProxy.save('packs/aborted', Buffer.alloc(20 * MiB, 1), { signal: c.signal });
    saving.then(
      () => {
        settled = true;
      },
      () => {
        settled = true;
      },
    );
    // Abort once the second part is on its way (the proxy saw it), so an upload certainly exists.
    while (!settled && proxy.seen.filter((s) => /partNumber=/.test(s.url)).length < 2) {
      await new Promise((r) => setImmediate(r));
    }
    c.abort();
    await assert.rejects(saving, { name: 'AbortError' });
    const client = motoClient(moto.endpoint());
    t.after(() => client.destroy());
    const uploads = await client.send(new ListMultipartUploadsCommand({ Bucket: bucket }));
    assert.deepEqual(uploads.Uploads ?? [], []);
    assert.equal(await b.stat('packs/aborted'), undefined);
  });

  it('a refusing endpoint fails after the bounded attempts with a StorageError naming it', async (t) => {
    const port = await freePort();
    const endpoint = `http://127.0.0.1:${port}`;
    let retries = 0;
    const b = backendAt(endpoint, 'nobucket', {
      retry: { attempts: 3, baseMs: 1, maxMs: 5 },
      onRetry: () => retries++,
    });
    t.after(() => b.destroy());
    await assert.rejects(b.save('config', Buffer.from('x')), (err: Error) => {
      assert.ok(err instanceof StorageError, String(err));
      assert.equal((err as SnapkeeperError).code, 'STORAGE_UNAVAILABLE');
      assert.equal((err as SnapkeeperError).exitCode, 2);
      assert.ok(err.message.includes(endpoint), err.message);
      assert.match(err.message, /cannot save config after 3 attempts/);
      assert.match(err.message, /ECONNREFUSED/);
      assert.ok(!err.message.includes(MOTO_SECRET_KEY));
      return true;
    });
    assert.equal(retries, 2);
  });

  it('abort during a backoff wait stops at once, with no further attempt', { timeout: 30_000 }, async (t) => {
    if (!moto.require(t)) return;
    const bucket = await moto.bucket();
    const proxy = await startS3FaultProxy(moto.endpoint(), [{ method: 'PUT', action: 'slowdown' }]);
    t.after(() => proxy.close());
    const c = new AbortController();
    // A wait of about 10 minutes: only the abort can end it within the test's timeout.
    const b = backendAt(proxy.endpoint, bucket, {
      retry: { attempts: 5, baseMs: 600_000, maxMs: 600_000 },
      random: () => 0.99,
      onRetry: () => setImmediate(() => c.abort()),
    });
    t.after(() => b.destroy());
    await assert.rejects(b.save('k', Buffer.from('x'), { signal: c.signal }), { name: 'AbortError' });
    assert.equal(proxy.seen.length, 1);
  });

  it('a non-transient refusal is not retried: a missing bucket is STORAGE_FAILED naming bucket and endpoint', async (t) => {
    if (!moto.require(t)) return;
    let retries = 0;
    const b = backendAt(moto.endpoint(), 'no-such-bucket-here', { onRetry: () => retries++ });
    t.after(() => b.destroy());
    await assert.rejects(b.save('config', Buffer.from('x')), (err: Error) => {
      assert.equal((err as SnapkeeperError).code, 'STORAGE_FAILED');
      assert.match(
        err.message,
        /s3 no-such-bucket-here\/repos\/test at http:\/\/127\.0\.0\.1:\d+: cannot save config: HTTP 404 NoSuchBucket/,
      );
      return true;
    });
    assert.equal(retries, 0);
  });
});

describe('S3Backend read-ahead for ranged loads', () => {
  const gets = (proxy: { seen: { method: string; url: string }[] }, key: string) =>
    proxy.seen.filter((s) => s.method === 'GET' && s.url.includes(key)).length;

  it('chunks read in order out of one pack cost about two requests, not one each', async (t) => {
    if (!moto.require(t)) return;
    const bucket = await moto.bucket();
    const proxy = await startS3FaultProxy(moto.endpoint());
    t.after(() => proxy.close());
    const b = backendAt(proxy.endpoint, bucket);
    const direct = backendAt(proxy.endpoint, bucket, { readCache: false });
    t.after(() => b.destroy());
    t.after(() => direct.destroy());
    const pack = randomBytes(16 * MiB);
    await b.save('packs/aa/pack', pack);
    // As a restore reads: 1 MiB chunks in pack order, 4 in flight.
    const chunks = Array.from({ length: 16 }, (_, i) => ({ offset: i * MiB, length: MiB }));
    const readAll = async (backend: S3Backend) => {
      let next = 0;
      await Promise.all(
        Array.from({ length: 4 }, async () => {
          while (next < chunks.length) {
            const c = chunks[next++]!;
            assert.deepEqual(
              await backend.load('packs/aa/pack', c),
              pack.subarray(c.offset, c.offset + c.length),
            );
          }
        }),
      );
    };
    await readAll(b);
    const cached = gets(proxy, 'packs/aa/pack');
    assert.ok(cached <= 3, `${cached} GETs`);
    proxy.seen.length = 0;
    await readAll(direct);
    assert.equal(gets(proxy, 'packs/aa/pack'), 16);
  });

  it('one chunk of a pack is read as asked; a removed object is not served from memory', async (t) => {
    if (!moto.require(t)) return;
    const bucket = await moto.bucket();
    const proxy = await startS3FaultProxy(moto.endpoint());
    t.after(() => proxy.close());
    const b = backendAt(proxy.endpoint, bucket);
    t.after(() => b.destroy());
    const data = randomBytes(4 * MiB);
    await b.save('packs/bb/one', data);
    assert.deepEqual(
      await b.load('packs/bb/one', { offset: MiB, length: 100 }),
      data.subarray(MiB, MiB + 100),
    );
    // Elsewhere than on from the last read (a deduplicated chunk): read as asked, not the whole pack.
    assert.deepEqual(await b.load('packs/bb/one', { offset: 5, length: 10 }), data.subarray(5, 15));
    assert.equal(gets(proxy, 'packs/bb/one'), 2, 'a read behind the last one is read as asked');
    // On from the last read: the object once, whole; then served from memory.
    assert.deepEqual(await b.load('packs/bb/one', { offset: 15, length: 10 }), data.subarray(15, 25));
    assert.deepEqual(await b.load('packs/bb/one', { offset: 7, length: 10 }), data.subarray(7, 17));
    assert.equal(gets(proxy, 'packs/bb/one'), 3, 'a read going on from the last: the object once, whole');
    await b.remove('packs/bb/one');
    await assert.rejects(b.load('packs/bb/one', { offset: 5, length: 10 }), { code: 'OBJECT_NOT_FOUND' });
  });
});

describe('S3 credentials', () => {
  it('come from named variables or files; errors name the source, never the value', async (t) => {
    const { mkdtemp, writeFile, rm } = await import('node:fs/promises');
    const { tmpdir } = await import('node:os');
    const { join } = await import('node:path');
    const dir = await mkdtemp(join(tmpdir(), 'snapkeeper-s3-cred-'));
    t.after(() => rm(dir, { recursive: true, force: true }));
    process.env.SNAPKEEPER_TEST_KEY_ID = 'AKIDEXAMPLE';
    await writeFile(join(dir, 'secret'), 'very-secret-value\n');
    assert.deepEqual(
      await resolveS3Credentials({
        accessKeyIdEnv: 'SNAPKEEPER_TEST_KEY_ID',
        secretAccessKeyFile: join(dir, 'secret'),
      }),
      { accessKeyId: 'AKIDEXAMPLE', secretAccessKey: 'very-secret-value' },
    );
    assert.equal(await resolveS3Credentials({}), undefined);
    await assert.rejects(
      resolveS3Credentials({
        accessKeyIdEnv: 'SNAPKEEPER_TEST_UNSET_VAR',
        secretAccessKeyFile: join(dir, 'secret'),
      }),
      (err: Error) => {
        assert.equal((err as SnapkeeperError).exitCode, 3);
        assert.match(err.message, /SNAPKEEPER_TEST_UNSET_VAR is not set/);
        return true;
      },
    );
    await assert.rejects(resolveS3Credentials({ accessKeyIdEnv: 'SNAPKEEPER_TEST_KEY_ID' }), (err: Error) => {
      assert.match(err.message, /secret access key is missing/);
      assert.ok(!err.message.includes('AKIDEXAMPLE'));
      return true;
    });
    await writeFile(join(dir, 'two-lines'), 'a\nb\n');
    await assert.rejects(
      resolveS3Credentials({
        accessKeyIdEnv: 'SNAPKEEPER_TEST_KEY_ID',
        secretAccessKeyFile: join(dir, 'two-lines'),
      }),
      (err: Error) => {
        assert.match(err.message, /two-lines must hold one non-empty line/);
        return true;
      },
    );
  });

  it('the description names bucket, prefix and endpoint, never a key', () => {
    const b = new S3Backend({
      endpoint: 'http://127.0.0.1:9',
      bucket: 'bkt',
      prefix: 'a/b/',
      credentials: { accessKeyId: 'AKIDEXAMPLE', secretAccessKey: 'very-secret-value' },
    });
    assert.equal(b.description, 's3 bkt/a/b at http://127.0.0.1:9');
    b.destroy();
  });
});
