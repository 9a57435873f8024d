import { ComposedCatalog } from '../composed.js';
import type { CatalogHandle } from '../types.js';
import { SqliteAuthStore } from './auth.js';
import { SqliteBackupStore } from './backups.js';
import { SqliteCopyStore } from './copies.js';
import { SqliteDaemonStore } from './daemon.js';
import { type CatalogOptions, SqliteDatabase } from './database.js';
import { readCatalogId, schemaVersion } from './identity.js';
import { SqliteLockManager } from './locks.js';
import { SqliteMountStore } from './mounts.js';
import { SqliteOperationJournal } from './operations.js';
import { SqliteTaskStore } from './tasks.js';

/**
 * The catalog on one SQLite file: every role interface, each implemented by its own store on one shared
 * connection (this class only composes them). Several processes may open the same file: WAL lets readers
 * run beside the one writer, every write is an IMMEDIATE transaction (the write lock is taken up front, so
 * two writers never deadlock on an upgrade), and synchronous=FULL makes a committed journal entry survive a
 * power cut before the side effect it announces begins.
 */
export class Catalog extends ComposedCatalog implements CatalogHandle {
  readonly #db: SqliteDatabase;
  readonly dialect = 'sqlite' as const;

  private constructor(db: SqliteDatabase) {
    super(readCatalogId(db), {
      backups: new SqliteBackupStore(db),
      operations: new SqliteOperationJournal(db),
      locks: new SqliteLockManager(db),
      tasks: new SqliteTaskStore(db),
      mounts: new SqliteMountStore(db),
      copies: new SqliteCopyStore(db),
      auth: new SqliteAuthStore(db),
      daemon: new SqliteDaemonStore(db),
    });
    this.#db = db;
  }

  /** See `SqliteDatabase.open` for what it refuses. */
  static open(path: string, options: CatalogOptions = {}): Catalog {
    const db = SqliteDatabase.open(path, options);
    try {
      return new Catalog(db);
    } catch (err) {
      db.close();
      throw err;
    }
  }

  /** Creates the catalog at `path` (or opens the one there): what `init`, `lab up` and `catalog create` do. */
  static create(path: string, options: Omit<CatalogOptions, 'create'> = {}): Catalog {
    return Catalog.open(path, { ...options, create: true });
  }

  /** Absolute path of the catalog file. */
  get path(): string {
    return this.#db.path;
  }

  /** The file's absolute path (for messages and logs). */
  get location(): string {
    return this.#db.path;
  }

  /**
   * Closes the connection. Safe to call twice. The file is closed before the Promise is returned (SQLite
   * closes synchronously), so a caller that cannot await (an exit hook) may ignore it.
   */
  async close(): Promise<void> {
    this.#db.close();
  }

  /** Version of the schema in the file (the newest migration applied). */
  async schemaVersion(): Promise<number> {
    return schemaVersion(this.#db);
  }

  /** This process's clock (the `now` option, if any): one machine, one clock. */
  async now(): Promise<Date> {
    return new Date(this.#db.stamp());
  }
}
