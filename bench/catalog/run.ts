import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Catalog, type CatalogHandle, PostgresCatalog } from '../../src/catalog/index.js';
import { createPostgresDatabase, postgresAvailable, startPostgres } from '../../src/lab/postgres.js';
import type { BackupRecord } from '../../src/model/backup.js';
import { Secret } from '../../src/util/secret.js';

/*
 * The catalog's cost per engine step on each dialect: one operation's life as the engine lives it (begin,
 * journal two steps, complete one, take two locks, heartbeat, finish), a backup record written and read back,
 * a page of the listing. SQLite on a local file (synchronous=FULL); PostgreSQL on a local server (fsync on,
 * as a real one), through the pool, every time stamped by the server. Prints milliseconds per step.
 *
 *   node dist/bench/catalog/run.js [OPERATIONS]
 */

const N = Number(process.argv[2] ?? 300);

function record(i: number): BackupRecord {
  return {
    id: `b-${String(i).padStart(6, '0')}`,
    task: 'nightly',
    state: 'complete',
    startedAt: new Date(Date.parse('2026-11-01T00:00:00Z') + i * 60_000).toISOString(),
    vms: [{ id: `vm-${i % 50}`, name: `web-${i % 50}` } as never],
    snapshots: [{ array: 'a1', snapshotId: `s-${i}`, volume: 'v' } as never],
    warnings: [],
  };
}

async function measure(name: string, c: CatalogHandle): Promise<void> {
  const t0 = performance.now();
  for (let i = 0; i < N; i++) {
    const id = `op-${i}`;
    await c.beginOperation({ id, kind: 'backup', subject: 'nightly' });
    const [e1] = await c.journalSteps(id, [
      { action: 'vm.snapshot.create', target: `vm-${i}` },
      { action: 'array.snapshot', target: 'a1/v' },
    ]);
    await c.completeJournal(e1!, { snapshotId: `snap-${i}` });
    await c.acquireLocks(id, [`vm:${i}`, { resource: 'volume:a1/v', mode: 'shared' }]);
    await c.heartbeat(id);
    await c.finishOperation(id, 'done');
  }
  const t1 = performance.now();
  for (let i = 0; i < N; i++) {
    await c.insertBackup(record(i));
    await c.getBackup(record(i).id);
  }
  const t2 = performance.now();
  for (let i = 0; i < 50; i++) await c.listBackups({ limit: 50, vm: 'web-1*' });
  const t3 = performance.now();
  const per = (ms: number, n: number) => (ms / n).toFixed(2);
  process.stdout.write(
    `${name.padEnd(10)} operation life (6 calls): ${per(t1 - t0, N)} ms   backup insert+get: ${per(t2 - t1, N)} ms   ` +
      `list page (50, vm glob): ${per(t3 - t2, 50)} ms\n`,
  );
}

const root = mkdtempSync(join(tmpdir(), 'snapkeeper-bench-catalog-'));
try {
  const sqlite = Catalog.create(join(root, 'c.db'));
  await measure('sqlite', sqlite);
  await sqlite.close();
  if (!postgresAvailable()) {
    process.stdout.write('postgres   skipped: PostgreSQL server binaries not installed\n');
  } else {
    const server = await startPostgres({ dataDir: join(root, 'pg') });
    try {
      const url = createPostgresDatabase(server, 'bench');
      const pg = await PostgresCatalog.create({ url, path: url, password: new Secret(server.password) });
      await measure('postgres', pg);
      await pg.close();
    } finally {
      await server.stop();
    }
  }
} finally {
  rmSync(root, { recursive: true, force: true });
}
