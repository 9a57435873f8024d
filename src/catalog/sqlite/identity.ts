import { SnapkeeperError } from '../../errors.js';
import type { SqliteDatabase } from './database.js';

/**
 * The catalog's identity, made once with it (by a migration) and never changed. It is read once, at open:
 * a constant needs no round trip per use, so callers get it as a plain property of the open catalog.
 */
export function readCatalogId(db: SqliteDatabase): string {
  const id = db.get<{ value: string }>("SELECT value FROM meta WHERE key = 'catalog_id'")?.value;
  if (id === undefined) {
    throw new SnapkeeperError('CATALOG_CORRUPT', `catalog ${db.path} has no identity (meta.catalog_id)`, {
      details: { file: db.path },
    });
  }
  return id;
}

/** Version of the schema in the file (the newest migration applied). */
export function schemaVersion(db: SqliteDatabase): number {
  return db.get<{ v: number | null }>('SELECT max(version) AS v FROM schema_migrations')?.v ?? 0;
}
