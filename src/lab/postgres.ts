import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import {
  chmodSync,
  chownSync,
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { dirname, join } from 'node:path';
import { SnapkeeperError } from '../errors.js';
import { freePort } from './moto.js';

/**
 * A PostgreSQL server for the lab (`lab up --postgres`) and the tests: Debian's server binaries (package
 * `postgresql`), a cluster made with initdb in a folder of ours, listening on 127.0.0.1 and on a Unix socket in
 * that folder, password authentication (scram-sha-256) for one superuser `snapkeeper`. PostgreSQL refuses to
 * run as root: as root every server command runs as the `postgres` user the Debian package creates (through
 * `setpriv`), and the data folder is given to that user.
 */

export const POSTGRES_USER = 'snapkeeper';
export const POSTGRES_DATABASE = 'snapkeeper';

export interface PostgresServer {
  /** `postgres://snapkeeper@127.0.0.1:PORT/snapkeeper`: no password in it. */
  url: string;
  port: number;
  /** The cluster's folder (initdb's). */
  dataDir: string;
  /** The superuser's password (also in `passwordFile`). */
  password: string;
  /** A file holding only the password (mode 0600). */
  passwordFile: string;
  /** Stops the server (`pg_ctl stop -m fast`). Idempotent. */
  stop(): Promise<void>;
}

export interface StartPostgresOptions {
  /** The cluster folder: created with initdb when it holds no cluster, reused when it does. */
  dataDir: string;
  /** Where the password file goes (default: `<dataDir>.password`, beside the cluster folder). */
  passwordFile?: string;
  /** Port on 127.0.0.1; a free one when absent (a reused cluster keeps the port it was started on before). */
  port?: number;
  /**
   * Outlive this process (the lab: `lab down` stops it). Otherwise the server is stopped when this process
   * exits normally (a SIGKILLed test leaves it; PostgreSQL stops on its own once its folder is deleted).
   */
  detached?: boolean;
  /** Turns fsync off (tests: faster, and a test server's data need not survive a power cut). */
  unsafeFast?: boolean;
  /** Where the server's log goes (default `<dataDir>/server.log`). */
  logFile?: string;
}

/** The folder of the server binaries: `SNAPKEEPER_PG_BINDIR`, else Debian's newest `/usr/lib/postgresql/N/bin`. */
export function postgresBinDir(): string | undefined {
  const fromEnv = process.env.SNAPKEEPER_PG_BINDIR;
  if (fromEnv) return existsSync(join(fromEnv, 'initdb')) ? fromEnv : undefined;
  const base = '/usr/lib/postgresql';
  if (!existsSync(base)) return undefined;
  const versions = readdirSync(base)
    .filter((v) => /^\d+$/.test(v) && existsSync(join(base, v, 'bin', 'initdb')))
    .sort((a, b) => Number(b) - Number(a));
  return versions.length > 0 ? join(base, versions[0] as string, 'bin') : undefined;
}

const isRoot = typeof process.getuid === 'function' && process.getuid() === 0;

/** True when a PostgreSQL server can be started here (binaries present; as root, the `postgres` user too). */
export function postgresAvailable(): boolean {
  if (postgresBinDir() === undefined) return false;
  if (!isRoot) return true;
  return spawnSync('id', ['-u', 'postgres'], { stdio: 'ignore' }).status === 0;
}

function postgresIds(): { uid: number; gid: number } {
  const uid = Number(spawnSync('id', ['-u', 'postgres'], { encoding: 'utf8' }).stdout.trim());
  const gid = Number(spawnSync('id', ['-g', 'postgres'], { encoding: 'utf8' }).stdout.trim());
  if (!Number.isInteger(uid) || !Number.isInteger(gid)) {
    throw new SnapkeeperError(
      'POSTGRES_START_FAILED',
      'cannot start PostgreSQL as root: there is no `postgres` user (install Debian\'s package "postgresql")',
    );
  }
  return { uid, gid };
}

/** Runs a server binary (as `postgres` when we are root); throws with its output on failure. */
function run(bin: string, tool: string, args: string[], what: string, password?: string): string {
  const cmd = isRoot ? 'setpriv' : join(bin, tool);
  const argv = isRoot
    ? ['--reuid=postgres', '--regid=postgres', '--init-groups', '--', join(bin, tool), ...args]
    : args;
  const env = { ...process.env, ...(password === undefined ? {} : { PGPASSWORD: password }) };
  const r = spawnSync(cmd, argv, { encoding: 'utf8', timeout: 120_000, cwd: '/', env });
  if (r.status !== 0) {
    const out = `${r.stdout ?? ''}${r.stderr ?? ''}`.trim().split('\n').slice(-6).join('\n');
    throw new SnapkeeperError(
      'POSTGRES_START_FAILED',
      `${what} failed (${tool} ${r.error ? r.error.message : `exit ${r.status}`})${out ? `:\n${out}` : ''}`,
    );
  }
  return r.stdout;
}

/** Every folder above `path` must be enterable by the server's user, or PostgreSQL cannot reach its cluster. */
function ensureTraversable(path: string): void {
  if (!isRoot) return;
  for (let d = dirname(path); d !== dirname(d); d = dirname(d)) {
    const probe = spawnSync('setpriv', [
      '--reuid=postgres',
      '--regid=postgres',
      '--init-groups',
      '--',
      'test',
      '-x',
      d,
    ]);
    if (probe.status !== 0) chmodSync(d, 0o711 | (statSync(d).mode & 0o7777));
  }
}

const stopping = new Set<string>();
let exitHookInstalled = false;
function stopOnExit(bin: string, dataDir: string): void {
  stopping.add(dataDir);
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.once('exit', () => {
    for (const d of stopping) {
      try {
        run(bin, 'pg_ctl', ['-D', d, '-m', 'immediate', '-w', 'stop'], 'stopping PostgreSQL');
      } catch {
        // Already stopped.
      }
    }
  });
}

/**
 * Makes (initdb) or reuses the cluster in `dataDir` and starts it, waiting until it accepts connections.
 * POSTGRES_START_FAILED names the step that failed with the end of its output.
 */
export async function startPostgres(options: StartPostgresOptions): Promise<PostgresServer> {
  const bin = postgresBinDir();
  if (bin === undefined) {
    throw new SnapkeeperError(
      'POSTGRES_START_FAILED',
      'PostgreSQL server binaries not found under /usr/lib/postgresql (install Debian\'s package "postgresql", or set SNAPKEEPER_PG_BINDIR)',
    );
  }
  const dataDir = options.dataDir;
  const passwordFile = options.passwordFile ?? `${dataDir}.password`;
  const portFile = join(dataDir, 'snapkeeper.port');
  const fresh = !existsSync(join(dataDir, 'PG_VERSION'));
  let password: string;
  if (fresh) {
    password = randomBytes(18).toString('base64url');
    writeFileSync(passwordFile, `${password}\n`, { mode: 0o600 });
    mkdirSync(dataDir, { recursive: true, mode: 0o700 });
    ensureTraversable(dataDir);
    const initPw = join(dataDir, '..', `.initdb-${process.pid}`);
    writeFileSync(initPw, `${password}\n`, { mode: 0o600 });
    try {
      if (isRoot) {
        const { uid, gid } = postgresIds();
        chownSync(dataDir, uid, gid);
        chownSync(initPw, uid, gid);
      }
      run(
        bin,
        'initdb',
        [
          '-D',
          dataDir,
          '-U',
          POSTGRES_USER,
          '--auth=scram-sha-256',
          `--pwfile=${initPw}`,
          '-E',
          'UTF8',
          '--locale=C.UTF-8',
          // A test or lab cluster need not survive a power cut: no fsync of the new files either.
          ...(options.unsafeFast ? ['--no-sync'] : []),
        ],
        'creating the PostgreSQL cluster',
      );
    } finally {
      spawnSync('rm', ['-f', initPw]);
    }
  } else {
    password = readFileSync(passwordFile, 'utf8').trim();
  }
  const port =
    options.port ?? (existsSync(portFile) ? Number(readFileSync(portFile, 'utf8').trim()) : await freePort());
  const logFile = options.logFile ?? join(dataDir, 'server.log');
  const serverOptions = [
    `-p ${port}`,
    "-c listen_addresses='127.0.0.1'",
    `-c unix_socket_directories='${dataDir}'`,
    '-c max_connections=200',
    ...(options.unsafeFast ? ['-c fsync=off', '-c synchronous_commit=off', '-c full_page_writes=off'] : []),
  ].join(' ');
  run(
    bin,
    'pg_ctl',
    ['-D', dataDir, '-l', logFile, '-o', serverOptions, '-w', '-t', '120', 'start'],
    'starting PostgreSQL',
  );
  writeFileSync(portFile, `${port}\n`);
  if (!options.detached) stopOnExit(bin, dataDir);
  const url = `postgres://${POSTGRES_USER}@127.0.0.1:${port}/${POSTGRES_DATABASE}`;
  if (fresh) {
    run(
      bin,
      'createdb',
      ['-h', dataDir, '-p', String(port), '-U', POSTGRES_USER, POSTGRES_DATABASE],
      'creating the database',
      password,
    );
  }
  let stopped = false;
  return {
    url,
    port,
    dataDir,
    password,
    passwordFile,
    async stop() {
      if (stopped) return;
      stopped = true;
      stopping.delete(dataDir);
      await stopPostgres(dataDir);
    },
  };
}

/** Whether the cluster in `dataDir` runs: its postmaster.pid names a live process. */
export function postgresAlive(dataDir: string): boolean {
  let pid: number;
  try {
    pid = Number(readFileSync(join(dataDir, 'postmaster.pid'), 'utf8').split('\n')[0]);
  } catch {
    return false;
  }
  if (!Number.isInteger(pid) || pid <= 0) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Stops the cluster in `dataDir` if it runs (fast shutdown: running sessions are ended). */
export async function stopPostgres(dataDir: string): Promise<void> {
  const bin = postgresBinDir();
  if (bin === undefined || !existsSync(join(dataDir, 'postmaster.pid'))) return;
  run(bin, 'pg_ctl', ['-D', dataDir, '-m', 'fast', '-w', '-t', '60', 'stop'], 'stopping PostgreSQL');
}

/** Creates another database on the server (CREATE DATABASE through its socket); returns its URL. */
export function createPostgresDatabase(
  server: Pick<PostgresServer, 'dataDir' | 'port' | 'url' | 'password'>,
  name: string,
): string {
  if (!/^[a-z_][a-z0-9_]{0,62}$/.test(name)) throw new Error(`not a database name: ${name}`);
  const bin = postgresBinDir();
  if (bin === undefined) throw new Error('PostgreSQL binaries not found');
  run(
    bin,
    'createdb',
    ['-h', server.dataDir, '-p', String(server.port), '-U', POSTGRES_USER, name],
    `creating database ${name}`,
    server.password,
  );
  return server.url.replace(/\/[^/]*$/, `/${name}`);
}
