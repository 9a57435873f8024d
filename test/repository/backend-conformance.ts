import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { describe, type TestContext, test } from 'node:test';
import { ConflictError, NotFoundError, type SnapkeeperError } from '../../src/errors.js';
import type { BackendObject, RepositoryBackend } from '../../src/repository/types.js';

/**
 * The one suite every `RepositoryBackend` passes (src/repository/types.ts is the contract). An adapter's test
 * file only supplies a factory; what differs between backends is declared in `BackendExpectations`, never
 * silently skipped.
 */

export interface BackendUnderTest {
  backend: RepositoryBackend;
  /** Removes whatever the backend stored (a directory, a bucket's objects). */
  cleanup(): Promise<void>;
}

export interface BackendExpectations {
  conditionalWrite: boolean;
  objectLock: boolean;
  /** An object big enough that saving it takes several steps (slices, multipart parts): abort lands inside. */
  largeObjectBytes: number;
  /** Keys for the many-keys listing (over 1000 for S3's paging). */
  manyKeys: number;
  /** Checked before each test: false skips it (or fails it under SNAPKEEPER_REQUIRE_ALL=1). */
  capability?: (t: TestContext) => boolean;
}

async function collect(it: AsyncIterable<BackendObject>): Promise<BackendObject[]> {
  const out: BackendObject[] = [];
  for await (const o of it) out.push(o);
  return out.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
}

function isAbort(err: unknown): boolean {
  return (err as Error)?.name === 'AbortError';
}

async function withBackend(
  t: TestContext,
  factory: () => Promise<BackendUnderTest>,
  expect: BackendExpectations,
  body: (b: RepositoryBackend) => Promise<void>,
): Promise<void> {
  if (expect.capability && !expect.capability(t)) return;
  const under = await factory();
  try {
    await body(under.backend);
  } finally {
    await under.cleanup();
  }
}

/** Runs `limit` at a time. */
async function pool<T>(items: T[], limit: number, fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(limit, items.length) }, async () => {
      while (next < items.length) await fn(items[next++]!);
    }),
  );
}

