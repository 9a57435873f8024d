import { mkdirSync, statSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import Database from 'better-sqlite3';
import { errorMessage, LockedError, SnapkeeperError, UsageError } from '../../errors.js';
import { applyMigrations } from '../migrate.js';

export interface CatalogOptions {
  /** How long a write waits for another process's write transaction before failing (CATALOG_BUSY). */
  busyTimeoutMs?: number;
  /** Clock for the times the catalog stamps itself (operations, journal, locks, tasks, mounts). */
  now?: () => Date;
  /**
   * Create the file (and its directory) when it does not exist. Only `init`, `lab up` and `catalog create`
   * do: anywhere else a missing catalog is a mistyped path, and a new empty catalog there would make every
   * existing backup look like garbage to recover.
   */
  create?: boolean;
}

/**
 * One connection to the catalog file, shared by the role stores (backups, operations, locks, tasks, mounts):
 * prepared statements, SQLite errors turned into the catalog's (naming the file), and write transactions.
 *
 * better-sqlite3 is synchronous, and its transactions are too: a callback that awaits would commit at its
 * first `await` and run the rest outside the transaction. So `write` takes only synchronous callbacks (a
 * Promise returned is refused and rolled back), and the role stores, whose methods return Promises, do
 * every multi-statement write inside one synchronous `write`. A caller that needs several writes to commit
 * together gets a role method that does them (`journalSteps`, `markBackupLost`), never a transaction.
 */
export class SqliteDatabase {
  readonly #db: Database.Database;
  readonly #now: () => Date;
  readonly #statements = new Map<string, Database.Statement>();

  private constructor(
    /** Absolute path of the catalog file (or `:memory:`). */
    readonly path: string,
    db: Database.Database,
    now: () => Date,
  ) {
    this.#db = db;
    this.#now = now;
  }

  /**
   * Opens and migrates the catalog; with `create`, creates the file (and its parent directory) first when it
   * does not exist. UsageError CATALOG_NOT_FOUND for a missing file without `create` (nothing is created),
   * CATALOG_INVALID for an empty file, a file that is not SQLite or an SQLite file that is not a catalog
   * (left untouched), CATALOG_TOO_NEW for a schema newer than this code, CATALOG_OPEN_FAILED when the file
   * cannot be opened at all; SnapkeeperError CATALOG_CORRUPT for a damaged one.
   */
  static open(path: string, options: CatalogOptions = {}): SqliteDatabase {
    const file = path === ':memory:' ? path : resolve(path);
    const create = options.create === true || file === ':memory:';
    if (file !== ':memory:') checkCatalogFile(file, create);
    let db: Database.Database;
    try {
      if (create && file !== ':memory:') mkdirSync(dirname(file), { recursive: true });
      db = new Database(file, { timeout: options.busyTimeoutMs ?? 5000, fileMustExist: !create });
    } catch (err) {
      throw new UsageError('CATALOG_OPEN_FAILED', `cannot open catalog ${file}: ${errorMessage(err)}`, {
        cause: err,
        details: { file },
      });
    }
    try {
      // Read the header before any PRAGMA that writes, so a foreign file is refused untouched.
      const tables = db
        .prepare<[], { n: number }>(
          "SELECT count(*) AS n FROM sqlite_master WHERE name = 'schema_migrations'",
        )
        .get();
      if (!create && tables?.n === 0) {
        // Not ours, or an empty SQLite file: migrating would turn it into a catalog behind the user's back.
        throw new UsageError(
          'CATALOG_INVALID',
          `${file} is an SQLite database but not a snapkeeper catalog (no schema_migrations table); left untouched`,
          { details: { file } },
        );
      }
      db.pragma('journal_mode = WAL');
      db.pragma('synchronous = FULL');
      applyMigrations(db, file);
      db.pragma('foreign_keys = ON');
    } catch (err) {
      db.close();
      if (err instanceof Database.SqliteError && err.code === 'SQLITE_NOTADB') {
        throw new UsageError(
          'CATALOG_INVALID',
          `${file} is not a snapkeeper catalog (not an SQLite database); left untouched`,
          { cause: err, details: { file } },
        );
      }
      throw catalogError(err, file);
    }
    return new SqliteDatabase(file, db, options.now ?? (() => new Date()));
  }

  /** Closes the connection. Safe to call twice. */
  close(): void {
    if (this.#db.open) this.#db.close();
  }

  /** The catalog's clock, as stored: ISO-8601 UTC. */
  stamp(): string {
    return this.#now().toISOString();
  }

  /**
   * Runs `fn` in one IMMEDIATE transaction: every write inside commits together or not at all; nested
   * calls become savepoints. `fn` must be synchronous (see the class comment).
   */
  write<T>(fn: () => T): T {
    try {
      return this.#db
        .transaction(() => {
          const result = fn();
          if (result instanceof Promise) {
            // Reject before the commit: what the callback does after its first await would escape the transaction.
            result.catch(() => {});
            throw new TypeError('a catalog write transaction cannot run an async callback');
          }
          return result;
        })
        .immediate();
    } catch (err) {
      throw catalogError(err, this.path);
    }
  }

  get<T>(sql: string, ...params: unknown[]): T | undefined {
    try {
      return this.#statement(sql).get(...params) as T | undefined;
    } catch (err) {
      throw catalogError(err, this.path);
    }
  }

  all<T>(sql: string, ...params: unknown[]): T[] {
    try {
      return this.#statement(sql).all(...params) as T[];
    } catch (err) {
      throw catalogError(err, this.path);
    }
  }

  /** Runs a write and returns the number of rows it changed. */
  run(sql: string, ...params: unknown[]): number {
    return this.#exec(sql, params).changes;
  }

  /** Runs an INSERT and returns the new row's id. */
  insert(sql: string, ...params: unknown[]): number {
    return Number(this.#exec(sql, params).lastInsertRowid);
  }

  /** Stored JSON; SnapkeeperError CATALOG_CORRUPT naming `what` and the file when it does not parse. */
  parse<T>(json: string, what: string): T {
    try {
      return JSON.parse(json) as T;
    } catch (err) {
      throw new SnapkeeperError('CATALOG_CORRUPT', `${what} in catalog ${this.path} is not valid JSON`, {
        cause: err,
      });
    }
  }

  #exec(sql: string, params: unknown[]): Database.RunResult {
    try {
      return this.#statement(sql).run(...params);
    } catch (err) {
      throw catalogError(err, this.path);
    }
  }

  #statement(sql: string): Database.Statement {
    let s = this.#statements.get(sql);
    if (!s) {
      s = this.#db.prepare(sql);
      this.#statements.set(sql, s);
    }
    return s;
  }
}

/**
 * What SQLite says, in the catalog's words and naming its file: "another process kept the write lock past
 * busy_timeout" becomes CATALOG_BUSY, "database disk image is malformed" CATALOG_CORRUPT.
 */
function catalogError(err: unknown, file: string): unknown {
  if (!(err instanceof Database.SqliteError)) return err;
  if (err.code === 'SQLITE_BUSY' || err.code.startsWith('SQLITE_BUSY_')) {
    return new LockedError(
      'CATALOG_BUSY',
      `catalog ${file} is busy: another process kept it locked too long`,
      {
        cause: err,
        details: { file },
      },
    );
  }
  if (
    err.code === 'SQLITE_CORRUPT' ||
    err.code.startsWith('SQLITE_CORRUPT_') ||
    err.code === 'SQLITE_NOTADB'
  ) {
    return new SnapkeeperError(
      'CATALOG_CORRUPT',
      `catalog ${file} is damaged (${err.message}): restore it from a copy; snapkeeper changed nothing`,
      { cause: err, details: { file } },
    );
  }
  return err;
}

/**
 * Refuses, before SQLite touches it, what cannot be the catalog: nothing at the path (unless creating), a
 * directory, or an empty file (SQLite would take it for an empty database and make a new catalog of it).
 */
function checkCatalogFile(file: string, create: boolean): void {
  let size: number;
  let isFile: boolean;
  try {
    const st = statSync(file);
    size = st.size;
    isFile = st.isFile();
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') {
      throw new UsageError('CATALOG_OPEN_FAILED', `cannot open catalog ${file}: ${errorMessage(err)}`, {
        cause: err,
        details: { file },
      });
    }
    if (create) return;
    throw new UsageError(
      'CATALOG_NOT_FOUND',
      `no catalog at ${file} (catalog.path): check the path, or create one with snapkeeper catalog create`,
      { details: { file } },
    );
  }
  if (!isFile) {
    throw new UsageError('CATALOG_OPEN_FAILED', `cannot open catalog ${file}: not a file`, {
      details: { file },
    });
  }
  if (size === 0) {
    throw new UsageError(
      'CATALOG_INVALID',
      `${file} is an empty file, not a snapkeeper catalog; left untouched (remove it and run snapkeeper catalog create for a new one)`,
      { details: { file } },
    );
  }
}
