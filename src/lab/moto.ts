import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { closeSync, openSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { CreateBucketCommand, PutObjectLockConfigurationCommand, S3Client } from '@aws-sdk/client-s3';
import { SnapkeeperError } from '../errors.js';
import { quietSdkVersionWarning } from '../repository/index.js';

/**
 * A moto S3 server (`python3 -m moto.server`) for the lab and the tests: a real S3 endpoint on 127.0.0.1 that
 * keeps everything in its memory. moto does not check signatures, so any access key works; the lab and the
 * tests use `MOTO_ACCESS_KEY` / `MOTO_SECRET_KEY`. moto comes from the machine's Python (`python3 -c 'import
 * moto'`); `scripts/setup.sh` checks for it. `SNAPKEEPER_PYTHON` names another interpreter.
 */

export const MOTO_ACCESS_KEY = 'snapkeeper-lab';
export const MOTO_SECRET_KEY = 'snapkeeper-lab-secret';
export const MOTO_REGION = 'us-east-1';

export interface MotoServer {
  /** `http://127.0.0.1:PORT` */
  endpoint: string;
  port: number;
  pid: number;
  /**
   * Stops the server (SIGTERM, then SIGKILL after 5 s). Idempotent. A server started `detached` can also be
   * stopped by a later process with `stopMotoProcess(pid, port)`.
   */
  stop(): Promise<void>;
}

export interface StartMotoOptions {
  /** Port to listen on; a free one when absent. */
  port?: number;
  /**
   * Outlive this process (`lab up --s3`: the CLI exits, the server stays until `lab down`). Without it the
   * server is killed when this process exits, however it exits.
   */
  detached?: boolean;
  /** Where the server's output goes (appended); discarded when absent. Its tail is in a start failure. */
  logFile?: string;
  /** How long to wait for the server to answer (default 60 s: a cold Python import on a busy machine). */
  timeoutMs?: number;
  signal?: AbortSignal;
}

/** The Python interpreter that runs moto. */
export function motoPython(): string {
  return process.env.SNAPKEEPER_PYTHON || 'python3';
}

/** True when the machine's Python can import moto (what `startMoto` needs). */
export function motoAvailable(): boolean {
  const r = spawnSync(motoPython(), ['-c', 'import moto.server'], { stdio: 'ignore', timeout: 60_000 });
  return r.status === 0;
}

/** A port free on 127.0.0.1 right now (the kernel's choice). */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      const port = typeof addr === 'object' && addr ? addr.port : 0;
      srv.close(() => resolve(port));
    });
  });
}

/** Children started without `detached`: killed when this process exits, whatever the way. */
const attached = new Set<ChildProcess>();
let exitHookInstalled = false;
function killAttachedOnExit(child: ChildProcess): void {
  attached.add(child);
  child.once('exit', () => attached.delete(child));
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  // Belt and braces with PDEATHSIG: on a normal exit the server goes at once, not when the kernel notices.
  process.once('exit', () => {
    for (const c of attached) c.kill('SIGKILL');
  });
}

async function answers(endpoint: string, signal?: AbortSignal): Promise<boolean> {
  try {
    const timeout = AbortSignal.timeout(2_000);
    const res = await fetch(`${endpoint}/`, {
      signal: signal ? AbortSignal.any([signal, timeout]) : timeout,
    });
    await res.arrayBuffer();
    return res.status < 500;
  } catch {
    return false;
  }
}

async function logTail(logFile: string | undefined): Promise<string> {
  if (!logFile) return '';
  try {
    const text = await readFile(logFile, 'utf8');
    const tail = text.trim().split('\n').slice(-5).join('\n');
    return tail ? `; its output ends with:\n${tail}` : '';
  } catch {
    return '';
  }
}

/**
 * Starts a moto server and waits until it answers HTTP. `MOTO_START_FAILED` when Python or moto is missing,
 * when the server exits, or when it does not answer in time (the server is killed then).
 */
