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
  it('begins, heartbeats and finishes an operation with stamped times', () => {
    catalog.beginOperation({ id: 'op-1', kind: 'backup', subject: 'nightly' });
    assert.deepEqual(catalog.getOperation('op-1'), {
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
    catalog.heartbeat('op-1');
    assert.equal(catalog.getOperation('op-1').heartbeatAt, '2026-11-25T08:00:30.000Z');
    assert.deepEqual(
      catalog.unfinishedOperations().map((o) => o.id),
      ['op-1'],
    );
    clock.advance(1000);
    catalog.finishOperation('op-1', 'done');
    const op = catalog.getOperation('op-1');
    assert.equal(op.state, 'done');
    assert.equal(op.finishedAt, '2026-11-25T08:00:31.000Z');
    assert.deepEqual(catalog.unfinishedOperations(), []);
    assert.throws(
      () => catalog.finishOperation('op-1', 'failed'),
      (e: unknown) => {
        assert.ok(e instanceof ConflictError);
        assert.equal(e.code, 'OPERATION_FINISHED');
        return true;
      },
    );
    assert.equal(catalog.getOperation('op-1').state, 'done');
  });

  it('refuses duplicate and unknown operations with stable codes', () => {
    catalog.beginOperation({ id: 'op-1', kind: 'restore', pid: 4242 });
    assert.equal(catalog.getOperation('op-1').pid, 4242);
    assert.equal(catalog.getOperation('op-1').subject, undefined);
    assert.throws(() => catalog.beginOperation({ id: 'op-1', kind: 'backup' }), { code: 'OPERATION_EXISTS' });
    assert.throws(() => catalog.beginOperation({ id: 'op-2', kind: 'dance' as 'backup' }), {
      code: 'INVALID_OPERATION',
    });
    assert.equal(catalog.findOperation('op-2'), undefined);
    for (const call of [
      () => catalog.getOperation('ghost'),
      () => catalog.finishOperation('ghost', 'done'),
      () => catalog.heartbeat('ghost'),
      () => catalog.journal('ghost', { action: 'x', target: 'y' }),
      () => catalog.markRecovered('ghost'),
      () => catalog.acquireLocks('ghost', ['vm:1']),
    ]) {
      assert.throws(call, (e: unknown) => e instanceof NotFoundError && e.code === 'OPERATION_NOT_FOUND');
    }
    assert.throws(() => catalog.completeJournal(999, {}), { code: 'JOURNAL_ENTRY_NOT_FOUND' });
  });

  it('keeps journal entries in order, merges results on completion, and is visible to another process', () => {
    catalog.beginOperation({ id: 'op-1', kind: 'backup' });
    catalog.beginOperation({ id: 'op-other', kind: 'expire' });
    const e1 = catalog.journal('op-1', {
      action: 'vm.snapshot.create',
      target: 'vm-1',
      data: { name: 'snapkeeper-b1' },
    });
    clock.advance(10);
    const eOther = catalog.journal('op-other', { action: 'array.snapshot.delete', target: 'arr1/s-0' });
    const e2 = catalog.journal('op-1', {
      action: 'array.snapshot',
      target: 'arr1',
      data: { volumes: ['v1', 'v2'] },
    });
    const e3 = catalog.journal('op-1', { action: 'vm.snapshot.remove', target: 'vm-1' });
    assert.ok(e1 < eOther && eOther < e2 && e2 < e3);

    // Committed as soon as journal() returns: a second connection sees the entry before any completion.
    const reader = second();
    assert.deepEqual(
      reader.journalEntries('op-1').map((e) => [e.id, e.action, e.completedAt]),
      [
        [e1, 'vm.snapshot.create', undefined],
        [e2, 'array.snapshot', undefined],
        [e3, 'vm.snapshot.remove', undefined],
      ],
    );

    clock.advance(1000);
    catalog.completeJournal(e1, { snapshotId: 'snapshot-17' });
    catalog.completeJournal(e2);
    clock.advance(1000);
    catalog.completeJournal(e1, { extra: true }); // idempotent: keeps the first completion time
    const entries = reader.journalEntries('op-1');
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
      reader.journalEntries('op-other').map((e) => e.id),
      [eOther],
    );
    assert.deepEqual(reader.journalEntries('ghost'), []);
  });

  it('marks failed operations recovered, lists them by filter, and prunes only what needs no recovery', () => {
    catalog.beginOperation({ id: 'done-old', kind: 'backup' });
    catalog.beginOperation({ id: 'failed-old', kind: 'backup' });
    catalog.beginOperation({ id: 'failed-recovered', kind: 'restore' });
    catalog.beginOperation({ id: 'still-running', kind: 'mount' });
    catalog.journal('failed-recovered', { action: 'a', target: 't' });
    catalog.finishOperation('done-old', 'done');
    catalog.finishOperation('failed-old', 'failed');
    catalog.finishOperation('failed-recovered', 'failed');
    assert.throws(() => catalog.markRecovered('still-running'), { code: 'OPERATION_RUNNING' });
    clock.advance(5000);
    catalog.markRecovered('failed-recovered');
    assert.equal(catalog.getOperation('failed-recovered').recoveredAt, '2026-11-25T08:00:05.000Z');

    const names = (ops: { id: string }[]) => ops.map((o) => o.id).sort();
    assert.deepEqual(names(catalog.listOperations({ state: ['failed'], recovered: false })), ['failed-old']);
    assert.deepEqual(names(catalog.listOperations({ recovered: true })), ['failed-recovered']);
    assert.deepEqual(names(catalog.listOperations({ kind: ['restore', 'mount'] })), [
      'failed-recovered',
      'still-running',
    ]);
    assert.equal(catalog.listOperations({ limit: 2 }).length, 2);

    assert.equal(catalog.pruneOperations('2026-11-25T07:00:00Z'), 0);
    assert.equal(catalog.pruneOperations('2026-11-26'), 2);
    assert.deepEqual(names(catalog.listOperations()), ['failed-old', 'still-running']);
    assert.deepEqual(catalog.journalEntries('failed-recovered'), []);
  });
  it('reports a catalog kept write-locked by another process past the busy timeout as CATALOG_BUSY', () => {
    const quick = Catalog.open(file, { busyTimeoutMs: 50 });
    others.push(quick);
    const holder = new Database(file);
    holder.exec('BEGIN IMMEDIATE');
    try {
      assert.throws(
        () => quick.beginOperation({ id: 'op-1', kind: 'backup' }),
        (e: unknown) => e instanceof LockedError && e.code === 'CATALOG_BUSY' && e.message.includes(file),
      );
      // Readers are not blocked by a writer in WAL mode.
      assert.deepEqual(quick.unfinishedOperations(), []);
    } finally {
      holder.exec('ROLLBACK');
      holder.close();
    }
    quick.beginOperation({ id: 'op-1', kind: 'backup' });
    assert.equal(catalog.getOperation('op-1').state, 'running');
  });
});

