import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { describe, it } from 'node:test';
import { ReadCache } from '../../src/repository/backends/read-cache.js';
import { backoffDelay, RetryExhausted, withRetry } from '../../src/repository/backends/retry.js';

/** A fake object store that counts fetches: what the cache saves is what it does not ask. */
function store(objects: Record<string, Buffer>) {
  const calls: string[] = [];
  const fetcher = (key: string) => async (offset: number, length: number | undefined) => {
    calls.push(`${key}@${offset}+${length ?? 'end'}`);
    const data = objects[key];
    if (!data) throw Object.assign(new Error(`no ${key}`), { code: 'OBJECT_NOT_FOUND' });
    return Buffer.from(data.subarray(offset, length === undefined ? undefined : offset + length));
  };
  return { calls, fetcher };
}

describe('ReadCache', () => {
  it('reads a first range as asked, then the object once, then serves from memory', async () => {
    const a = randomBytes(1000);
    const s = store({ a });
    const c = new ReadCache({ objects: 2, maxObjectBytes: 4096 });
    assert.deepEqual(await c.read('a', 10, 5, s.fetcher('a')), a.subarray(10, 15));
    assert.deepEqual(await c.read('a', 20, 5, s.fetcher('a')), a.subarray(20, 25));
    assert.deepEqual(await c.read('a', 990, 50, s.fetcher('a')), a.subarray(990));
    assert.deepEqual(await c.read('a', 1000, 5, s.fetcher('a')), Buffer.alloc(0));
    assert.deepEqual(s.calls, ['a@10+5', 'a@0+4096']);
  });

  it('keeps at most `objects` objects (least recently used goes)', async () => {
    const objs = { a: randomBytes(100), b: randomBytes(100), c: randomBytes(100) };
    const s = store(objs);
    const c = new ReadCache({ objects: 2, maxObjectBytes: 4096 });
    for (const k of ['a', 'b', 'c'] as const) {
      await c.read(k, 0, 1, s.fetcher(k));
      await c.read(k, 1, 1, s.fetcher(k));
    }
    s.calls.length = 0;
    await c.read('c', 2, 1, s.fetcher('c'));
    await c.read('b', 2, 1, s.fetcher('b'));
    assert.deepEqual(s.calls, [], 'b and c are kept');
    await c.read('a', 2, 1, s.fetcher('a'));
    // a went for c; read again, it is fetched whole at once (it was read by range before).
    assert.deepEqual(s.calls, ['a@0+4096']);
  });

  it('an object larger than the limit: ranges past the kept prefix are read as asked, never refetched whole', async () => {
    const big = randomBytes(10_000);
    const s = store({ big });
    const c = new ReadCache({ maxObjectBytes: 4096 });
    await c.read('big', 0, 10, s.fetcher('big'));
    assert.deepEqual(await c.read('big', 100, 10, s.fetcher('big')), big.subarray(100, 110));
    assert.deepEqual(await c.read('big', 9000, 10, s.fetcher('big')), big.subarray(9000, 9010));
    assert.deepEqual(await c.read('big', 9500, 10, s.fetcher('big')), big.subarray(9500, 9510));
    assert.deepEqual(s.calls, ['big@0+10', 'big@0+4096', 'big@9000+10', 'big@9500+10']);
  });

  it('a dropped key is read again; a missing object fails as the backend says', async () => {
    const objs: Record<string, Buffer> = { a: Buffer.from('first') };
    const s = store(objs);
    const c = new ReadCache();
    await c.read('a', 0, 1, s.fetcher('a'));
    await c.read('a', 1, 1, s.fetcher('a'));
    c.drop('a');
    delete objs.a;
    await assert.rejects(c.read('a', 0, 1, s.fetcher('a')), { code: 'OBJECT_NOT_FOUND' });
    await assert.rejects(c.read('a', 0, 1, s.fetcher('a')), { code: 'OBJECT_NOT_FOUND' });
  });

  it("a caller waiting for another caller's fetch stops at once on abort", async () => {
    let release: (b: Buffer) => void = () => {};
    const c = new ReadCache();
    const slow = (offset: number, length: number | undefined) =>
      offset === 0 && length !== undefined && length > 1000
        ? new Promise<Buffer>((r) => {
            release = r;
          })
        : Promise.resolve(Buffer.alloc(length ?? 0));
    await c.read('k', 0, 1, slow);
    const first = c.read('k', 1, 1, slow);
    const ctl = new AbortController();
    const second = c.read('k', 2, 1, slow, ctl.signal);
    ctl.abort();
    await assert.rejects(second, { name: 'AbortError' });
    release(Buffer.alloc(10));
    assert.equal((await first).length, 1);
  });
});

describe('withRetry', () => {
  it('full jitter stays under the doubling cap', () => {
    const policy = { attempts: 8, baseMs: 100, maxMs: 1000 };
    assert.equal(
      backoffDelay(policy, 1, () => 0.999),
      99,
    );
    assert.equal(
      backoffDelay(policy, 3, () => 0.999),
      399,
    );
    assert.equal(
      backoffDelay(policy, 10, () => 0.999),
      999,
    );
    assert.equal(
      backoffDelay(policy, 10, () => 0),
      0,
    );
  });

  it('stops at the bounded attempts, at once on a failure that is not retryable', async () => {
    let n = 0;
    const fail = () => {
      n++;
      return Promise.reject(new Error(`boom ${n}`));
    };
    await assert.rejects(
      withRetry(fail, { attempts: 3, baseMs: 1, maxMs: 1, retryable: () => true }),
      (err: Error) =>
        err instanceof RetryExhausted && err.attempts === 3 && err.gaveUp && /boom 3/.test(err.message),
    );
    n = 0;
    await assert.rejects(
      withRetry(fail, { attempts: 3, baseMs: 1, maxMs: 1, retryable: () => false }),
      (err: Error) => err instanceof RetryExhausted && err.attempts === 1 && !err.gaveUp,
    );
  });
});
