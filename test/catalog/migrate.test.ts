import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import Database from 'better-sqlite3';
import {
  Catalog,
  type CatalogHandle,
  migrateSqliteToPostgres,
  openCatalog,
  PostgresCatalog,
} from '../../src/catalog/index.js';
import type { PostgresCatalogConfig } from '../../src/config/catalog.js';
import { Secret } from '../../src/util/secret.js';
import { emptyBackup } from '../helpers/catalog.js';
import { runCli } from '../helpers/cli.js';
import { filePostgres } from '../helpers/postgres.js';
import { web } from './tasks.js';

// `catalog migrate`: a SQLite catalog with something in every role is copied into PostgreSQL, and every
// record of every role reads the same through both handles; what it refuses leaves the target unchanged.
const postgres = filePostgres();
const root = mkdtempSync(join(tmpdir(), 'snapkeeper-catalog-migrate-'));
after(() => rmSync(root, { recursive: true, force: true }));
let n = 0;

function configOf(db: { url: string; password: string }): PostgresCatalogConfig {
  return { url: db.url, path: db.url, password: new Secret(db.password) };
}

/** A SQLite catalog holding rows in every table, as a daemon and a few CLI runs leave it. */
async function filledCatalog(): Promise<string> {
  const file = join(root, `c${++n}.db`);
  let t = Date.parse('2026-11-25T08:00:00.000Z');
  const tick = () => {
    t += 1000;
    return new Date(t);
  };
  const c = Catalog.create(file, { now: tick });
  try {
    for (let i = 0; i < 30; i++) {
      await c.insertBackup(
        emptyBackup(`b-${String(i).padStart(2, '0')}`, {
          task: i % 3 === 0 ? 'db' : 'web',
          state: i % 7 === 0 ? 'partial' : 'complete',
          // Several backups share a start: listings break the tie by id, identically on both.
          startedAt: new Date(
            Date.parse('2026-11-01T01:00:00Z') + Math.floor(i / 2) * 3600_000,
          ).toISOString(),
          finishedAt: new Date(Date.parse('2026-11-01T01:10:00Z') + i * 3600_000).toISOString(),
          vms: [
            { id: `vm-${i % 4}`, name: `web-${i % 4}` } as never,
            { id: 'vm-db', name: 'db-01' } as never,
          ],
          snapshots: [{ array: 'lab', snapshotId: `snap-${i}`, volume: 'v1' } as never],
        }),
      );
    }
    await c.markBackupLost('b-03', { at: '2026-11-20T00:00:00.000Z', reason: 'array snapshot gone' });
    for (let i = 0; i < 4; i++) {
      const id = `op-${i}`;
      await c.beginOperation({ id, kind: i % 2 === 0 ? 'backup' : 'restore', subject: `s-${i}` });
      const steps = await c.journalSteps(id, [
        { action: 'vm.snapshot.create', target: 'vm-1', data: { name: `n-${i}` } },
        { action: 'array.snapshot', target: 'lab/v1' },
      ]);
      await c.completeJournal(steps[0]!, { snapshotId: `vs-${i}` });
      await c.acquireLocks(id, ['vm:1', { resource: 'backup:b-01', mode: 'shared' }]);
      await c.finishOperation(id, i === 3 ? 'failed' : 'done');
    }
    await c.markRecovered('op-3');
    await c.createTask(web);
    await c.createTask({ name: 'db', select: { datastores: ['ds-b'] } });
    await c.addMount({ id: 'm-1', backupId: 'b-01', kind: 'datastore', data: { host: 'h1' } });
    await c.addMount({ id: 'm-2', backupId: 'b-01', kind: 'attach', data: { vm: 'vm-9' } });
    for (const repositoryId of ['r-1', 'r-2']) {
      await c.addCopy({
        backupId: 'b-02',
        task: 'web',
        repository: `offsite-${repositoryId}`,
        repositoryId,
        manifestId: `man-${repositoryId}`,
        bytes: 5_000_000_000_123,
        bytesAdded: 17,
        vms: [{ name: 'web-2', disks: 2, excludedDisks: 0, bytes: 5_000_000_000_123 }],
      });
    }
    await c.addCopy({
      backupId: 'b-gone',
      task: 'web',
      repository: 'offsite-r-1',
      repositoryId: 'r-1',
      manifestId: 'man-gone',
      bytes: 1,
      bytesAdded: 1,
      vms: [],
    });
    await c.addToken({ id: 'tk-1', name: 'ci', role: 'operator', tokenHash: 'h-1' });
    await c.markTokenUsed('tk-1', '2026-11-25T09:00:00.000Z');
    await c.addUser({ name: 'ann', role: 'admin', passwordHash: 'scrypt$1' });
    await c.addSession({ idHash: 'sess-1', user: 'ann', expiresAt: '2026-12-25T00:00:00.000Z' });
    await c.heartbeatMember({ instanceId: 'd-1', host: 'h', pid: 7, listen: '127.0.0.1:8443' });
    const lead = await c.claimLeadership('d-1', 60_000);
    await c.saveScheduleStateAsLeader(
      {
        task: 'web',
        handledAt: '2026-11-25T08:00:00.000Z',
        lastRunAt: '2026-11-25T02:00:00.000Z',
        lastJobId: 'j-1',
      },
      { instanceId: 'd-1', term: lead.term },
    );
    await c.releaseLeadership('d-1');
    await c.saveJob({
      id: 'j-1',
      kind: 'backup',
      subject: 'web',
      state: 'done',
      instanceId: 'd-1',
      startedAt: '2026-11-25T02:00:00.000Z',
      finishedAt: '2026-11-25T02:05:00.000Z',
      progress: { phase: 'done' },
      result: { backupId: 'b-29' },
      backupId: 'b-29',
    });
    await c.saveJob({
      id: 'j-2',
      kind: 'expire',
      subject: 'all',
      state: 'failed',
      instanceId: 'd-1',
      startedAt: '2026-11-25T03:00:00.000Z',
      error: { code: 'X', message: 'y' },
    });
  } finally {
    await c.close();
  }
  return file;
}

