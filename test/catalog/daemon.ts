import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { JobRow } from '../../src/catalog/index.js';
import { ConflictError, LockedError, NotFoundError } from '../../src/errors.js';
import { emptyBackup } from '../helpers/catalog.js';
import { type CatalogFactory, catalogPerCase } from './harness.js';

const member = (instanceId: string) => ({ instanceId, host: 'host-a', pid: 4242, listen: '127.0.0.1:8443' });

const job = (id: string, instanceId: string, fields: Partial<JobRow> = {}): JobRow => ({
  id,
  kind: 'backup',
  subject: 'nightly',
  state: 'running',
  instanceId,
  startedAt: '2026-11-25T08:00:00.000Z',
  ...fields,
});

/** Cases of the daemon's roles (DaemonStore, AuthStore) and of two connections racing for one thing. */
export function daemonCases(factory: CatalogFactory): void {
  const t = catalogPerCase(factory);
  describe('daemon membership and leadership', () => {
    it('keeps a membership row per daemon, live while its heartbeat is younger than the ttl', async () => {
      const first = await t.catalog.heartbeatMember(member('d-1'));
      assert.deepEqual(first, {
        ...member('d-1'),
        startedAt: '2026-11-25T08:00:00.000Z',
        heartbeatAt: '2026-11-25T08:00:00.000Z',
      });
      t.clock.advance(10_000);
      const other = await t.connect();
      await other.heartbeatMember({ ...member('d-2'), host: 'host-b' });
      t.clock.advance(20_000);
      const renewed = await t.catalog.heartbeatMember({ ...member('d-1'), listen: '0.0.0.0:8443' });
      assert.equal(renewed.startedAt, '2026-11-25T08:00:00.000Z', 'a renewal keeps the start');
      assert.equal(renewed.heartbeatAt, '2026-11-25T08:00:30.000Z');
      assert.equal(renewed.listen, '0.0.0.0:8443');
      assert.deepEqual(
        (await t.catalog.liveMembers(60_000)).map((m) => m.instanceId),
        ['d-1', 'd-2'],
      );
      t.clock.advance(45_000); // d-2 last beat 65 s ago, d-1 45 s ago
      assert.deepEqual(
        (await other.liveMembers(60_000)).map((m) => m.instanceId),
        ['d-1'],
      );
      await t.catalog.removeMember('d-1');
      assert.deepEqual(await t.catalog.liveMembers(3_600_000), [
        {
          ...member('d-2'),
          host: 'host-b',
          startedAt: '2026-11-25T08:00:10.000Z',
          heartbeatAt: '2026-11-25T08:00:10.000Z',
        },
      ]);
    });

    it('grants the leadership to one daemon, renews it in the same term, hands it over after expiry with a new term', async () => {
      assert.deepEqual(await t.catalog.currentLeadership(), { term: 0, mine: false });
      const a = await t.catalog.claimLeadership('d-a', 60_000);
      assert.deepEqual(a, { holder: 'd-a', term: 1, expiresAt: '2026-11-25T08:01:00.000Z', mine: true });
      const other = await t.connect();
      t.clock.advance(30_000);
      const refused = await other.claimLeadership('d-b', 60_000);
      assert.deepEqual(refused, {
        holder: 'd-a',
        term: 1,
        expiresAt: '2026-11-25T08:01:00.000Z',
        mine: false,
      });
      const renewed = await t.catalog.claimLeadership('d-a', 60_000);
      assert.deepEqual(renewed, {
        holder: 'd-a',
        term: 1,
        expiresAt: '2026-11-25T08:01:30.000Z',
        mine: true,
      });
      assert.deepEqual(await other.currentLeadership(), {
        holder: 'd-a',
        term: 1,
        expiresAt: '2026-11-25T08:01:30.000Z',
        mine: false,
      });
      t.clock.advance(60_000); // d-a's lease ran out at 08:01:30
      assert.deepEqual(await t.catalog.currentLeadership(), { term: 1, mine: false });
      const taken = await other.claimLeadership('d-b', 60_000);
      assert.deepEqual(taken, { holder: 'd-b', term: 2, expiresAt: '2026-11-25T08:02:30.000Z', mine: true });
      // The deposed leader comes back: it does not get it back, and learns the new term.
      const late = await t.catalog.claimLeadership('d-a', 60_000);
      assert.equal(late.mine, false);
      assert.equal(late.holder, 'd-b');
      assert.equal(late.term, 2);
      // Releasing what one does not hold changes nothing; the holder's release frees it at once.
      await t.catalog.releaseLeadership('d-a');
      assert.equal((await t.catalog.currentLeadership()).holder, 'd-b');
      await other.releaseLeadership('d-b');
      assert.deepEqual(await t.catalog.currentLeadership(), { term: 2, mine: false });
      const again = await t.catalog.claimLeadership('d-a', 60_000);
      assert.deepEqual(again, { holder: 'd-a', term: 3, expiresAt: '2026-11-25T08:02:30.000Z', mine: true });
      // Removing a member gives its leadership up.
      await t.catalog.removeMember('d-a');
      assert.deepEqual(await other.currentLeadership(), { term: 3, mine: false });
    });

    it('fences a deposed leader: its schedule writes are refused once its term is over or its lease ran out', async () => {
      const a = await t.catalog.claimLeadership('d-a', 60_000);
      const state = { task: 'nightly', handledAt: '2026-11-25T08:00:00.000Z' };
      assert.equal(
        await t.catalog.saveScheduleStateAsLeader(state, { instanceId: 'd-a', term: a.term }),
        true,
      );
      assert.deepEqual(await t.catalog.scheduleState('nightly'), state);
      assert.equal(
        await t.catalog.saveScheduleStateAsLeader(state, { instanceId: 'd-a', term: a.term + 1 }),
        false,
        'a term it never had',
      );
      assert.equal(
        await t.catalog.saveScheduleStateAsLeader(state, { instanceId: 'd-b', term: a.term }),
        false,
        'not the holder',
      );
      t.clock.advance(61_000);
      const late = {
        task: 'nightly',
        handledAt: '2026-11-25T08:01:00.000Z',
        lastRunAt: '2026-11-25T08:01:00.000Z',
      };
      assert.equal(
        await t.catalog.saveScheduleStateAsLeader(late, { instanceId: 'd-a', term: a.term }),
        false,
        'its lease ran out',
      );
      const other = await t.connect();
      const b = await other.claimLeadership('d-b', 60_000);
      assert.equal(b.term, a.term + 1);
      assert.equal(
        await t.catalog.saveScheduleStateAsLeader(late, { instanceId: 'd-a', term: a.term }),
        false,
        'taken over',
      );
      assert.deepEqual(
        await t.catalog.scheduleState('nightly'),
        state,
        'nothing written by the deposed leader',
      );
      const next = { ...late, lastJobId: 'job-2' };
      assert.equal(await other.saveScheduleStateAsLeader(next, { instanceId: 'd-b', term: b.term }), true);
      assert.deepEqual(await t.catalog.scheduleState('nightly'), next);
      assert.equal(await t.catalog.scheduleState('other'), undefined);
    });

    it('exactly one of two daemons claiming at once becomes leader', async () => {
      const other = await t.connect();
      for (let round = 0; round < 5; round++) {
        const [a, b] = await Promise.all([
          t.catalog.claimLeadership('d-a', 60_000),
          other.claimLeadership('d-b', 60_000),
        ]);
        assert.equal([a, b].filter((l) => l.mine).length, 1, `round ${round}: one leader`);
        const winner = a.mine ? a : b;
        assert.equal(winner.term, round + 1);
        await (a.mine ? t.catalog : other).releaseLeadership(winner.holder!);
      }
    });
  });

  describe('daemon jobs', () => {
    it('saves, replaces, finds and lists jobs, newest first, by state', async () => {
      await t.catalog.saveJob(job('j-1', 'd-1', { startedAt: '2026-11-25T07:00:00.000Z' }));
      await t.catalog.saveJob(job('j-2', 'd-1', { state: 'queued' }));
      const done = job('j-1', 'd-1', {
        startedAt: '2026-11-25T07:00:00.000Z',
        state: 'done',
        finishedAt: '2026-11-25T07:05:00.000Z',
        progress: { phase: 'done', items: { 'vm-1': 'ok' } },
        result: { backupId: 'b-1', vms: 2 },
        backupId: 'b-1',
      });
      await t.catalog.saveJob(done);
      assert.deepEqual(await t.catalog.findJob('j-1'), done);
      assert.equal(await t.catalog.findJob('ghost'), undefined);
      assert.deepEqual(
        (await t.catalog.listJobs()).map((j) => j.id),
        ['j-2', 'j-1'],
      );
      assert.deepEqual(
        (await t.catalog.listJobs({ state: ['done'] })).map((j) => j.id),
        ['j-1'],
      );
      assert.deepEqual(
        (await t.catalog.listJobs({ limit: 1 })).map((j) => j.id),
        ['j-2'],
      );
    });

    it("fails the queued and running jobs of daemons that are gone, never a live daemon's", async () => {
      await t.catalog.heartbeatMember(member('d-live'));
      await t.catalog.heartbeatMember(member('d-stale'));
      await t.catalog.saveJob(job('j-live', 'd-live'));
      await t.catalog.saveJob(job('j-stale', 'd-stale', { state: 'queued' }));
      await t.catalog.saveJob(job('j-gone', 'd-gone'));
      await t.catalog.saveJob(
        job('j-done', 'd-gone', { state: 'done', finishedAt: '2026-11-25T08:00:01.000Z' }),
      );
      t.clock.advance(50_000);
      await t.catalog.heartbeatMember(member('d-live'));
      t.clock.advance(20_000); // d-stale beat 70 s ago, d-live 20 s ago
      const error = { code: 'INTERRUPTED', message: 'the daemon stopped' };
      assert.equal(await t.catalog.failOrphanedJobs(60_000, error), 2);
      const stale = await t.catalog.findJob('j-stale');
      assert.equal(stale?.state, 'failed');
      assert.deepEqual(stale?.error, error);
      assert.equal(stale?.finishedAt, '2026-11-25T08:01:10.000Z');
      assert.equal((await t.catalog.findJob('j-gone'))?.state, 'failed');
      assert.equal((await t.catalog.findJob('j-live'))?.state, 'running');
      assert.equal((await t.catalog.findJob('j-done'))?.state, 'done');
      assert.equal(await t.catalog.failOrphanedJobs(60_000, error), 0, 'nothing left');
    });

    it('counts backups by task and state with the newest complete finish', async () => {
      await t.catalog.insertBackup(
        emptyBackup('b-1', { task: 'web', finishedAt: '2026-11-01T01:10:00.000Z' }),
      );
      await t.catalog.insertBackup(
        emptyBackup('b-2', {
          task: 'web',
          startedAt: '2026-11-02T01:00:00.000Z',
          finishedAt: '2026-11-02T01:10:00.000Z',
        }),
      );
      await t.catalog.insertBackup(emptyBackup('b-3', { task: 'web', state: 'failed' }));
      await t.catalog.insertBackup(emptyBackup('b-4', { task: 'db', state: 'partial' }));
      assert.deepEqual(await t.catalog.backupCounts(), [
        { task: 'db', state: 'partial', count: 1 },
        { task: 'web', state: 'complete', count: 2, lastCompleteAt: '2026-11-02T01:10:00.000Z' },
        { task: 'web', state: 'failed', count: 1 },
      ]);
    });
  });

  describe('daemon credentials', () => {
    it('keeps tokens, users and sessions with stable errors', async () => {
      const token = await t.catalog.addToken({ id: 'tk-1', name: 'ci', role: 'operator', tokenHash: 'h1' });
      assert.deepEqual(token, {
        id: 'tk-1',
        name: 'ci',
        role: 'operator',
        createdAt: '2026-11-25T08:00:00.000Z',
      });
      await assert.rejects(
        async () => t.catalog.addToken({ id: 'tk-2', name: 'ci', role: 'admin', tokenHash: 'h2' }),
        (e: unknown) => e instanceof ConflictError && e.code === 'TOKEN_EXISTS',
      );
      assert.deepEqual(await t.catalog.tokenByHash('h1'), token);
      assert.equal(await t.catalog.tokenByHash('nope'), undefined);
      await t.catalog.markTokenUsed('tk-1', '2026-11-25T08:05:00.000Z');
      assert.equal((await t.catalog.listTokens())[0]?.lastUsedAt, '2026-11-25T08:05:00.000Z');
      assert.equal((await t.catalog.removeToken('ci')).id, 'tk-1');
      await assert.rejects(
        async () => t.catalog.removeToken('tk-1'),
        (e: unknown) => e instanceof NotFoundError && e.code === 'TOKEN_NOT_FOUND',
      );

      await t.catalog.addUser({ name: 'ann', role: 'admin', passwordHash: 'ph-1' });
      await t.catalog.addUser({ name: 'bob', role: 'read-only', passwordHash: 'ph-2' });
      await assert.rejects(async () => t.catalog.addUser({ name: 'ann', role: 'admin', passwordHash: 'x' }), {
        code: 'USER_EXISTS',
      });
      assert.deepEqual(
        (await t.catalog.listUsers()).map((u) => u.name),
        ['ann', 'bob'],
      );
      await t.catalog.addSession({ idHash: 's-1', user: 'ann', expiresAt: '2026-11-25T09:00:00.000Z' });
      assert.equal((await t.catalog.sessionUser('s-1', '2026-11-25T08:30:00.000Z'))?.name, 'ann');
      assert.equal(await t.catalog.sessionUser('s-1', '2026-11-25T09:00:00.000Z'), undefined, 'expired');
      t.clock.advance(1000);
      await t.catalog.setUserPassword('ann', 'ph-3');
      assert.deepEqual(await t.catalog.findUserCredentials('ann'), {
        user: {
          name: 'ann',
          role: 'admin',
          createdAt: '2026-11-25T08:00:00.000Z',
          updatedAt: '2026-11-25T08:00:01.000Z',
        },
        passwordHash: 'ph-3',
      });
      assert.equal(
        await t.catalog.sessionUser('s-1', '2026-11-25T08:30:00.000Z'),
        undefined,
        'sessions ended',
      );
      await t.catalog.addSession({ idHash: 's-2', user: 'bob', expiresAt: '2026-11-25T08:10:00.000Z' });
      await t.catalog.addSession({ idHash: 's-3', user: 'bob', expiresAt: '2026-11-25T10:00:00.000Z' });
      assert.equal(await t.catalog.pruneSessions('2026-11-25T09:00:00.000Z'), 1);
      await t.catalog.removeSession('s-3');
      assert.equal(await t.catalog.sessionUser('s-3', '2026-11-25T08:30:00.000Z'), undefined);
      await t.catalog.removeUser('bob');
      await assert.rejects(async () => t.catalog.removeUser('bob'), { code: 'USER_NOT_FOUND' });
      await assert.rejects(async () => t.catalog.setUserPassword('bob', 'x'), { code: 'USER_NOT_FOUND' });
    });
  });

  describe('two connections at once', () => {
    it('exactly one of two operations asking for one resource at once gets it', async () => {
      const other = await t.connect();
      for (let round = 0; round < 5; round++) {
        const a = `op-a${round}`;
        const b = `op-b${round}`;
        await t.catalog.beginOperation({ id: a, kind: 'backup' });
        await other.beginOperation({ id: b, kind: 'delete' });
        const results = await Promise.allSettled([
          t.catalog.acquireLocks(a, ['vm:1', { resource: 'backup:B', mode: 'shared' }]),
          other.acquireLocks(b, ['vm:2', 'backup:B']),
        ]);
        const won = results.filter((r) => r.status === 'fulfilled');
        const lost = results.filter((r) => r.status === 'rejected');
        assert.equal(won.length, 1, `round ${round}: one winner`);
        const reason = (lost[0] as PromiseRejectedResult | undefined)?.reason;
        assert.ok(reason instanceof LockedError);
        assert.equal(reason.code, 'RESOURCE_LOCKED');
        const winner = results[0]?.status === 'fulfilled' ? a : b;
        const loser = winner === a ? b : a;
        assert.deepEqual(await other.locksOf(loser), [], 'the loser holds nothing (all or none)');
        assert.deepEqual(
          (await t.catalog.lockHolders('backup:B')).map((h) => h.operation.id),
          [winner],
        );
        await t.catalog.finishOperation(winner, 'done');
        await other.finishOperation(loser, 'failed', { repaired: true });
      }
    });

    it('exactly one of two processes finishing one operation at once wins', async () => {
      const other = await t.connect();
      await t.catalog.beginOperation({ id: 'op-1', kind: 'backup' });
      await t.catalog.acquireLocks('op-1', ['vm:1']);
      const results = await Promise.allSettled([
        t.catalog.finishOperation('op-1', 'done'),
        other.finishOperation('op-1', 'failed'),
      ]);
      assert.equal(results.filter((r) => r.status === 'fulfilled').length, 1);
      const refused = results.find((r) => r.status === 'rejected') as PromiseRejectedResult;
      assert.ok(refused.reason instanceof ConflictError);
      assert.equal(refused.reason.code, 'OPERATION_FINISHED');
      assert.deepEqual(await t.catalog.locksOf('op-1'), []);
    });
  });
}
