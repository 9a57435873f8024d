import type { PostgresCatalogConfig } from '../../config/catalog.js';
import { SnapkeeperError } from '../../errors.js';
import { ComposedCatalog } from '../composed.js';
import type { CatalogHandle } from '../types.js';
import { PostgresAuthStore } from './auth.js';
import { PostgresBackupStore } from './backups.js';
import { PostgresCopyStore } from './copies.js';
import { PostgresDaemonStore } from './daemon.js';
import { PostgresDatabase, type PostgresOptions } from './database.js';
import { applyPostgresMigrations } from './migrate.js';
import { PostgresMountStore } from './mounts.js';
import { PostgresOperationJournal } from './operations.js';
import { PostgresTaskStore } from './tasks.js';

/**
 * The catalog on a PostgreSQL server: every role interface, each implemented by its own store on one shared
 * pool of connections (this class only composes them). Any number of processes on any number of machines
 * may open it: each multi-statement write is one transaction, locks are taken under row locks and an
 * advisory lock, and every time (heartbeats, leases, leadership, lock times) is the server's clock.
 */
export class PostgresCatalog extends ComposedCatalog implements CatalogHandle {
  readonly #db: PostgresDatabase;
  readonly dialect = 'postgres' as const;

  private constructor(db: PostgresDatabase, id: string) {
    // One store journals operations and keeps their locks: on a server both change in one transaction.
    const operations = new PostgresOperationJournal(db);
    super(id, {
      backups: new PostgresBackupStore(db),
      operations,
      locks: operations,
      tasks: new PostgresTaskStore(db),
      mounts: new PostgresMountStore(db),
      copies: new PostgresCopyStore(db),
      auth: new PostgresAuthStore(db),
      daemon: new PostgresDaemonStore(db),
    });
    this.#db = db;
  }

  /**
   * Connects, migrates (an older schema is brought up to date; a newer one refused: CATALOG_TOO_NEW) and
   * reads the catalog's id. Without `create` a database holding no catalog is refused (CATALOG_NOT_FOUND);
   * CATALOG_UNREACHABLE, CATALOG_AUTH_FAILED name host:port and database, never the password.
   */
  static async open(
    config: PostgresCatalogConfig,
    options: PostgresOptions & { create?: boolean } = {},
  ): Promise<PostgresCatalog> {
    const db = new PostgresDatabase(config, options);
    try {
      await applyPostgresMigrations(db, { create: options.create === true });
      const row = await db.get<{ value: string }>("SELECT value FROM meta WHERE key = 'catalog_id'");
      if (row === undefined) {
        throw new SnapkeeperError(
          'CATALOG_CORRUPT',
          `catalog ${db.location} has no identity (meta.catalog_id)`,
          {
            details: { location: db.location },
          },
        );
      }
      return new PostgresCatalog(db, row.value);
    } catch (err) {
      await db.close();
      throw err;
    }
  }

  /** Creates the catalog in the (existing, empty) database, or opens the one there. */
  static create(config: PostgresCatalogConfig, options: PostgresOptions = {}): Promise<PostgresCatalog> {
    return PostgresCatalog.open(config, { ...options, create: true });
  }

  /** The URL without a password. */
  get location(): string {
    return this.#db.location;
  }

  /** The pool, for the migration from SQLite (catalog migrate) alone. */
  get database(): PostgresDatabase {
    return this.#db;
  }

  /** Ends every connection of the pool. Safe to call twice. */
  close(): Promise<void> {
    return this.#db.close();
  }

  async schemaVersion(): Promise<number> {
    return (
      (await this.#db.get<{ v: number | null }>('SELECT max(version) AS v FROM schema_migrations'))?.v ?? 0
    );
  }

  /** The server's clock (or the test clock it was opened with). */
  async now(): Promise<Date> {
    return new Date(await this.#db.stamp());
  }
}