/** Everything the roles can read, so that two catalogs compare record by record. */
async function everything(c: CatalogHandle): Promise<Record<string, unknown>> {
  const backups = await c.listBackups();
  const operations = await c.listOperations();
  const out: Record<string, unknown> = {
    id: c.id,
    schemaVersion: await c.schemaVersion(),
    backups,
    heads: await c.listBackupHeads({ state: ['complete'], limit: 7 }),
    page: await c.listBackups({ after: { startedAt: backups[5]!.startedAt, id: backups[5]!.id }, limit: 5 }),
    byVm: (await c.listBackups({ vm: 'web-[12]' })).map((b) => b.id),
    records: await c.getBackups(backups.map((b) => b.id)),
    owners: await c.snapshotOwners('lab', 'snap-3'),
    owned: [...(await c.ownedSnapshotIds('lab'))].sort(),
    operations,
    unfinished: await c.unfinishedOperations(),
    unrecovered: await c.listOperations({ state: ['failed'], recovered: false }),
    journals: await Promise.all(operations.map((o) => c.journalEntries(o.id))),
    locks: await Promise.all(operations.map((o) => c.locksOf(o.id))),
    holders: await c.lockHolders('backup:b-01'),
    tasks: await c.listTasks(),
    mounts: await c.listMounts(),
    mountsOf: await c.mountsOf('b-01'),
    copies: await c.listCopies(),
    copiesOf: [...(await c.copiesOfBackups(['b-02', 'b-gone', 'b-00'])).entries()],
    tokens: await c.listTokens(),
    token: await c.tokenByHash('h-1'),
    users: await c.listUsers(),
    credentials: await c.findUserCredentials('ann'),
    session: await c.sessionUser('sess-1', '2026-11-26T00:00:00.000Z'),
    members: await c.liveMembers(10 * 365 * 86_400_000),
    leadership: await c.currentLeadership(),
    schedule: await c.scheduleState('web'),
    jobs: await c.listJobs({ limit: 1000 }),
    counts: await c.backupCounts(),
  };
  return out;
}