describe('catalog locks', () => {
  it('names the holder when another running operation holds a resource', () => {
    const a = catalog;
    const b = second();
    a.beginOperation({ id: 'op-a', kind: 'backup', pid: process.pid });
    a.acquireLocks('op-a', ['vm:vm-1', 'volume:arr1/vol-a']);
    b.beginOperation({ id: 'op-b', kind: 'restore' });
    assert.throws(
      () => b.acquireLocks('op-b', ['vm:vm-2', 'vm:vm-1']),
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
    assert.deepEqual(b.locksOf('op-b'), []);
    assert.deepEqual(a.locksOf('op-a'), ['vm:vm-1', 'volume:arr1/vol-a']);
    // Re-taking one's own locks is a no-op, not a conflict.
    a.acquireLocks('op-a', ['vm:vm-1']);
    assert.deepEqual(a.locksOf('op-a'), ['vm:vm-1', 'volume:arr1/vol-a']);
  });

  it('frees locks when the holder finishes or releases them, and takes over stale rows', () => {
    const a = catalog;
    const b = second();
    a.beginOperation({ id: 'op-a', kind: 'backup' });
    a.acquireLocks('op-a', ['vm:vm-1', 'vm:vm-1', 'vm:vm-2']);
    assert.deepEqual(a.locksOf('op-a'), ['vm:vm-1', 'vm:vm-2']);
    b.beginOperation({ id: 'op-b', kind: 'backup' });
    assert.throws(() => b.acquireLocks('op-b', ['vm:vm-2']), { code: 'RESOURCE_LOCKED' });

    a.finishOperation('op-a', 'done');
    assert.deepEqual(a.locksOf('op-a'), []);
    b.acquireLocks('op-b', ['vm:vm-1', 'vm:vm-2']);
    assert.deepEqual(b.locksOf('op-b'), ['vm:vm-1', 'vm:vm-2']);

    b.releaseLocks('op-b');
    assert.deepEqual(b.locksOf('op-b'), []);
    a.beginOperation({ id: 'op-c', kind: 'expire' });
    a.acquireLocks('op-c', ['vm:vm-1']);
    assert.deepEqual(a.locksOf('op-c'), ['vm:vm-1']);
    assert.throws(() => a.acquireLocks('op-a', ['vm:vm-9']), { code: 'OPERATION_FINISHED' });
    assert.throws(() => a.acquireLocks('op-c', ['']), { code: 'INVALID_RESOURCE' });
  });

  it('treats a lock row of an operation that is no longer running as free', () => {
    catalog.beginOperation({ id: 'op-dead', kind: 'backup' });
    catalog.acquireLocks('op-dead', ['vm:vm-1', 'vm:vm-2']);
    // What a crash between two statements of an older release, or a hand edit, could leave: the operation
    // ended but its lock rows remain.
    const raw = new Database(file);
    raw.prepare("UPDATE operations SET state = 'failed' WHERE id = 'op-dead'").run();
    raw.close();
    assert.deepEqual(catalog.locksOf('op-dead'), ['vm:vm-1', 'vm:vm-2']);

    const b = second();
    b.beginOperation({ id: 'op-new', kind: 'backup' });
    b.acquireLocks('op-new', ['vm:vm-1']);
    assert.deepEqual(b.locksOf('op-new'), ['vm:vm-1']);
    assert.deepEqual(b.locksOf('op-dead'), ['vm:vm-2']);
  });

  it('blocks on a live holder in another process and frees after it finishes', async () => {
    const child = spawnHolder('finish-on-stdin-close');
    const lines = createInterface({ input: child.stdout });
    const [ready] = (await once(lines, 'line')) as [string];
    assert.equal(ready, 'ready');
    try {
      catalog.beginOperation({ id: 'op-parent', kind: 'restore' });
      const holder = catalog.getOperation('op-child');
      assert.equal(holder.pid, child.pid);
      assert.equal(operationAlive(holder, new Date()), true);
      assert.throws(
        () => catalog.acquireLocks('op-parent', ['vm:vm-1']),
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
    assert.equal(catalog.getOperation('op-child').state, 'done');
    catalog.acquireLocks('op-parent', ['vm:vm-1']);
    assert.deepEqual(catalog.locksOf('op-parent'), ['vm:vm-1']);
  });

  it('lets recover take over after the holder process died without finishing', () => {
    const result = spawnSync(process.execPath, ['--input-type=module', '-e', holderScript('crash')], {
      encoding: 'utf8',
    });
    assert.equal(result.status, 0, result.stderr);
    const op = catalog.getOperation('op-child');
    assert.equal(op.state, 'running');
    assert.equal(op.pid, result.pid);
    assert.equal(pidAlive(op.pid), false);
    assert.equal(operationAlive(op, new Date()), false);
    // The dead run still blocks until recover finishes it: the catalog does not guess liveness itself.
    catalog.beginOperation({ id: 'op-recover', kind: 'recover' });
    assert.throws(() => catalog.acquireLocks('op-recover', ['vm:vm-1']), { code: 'RESOURCE_LOCKED' });
    assert.deepEqual(
      // Sorted: the child stamps real time, this catalog a test clock.
      catalog
        .unfinishedOperations()
        .map((o) => o.id)
        .sort(),
      ['op-child', 'op-recover'],
    );
    const pending = catalog.journalEntries('op-child').filter((e) => e.completedAt === undefined);
    assert.deepEqual(
      pending.map((e) => [e.action, e.target]),
      [['vm.suspend', 'vm-1']],
    );
    catalog.finishOperation('op-child', 'failed');
    catalog.acquireLocks('op-recover', ['vm:vm-1']);
    catalog.markRecovered('op-child');
    assert.ok(catalog.getOperation('op-child').recoveredAt);
  });

  it('operationAlive: another host counts by its lease alone; on this host a dead pid is dead at once', () => {
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
    catalog.beginOperation({ id: 'op-child', kind: 'backup', subject: 'nightly' });
    catalog.acquireLocks('op-child', ['vm:vm-1']);
    const entry = catalog.journal('op-child', { action: 'vm.suspend', target: 'vm-1' });
    if (${JSON.stringify(mode)} === 'crash') process.exit(0); // dies with the step journaled, not completed
    catalog.completeJournal(entry);
    process.stdout.write('ready\\n');
    process.stdin.resume();
    process.stdin.on('end', () => {
      catalog.finishOperation('op-child', 'done');
      catalog.close();
    });
  `;
}

function spawnHolder(mode: 'finish-on-stdin-close') {
  return spawn(process.execPath, ['--input-type=module', '-e', holderScript(mode)], {
    stdio: ['pipe', 'pipe', 'inherit'],
  });
}
