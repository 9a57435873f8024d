import type Database from 'better-sqlite3';
import { UsageError } from '../errors.js';
import { MIGRATIONS, type Migration } from './migrations.js';

export interface MigrationResult {
  /** Schema version before (0 for a new file). */
  from: number;
  to: number;
  applied: number[];
}

/**
 * Brings the database to the last version of `migrations`, all pending steps in one IMMEDIATE transaction:
 * two processes opening an old catalog at once serialise here, and the second finds nothing to do. A crash
 * mid-way leaves the previous version intact. Refuses (UsageError) a schema newer than `migrations` knows
 * (CATALOG_TOO_NEW) and an SQLite file that holds tables but is no catalog (CATALOG_INVALID).
 * `migrations` is a parameter so that tests can build a catalog as an older release left it.
 */
export function applyMigrations(
  db: Database.Database,
  file: string,
  migrations: readonly Migration[] = MIGRATIONS,
): MigrationResult {
  checkOrder(migrations);
  const known = migrations[migrations.length - 1]?.version ?? 0;
  // Rebuilding a referenced table (SQLite's way to change a constraint) must not cascade: foreign keys are
  // off while migrating (the pragma cannot change inside a transaction) and checked before the commit.
  const foreignKeys = db.pragma('foreign_keys', { simple: true }) === 1;
  if (foreignKeys) db.pragma('foreign_keys = OFF');
  try {
    return migrate(db, file, migrations, known);
  } finally {
    if (foreignKeys) db.pragma('foreign_keys = ON');
  }
}

function migrate(
  db: Database.Database,
  file: string,
  migrations: readonly Migration[],
  known: number,
): MigrationResult {
  const run = db.transaction((): MigrationResult => {
    const from = currentVersion(db, file);
    if (from > known) {
      throw new UsageError(
        'CATALOG_TOO_NEW',
        `catalog ${file} has schema version ${from}, this snapkeeper knows versions up to ${known}: use a newer snapkeeper`,
        { details: { file, version: from, known } },
      );
    }
    const applied: number[] = [];
    const record = db.prepare('INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)');
    for (const m of migrations) {
      if (m.version <= from) continue;
      db.exec(m.up);
      record.run(m.version, m.name, new Date().toISOString());
      applied.push(m.version);
    }
    const broken = db.pragma('foreign_key_check') as unknown[];
    if (broken.length > 0) {
      throw new Error(
        `catalog ${file}: migrating left ${broken.length} dangling reference(s); nothing was changed`,
      );
    }
    return { from, to: Math.max(from, known), applied };
  });
  return run.immediate();
}

/** The catalog's schema version; creates the version table in a database that has no tables yet. */
function currentVersion(db: Database.Database, file: string): number {
  const tables = db
    .prepare<[], { name: string }>(
      "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\'",
    )
    .all()
    .map((r) => r.name);
  if (!tables.includes('schema_migrations')) {
    if (tables.length > 0) {
      throw new UsageError(
        'CATALOG_INVALID',
        `${file} is an SQLite database but not a snapkeeper catalog (tables ${tables.slice(0, 5).join(', ')}, no schema_migrations)`,
        { details: { file } },
      );
    }
    db.exec(
      'CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)',
    );
    return 0;
  }
  const row = db.prepare<[], { v: number | null }>('SELECT max(version) AS v FROM schema_migrations').get();
  return row?.v ?? 0;
}

function checkOrder(migrations: readonly Migration[]): void {
  migrations.forEach((m, i) => {
    if (m.version !== i + 1) {
      throw new Error(
        `catalog migrations must be numbered 1, 2, 3, ...: found version ${m.version} at index ${i}`,
      );
    }
  });
}
