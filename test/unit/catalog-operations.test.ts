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
import { LockedError } from '../../src/errors.js';

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
  void catalog?.close();
  for (const c of others.splice(0)) void c.close();
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

describe('SQLite catalog: another process holding the write lock', () => {
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

describe('SQLite catalog locks: rows edited by hand, holders in other processes', () => {
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
