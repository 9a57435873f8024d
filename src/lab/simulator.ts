import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { open, readFile, rm, stat } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { SnapkeeperError } from '../errors.js';
import { execFile } from '../util/exec.js';
import { sendSignal } from './process.js';

/** What the simulator writes to its ready file once the whole inventory is built (see lab/simulator). */
export interface SimulatorReady {
  url: string;
  /** SHA-256 fingerprint of the TLS certificate (colon-separated hex); absent over plain HTTP. */
  thumbprint?: string;
  pid: number;
  vms: { name: string; id: string; disks: SimulatorDisk[] }[];
}

export interface SimulatorDisk {
  /** Index in the VM's `disks` array of the spec. */
  index: number;
  /** Absolute path: the flat extent of a flat or independent disk, the mapping file of an RDM. */
  path: string;
  sizeMB: number;
  kind: 'flat' | 'independent' | 'rdm-physical' | 'rdm-virtual';
}

export interface SimulatorOptions {
  binary: string;
  specFile: string;
  readyFile: string;
  logFile: string;
  user: string;
  passwordFile: string;
  tls: boolean;
  delays?: Record<string, number>;
  sessionIdleTimeoutSeconds?: number;
  /** How long to wait for the ready file (default 120 s: building 2,000 VMs takes about 10 s). */
  readyTimeoutMs?: number;
}

/** The repository root (holding lab/simulator/build.sh), found upwards from this module in src/ or dist/. */
export function repoRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    if (existsSync(join(dir, 'lab', 'simulator', 'build.sh'))) return dir;
    const parent = dirname(dir);
    if (parent === dir) {
      throw new SnapkeeperError(
        'LAB_SIMULATOR_MISSING',
        'cannot find lab/simulator/build.sh above the installed program',
      );
    }
    dir = parent;
  }
}

/**
 * The simulator binary: $SNAPKEEPER_SIMULATOR when set (a prebuilt binary), else built (or reused from the
 * cache) by lab/simulator/build.sh, which needs Debian's golang-go and golang-github-vmware-govmomi-dev.
 */
export async function simulatorBinary(env: NodeJS.ProcessEnv = process.env): Promise<string> {
  const prebuilt = env.SNAPKEEPER_SIMULATOR;
  if (prebuilt !== undefined && prebuilt !== '') {
    try {
      await stat(prebuilt);
    } catch {
      throw new SnapkeeperError('LAB_SIMULATOR_MISSING', `SNAPKEEPER_SIMULATOR=${prebuilt} does not exist`);
    }
    return resolve(prebuilt);
  }
  const script = join(repoRoot(), 'lab', 'simulator', 'build.sh');
  try {
    const { stdout } = await execFile('bash', [script]);
    return stdout.trim().split('\n').pop()!;
  } catch (err) {
    throw new SnapkeeperError(
      'LAB_SIMULATOR_BUILD',
      `building the simulator failed: ${(err as Error).message}`,
      {
        cause: err,
      },
    );
  }
}

/**
 * Starts the simulator detached from this process (it outlives `lab up`) and resolves once its ready file
 * exists. On exit or timeout before that, the process is killed and the error carries the log's tail.
 */
export async function startSimulator(
  options: SimulatorOptions,
): Promise<{ child: ChildProcess; ready: SimulatorReady }> {
  const args = simulatorArgs(options);
  // A ready file left from an earlier run would be taken for this one's: its pid, URL and disks.
  await rm(options.readyFile, { force: true });
  const log = await open(options.logFile, 'a');
  let child: ChildProcess;
  let exited: string | undefined;
  try {
    child = spawn(options.binary, args, { detached: true, stdio: ['ignore', log.fd, log.fd] });
    // Listen before anything awaits: a child that dies at once would otherwise exit unnoticed.
    child.on('exit', (code, signal) => {
      exited = signal ? `killed by ${signal}` : `exit code ${code}`;
    });
    child.on('error', (err) => {
      exited = err.message;
    });
  } finally {
    await log.close();
  }
  child.unref();
  const deadline = Date.now() + (options.readyTimeoutMs ?? 120_000);
  for (;;) {
    const ready = await readReady(options.readyFile);
    if (ready !== undefined) return { child, ready };
    if (exited !== undefined || Date.now() > deadline) {
      const why = exited !== undefined ? `exited before it was ready (${exited})` : 'was not ready in time';
      if (exited === undefined && child.pid !== undefined) sendSignal(child.pid, 'SIGKILL');
      throw new SnapkeeperError(
        'LAB_SIMULATOR_FAILED',
        `the simulator ${why}; log tail:\n${await logTail(options.logFile)}`,
      );
    }
    // Polling a file the child renames into place: no portable event tells us about it reliably.
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** The command line of lab/simulator's main for `options`. */
function simulatorArgs(options: SimulatorOptions): string[] {
  const args = [
    '--spec',
    options.specFile,
    '--listen',
    '127.0.0.1:0',
    '--user',
    options.user,
    '--password-file',
    options.passwordFile,
    '--ready-file',
    options.readyFile,
  ];
  if (options.tls) args.push('--tls');
  for (const [method, ms] of Object.entries(options.delays ?? {})) args.push('--delay', `${method}=${ms}`);
  if (options.sessionIdleTimeoutSeconds !== undefined) {
    args.push('--session-idle-timeout', String(options.sessionIdleTimeoutSeconds));
  }
  return args;
}

async function readReady(file: string): Promise<SimulatorReady | undefined> {
  try {
    return JSON.parse(await readFile(file, 'utf8')) as SimulatorReady;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
}

export async function logTail(file: string, lines = 20): Promise<string> {
  try {
    const text = await readFile(file, 'utf8');
    return text.trimEnd().split('\n').slice(-lines).join('\n');
  } catch {
    return '(no log)';
  }
}