export function backendConformance(
  name: string,
  factory: () => Promise<BackendUnderTest>,
  expect: BackendExpectations,
): void {
  const run = (t: TestContext, body: (b: RepositoryBackend) => Promise<void>) =>
    withBackend(t, factory, expect, body);

  describe(`RepositoryBackend conformance: ${name}`, () => {
    test('declares its capabilities and a description', (t) =>
      run(t, async (b) => {
        assert.equal(b.capabilities.conditionalWrite, expect.conditionalWrite);
        assert.equal(b.capabilities.objectLock, expect.objectLock);
        assert.ok(b.description.length > 0);
      }));

    test('save, load, stat, list and remove round-trip', (t) =>
      run(t, async (b) => {
        const data = randomBytes(70_001);
        await b.save('packs/ab/abcdef', data);
        await b.save('config', Buffer.from('{"v":1}'));
        await b.save('empty', new Uint8Array(0));
        assert.deepEqual(await b.load('packs/ab/abcdef'), data);
        assert.deepEqual(await b.stat('packs/ab/abcdef'), { key: 'packs/ab/abcdef', size: data.length });
        assert.deepEqual(await b.stat('empty'), { key: 'empty', size: 0 });
        assert.equal((await b.load('empty')).length, 0);
        assert.deepEqual(await collect(b.list('')), [
          { key: 'config', size: 7 },
          { key: 'empty', size: 0 },
          { key: 'packs/ab/abcdef', size: data.length },
        ]);
        await b.remove('packs/ab/abcdef');
        assert.equal(await b.stat('packs/ab/abcdef'), undefined);
        assert.deepEqual(
          (await collect(b.list('packs/'))).map((o) => o.key),
          [],
        );
        // Removing what is not there is fine.
        await b.remove('packs/ab/abcdef');
      }));

    test('an object saved in pieces is the pieces end to end, and write-once like any other', (t) =>
      run(t, async (b) => {
        const whole = randomBytes(3 * 70_001 + 5);
        // Views of one buffer, one of another, and an empty piece.
        const pieces = [
          whole.subarray(0, 70_001),
          Buffer.from(whole.subarray(70_001, 140_002)),
          new Uint8Array(0),
          whole.subarray(140_002),
        ];
        await b.save('packs/cd/pieces', pieces);
        assert.deepEqual(await b.load('packs/cd/pieces'), whole);
        assert.deepEqual(await b.stat('packs/cd/pieces'), { key: 'packs/cd/pieces', size: whole.length });
        await assert.rejects(
          b.save('packs/cd/pieces', [whole]),
          (err: Error) => err instanceof ConflictError,
        );
      }));

    test('keeps its own copy: the caller may reuse its buffer at once', (t) =>
      run(t, async (b) => {
        const data = Buffer.alloc(4096, 7);
        const copy = Buffer.from(data);
        await b.save('k', data);
        data.fill(9);
        assert.deepEqual(await b.load('k'), copy);
      }));

    test('ranged loads: inside, to the end, past the end', (t) =>
      run(t, async (b) => {
        const data = randomBytes(10_000);
        await b.save('r', data);
        assert.deepEqual(await b.load('r', { offset: 1234, length: 100 }), data.subarray(1234, 1334));
        assert.deepEqual(await b.load('r', { offset: 0, length: 1 }), data.subarray(0, 1));
        assert.deepEqual(await b.load('r', { offset: 9_000 }), data.subarray(9_000));
        assert.deepEqual(await b.load('r', { length: 10 }), data.subarray(0, 10));
        assert.deepEqual(await b.load('r', { offset: 9_990, length: 100 }), data.subarray(9_990));
        assert.equal((await b.load('r', { offset: 10_000, length: 5 })).length, 0);
        assert.equal((await b.load('r', { offset: 5, length: 0 })).length, 0);
      }));

    test('refuses to overwrite: OBJECT_EXISTS, the first content stays', (t) =>
      run(t, async (b) => {
        await b.save('index/one', Buffer.from('first'));
        await assert.rejects(b.save('index/one', Buffer.from('second')), (err: Error) => {
          assert.ok(err instanceof ConflictError, String(err));
          assert.equal(err.code, 'OBJECT_EXISTS');
          assert.match(err.message, /index\/one/);
          return true;
        });
        assert.equal((await b.load('index/one')).toString(), 'first');
      }));

    test(`concurrent saves of one key: ${expect.conditionalWrite ? 'exactly one wins' : 'one is stored whole (a declared race window)'}`, (t) =>
      run(t, async (b) => {
        const writers = Array.from({ length: 8 }, (_, i) => Buffer.alloc(64 * 1024 + i, i + 1));
        const results = await Promise.allSettled(writers.map((d) => b.save('locks/race', d)));
        const won = results.flatMap((r, i) => (r.status === 'fulfilled' ? [i] : []));
        for (const r of results) {
          if (r.status === 'rejected') assert.equal((r.reason as SnapkeeperError).code, 'OBJECT_EXISTS');
        }
        const stored = await b.load('locks/race');
        if (expect.conditionalWrite) {
          assert.equal(won.length, 1, `winners: ${won.join(',')}`);
          assert.deepEqual(stored, writers[won[0]!]);
        } else {
          // Without an atomic conditional write, racing writers may each pass the existence check; the last
          // one's bytes stand, never a mix.
          assert.ok(won.length >= 1);
          assert.ok(
            won.some((i) => stored.equals(writers[i]!)),
            "the stored object is one writer's bytes, whole",
          );
        }
      }));

    test('abort: before a save stores nothing; during a save leaves all or nothing', (t) =>
      run(t, async (b) => {
        const before = new AbortController();
        before.abort();
        await assert.rejects(b.save('aborted/before', Buffer.from('x'), { signal: before.signal }), isAbort);
        assert.equal(await b.stat('aborted/before'), undefined);

        const data = randomBytes(expect.largeObjectBytes);
        const during = new AbortController();
        const saving = b.save('aborted/during', data, { signal: during.signal });
        // Abort once the save is under way (its first await), not before it starts.
        await new Promise((r) => setImmediate(r));
        during.abort();
        const outcome = await saving.then(
          () => 'saved',
          (err: unknown) => {
            assert.ok(isAbort(err), `rejected with ${String(err)}`);
            return 'aborted';
          },
        );
        const st = await b.stat('aborted/during');
        if (outcome === 'aborted') {
          assert.equal(st, undefined, 'an aborted save left an object');
        } else {
          assert.deepEqual(await b.load('aborted/during'), data);
        }
        assert.deepEqual(
          (await collect(b.list('aborted/'))).map((o) => o.key),
          outcome === 'aborted' ? [] : ['aborted/during'],
        );
        // The key is free (or whole) for the next writer: a retry after abort works.
        if (outcome === 'aborted') {
          await b.save('aborted/during', data.subarray(0, 1000));
          assert.deepEqual(await b.load('aborted/during'), data.subarray(0, 1000));
        }
      }));

    test('abort: load, stat, list and remove reject with AbortError on an aborted signal', (t) =>
      run(t, async (b) => {
        await b.save('a', Buffer.from('a'));
        const c = new AbortController();
        c.abort();
        await assert.rejects(b.load('a', { signal: c.signal }), isAbort);
        await assert.rejects(b.stat('a', { signal: c.signal }), isAbort);
        await assert.rejects(collect(b.list('', { signal: c.signal })), isAbort);
        await assert.rejects(b.remove('a', { signal: c.signal }), isAbort);
        assert.deepEqual(await b.load('a'), Buffer.from('a'));
      }));

    test('missing keys: load is OBJECT_NOT_FOUND naming the key, stat undefined, list empty', (t) =>
      run(t, async (b) => {
        for (const opts of [{}, { offset: 10, length: 10 }]) {
          await assert.rejects(b.load('manifests/nope', opts), (err: Error) => {
            assert.ok(err instanceof NotFoundError, String(err));
            assert.equal(err.code, 'OBJECT_NOT_FOUND');
            assert.match(err.message, /manifests\/nope/);
            return true;
          });
        }
        assert.equal(await b.stat('manifests/nope'), undefined);
        assert.deepEqual(await collect(b.list('manifests/')), []);
      }));

    test('prefix listing: many keys, sizes, prefixes inside a name', (t) =>
      run(t, async (b) => {
        const keys = Array.from(
          { length: expect.manyKeys },
          (_, i) => `many/${String(i % 16).padStart(2, '0')}/k${String(i).padStart(5, '0')}`,
        );
        await pool(keys, 16, (k) => b.save(k, Buffer.alloc((k.charCodeAt(k.length - 1) % 5) + 1)));
        await b.save('many-other', Buffer.from('x'));
        await b.save('idx/ab1', Buffer.from('1'));
        await b.save('idx/ab2', Buffer.from('22'));
        await b.save('idx/b', Buffer.from('333'));
        const all = await collect(b.list('many/'));
        assert.equal(all.length, keys.length);
        assert.deepEqual(
          all.map((o) => o.key),
          [...keys].sort(),
        );
        for (const o of all) assert.equal(o.size, (o.key.charCodeAt(o.key.length - 1) % 5) + 1);
        const sub = await collect(b.list('many/03/'));
        assert.deepEqual(
          sub.map((o) => o.key),
          keys.filter((k) => k.startsWith('many/03/')).sort(),
        );
        assert.deepEqual(await collect(b.list('idx/a')), [
          { key: 'idx/ab1', size: 1 },
          { key: 'idx/ab2', size: 2 },
        ]);
        assert.deepEqual(
          (await collect(b.list('many'))).length,
          keys.length + 1,
          'a prefix that is not a directory matches names too',
        );
      }));

    if (expect.objectLock) {
      test('object lock: an object under retention cannot be removed', (t) =>
        run(t, async (b) => {
          const until = new Date(Date.now() + 3_600_000);
          await b.save('locked/one', Buffer.from('keep'), { retainUntil: until });
          await assert.rejects(b.remove('locked/one'), (err: Error) => {
            assert.equal((err as SnapkeeperError).exitCode, 2);
            assert.match(err.message, /locked\/one/);
            return true;
          });
          assert.equal((await b.load('locked/one')).toString(), 'keep');
          await b.save('locked/free', Buffer.from('go'));
          await b.remove('locked/free');
          assert.equal(await b.stat('locked/free'), undefined);
        }));
    }
  });
}
