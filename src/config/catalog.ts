import { readFileSync, statSync } from 'node:fs';
import { z } from 'zod';
import { errorMessage } from '../errors.js';
import type { Warning } from '../model/backup.js';
import { Secret } from '../util/secret.js';

/**
 * The `catalog:` block: a SQLite file (`path`, the default `snapkeeper.db` beside the configuration) or a
 * PostgreSQL database (`url: postgres://USER@HOST:PORT/DATABASE`, its password from `passwordFile` or
 * `passwordEnv`, never inside the URL: a URL is shown in messages and logs, a password must never be).
 */
export const catalogSchema = z
  .object({
    path: z.string().min(1).optional(),
    url: z.string().min(1).optional(),
    passwordFile: z.string().min(1).optional(),
    passwordEnv: z.string().min(1).optional(),
  })
  .strict();

export type RawCatalogConfig = z.infer<typeof catalogSchema>;

/** A catalog on one SQLite file. */
export interface SqliteCatalogConfig {
  /** Absolute path of the file. */
  path: string;
  url?: undefined;
}

/** A catalog on a PostgreSQL server. */
export interface PostgresCatalogConfig {
  /** `postgres://USER@HOST:PORT/DATABASE[?sslmode=...]`, never with a password: fit for messages. */
  url: string;
  /** The same URL: where the catalog is, for messages (a SQLite catalog's `path` is its file). */
  path: string;
  /** From `passwordFile` or `passwordEnv`; none for a server that trusts the connection. */
  password?: Secret;
}

export type CatalogConfig = SqliteCatalogConfig | PostgresCatalogConfig;

/** What a PostgreSQL URL names, taken apart (a password in it is refused before this). */
export interface PostgresTarget {
  host: string;
  port: number;
  database: string;
  user: string;
  /** `sslmode`: disable (default), require (encrypted, certificate not checked), verify-full. */
  sslmode: 'disable' | 'require' | 'verify-full';
}

/** A URL with any password in it masked, so that a message about a bad URL never shows the password. */
export function maskUrlPassword(url: string): string {
  return url.replace(/^([a-z][a-z0-9+.-]*:\/\/[^:/@]*):[^@/]*@/i, '$1:***@');
}

/**
 * Takes a PostgreSQL URL apart, or says what is wrong with it (the message never repeats a password). pg
 * would let a password inside the URL override the one given apart: such a URL is refused.
 */
export function parsePostgresUrl(url: string): PostgresTarget | { problem: string } {
  const shown = maskUrlPassword(url);
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    return { problem: `${shown} is not a URL (expected postgres://USER@HOST:PORT/DATABASE)` };
  }
  if (u.protocol !== 'postgres:' && u.protocol !== 'postgresql:') {
    return { problem: `${shown} is not a postgres:// URL (expected postgres://USER@HOST:PORT/DATABASE)` };
  }
  if (u.password !== '') {
    return {
      problem: `${shown} holds a password: put it in a file named by catalog.passwordFile (mode 0600) or in an environment variable named by catalog.passwordEnv, never in the URL`,
    };
  }
  if (u.username === '') return { problem: `${shown} names no user (postgres://USER@HOST:PORT/DATABASE)` };
  if (u.hostname === '') return { problem: `${shown} names no host (postgres://USER@HOST:PORT/DATABASE)` };
  const database = decodeURIComponent(u.pathname.replace(/^\//, ''));
  if (database === '' || database.includes('/')) {
    return { problem: `${shown} names no database (postgres://USER@HOST:PORT/DATABASE)` };
  }
  let sslmode: PostgresTarget['sslmode'] = 'disable';
  for (const [key, value] of u.searchParams) {
    if (key !== 'sslmode') {
      return { problem: `${shown}: unknown parameter ${key} (only sslmode is understood)` };
    }
    if (value !== 'disable' && value !== 'require' && value !== 'verify-full') {
      return { problem: `${shown}: sslmode must be disable, require or verify-full, got ${value}` };
    }
    sslmode = value;
  }
  return {
    host: u.hostname.replace(/^\[(.*)\]$/, '$1'),
    port: u.port === '' ? 5432 : Number(u.port),
    database,
    user: decodeURIComponent(u.username),
    sslmode,
  };
}

/**
 * The loaded `catalog:` block, or its problems (each with its path in the file). `abs` makes a path
 * relative to the configuration file absolute.
 */
export function resolveCatalogConfig(
  raw: RawCatalogConfig | undefined,
  abs: (p: string) => string,
  env: NodeJS.ProcessEnv,
  warnings: Warning[],
): CatalogConfig | { problems: { path: string; message: string }[] } {
  const c = raw ?? {};
  const problems: { path: string; message: string }[] = [];
  if (c.url === undefined) {
    if (c.passwordFile !== undefined || c.passwordEnv !== undefined) {
      problems.push({
        path: 'catalog',
        message: 'passwordFile and passwordEnv go with url (a PostgreSQL catalog), not with a SQLite path',
      });
    }
    return problems.length > 0 ? { problems } : { path: abs(c.path ?? 'snapkeeper.db') };
  }
  if (c.path !== undefined) {
    problems.push({
      path: 'catalog',
      message: 'set exactly one of path (a SQLite file) and url (a PostgreSQL database)',
    });
  }
  const target = parsePostgresUrl(c.url);
  if ('problem' in target) problems.push({ path: 'catalog.url', message: target.problem });
  if (c.passwordFile !== undefined && c.passwordEnv !== undefined) {
    problems.push({ path: 'catalog', message: 'set at most one of passwordFile and passwordEnv' });
  }
  let password: Secret | undefined;
  if (c.passwordFile !== undefined) {
    const file = abs(c.passwordFile);
    try {
      password = new Secret(readFileSync(file, 'utf8').replace(/\r?\n$/, ''));
      const mode = statSync(file).mode;
      if ((mode & 0o044) !== 0) {
        warnings.push({
          code: 'PASSWORD_FILE_READABLE',
          message: `catalog.passwordFile: ${file} is readable by ${(mode & 0o004) !== 0 ? 'others' : 'its group'} (mode ${(mode & 0o777).toString(8).padStart(4, '0')}); restrict it with chmod 600`,
        });
      }
    } catch (err) {
      problems.push({
        path: 'catalog.passwordFile',
        message: `cannot read ${file}: ${(err as NodeJS.ErrnoException).code ?? errorMessage(err)}`,
      });
    }
  } else if (c.passwordEnv !== undefined) {
    const value = env[c.passwordEnv];
    if (value === undefined) {
      problems.push({
        path: 'catalog.passwordEnv',
        message: `environment variable ${c.passwordEnv} is not set`,
      });
    } else password = new Secret(value);
  }
  if (problems.length > 0) return { problems };
  return { url: c.url, path: c.url, ...(password === undefined ? {} : { password }) };
}