describe('catalog migrate (SQLite to PostgreSQL)', () => {
  it('copies every record of every role, keeps the catalog id, and new writes continue after the copy', async (t) => {
    if (!postgres.require(t)) return;
    const file = await filledCatalog();
    const db = postgres.database();
    const passwordFile = join(root, `pw${n}`);
    writeFileSync(passwordFile, `${db.password}\n`, { mode: 0o600 });
    const run = await runCli([
      '--json',
      'catalog',
      'migrate',
      '--from',
      file,
      '--to',
      db.url,
      '--password-file',
      passwordFile,
    ]);
    assert.equal(run.code, 0, run.stdout + run.stderr);
    assert.equal(run.json.counts.backups, 30);
    assert.equal(run.json.counts.journal, 8);
    assert.equal(run.json.counts.copies, 3);
    assert.equal(run.json.to, db.url);
    assert.ok(!run.stdout.includes(db.password) && !run.stderr.includes(db.password));

    const sqlite = Catalog.open(file);
    const pg = await openCatalog(configOf(db));
    try {
      assert.equal(run.json.catalogId, sqlite.id);
      const [a, b] = [await everything(sqlite), await everything(pg)];
      for (const key of Object.keys(a)) assert.deepEqual(b[key], a[key], `${key} reads the same`);
      // The copy goes on as a catalog: journal ids continue, a new operation lists first.
      await pg.beginOperation({ id: 'op-new', kind: 'backup' });
      const [entry] = await pg.journalSteps('op-new', [{ action: 'x', target: 'y' }]);
      assert.equal(entry, 9);
      assert.equal((await pg.listOperations({ limit: 1 }))[0]?.id, 'op-new');
    } finally {
      await sqlite.close();
      await pg.close();
    }
  });

  it('refuses a target that is not empty, a source with running operations, and a source of another schema version', async (t) => {
    if (!postgres.require(t)) return;
    const file = await filledCatalog();
    const used = postgres.database();
    const other = await PostgresCatalog.create(configOf(used));
    await other.createTask({ name: 'there-already', select: { vms: ['x'] } });
    const otherId = other.id;
    await other.close();
    await assert.rejects(migrateSqliteToPostgres(file, configOf(used)), (e: unknown) => {
      assert.equal((e as { code?: string }).code, 'CATALOG_NOT_EMPTY');
      assert.match((e as Error).message, /tasks \(1\)/);
      return true;
    });
    const after = await openCatalog(configOf(used));
    assert.equal(after.id, otherId, 'the target keeps its identity');
    assert.deepEqual(
      (await after.listTasks()).map((x) => x.name),
      ['there-already'],
    );
    assert.deepEqual(await after.listBackups(), []);
    await after.close();

    const busy = await filledCatalog();
    const c = Catalog.open(busy);
    await c.beginOperation({ id: 'op-live', kind: 'backup' });
    await c.close();
    const target = postgres.database();
    await assert.rejects(migrateSqliteToPostgres(busy, configOf(target)), {
      code: 'OPERATION_RUNNING',
    });

    const oldFile = await filledCatalog();
    const raw = new Database(oldFile);
    raw
      .prepare('DELETE FROM schema_migrations WHERE version = (SELECT max(version) FROM schema_migrations)')
      .run();
    raw.close();
    await assert.rejects(migrateSqliteToPostgres(oldFile, configOf(target)), {
      code: 'CATALOG_VERSION_MISMATCH',
    });
    const still = await PostgresCatalog.create(configOf(target));
    assert.deepEqual(await still.listBackups(), [], 'nothing copied by a refused migration');
    await still.close();
  });

  it('refuses a password inside the URL as a usage error, without showing it', async () => {
    const run = await runCli([
      'catalog',
      'migrate',
      '--from',
      join(root, 'none.db'),
      '--to',
      'postgres://snapkeeper:hunter2secret@127.0.0.1:5432/snapkeeper',
    ]);
    assert.equal(run.code, 3, run.stderr);
    assert.match(run.stderr, /--password-file|passwordFile/);
    assert.ok(!run.stderr.includes('hunter2secret') && !run.stdout.includes('hunter2secret'));
  });
});
