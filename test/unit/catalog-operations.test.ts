import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, rmSync } from 'node:fs';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { after, beforeEach, describe, it } from 'node:test';
import Database from 'better-sqlite3';
import { Catalog, LEASE_MS, operationAlive, pidAlive } from '../../src/catalog/index.js';
import { ConflictError, LockedError, NotFoundError } from '../../src/errors.js';

const root = mkdtempSync(join(tmpdir(), 'snapkeeper-catalog-ops-'));
after(() => rmSync(root, { recursive: true, force: true }));
let n = 0;

/** A clock the test moves by hand, so stamped times are known. */
function manualClock(start = '2026-11-25T08:00:00.000Z') {
  let t = Date.parse(start);
  return {
    now: () => new Date(t),
    advance: (ms: number) => {
      t += ms;
    },
  };
}

let file: string;
let clock: ReturnType<typeof manualClock>;
let catalog: Catalog;
const others: Catalog[] = [];
beforeEach(() => {
  catalog?.close();
  for (const c of others.splice(0)) c.close();
  file = join(root, `c${++n}.db`);
  clock = manualClock();
  catalog = Catalog.create(file, { now: clock.now });
});
after(() => catalog?.close());

/** A second connection to the same file, as another snapkeeper process would have. */
function second(): Catalog {
  const c = Catalog.create(file, { now: clock.now });
  others.push(c);
  return c;
}

