import pg from 'pg';
import type { PostgresCatalogConfig } from '../../config/catalog.js';
import { parsePostgresUrl } from '../../config/catalog.js';
import { AuthenticationError, errorMessage, LockedError, SnapkeeperError, UsageError } from '../../errors.js';

/** One statement's runner: the pool (autocommit) or the client of an open transaction. */
export interface Queryable {
  query<R extends pg.QueryResultRow = pg.QueryResultRow>(
    sql: string,
    params?: unknown[],
  ): Promise<pg.QueryResult<R>>;
}

export interface PostgresOptions {
  /**
   * Tests only: a clock that stamps times instead of the database server's (so that a case can know the
   * times it will read back). Without it every time comes from the server (`clock_timestamp()`).
   */
  now?: () => Date;
  /** How long a statement waits for a lock before CATALOG_BUSY (default 10 s, as SQLite's busy timeout). */
  lockTimeoutMs?: number;
  /** Connections in the pool (default 8). */
  maxConnections?: number;
}

// int8 (count(*), byte counts) as a JavaScript number: byte counts stay far below 2^53.
const types = {
  getTypeParser(oid: number, format?: 'text' | 'binary') {
    if (oid === 20 && format !== 'binary') return (v: string) => Number(v);
    return pg.types.getTypeParser(oid, format);
  },
};

/** How long a statement waits for a lock another transaction holds before failing (CATALOG_BUSY). */
const LOCK_TIMEOUT_MS = 10_000;
/** How long the server lets a connection sit idle inside an open transaction before ending it. */
const IDLE_IN_TRANSACTION_MS = 60_000;

/** The database's clock as the catalog stores times: ISO-8601 UTC with milliseconds, like `toISOString()`. */
const NOW_SQL = `to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"')`;

/**
 * The pool of connections to one PostgreSQL catalog, shared by the role stores: statements, transactions
 * (`write`), the catalog's clock (`stamp`), and the server's errors in the catalog's words, naming
 * host:port/database and never the password.
 */
export class PostgresDatabase {
  readonly #pool: pg.Pool;
  readonly #now: (() => Date) | undefined;
  /** `postgres://user@host:port/db`: no password. */
  readonly location: string;
  readonly #where: string;
  #closed = false;

