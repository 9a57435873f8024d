import { spawn } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import type { HookConfig } from '../../config/schema.js';
import { errorMessage } from '../../errors.js';
import type { HookPhase, HookRecord } from '../../model/backup.js';

/**
 * Running one backup hook: a program (argument list, no shell) in its own process group, with the backup's
 * id, task, phase and VMs in its environment, killed with its whole group at its timeout, its output kept to
 * the last OUTPUT_LIMIT bytes.
 */

/** The tail of a hook's stdout and stderr kept in the record: enough to see why it failed. */
export const OUTPUT_LIMIT = 4096;

/** While the VMs are held every second counts; the other phases hold nothing. */
const HELD_PHASE_TIMEOUT_SECONDS = 30;
const DEFAULT_TIMEOUT_SECONDS = 300;

/** After the hook's own process exits, how long a descendant that left its group may keep its pipes open. */
const PIPE_GRACE_MS = 1000;

export function hookTimeoutSeconds(hook: Pick<HookConfig, 'phase' | 'timeoutSeconds'>): number {
  if (hook.timeoutSeconds !== undefined) return hook.timeoutSeconds;
  return hook.phase === 'after-snapshot' ? HELD_PHASE_TIMEOUT_SECONDS : DEFAULT_TIMEOUT_SECONDS;
}

/** What a hook is told about the backup it runs for. */
export interface HookContext {
  backupId: string;
  task: string;
  /** The names of the VMs the backup selected. */
  vms: string[];
  /** Values no variable passed on may hold (the vCenter password, when snapkeeper reads it from one). */
  secrets: string[];
}

/** A started hook's process group, as the journal keeps it so that recovery can kill it. */
export interface HookProcess {
  pid: number;
  /** Its process group: the hook is its leader, so the same number. */
  pgid: number;
  /** Its start time in clock ticks since boot (Linux), which tells it from a later process with its pid. */
  startTicks?: number;
}

export function hookEnvironment(hook: Pick<HookConfig, 'phase'>, context: HookContext): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env };
  for (const [name, value] of Object.entries(env)) {
    // SNAPKEEPER_* are snapkeeper's own settings (and test switches such as SNAPKEEPER_CRASH_AT), not the hook's.
    if (name.startsWith('SNAPKEEPER_') || (value !== undefined && context.secrets.includes(value)))
      delete env[name];
  }
  return {
    ...env,
    SNAPKEEPER_BACKUP_ID: context.backupId,
    SNAPKEEPER_TASK: context.task,
    SNAPKEEPER_PHASE: hook.phase,
    SNAPKEEPER_VMS: JSON.stringify(context.vms),
  };
}

/**
 * Process groups of hooks still running, killed when snapkeeper exits or is ended by a signal it would die
 * of; a SIGKILL cannot be caught: the journal's `hook.run` entry lets `recover` kill them then.
 */
const liveGroups = new Set<number>();
const FATAL_SIGNALS = ['SIGTERM', 'SIGHUP'] as const;

function killLiveGroups(): void {
  for (const group of liveGroups) killGroup(group);
}

/** Kills the hooks, then dies of the signal as it would have without this listener. */
function onFatalSignal(signal: NodeJS.Signals): void {
  killLiveGroups();
  untrackAll();
  if (process.listenerCount(signal) === 0) process.kill(process.pid, signal);
}

function trackGroup(pgid: number): void {
  if (liveGroups.size === 0) {
    process.on('exit', killLiveGroups);
    for (const signal of FATAL_SIGNALS) process.on(signal, onFatalSignal);
  }
  liveGroups.add(pgid);
}

function untrackGroup(pgid: number): void {
  if (!liveGroups.delete(pgid) || liveGroups.size > 0) return;
  untrackAll();
}

function untrackAll(): void {
  liveGroups.clear();
  process.off('exit', killLiveGroups);
  for (const signal of FATAL_SIGNALS) process.off(signal, onFatalSignal);
}

