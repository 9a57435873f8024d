import assert from 'node:assert/strict';
import { hostname } from 'node:os';
import { describe, it } from 'node:test';
import { ConflictError, LockedError, NotFoundError } from '../../src/errors.js';
import { type CatalogFactory, catalogPerCase } from './harness.js';

export function operationCases(factory: CatalogFactory): void {
  const t = catalogPerCase(factory);
  describe('catalog operations and journal', () => {
    it('begins, heartbeats and finishes an operation with stamped times', async () => {
      await t.catalog.beginOperation({ id: 'op-1', kind: 'backup', subject: 'nightly' });
      assert.deepEqual(await t.catalog.getOperation('op-1'), {
        id: 'op-1',
        kind: 'backup',
        subject: 'nightly',
        pid: process.pid,
        host: hostname(),
        state: 'running',
        startedAt: '2026-11-25T08:00:00.000Z',
        heartbeatAt: '2026-11-25T08:00:00.000Z',
      });
      t.clock.advance(30_000);
      await t.catalog.heartbeat('op-1');
      assert.equal((await t.catalog.getOperation('op-1')).heartbeatAt, '2026-11-25T08:00:30.000Z');
      assert.deepEqual(
        (await t.catalog.unfinishedOperations()).map((o) => o.id),
        ['op-1'],
      );
      t.clock.advance(1000);
      await t.catalog.finishOperation('op-1', 'done');
      const op = await t.catalog.getOperation('op-1');
      assert.equal(op.state, 'done');
      assert.equal(op.finishedAt, '2026-11-25T08:00:31.000Z');
      assert.deepEqual(await t.catalog.unfinishedOperations(), []);
      await assert.rejects(
        async () => t.catalog.finishOperation('op-1', 'failed'),
        (e: unknown) => {
          assert.ok(e instanceof ConflictError);
          assert.equal(e.code, 'OPERATION_FINISHED');
          return true;
        },
      );
      assert.equal((await t.catalog.getOperation('op-1')).state, 'done');
    });

    it('refuses duplicate and unknown operations with stable codes', async () => {
      await t.catalog.beginOperation({ id: 'op-1', kind: 'restore', pid: 4242 });
      assert.equal((await t.catalog.getOperation('op-1')).pid, 4242);
      assert.equal((await t.catalog.getOperation('op-1')).subject, undefined);
      await assert.rejects(async () => t.catalog.beginOperation({ id: 'op-1', kind: 'backup' }), {
        code: 'OPERATION_EXISTS',
      });
      await assert.rejects(async () => t.catalog.beginOperation({ id: 'op-2', kind: 'dance' as 'backup' }), {
        code: 'INVALID_OPERATION',
      });
      assert.equal(await t.catalog.findOperation('op-2'), undefined);
      for (const call of [
        () => t.catalog.getOperation('ghost'),
        () => t.catalog.finishOperation('ghost', 'done'),
        () => t.catalog.heartbeat('ghost'),
        () => t.catalog.journal('ghost', { action: 'x', target: 'y' }),
        () => t.catalog.markRecovered('ghost'),
        () => t.catalog.acquireLocks('ghost', ['vm:1']),
      ]) {
        await assert.rejects(
          async () => call(),
          (e: unknown) => e instanceof NotFoundError && e.code === 'OPERATION_NOT_FOUND',
        );
      }
      await assert.rejects(async () => t.catalog.completeJournal(999, {}), {
        code: 'JOURNAL_ENTRY_NOT_FOUND',
      });
    });

    it('keeps journal entries in order, merges results on completion, and is visible to another process', async () => {
      await t.catalog.beginOperation({ id: 'op-1', kind: 'backup' });
      await t.catalog.beginOperation({ id: 'op-other', kind: 'expire' });
      const e1 = await t.catalog.journal('op-1', {
        action: 'vm.snapshot.create',
        target: 'vm-1',
        data: { name: 'snapkeeper-b1' },
      });
      t.clock.advance(10);
      const eOther = await t.catalog.journal('op-other', {
        action: 'array.snapshot.delete',
        target: 'arr1/s-0',
      });
      const e2 = await t.catalog.journal('op-1', {
        action: 'array.snapshot',
        target: 'arr1',
        data: { volumes: ['v1', 'v2'] },
      });
      const e3 = await t.catalog.journal('op-1', { action: 'vm.snapshot.remove', target: 'vm-1' });
      assert.ok(e1 < eOther && eOther < e2 && e2 < e3);

      // Committed as soon as journal() returns: a second connection sees the entry before any completion.
      const reader = await t.connect();
      assert.deepEqual(
        (await reader.journalEntries('op-1')).map((e) => [e.id, e.action, e.completedAt]),
        [
          [e1, 'vm.snapshot.create', undefined],
          [e2, 'array.snapshot', undefined],
          [e3, 'vm.snapshot.remove', undefined],
        ],
      );

      t.clock.advance(1000);
      await t.catalog.completeJournal(e1, { snapshotId: 'snapshot-17' });
      await t.catalog.completeJournal(e2);
      t.clock.advance(1000);
      await t.catalog.completeJournal(e1, { extra: true }); // idempotent: keeps the first completion time
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

    it('reports every error as a rejected Promise, never as a synchronous throw', async () => {
      // A caller that awaits must see the error where it awaits, whatever the implementation checks first.
      const calls: [string, () => Promise<unknown>][] = [
        ['beginOperation', () => t.catalog.beginOperation({ id: 'x', kind: 'dance' as 'backup' })],
        ['acquireLocks', () => t.catalog.acquireLocks('ghost', [''])],
        ['listBackups', () => t.catalog.listBackups({ limit: -1 })],
        ['pruneOperations', () => t.catalog.pruneOperations('not a time')],
        ['createTask', () => t.catalog.createTask({ name: '', select: {} })],
        ['getMount', () => t.catalog.getMount('ghost')],
      ];
      for (const [name, call] of calls) {
        let result: Promise<unknown> | undefined;
        assert.doesNotThrow(() => {
          result = call();
        }, name);
        assert.ok(result instanceof Promise, name);
        await assert.rejects(result, name);
      }
    });

    it('journals several steps in one write: ids in order, all or none', async () => {
      await t.catalog.beginOperation({ id: 'op-1', kind: 'backup' });
      const ids = await t.catalog.journalSteps('op-1', [
        { action: 'suspend', target: 'vm-1', data: { vm: 'web01' } },
        { action: 'vm-snapshot', target: 'vm-2' },
      ]);
      assert.equal(ids.length, 2);
      assert.ok(ids[0]! < ids[1]!);
      assert.deepEqual(
        (await t.catalog.journalEntries('op-1')).map((e) => [e.id, e.action, e.target, e.data]),
        [
          [ids[0], 'suspend', 'vm-1', { vm: 'web01' }],
          [ids[1], 'vm-snapshot', 'vm-2', {}],
        ],
      );
      assert.deepEqual(await t.catalog.journalSteps('op-1', []), []);
      await assert.rejects(async () => t.catalog.journalSteps('ghost', [{ action: 'x', target: 'y' }]), {
        code: 'OPERATION_NOT_FOUND',
      });
      assert.deepEqual(await t.catalog.journalEntries('ghost'), []);
    });

    it('marks failed operations recovered, lists them by filter, and prunes only what needs no recovery', async () => {
      await t.catalog.beginOperation({ id: 'done-old', kind: 'backup' });
      await t.catalog.beginOperation({ id: 'failed-old', kind: 'backup' });
      await t.catalog.beginOperation({ id: 'failed-recovered', kind: 'restore' });
      await t.catalog.beginOperation({ id: 'still-running', kind: 'mount' });
      await t.catalog.journal('failed-recovered', { action: 'a', target: 't' });
      await t.catalog.finishOperation('done-old', 'done');
      await t.catalog.finishOperation('failed-old', 'failed');
      await t.catalog.finishOperation('failed-recovered', 'failed');
      await assert.rejects(async () => t.catalog.markRecovered('still-running'), {
        code: 'OPERATION_RUNNING',
      });
      t.clock.advance(5000);
      await t.catalog.markRecovered('failed-recovered');
      assert.equal(
        (await t.catalog.getOperation('failed-recovered')).recoveredAt,
        '2026-11-25T08:00:05.000Z',
      );

      const names = (ops: { id: string }[]) => ops.map((o) => o.id).sort();
      assert.deepEqual(names(await t.catalog.listOperations({ state: ['failed'], recovered: false })), [
        'failed-old',
      ]);
      assert.deepEqual(names(await t.catalog.listOperations({ recovered: true })), ['failed-recovered']);
      assert.deepEqual(names(await t.catalog.listOperations({ kind: ['restore', 'mount'] })), [
        'failed-recovered',
        'still-running',
      ]);
      assert.equal((await t.catalog.listOperations({ limit: 2 })).length, 2);

      assert.equal(await t.catalog.pruneOperations('2026-11-25T07:00:00Z'), 0);
      assert.equal(await t.catalog.pruneOperations('2026-11-26'), 2);
      assert.deepEqual(names(await t.catalog.listOperations()), ['failed-old', 'still-running']);
      assert.deepEqual(await t.catalog.journalEntries('failed-recovered'), []);
    });
  });

  describe('catalog locks', () => {
    it('names the holder when another running operation holds a resource', async () => {
      const a = t.catalog;
      const b = await t.connect();
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
      const a = t.catalog;
      const b = await t.connect();
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
  });

  describe('shared and exclusive holds', () => {
    it('readers share, a writer excludes and is excluded, stale holders are taken over', async () => {
      const c = t.catalog;
      const other = await t.connect();
      for (const id of ['restore-1', 'restore-2', 'delete-1'])
        await c.beginOperation({ id, kind: 'restore' });
      const shared = { resource: 'backup:b1', mode: 'shared' as const };
      await c.acquireLocks('restore-1', [shared]);
      await other.acquireLocks('restore-2', [shared, 'vm:vm-9']);
      assert.deepEqual(
        (await c.lockHolders('backup:b1')).map((h) => [h.mode, h.operation.id]),
        [
          ['shared', 'restore-1'],
          ['shared', 'restore-2'],
        ],
      );
      await assert.rejects(
        async () => c.acquireLocks('delete-1', [{ resource: 'backup:b1', mode: 'exclusive' }]),
        (err: unknown) => {
          assert.ok(err instanceof LockedError);
          assert.match(err.message, /backup:b1 is in use by restore operation restore-1 \(pid \d+ on /);
          return true;
        },
      );
      await c.finishOperation('restore-1', 'done');
      await assert.rejects(async () => c.acquireLocks('delete-1', ['backup:b1']), {
        code: 'RESOURCE_LOCKED',
      });
      await other.finishOperation('restore-2', 'failed');
      await c.acquireLocks('delete-1', ['backup:b1']);
      assert.deepEqual(
        (await c.lockHolders('backup:b1')).map((h) => [h.mode, h.operation.id]),
        [['exclusive', 'delete-1']],
      );
      await c.beginOperation({ id: 'restore-3', kind: 'restore' });
      await assert.rejects(async () => c.acquireLocks('restore-3', [shared]), { code: 'RESOURCE_LOCKED' });
      assert.deepEqual(await c.locksOf('restore-3'), [], 'all or nothing');
    });

    it('a failed operation closed as repaired is never revisited; one closed otherwise is', async () => {
      const c = t.catalog;
      await c.beginOperation({ id: 'a', kind: 'backup' });
      await c.beginOperation({ id: 'b', kind: 'backup' });
      await c.finishOperation('a', 'failed', { repaired: true });
      await c.finishOperation('b', 'failed');
      assert.deepEqual(
        (await c.listOperations({ state: ['failed'], recovered: false })).map((o) => o.id),
        ['b'],
      );
    });
  });
}