  constructor(config: PostgresCatalogConfig, options: PostgresOptions = {}) {
    const target = parsePostgresUrl(config.url);
    if ('problem' in target) throw new UsageError('CONFIG_INVALID', `catalog.url: ${target.problem}`);
    this.location = config.url;
    this.#where = `${target.host}:${target.port} database ${target.database}`;
    this.#now = options.now;
    // The URL is taken apart: pg would let a password in a connection string override the one given here.
    this.#pool = new pg.Pool({
      host: target.host,
      port: target.port,
      database: target.database,
      user: target.user,
      ...(config.password === undefined ? {} : { password: config.password.reveal() }),
      ssl:
        target.sslmode === 'disable'
          ? false
          : target.sslmode === 'require'
            ? { rejectUnauthorized: false }
            : { rejectUnauthorized: true },
      max: options.maxConnections ?? 8,
      // As SQLite's busy timeout: a row or advisory lock waited for longer than this is CATALOG_BUSY, and a
      // transaction left open by a hung client is ended by the server (its locks with it).
      options: `-c lock_timeout=${options.lockTimeoutMs ?? LOCK_TIMEOUT_MS} -c idle_in_transaction_session_timeout=${IDLE_IN_TRANSACTION_MS}`,
      connectionTimeoutMillis: 10_000,
      idleTimeoutMillis: 30_000,
      application_name: 'snapkeeper',
      types,
    });
    // An idle connection the server ends (a restart) must not crash the process: the next query reconnects.
    this.#pool.on('error', () => {});
  }

  /** host:port and database, for messages. */
  get where(): string {
    return this.#where;
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await this.#pool.end();
  }

  async query<R extends pg.QueryResultRow>(sql: string, params: unknown[] = []): Promise<pg.QueryResult<R>> {
    try {
      return await this.#pool.query<R>(sql, params);
    } catch (err) {
      throw this.error(err);
    }
  }

  async all<R extends pg.QueryResultRow>(sql: string, params: unknown[] = []): Promise<R[]> {
    return (await this.query<R>(sql, params)).rows;
  }

  async get<R extends pg.QueryResultRow>(sql: string, params: unknown[] = []): Promise<R | undefined> {
    return (await this.query<R>(sql, params)).rows[0];
  }

  /** Runs a write and returns the number of rows it changed. */
  async run(sql: string, params: unknown[] = []): Promise<number> {
    return (await this.query(sql, params)).rowCount ?? 0;
  }

  /**
   * Runs `fn` in one transaction on one connection: committed when it resolves, rolled back when it throws.
   * `fn` only talks to the database (never to vCenter or an array): its row locks are held until it returns.
   */
  async write<T>(fn: (q: Queryable) => Promise<T>): Promise<T> {
    let client: pg.PoolClient;
    try {
      client = await this.#pool.connect();
    } catch (err) {
      throw this.error(err);
    }
    const q: Queryable = {
      query: async <R extends pg.QueryResultRow>(sql: string, params: unknown[] = []) => {
        try {
          return await client.query<R>(sql, params);
        } catch (err) {
          throw this.error(err);
        }
      },
    };
    let broken = false;
    try {
      await q.query('BEGIN');
      const result = await fn(q);
      await q.query('COMMIT');
      return result;
    } catch (err) {
      try {
        await client.query('ROLLBACK');
      } catch {
        broken = true; // the connection is gone: the server rolls back on its own
      }
      throw err;
    } finally {
      client.release(broken);
    }
  }

  /** The catalog's clock now (the server's, or the test clock), as stored: ISO-8601 UTC. */
  async stamp(q: Queryable = this): Promise<string> {
    if (this.#now) return this.#now().toISOString();
    const row = (await q.query<{ now: string }>(`SELECT ${NOW_SQL} AS now`)).rows[0];
    return row!.now;
  }

  /** Stored JSON; SnapkeeperError CATALOG_CORRUPT naming `what` when it does not parse. */
  parse<T>(json: string, what: string): T {
    try {
      return JSON.parse(json) as T;
    } catch (err) {
      throw new SnapkeeperError('CATALOG_CORRUPT', `${what} in catalog ${this.location} is not valid JSON`, {
        cause: err,
      });
    }
  }

  /**
   * What the driver or the server says, in the catalog's words, naming host:port and database and never the
   * password: CATALOG_UNREACHABLE (no server there, or it went away), CATALOG_AUTH_FAILED, CATALOG_NOT_FOUND
   * (no such database), CATALOG_BUSY (a lock or serialization conflict that outlived its retries).
   */
  error(err: unknown): unknown {
    if (err instanceof SnapkeeperError) return err;
    const e = err as { code?: string; message?: string } | undefined;
    const code = e?.code;
    const msg = errorMessage(err);
    const details = { location: this.location };
    if (
      code === '28P01' ||
      code === '28000' ||
      /SASL|SCRAM|client password must be a string|password authentication failed/i.test(msg)
    ) {
      return new AuthenticationError(
        'CATALOG_AUTH_FAILED',
        `PostgreSQL at ${this.#where} refused the login of the catalog's user: check catalog.passwordFile or catalog.passwordEnv (${code ?? 'no password accepted'})`,
        { cause: redacted(err), details },
      );
    }
    if (code === '3D000') {
      return new UsageError(
        'CATALOG_NOT_FOUND',
        `PostgreSQL at ${this.#where}: the database does not exist (create it, then snapkeeper catalog create)`,
        { cause: redacted(err), details },
      );
    }
    if (
      code === 'ECONNREFUSED' ||
      code === 'ENOTFOUND' ||
      code === 'EAI_AGAIN' ||
      code === 'ETIMEDOUT' ||
      code === 'ECONNRESET' ||
      code === 'EHOSTUNREACH' ||
      code === '57P01' ||
      code === '57P03' ||
      /Connection terminated|timeout exceeded when trying to connect|Client has encountered a connection error/i.test(
        msg,
      )
    ) {
      return new SnapkeeperError(
        'CATALOG_UNREACHABLE',
        `cannot reach the catalog's PostgreSQL at ${this.#where}: ${code ?? msg}`,
        { cause: redacted(err), details },
      );
    }
    if (code === '40001' || code === '40P01' || code === '55P03') {
      return new LockedError(
        'CATALOG_BUSY',
        `catalog ${this.location} is busy: another process kept it locked too long (${msg})`,
        {
          cause: redacted(err),
          details,
        },
      );
    }
    return err;
  }
}

/** The driver's error without anything that could hold connection parameters. */
function redacted(err: unknown): Error {
  const e = new Error(errorMessage(err));
  const code = (err as { code?: unknown })?.code;
  if (typeof code === 'string') (e as Error & { code?: string }).code = code;
  return e;
}