/** SIGKILL to a whole process group; true when it existed. */
export function killGroup(pgid: number): boolean {
  try {
    process.kill(-pgid, 'SIGKILL');
    return true;
  } catch {
    return false;
  }
}

/**
 * Whether any live process of the group is still there. A killed process stays a zombie until its parent
 * reaps it (an orphan's parent is init, which may be slow to): where /proc lists the processes, zombies do not
 * count; elsewhere the kernel's answer for the group does.
 */
export function groupAlive(pgid: number): boolean {
  const members = liveGroupMembers(pgid);
  if (members !== undefined) return members.length > 0;
  try {
    process.kill(-pgid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** The group's processes that are not zombies, from /proc; undefined without /proc. */
function liveGroupMembers(pgid: number): number[] | undefined {
  let pids: string[];
  try {
    pids = readdirSync('/proc').filter((name) => /^\d+$/.test(name));
  } catch {
    return undefined;
  }
  return pids.map(Number).filter((pid) => {
    const fields = statFields(pid);
    // Fields after the command name: state is the first, the process group the third.
    return fields !== undefined && fields[0] !== 'Z' && fields[0] !== 'X' && Number(fields[2]) === pgid;
  });
}

/** The fields of /proc/PID/stat after the command name (which may hold spaces and parentheses). */
function statFields(pid: number): string[] | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  } catch {
    return undefined;
  }
}

/** A process's start time in clock ticks since boot (field 22 of /proc/PID/stat), where there is /proc. */
export function processStartTicks(pid: number): number | undefined {
  const ticks = Number(statFields(pid)?.[19]);
  return Number.isFinite(ticks) ? ticks : undefined;
}

/** How long a SIGKILLed group may take to be gone before snapkeeper stops waiting and says so. */
const KILL_WAIT_MS = 2000;
const KILL_POLL_MS = 10;

/** SIGKILL to the group, then waits (bounded) until none of it runs; false when some still does. */
export async function killGroupAndWait(pgid: number): Promise<boolean> {
  killGroup(pgid);
  const deadline = Date.now() + KILL_WAIT_MS;
  while (groupAlive(pgid)) {
    if (Date.now() > deadline) return false;
    await new Promise((resolve) => setTimeout(resolve, KILL_POLL_MS));
  }
  return true;
}

/**
 * Kills a journaled hook's group if it is still running; false when there was nothing (left) to kill. A
 * leader alive with another start time is another process that got the pid: left alone.
 */
export async function killHookProcess(hook: HookProcess): Promise<boolean> {
  if (hook.startTicks !== undefined) {
    const ticks = processStartTicks(hook.pid);
    if (ticks !== undefined && ticks !== hook.startTicks) return false;
  }
  if (!groupAlive(hook.pgid)) return false;
  await killGroupAndWait(hook.pgid);
  return true;
}

/** The last `limit` bytes of everything written to it. */
class OutputTail {
  #chunks: Buffer[] = [];
  #bytes = 0;
  #dropped = false;

  constructor(readonly limit: number) {}

  add(chunk: Buffer): void {
    this.#chunks.push(chunk);
    this.#bytes += chunk.length;
    while (this.#bytes - (this.#chunks[0]?.length ?? 0) >= this.limit) {
      this.#bytes -= this.#chunks.shift()?.length ?? 0;
      this.#dropped = true;
    }
  }

  text(): string {
    const all = Buffer.concat(this.#chunks);
    const tail = all.length > this.limit ? all.subarray(all.length - this.limit) : all;
    // A cut may split a UTF-8 sequence: drop the broken start rather than show a replacement character.
    const text = tail.toString('utf8');
    return this.#dropped || all.length > this.limit ? text.replace(/^\uFFFD+/, '') : text;
  }
}

/**
 * Runs one hook to its end or its timeout. `started` is called with its process group as soon as it runs
 * (the backup journals it there); the hook is killed with its group if `started` throws. Never throws: a
 * hook that cannot be started is a failed hook.
 */
export async function runHook(
  hook: { phase: HookPhase; run: readonly string[]; timeoutSeconds?: number | undefined },
  env: NodeJS.ProcessEnv,
  started: (proc: HookProcess) => Promise<void>,
  now: () => Date = () => new Date(),
): Promise<HookRecord> {
  const startedAt = now();
  // The duration by the monotonic clock: `now` may be a test's or an adjusted wall clock.
  const t0 = performance.now();
  const timeoutMs = hookTimeoutSeconds(hook) * 1000;
  const base = { phase: hook.phase, run: [...hook.run], startedAt: startedAt.toISOString() };
  const [program, ...args] = hook.run;
  const tail = new OutputTail(OUTPUT_LIMIT);
  const ended = (fields: Omit<HookRecord, 'phase' | 'run' | 'startedAt' | 'ms' | 'output'>): HookRecord => ({
    ...base,
    ms: Math.round(performance.now() - t0),
    output: tail.text(),
    ...fields,
  });

  let child: ReturnType<typeof spawn>;
  try {
    child = spawn(program as string, args, { detached: true, stdio: ['ignore', 'pipe', 'pipe'], env });
  } catch (err) {
    return ended({
      exitCode: null,
      timedOut: false,
      ok: false,
      error: `could not start: ${errorMessage(err)}`,
    });
  }
  child.stdout?.on('data', (c: Buffer) => tail.add(c));
  child.stderr?.on('data', (c: Buffer) => tail.add(c));

  // The hook is not over before `started` is: a run stopped there (a crash point) must not go on.
  let startedDone: Promise<void> = Promise.resolve();
  const outcome = await new Promise<HookRecord>((resolve) => {
    let timedOut = false;
    let exit: { code: number | null; signal: NodeJS.Signals | null } | undefined;
    let graceTimer: NodeJS.Timeout | undefined;
    const finish = (record: HookRecord) => {
      clearTimeout(timer);
      clearTimeout(graceTimer);
      if (child.pid !== undefined) untrackGroup(child.pid);
      resolve(record);
    };
    const timer = setTimeout(() => {
      timedOut = true;
      if (child.pid !== undefined) killGroup(child.pid);
    }, timeoutMs);
    child.once('error', (err) => {
      finish(ended({ exitCode: null, timedOut: false, ok: false, error: `could not start: ${err.message}` }));
    });
    child.once('spawn', () => {
      const pid = child.pid as number;
      trackGroup(pid);
      const ticks = processStartTicks(pid);
      startedDone = started({ pid, pgid: pid, ...(ticks !== undefined ? { startTicks: ticks } : {}) }).catch(
        (err) => {
          killGroup(pid);
          finish(
            ended({
              exitCode: null,
              timedOut: false,
              ok: false,
              error: `not journaled: ${errorMessage(err)}`,
            }),
          );
        },
      );
    });
    const settle = () => {
      if (exit === undefined) return;
      const { code, signal } = exit;
      const ok = !timedOut && code === 0;
      finish(
        ended({
          exitCode: code,
          ...(signal ? { signal } : {}),
          timedOut,
          ok,
          ...(timedOut
            ? { error: `timed out after ${timeoutMs / 1000} s; killed with its process group` }
            : code !== 0
              ? { error: signal ? `killed by ${signal}` : `exited with code ${code}` }
              : {}),
        }),
      );
    };
    let groupGone = false;
    let closed = false;
    child.once('exit', (code, signal) => {
      exit = { code, signal };
      // What the hook started stays in its group: nothing of it outlives the hook.
      void killGroupAndWait(child.pid as number).then(() => {
        groupGone = true;
        if (closed) settle();
      });
      // A descendant that left the group could hold the pipes open for ever: stop waiting for them.
      graceTimer = setTimeout(() => {
        child.stdout?.destroy();
        child.stderr?.destroy();
        closed = true;
        if (groupGone) settle();
      }, PIPE_GRACE_MS);
    });
    child.once('close', () => {
      closed = true;
      if (groupGone) settle();
    });
  });
  await startedDone;
  return outcome;
}
