import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, type TestContext } from 'node:test';
import {
  createPostgresDatabase,
  type PostgresServer,
  postgresAvailable,
  startPostgres,
} from '../../src/lab/postgres.js';
import { requireCapability } from './require.js';

export interface FilePostgres {
  /** Whether a PostgreSQL server can run here (Debian's `postgresql` package). */
  readonly available: boolean;
  /** False (and the test skipped, or failed under SNAPKEEPER_REQUIRE_ALL=1) when PostgreSQL is missing. */
  require(t: TestContext): boolean;
  server(): PostgresServer;
  /**
   * A new empty database on the file's server, with a unique name: tests of one file share the server, never
   * a database. `url` has no password; `password` and `passwordFile` are the server's.
   */
  database(): { url: string; password: string; passwordFile: string };
}

/**
 * One PostgreSQL server for every test of a file: a fresh cluster (fsync off) made in `before` under the
 * machine's temp folder, stopped and deleted in `after`. Call at the top level of a test file.
 */
export function filePostgres(): FilePostgres {
  const available = postgresAvailable();
  let server: PostgresServer | undefined;
  let base: string | undefined;
  let n = 0;
  before(async () => {
    if (!available) return;
    mkdirSync(tmpdir(), { recursive: true });
    base = mkdtempSync(join(tmpdir(), 'snapkeeper-pg-'));
    server = await startPostgres({ dataDir: join(base, 'cluster'), unsafeFast: true });
  });
  after(async () => {
    await server?.stop();
    if (base) rmSync(base, { recursive: true, force: true });
  });
  const get = () => {
    if (!server) throw new Error('no PostgreSQL server for this file (see available)');
    return server;
  };
  return {
    available,
    require: (t) =>
      requireCapability(
        t,
        available,
        'PostgreSQL server binaries are not installed (Debian package postgresql)',
      ),
    server: get,
    database() {
      n += 1;
      const s = get();
      const url = createPostgresDatabase(s, `t${n}_${process.pid}`);
      return { url, password: s.password, passwordFile: s.passwordFile };
    },
  };
}
