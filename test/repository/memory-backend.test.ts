import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ConflictError, NotFoundError } from '../../src/errors.js';
import { MemoryBackend } from '../../src/repository/index.js';

describe('MemoryBackend', () => {
  it('is write-once and reads ranges', async () => {
    const b = new MemoryBackend();
    await b.save('packs/aa/x', Buffer.from('hello world'));
    await assert.rejects(b.save('packs/aa/x', Buffer.from('other')), (e) => e instanceof ConflictError);
    assert.equal((await b.load('packs/aa/x', { offset: 6, length: 5 })).toString(), 'world');
    assert.deepEqual(await b.stat('packs/aa/x'), { key: 'packs/aa/x', size: 11 });
    await assert.rejects(b.load('nope'), (e) => e instanceof NotFoundError && e.code === 'OBJECT_NOT_FOUND');
    const listed = [];
    for await (const o of b.list('packs/')) listed.push(o.key);
    assert.deepEqual(listed, ['packs/aa/x']);
    await b.remove('packs/aa/x');
    await b.remove('packs/aa/x');
    assert.equal(await b.stat('packs/aa/x'), undefined);
  });

  it('injects faults once and damages bytes', async () => {
    const b = new MemoryBackend();
    await b.save('k', Buffer.from([0, 1, 2, 3]));
    b.failNext('load', new Error('boom'));
    await assert.rejects(b.load('k'), /boom/);
    assert.deepEqual([...(await b.load('k'))], [0, 1, 2, 3]);
    b.flipBit('k', 1, 1);
    b.truncate('k', 3);
    assert.deepEqual([...(await b.load('k'))], [0, 3, 2]);
    const ac = new AbortController();
    ac.abort();
    await assert.rejects(b.save('j', Buffer.alloc(1), { signal: ac.signal }), { name: 'AbortError' });
    assert.equal(await b.stat('j'), undefined);
  });
});
