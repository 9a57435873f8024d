import { UsageError } from '../../errors.js';
import type { MigrationResult } from '../migrate.js';
import type { Migration } from '../migrations.js';
import type { PostgresDatabase, Queryable } from './database.js';
import { POSTGRES_MIGRATIONS } from './migrations.js';

/** The advisory lock every migrating process takes: two creators of one catalog run one after the other. */
export const MIGRATION_LOCK = 0x736b_6d67; // 'skmg'

/**
 * Brings the database to the last version of `migrations` in one transaction, under an advisory lock (two
 * processes creating or upgrading one catalog at once serialise here; the second finds nothing to do).
 * Without `create`, a database holding no catalog is refused (CATALOG_NOT_FOUND: a mistyped URL must not
 * become a new empty catalog). Refuses a schema newer than this code (CATALOG_TOO_NEW) and a database whose
 * schema holds tables but no catalog (CATALOG_INVALID).
 */
export async function applyPostgresMigrations(
  db: PostgresDatabase,
  options: { create?: boolean; migrations?: readonly Migration[] } = {},
): Promise<MigrationResult> {
  const migrations = options.migrations ?? POSTGRES_MIGRATIONS;
  const known = migrations[migrations.length - 1]?.version ?? 0;
  return db.write(async (q) => {
    await q.query('SELECT pg_advisory_xact_lock($1)', [MIGRATION_LOCK]);
    const from = await currentVersion(db, q, options.create === true);
    if (from > known) {
      throw new UsageError(
        'CATALOG_TOO_NEW',
        `catalog ${db.location} has schema version ${from}, this snapkeeper knows versions up to ${known}: use a newer snapkeeper`,
        { details: { location: db.location, version: from, known } },
      );
    }
    const applied: number[] = [];
    for (const m of migrations) {
      if (m.version <= from) continue;
      await q.query(m.up);
      await q.query('INSERT INTO schema_migrations (version, name, applied_at) VALUES ($1, $2, $3)', [
        m.version,
        m.name,
        await db.stamp(q),
      ]);
      applied.push(m.version);
    }
    return { from, to: Math.max(from, known), applied };
  });
}

/** The schema version in the database; creates the version table (with `create`) in a schema without tables. */
async function currentVersion(db: PostgresDatabase, q: Queryable, create: boolean): Promise<number> {
  const tables = (
    await q.query<{ name: string }>(
      `SELECT table_name AS name FROM information_schema.tables
       WHERE table_schema = current_schema() ORDER BY table_name`,
    )
  ).rows.map((r) => r.name);
  if (!tables.includes('schema_migrations')) {
    if (tables.length > 0) {
      throw new UsageError(
        'CATALOG_INVALID',
        `PostgreSQL at ${db.where} holds tables (${tables.slice(0, 5).join(', ')}) but no snapkeeper catalog (no schema_migrations); left untouched`,
        { details: { location: db.location } },
      );
    }
    if (!create) {
      throw new UsageError(
        'CATALOG_NOT_FOUND',
        `no catalog in PostgreSQL at ${db.where} (catalog.url): check the URL, or create one with snapkeeper catalog create`,
        { details: { location: db.location } },
      );
    }
    await q.query(
      'CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)',
    );
    return 0;
  }
  const row = (await q.query<{ v: number | null }>('SELECT max(version) AS v FROM schema_migrations'))
    .rows[0];
  return row?.v ?? 0;
}
