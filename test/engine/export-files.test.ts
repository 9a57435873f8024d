import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { hostExportFiles, type SyncableHandle, SyncingFile } from '../../src/engine/export-files.js';

/**
 * SyncingFile, the sink of a restore from a repository: background data syncs while writing, at most one at a
 * time, the final sync before `finish` resolves, and a failed sync failing the file for good. The fake handle
 * below answers in microtasks, so "not yet" is decided by letting every pending callback run (setImmediate),
 * never by waiting for time to pass.
 */

const KiB = 1024;

interface Deferred {
  promise: Promise<void>;
  resolve(): void;
  reject(err: Error): void;
}

function deferred(): Deferred {
  let resolve!: () => void;
  let reject!: (err: Error) => void;
  const promise = new Promise<void>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

/** Every callback already due has run. */
const settle = () => new Promise<void>((resolve) => setImmediate(resolve));

/** A file in memory recording the order of calls; each datasync waits for the test to let it end. */
class FakeHandle implements SyncableHandle {
  bytes = Buffer.alloc(0);
  readonly calls: string[] = [];
  readonly syncs: Deferred[] = [];
  /** Set to answer datasync at once (the final one, in tests not about the background ones). */
  syncAtOnce = false;

  async write(buffer: Buffer, offset: number, length: number, position: number) {
    // Short writes: SyncingFile must loop until every byte is written.
    const n = Math.min(length, 3 * KiB);
    if (this.bytes.length < position + n) {
      this.bytes = Buffer.concat([this.bytes, Buffer.alloc(position + n - this.bytes.length)]);
    }
    buffer.copy(this.bytes, position, offset, offset + n);
    this.calls.push('write');
    return { bytesWritten: n };
  }

  datasync(): Promise<void> {
    this.calls.push('datasync');
    if (this.syncAtOnce) return Promise.resolve();
    const d = deferred();
    this.syncs.push(d);
    return d.promise;
  }

  async truncate(length: number) {
    this.calls.push(`truncate ${length}`);
    this.bytes =
      length <= this.bytes.length
        ? this.bytes.subarray(0, length)
        : Buffer.concat([this.bytes, Buffer.alloc(length - this.bytes.length)]);
  }

  async close() {
    this.calls.push('close');
  }

  count(call: string): number {
    return this.calls.filter((c) => c === call).length;
  }
}

function block(byte: number, length = 16 * KiB): Buffer {
  return Buffer.alloc(length, byte);
}

describe('SyncingFile', () => {
  it('starts a sync every syncEvery bytes while writes go on, and syncs once more before finish resolves', async () => {
    const h = new FakeHandle();
    const f = new SyncingFile(h, 32 * KiB);
    await f.write(0, block(1));
    assert.equal(h.count('datasync'), 0, 'nothing synced before syncEvery bytes');
    await f.write(16 * KiB, block(2));
    assert.equal(h.count('datasync'), 1, 'a sync starts at syncEvery bytes');
    // Writes go on while it runs, and start no second one.
    await f.write(32 * KiB, block(3));
    await f.write(48 * KiB, block(4));
    assert.equal(h.count('datasync'), 1, 'at most one sync at a time');
    h.syncs[0]!.resolve();
    await settle();
    await f.write(64 * KiB, block(5));
    assert.equal(h.count('datasync'), 2, 'the bytes written during the first sync start the next');
    h.syncs[1]!.resolve();

    let finished = false;
    const done = f.finish(100 * KiB).then(() => {
      finished = true;
    });
    await settle();
    assert.equal(finished, false, 'finish waits for its final sync');
    assert.deepEqual(h.calls.slice(-2), [`truncate ${100 * KiB}`, 'datasync']);
    h.syncs[2]!.resolve();
    await done;
    assert.deepEqual(h.calls.slice(-1), ['close']);
    assert.equal(h.bytes.length, 100 * KiB);
    for (let i = 0; i < 5; i++)
      assert.ok(h.bytes.subarray(i * 16 * KiB, (i + 1) * 16 * KiB).equals(block(i + 1)));
    assert.ok(h.bytes.subarray(80 * KiB).equals(Buffer.alloc(20 * KiB)), 'the tail is zeros');
  });

  it('makes writes wait once 2 x syncEvery bytes are behind a running sync', async () => {
    const h = new FakeHandle();
    const f = new SyncingFile(h, 16 * KiB);
    await f.write(0, block(1));
    assert.equal(h.count('datasync'), 1);
    await f.write(16 * KiB, block(2));
    await f.write(32 * KiB, block(3));
    let written = false;
    const waiting = f.write(48 * KiB, block(4)).then(() => {
      written = true;
    });
    await settle();
    assert.equal(written, false, 'the write waits for the running sync');
    const writesBefore = h.count('write');
    h.syncs[0]!.resolve();
    await waiting;
    assert.ok(h.count('write') > writesBefore, 'then it is written');
    h.syncAtOnce = true;
    h.syncs[1]?.resolve();
    await f.finish(64 * KiB);
    assert.ok(h.bytes.subarray(48 * KiB).equals(block(4)));
  });

  it('fails every later write and finish after a background sync failed, and still closes', async () => {
    const h = new FakeHandle();
    const f = new SyncingFile(h, 16 * KiB);
    await f.write(0, block(1));
    h.syncs[0]!.reject(Object.assign(new Error('EIO: i/o error, fdatasync'), { code: 'EIO' }));
    await settle();
    await assert.rejects(f.write(16 * KiB, block(2)), /EIO/);
    assert.equal(h.count('write'), Math.ceil((16 * KiB) / (3 * KiB)), 'nothing more was written');
    h.syncAtOnce = true;
    await assert.rejects(f.finish(32 * KiB), /EIO/);
    assert.equal(h.count('datasync'), 1, 'no later sync pretends the data is safe');
    assert.deepEqual(h.calls.slice(-1), ['close']);
  });

  it('closes only once the running sync has ended', async () => {
    const h = new FakeHandle();
    const f = new SyncingFile(h, 16 * KiB);
    await f.write(0, block(1));
    const abandoned = f.abandon();
    await settle();
    assert.equal(h.count('close'), 0, 'not closed under a running sync');
    h.syncs[0]!.resolve();
    await abandoned;
    assert.equal(h.count('close'), 1);
    await f.abandon();
    assert.equal(h.count('close'), 1, 'closed once');
  });

  it('refuses a syncEvery that is not a positive number of bytes', () => {
    for (const bad of [0, -1, 1.5, Number.NaN]) {
      assert.throws(() => new SyncingFile(new FakeHandle(), bad), /syncEvery must be a positive number/);
    }
  });
});

describe('hostExportFiles.createNewFile', () => {
  const dirs: string[] = [];
  after(async () => {
    for (const d of dirs) await rm(d, { recursive: true, force: true });
  });

  it('writes out of order, leaves a trailing hole, and refuses an existing file', async () => {
    const dir = await mkdtemp(join(process.env.TMPDIR ?? tmpdir(), 'export-files-'));
    dirs.push(dir);
    const path = join(dir, 'disk-flat.vmdk');
    const f = await hostExportFiles.createNewFile(path);
    await Promise.all([f.write(64 * KiB, block(2, 64 * KiB)), f.write(0, block(1, 64 * KiB))]);
    await f.finish(192 * KiB);
    const bytes = await readFile(path);
    assert.equal((await stat(path)).size, 192 * KiB);
    assert.ok(bytes.subarray(0, 64 * KiB).equals(block(1, 64 * KiB)));
    assert.ok(bytes.subarray(64 * KiB, 128 * KiB).equals(block(2, 64 * KiB)));
    assert.ok(bytes.subarray(128 * KiB).equals(Buffer.alloc(64 * KiB)));
    await assert.rejects(hostExportFiles.createNewFile(path), /EEXIST/);
  });
});
