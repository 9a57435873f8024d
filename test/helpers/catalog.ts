import assert from 'node:assert/strict';
import Database from 'better-sqlite3';
import { applyMigrations, Catalog, MIGRATIONS } from '../../src/catalog/index.js';
import { UsageError } from '../../src/errors.js';
import type { BackupRecord } from '../../src/model/backup.js';

/** Opens the catalog file, hands it to `use` and closes it whatever happens. */
export async function withCatalog<T>(
  catalogPath: string,
  use: (catalog: Catalog) => Promise<T> | T,
): Promise<T> {
  const catalog = Catalog.open(catalogPath);
  try {
    return await use(catalog);
  } finally {
    await catalog.close();
  }
}

/** How many backups the catalog lists, whatever their state. */
export function countBackups(catalogPath: string): Promise<number> {
  return withCatalog(catalogPath, async (c) => (await c.listBackups()).length);
}

/** The backup started last. */
export function newestBackup(catalogPath: string): Promise<BackupRecord> {
  return withCatalog(catalogPath, async (c) => (await c.listBackups({ limit: 1 }))[0]!);
}

/** The catalog's identity, which every snapshot and clone it makes carries. */
export function catalogIdOf(catalogPath: string): Promise<string> {
  return withCatalog(catalogPath, (c) => c.id);
}

/** A complete backup record with no VM and no snapshot: for catalog tests where only the record matters. */
export function emptyBackup(id: string, fields: Partial<BackupRecord> = {}): BackupRecord {
  return {
    id,
    task: 'nightly',
    state: 'complete',
    startedAt: '2026-11-01T01:00:00.000Z',
    snapshots: [],
    vms: [],
    warnings: [],
    ...fields,
  };
}

/**
 * A catalog file as an older release left it: only its first `migrations` schema steps applied, and backup
 * `b-old` of web01 written the way those releases wrote it. The caller adds what it needs and closes `db`.
 */
export function olderCatalog(file: string, migrations: number) {
  const db = new Database(file);
  db.pragma('foreign_keys = ON');
  const migrated = applyMigrations(db, file, MIGRATIONS.slice(0, migrations));
  const record = emptyBackup('b-old');
  db.prepare('INSERT INTO backups (id, task, state, started_at, record) VALUES (?, ?, ?, ?, ?)').run(
    record.id,
    record.task,
    record.state,
    record.startedAt,
    JSON.stringify(record),
  );
  db.prepare('INSERT INTO backup_vms (backup_id, vm_id, vm_name) VALUES (?, ?, ?)').run(
    'b-old',
    'vm-1',
    'web01',
  );
  return { db, record, migrated };
}

/** `Catalog.open(file)` is refused as bad input (`code`), the message naming the file and matching `also`. */
export function assertOpenRefused(file: string, code: string, ...also: RegExp[]): void {
  assert.throws(
    () => Catalog.open(file),
    (err: unknown) => {
      assert.ok(err instanceof UsageError);
      assert.equal(err.code, code);
      assert.ok(err.message.includes(file), `the message names ${file}: ${err.message}`);
      for (const re of also) assert.match(err.message, re);
      return true;
    },
  );
}