export async function startMoto(options: StartMotoOptions = {}): Promise<MotoServer> {
  // A port the kernel just called free can be taken before moto binds it: try a fresh one a few times.
  const tries = options.port === undefined ? 3 : 1;
  let last: unknown;
  for (let i = 0; i < tries; i++) {
    try {
      return await startOnce(options.port ?? (await freePort()), options);
    } catch (err) {
      last = err;
      if (options.signal?.aborted) throw err;
    }
  }
  throw last;
}

/**
 * moto's main for a server tied to this process: Linux kills it (PR_SET_PDEATHSIG) when this process dies,
 * however it dies (SIGKILL included), which an `exit` handler alone cannot promise. argv: marker, parent pid,
 * moto's arguments.
 */
const ATTACHED_MAIN = [
  'import ctypes, os, signal, sys',
  'ctypes.CDLL(None).prctl(1, signal.SIGKILL)',
  'os.getppid() == int(sys.argv[2]) or os._exit(70)',
  'from moto.server import main',
  'main(sys.argv[3:])',
].join('\n');

async function portTaken(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const srv = createServer();
    srv.once('error', () => resolve(true));
    srv.listen(port, '127.0.0.1', () => srv.close(() => resolve(false)));
  });
}

async function startOnce(port: number, options: StartMotoOptions): Promise<MotoServer> {
  const endpoint = `http://127.0.0.1:${port}`;
  const python = motoPython();
  if (await portTaken(port)) {
    throw new SnapkeeperError('MOTO_START_FAILED', `cannot start the moto S3 server: port ${port} is in use`);
  }
  const out = options.logFile ? openSync(options.logFile, 'a') : 'ignore';
  let child: ChildProcess;
  try {
    const args = ['-H', '127.0.0.1', '-p', String(port)];
    child = spawn(
      python,
      options.detached
        ? ['-m', 'moto.server', ...args]
        : ['-c', ATTACHED_MAIN, 'moto.server', String(process.pid), ...args],
      {
        stdio: ['ignore', out, out],
        detached: options.detached === true,
        env: { ...process.env, PYTHONUNBUFFERED: '1' },
      },
    );
  } finally {
    if (typeof out === 'number') closeSync(out);
  }
  let exited: string | undefined;
  const onExit = (code: number | null, sig: NodeJS.Signals | null) => {
    exited = sig ? `was killed by ${sig}` : `exited with code ${code}`;
  };
  child.once('exit', onExit);
  const spawnError = new Promise<Error>((resolve) => child.once('error', resolve));
  let failure: Error | undefined;
  void spawnError.then((e) => {
    failure = e;
  });
  // Never keeps this process alive: node:test runs a file's `after` hooks only once the event loop drains.
  child.unref();
  if (!options.detached) killAttachedOnExit(child);

  const kill = () => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  };
  const deadline = Date.now() + (options.timeoutMs ?? 60_000);
  for (;;) {
    if (failure) {
      throw new SnapkeeperError(
        'MOTO_START_FAILED',
        `cannot start the moto S3 server with ${python}: ${failure.message} (install moto for that Python, see scripts/setup.sh)`,
        { cause: failure },
      );
    }
    if (exited !== undefined) {
      throw new SnapkeeperError(
        'MOTO_START_FAILED',
        `the moto S3 server on port ${port} ${exited} before answering (is moto installed for ${python}? ` +
          `\`${python} -c 'import moto'\`)${await logTail(options.logFile)}`,
      );
    }
    if (options.signal?.aborted) {
      kill();
      throw options.signal.reason;
    }
    // Alive after it answered: a server that could not bind the port exits, and what answered was another.
    if ((await answers(endpoint, options.signal)) && child.exitCode === null && child.signalCode === null)
      break;
    if (Date.now() > deadline) {
      kill();
      throw new SnapkeeperError(
        'MOTO_START_FAILED',
        `the moto S3 server on port ${port} did not answer within ${Math.round((options.timeoutMs ?? 60_000) / 1000)} s${await logTail(options.logFile)}`,
      );
    }
    // Polling: moto says nothing machine-readable when it is ready.
    await new Promise((r) => setTimeout(r, 100));
  }
  child.off('exit', onExit);
  const pid = child.pid ?? 0;
  let stopped: Promise<void> | undefined;
  return {
    endpoint,
    port,
    pid,
    stop: () => {
      stopped ??= stopChild(child);
      return stopped;
    },
  };
}