describe('catalog operations and journal', () => {
  it('begins, heartbeats and finishes an operation with stamped times', async () => {
    await catalog.beginOperation({ id: 'op-1', kind: 'backup', subject: 'nightly' });
    assert.deepEqual(await catalog.getOperation('op-1'), {
      id: 'op-1',
      kind: 'backup',
      subject: 'nightly',
      pid: process.pid,
      host: hostname(),
      state: 'running',
      startedAt: '2026-11-25T08:00:00.000Z',
      heartbeatAt: '2026-11-25T08:00:00.000Z',
    });
    clock.advance(30_000);
    await catalog.heartbeat('op-1');
    assert.equal((await catalog.getOperation('op-1')).heartbeatAt, '2026-11-25T08:00:30.000Z');
    assert.deepEqual(
      (await catalog.unfinishedOperations()).map((o) => o.id),
      ['op-1'],
    );
    clock.advance(1000);
    await catalog.finishOperation('op-1', 'done');
    const op = await catalog.getOperation('op-1');
    assert.equal(op.state, 'done');
    assert.equal(op.finishedAt, '2026-11-25T08:00:31.000Z');
    assert.deepEqual(await catalog.unfinishedOperations(), []);
    await assert.rejects(
      async () => catalog.finishOperation('op-1', 'failed'),
      (e: unknown) => {
        assert.ok(e instanceof ConflictError);
        assert.equal(e.code, 'OPERATION_FINISHED');
        return true;
      },
    );
    assert.equal((await catalog.getOperation('op-1')).state, 'done');
  });

  it('refuses duplicate and unknown operations with stable codes', async () => {
    await catalog.beginOperation({ id: 'op-1', kind: 'restore', pid: 4242 });
    assert.equal((await catalog.getOperation('op-1')).pid, 4242);
    assert.equal((await catalog.getOperation('op-1')).subject, undefined);
    await assert.rejects(async () => catalog.beginOperation({ id: 'op-1', kind: 'backup' }), {
      code: 'OPERATION_EXISTS',
    });
    await assert.rejects(async () => catalog.beginOperation({ id: 'op-2', kind: 'dance' as 'backup' }), {
      code: 'INVALID_OPERATION',
    });
    assert.equal(await catalog.findOperation('op-2'), undefined);
    for (const call of [
      () => catalog.getOperation('ghost'),
      () => catalog.finishOperation('ghost', 'done'),
      () => catalog.heartbeat('ghost'),
      () => catalog.journal('ghost', { action: 'x', target: 'y' }),
      () => catalog.markRecovered('ghost'),
      () => catalog.acquireLocks('ghost', ['vm:1']),
    ]) {
      await assert.rejects(
        async () => call(),
        (e: unknown) => e instanceof NotFoundError && e.code === 'OPERATION_NOT_FOUND',
      );
    }
    await assert.rejects(async () => catalog.completeJournal(999, {}), { code: 'JOURNAL_ENTRY_NOT_FOUND' });
  });

  it('keeps journal entries in order, merges results on completion, and is visible to another process', async () => {
    await catalog.beginOperation({ id: 'op-1', kind: 'backup' });
    await catalog.beginOperation({ id: 'op-other', kind: 'expire' });
    const e1 = await catalog.journal('op-1', {
      action: 'vm.snapshot.create',
      target: 'vm-1',
      data: { name: 'snapkeeper-b1' },
    });
    clock.advance(10);
    const eOther = await catalog.journal('op-other', { action: 'array.snapshot.delete', target: 'arr1/s-0' });
    const e2 = await catalog.journal('op-1', {
      action: 'array.snapshot',
      target: 'arr1',
      data: { volumes: ['v1', 'v2'] },
    });
    const e3 = await catalog.journal('op-1', { action: 'vm.snapshot.remove', target: 'vm-1' });
    assert.ok(e1 < eOther && eOther < e2 && e2 < e3);

    // Committed as soon as journal() returns: a second connection sees the entry before any completion.
    const reader = second();
    assert.deepEqual(
      (await reader.journalEntries('op-1')).map((e) => [e.id, e.action, e.completedAt]),
      [
        [e1, 'vm.snapshot.create', undefined],
        [e2, 'array.snapshot', undefined],
        [e3, 'vm.snapshot.remove', undefined],
      ],
    );

    clock.advance(1000);
    await catalog.completeJournal(e1, { snapshotId: 'snapshot-17' });
    await catalog.completeJournal(e2);
    clock.advance(1000);
    await catalog.completeJournal(e1, { extra: true }); // idempotent: keeps the first completion time
    const entries = await reader.journalEntries('op-1');
    assert.deepEqual(entries[0], {
      id: e1,
      operationId: 'op-1',
      action: 'vm.snapshot.create',
      target: 'vm-1',
      data: { name: 'snapkeeper-b1', snapshotId: 'snapshot-17', extra: true },
      createdAt: '2026-11-25T08:00:00.000Z',
      completedAt: '2026-11-25T08:00:01.010Z',
    });
    assert.deepEqual(entries[1]?.data, { volumes: ['v1', 'v2'] });
    assert.equal(entries[1]?.completedAt, '2026-11-25T08:00:01.010Z');
    assert.equal(entries[2]?.completedAt, undefined);
    assert.deepEqual(entries[2]?.data, {});
    assert.deepEqual(
      (await reader.journalEntries('op-other')).map((e) => e.id),
      [eOther],
    );
    assert.deepEqual(await reader.journalEntries('ghost'), []);
  });

  it('marks failed operations recovered, lists them by filter, and prunes only what needs no recovery', async () => {
    await catalog.beginOperation({ id: 'done-old', kind: 'backup' });
    await catalog.beginOperation({ id: 'failed-old', kind: 'backup' });
    await catalog.beginOperation({ id: 'failed-recovered', kind: 'restore' });
    await catalog.beginOperation({ id: 'still-running', kind: 'mount' });
    await catalog.journal('failed-recovered', { action: 'a', target: 't' });
    await catalog.finishOperation('done-old', 'done');
    await catalog.finishOperation('failed-old', 'failed');
    await catalog.finishOperation('failed-recovered', 'failed');
    await assert.rejects(async () => catalog.markRecovered('still-running'), { code: 'OPERATION_RUNNING' });
    clock.advance(5000);
    await catalog.markRecovered('failed-recovered');
    assert.equal((await catalog.getOperation('failed-recovered')).recoveredAt, '2026-11-25T08:00:05.000Z');

    const names = (ops: { id: string }[]) => ops.map((o) => o.id).sort();
    assert.deepEqual(names(await catalog.listOperations({ state: ['failed'], recovered: false })), [
      'failed-old',
    ]);
    assert.deepEqual(names(await catalog.listOperations({ recovered: true })), ['failed-recovered']);
    assert.deepEqual(names(await catalog.listOperations({ kind: ['restore', 'mount'] })), [
      'failed-recovered',
      'still-running',
    ]);
    assert.equal((await catalog.listOperations({ limit: 2 })).length, 2);

    assert.equal(await catalog.pruneOperations('2026-11-25T07:00:00Z'), 0);
    assert.equal(await catalog.pruneOperations('2026-11-26'), 2);
    assert.deepEqual(names(await catalog.listOperations()), ['failed-old', 'still-running']);
    assert.deepEqual(await catalog.journalEntries('failed-recovered'), []);
  });
  it('reports a catalog kept write-locked by another process past the busy timeout as CATALOG_BUSY', async () => {
    const quick = Catalog.open(file, { busyTimeoutMs: 50 });
    others.push(quick);
    const holder = new Database(file);
    holder.exec('BEGIN IMMEDIATE');
    try {
      await assert.rejects(
        async () => quick.beginOperation({ id: 'op-1', kind: 'backup' }),
        (e: unknown) => e instanceof LockedError && e.code === 'CATALOG_BUSY' && e.message.includes(file),
      );
      // Readers are not blocked by a writer in WAL mode.
      assert.deepEqual(await quick.unfinishedOperations(), []);
    } finally {
      holder.exec('ROLLBACK');
      holder.close();
    }
    await quick.beginOperation({ id: 'op-1', kind: 'backup' });
    assert.equal((await catalog.getOperation('op-1')).state, 'running');
  });
});