function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    const timer = setTimeout(() => child.kill('SIGKILL'), 5_000);
    child.once('exit', () => {
      clearTimeout(timer);
      resolve();
    });
    child.kill('SIGTERM');
  });
}

/** True when `pid` is alive and is a moto server listening on `port` (not a reused pid). */
export async function isMotoProcess(pid: number, port: number): Promise<boolean> {
  try {
    const stat = await readFile(`/proc/${pid}/stat`, 'utf8');
    if (/^\d+ \(.*\) Z/.test(stat)) return false;
    const args = (await readFile(`/proc/${pid}/cmdline`, 'utf8')).split('\0');
    const p = args.indexOf('-p');
    return args.includes('moto.server') && p >= 0 && args[p + 1] === String(port);
  } catch {
    return false;
  }
}

/** Stops a moto server started (maybe by another process) with `detached`; nothing when it is gone. */
export async function stopMotoProcess(pid: number, port: number): Promise<void> {
  for (const [sig, ms] of [
    ['SIGTERM', 5_000],
    ['SIGKILL', 5_000],
  ] as const) {
    if (!(await isMotoProcess(pid, port))) return;
    try {
      process.kill(pid, sig);
    } catch {
      return;
    }
    const deadline = Date.now() + ms;
    while (Date.now() < deadline) {
      if (!(await isMotoProcess(pid, port))) return;
      // Not our child (a later CLI run): no exit event to wait for.
      await new Promise((r) => setTimeout(r, 25));
    }
  }
  throw new SnapkeeperError('MOTO_STOP_FAILED', `the moto S3 server (pid ${pid}) did not stop`);
}

/** An S3 client for a moto endpoint with the lab's keys, path-style (moto serves both styles). */
export function motoClient(endpoint: string): S3Client {
  quietSdkVersionWarning();
  return new S3Client({
    endpoint,
    region: MOTO_REGION,
    forcePathStyle: true,
    credentials: { accessKeyId: MOTO_ACCESS_KEY, secretAccessKey: MOTO_SECRET_KEY },
  });
}

export interface CreateBucketOptions {
  /** Object Lock enabled at creation (it cannot be turned on later); versioning comes with it. */
  objectLock?: boolean;
  /** With `objectLock`: a default retention applied to every new object (COMPLIANCE mode). */
  defaultRetentionDays?: number;
}

/** Creates `bucket` on a moto server. */
export async function createMotoBucket(
  endpoint: string,
  bucket: string,
  options: CreateBucketOptions = {},
): Promise<void> {
  const client = motoClient(endpoint);
  try {
    await client.send(
      new CreateBucketCommand({
        Bucket: bucket,
        ...(options.objectLock ? { ObjectLockEnabledForBucket: true } : {}),
      }),
    );
    if (options.objectLock && options.defaultRetentionDays !== undefined) {
      await client.send(
        new PutObjectLockConfigurationCommand({
          Bucket: bucket,
          ObjectLockConfiguration: {
            ObjectLockEnabled: 'Enabled',
            Rule: { DefaultRetention: { Mode: 'COMPLIANCE', Days: options.defaultRetentionDays } },
          },
        }),
      );
    }
  } catch (err) {
    throw new SnapkeeperError(
      'MOTO_BUCKET_FAILED',
      `cannot create bucket ${bucket} on ${endpoint}: ${(err as Error).message}`,
      { cause: err },
    );
  } finally {
    client.destroy();
  }
}