describe('catalog locks', () => {
  it('names the holder when another running operation holds a resource', async () => {
    const a = catalog;
    const b = second();
    await a.beginOperation({ id: 'op-a', kind: 'backup', pid: process.pid });
    await a.acquireLocks('op-a', ['vm:vm-1', 'volume:arr1/vol-a']);
    await b.beginOperation({ id: 'op-b', kind: 'restore' });
    await assert.rejects(
      async () => b.acquireLocks('op-b', ['vm:vm-2', 'vm:vm-1']),
      (e: unknown) => {
        assert.ok(e instanceof LockedError);
        assert.equal(e.code, 'RESOURCE_LOCKED');
        assert.match(e.message, /vm:vm-1/);
        assert.match(e.message, /op-a/);
        assert.match(e.message, /backup/);
        assert.match(e.message, new RegExp(`pid ${process.pid}\\b`));
        assert.deepEqual(e.details?.conflicts, [
          { resource: 'vm:vm-1', operationId: 'op-a', kind: 'backup', pid: process.pid, host: hostname() },
        ]);
        return true;
      },
    );
    // All or nothing: the free resource asked for together with the held one was not taken.
    assert.deepEqual(await b.locksOf('op-b'), []);
    assert.deepEqual(await a.locksOf('op-a'), ['vm:vm-1', 'volume:arr1/vol-a']);
    // Re-taking one's own locks is a no-op, not a conflict.
    await a.acquireLocks('op-a', ['vm:vm-1']);
    assert.deepEqual(await a.locksOf('op-a'), ['vm:vm-1', 'volume:arr1/vol-a']);
  });

  it('frees locks when the holder finishes or releases them, and takes over stale rows', async () => {
    const a = catalog;
    const b = second();
    await a.beginOperation({ id: 'op-a', kind: 'backup' });
    await a.acquireLocks('op-a', ['vm:vm-1', 'vm:vm-1', 'vm:vm-2']);
    assert.deepEqual(await a.locksOf('op-a'), ['vm:vm-1', 'vm:vm-2']);
    await b.beginOperation({ id: 'op-b', kind: 'backup' });
    await assert.rejects(async () => b.acquireLocks('op-b', ['vm:vm-2']), { code: 'RESOURCE_LOCKED' });

    await a.finishOperation('op-a', 'done');
    assert.deepEqual(await a.locksOf('op-a'), []);
    await b.acquireLocks('op-b', ['vm:vm-1', 'vm:vm-2']);
    assert.deepEqual(await b.locksOf('op-b'), ['vm:vm-1', 'vm:vm-2']);

    await b.releaseLocks('op-b');
    assert.deepEqual(await b.locksOf('op-b'), []);
    await a.beginOperation({ id: 'op-c', kind: 'expire' });
    await a.acquireLocks('op-c', ['vm:vm-1']);
    assert.deepEqual(await a.locksOf('op-c'), ['vm:vm-1']);
    await assert.rejects(async () => a.acquireLocks('op-a', ['vm:vm-9']), { code: 'OPERATION_FINISHED' });
    await assert.rejects(async () => a.acquireLocks('op-c', ['']), { code: 'INVALID_RESOURCE' });
  });

  it('treats a lock row of an operation that is no longer running as free', async () => {
    await catalog.beginOperation({ id: 'op-dead', kind: 'backup' });
    await catalog.acquireLocks('op-dead', ['vm:vm-1', 'vm:vm-2']);
    // What a crash between two statements of an older release, or a hand edit, could leave: the operation
    // ended but its lock rows remain.
    const raw = new Database(file);
    raw.prepare("UPDATE operations SET state = 'failed' WHERE id = 'op-dead'").run();
    raw.close();
    assert.deepEqual(await catalog.locksOf('op-dead'), ['vm:vm-1', 'vm:vm-2']);

    const b = second();
    await b.beginOperation({ id: 'op-new', kind: 'backup' });
    await b.acquireLocks('op-new', ['vm:vm-1']);
    assert.deepEqual(await b.locksOf('op-new'), ['vm:vm-1']);
    assert.deepEqual(await b.locksOf('op-dead'), ['vm:vm-2']);
  });

  it('blocks on a live holder in another process and frees after it finishes', async () => {
    const child = spawnHolder('finish-on-stdin-close');
    const lines = createInterface({ input: child.stdout });
    const [ready] = (await once(lines, 'line')) as [string];
    assert.equal(ready, 'ready');
    try {
      await catalog.beginOperation({ id: 'op-parent', kind: 'restore' });
      const holder = await catalog.getOperation('op-child');
      assert.equal(holder.pid, child.pid);
      assert.equal(operationAlive(holder, new Date()), true);
      await assert.rejects(
        async () => catalog.acquireLocks('op-parent', ['vm:vm-1']),
        (e: unknown) => {
          assert.ok(e instanceof LockedError);
          assert.match(e.message, new RegExp(`op-child.*pid ${child.pid}\\b`));
          return true;
        },
      );
    } finally {
      child.stdin.end();
    }
    const [code] = await once(child, 'exit');
    assert.equal(code, 0);
    assert.equal((await catalog.getOperation('op-child')).state, 'done');
    await catalog.acquireLocks('op-parent', ['vm:vm-1']);
    assert.deepEqual(await catalog.locksOf('op-parent'), ['vm:vm-1']);
  });

  it('lets recover take over after the holder process died without finishing', async () => {
    const result = spawnSync(process.execPath, ['--input-type=module', '-e', holderScript('crash')], {
      encoding: 'utf8',
    });
    assert.equal(result.status, 0, result.stderr);
    const op = await catalog.getOperation('op-child');
    assert.equal(op.state, 'running');
    assert.equal(op.pid, result.pid);
    assert.equal(pidAlive(op.pid), false);
    assert.equal(operationAlive(op, new Date()), false);
    // The dead run still blocks until recover finishes it: the catalog does not guess liveness itself.
    await catalog.beginOperation({ id: 'op-recover', kind: 'recover' });
    await assert.rejects(async () => catalog.acquireLocks('op-recover', ['vm:vm-1']), {
      code: 'RESOURCE_LOCKED',
    });
    assert.deepEqual(
      // Sorted: the child stamps real time, this catalog a test clock.
      (await catalog.unfinishedOperations()).map((o) => o.id).sort(),
      ['op-child', 'op-recover'],
    );
    const pending = (await catalog.journalEntries('op-child')).filter((e) => e.completedAt === undefined);
    assert.deepEqual(
      pending.map((e) => [e.action, e.target]),
      [['vm.suspend', 'vm-1']],
    );
    await catalog.finishOperation('op-child', 'failed');
    await catalog.acquireLocks('op-recover', ['vm:vm-1']);
    await catalog.markRecovered('op-child');
    assert.ok((await catalog.getOperation('op-child')).recoveredAt);
  });

  it('operationAlive: another host counts by its lease alone; on this host a dead pid is dead at once', async () => {
    const now = new Date('2026-11-01T12:00:00.000Z');
    const at = (ms: number) => new Date(now.getTime() - ms).toISOString();
    const op = { state: 'running' as const, startedAt: at(10 * LEASE_MS) };
    const elsewhere = { ...op, pid: 999_999_999, host: `not-${hostname()}` };
    assert.equal(operationAlive({ ...elsewhere, heartbeatAt: at(LEASE_MS - 1) }, now), true);
    assert.equal(
      operationAlive({ ...elsewhere, heartbeatAt: at(LEASE_MS + 1) }, now),
      false,
      'lease ran out',
    );
    // A daemon running many operations in one live process: a stuck one is dead by its lease.
    const here = { ...op, pid: process.pid, host: hostname() };
    assert.equal(operationAlive({ ...here, heartbeatAt: at(1000) }, now), true);
    assert.equal(operationAlive({ ...here, heartbeatAt: at(LEASE_MS + 1) }, now), false);
    assert.equal(operationAlive({ ...here, pid: 999_999_999, heartbeatAt: at(0) }, now), false, 'pid gone');
    assert.equal(operationAlive({ ...here, state: 'done', heartbeatAt: at(0) }, now), false, 'finished');
    assert.equal(pidAlive(0), false);
    assert.equal(pidAlive(-1), false);
  });
});

/** Source of a child process that takes `vm:vm-1` for operation op-child in the test's catalog file. */
function holderScript(mode: 'crash' | 'finish-on-stdin-close'): string {
  const index = new URL('../../src/catalog/index.js', import.meta.url).href;
  return `
    import { Catalog } from ${JSON.stringify(index)};
    const catalog = Catalog.open(${JSON.stringify(file)});
    await catalog.beginOperation({ id: 'op-child', kind: 'backup', subject: 'nightly' });
    await catalog.acquireLocks('op-child', ['vm:vm-1']);
    const entry = await catalog.journal('op-child', { action: 'vm.suspend', target: 'vm-1' });
    if (${JSON.stringify(mode)} === 'crash') process.exit(0); // dies with the step journaled, not completed
    await catalog.completeJournal(entry);
    process.stdout.write('ready\\n');
    process.stdin.resume();
    process.stdin.on('end', async () => {
      await catalog.finishOperation('op-child', 'done');
      catalog.close();
    });
  `;
}

function spawnHolder(mode: 'finish-on-stdin-close') {
  return spawn(process.execPath, ['--input-type=module', '-e', holderScript(mode)], {
    stdio: ['pipe', 'pipe', 'inherit'],
  });
}
