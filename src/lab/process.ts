import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { SnapkeeperError } from '../errors.js';
import { labFiles } from './lab-dir.js';

async function processState(pid: number): Promise<'alive' | 'dead' | 'unknown'> {
  try {
    const st = await readFile(`/proc/${pid}/stat`, 'utf8');
    // A zombie has exited; its parent just has not reaped it yet.
    return /^\d+ \(.*\) Z/.test(st) ? 'dead' : 'alive';
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return 'dead';
    return 'unknown';
  }
}

/** True when `pid` is alive and (where /proc tells) is the simulator of the lab in `dir`, not a reused pid. */
export async function isSimulatorProcess(pid: number, dir: string): Promise<boolean> {
  const state = await processState(pid);
  if (state === 'dead') return false;
  try {
    const cmdline = await readFile(`/proc/${pid}/cmdline`, 'utf8');
    return cmdline.split('\0').includes(join(dir, labFiles.ready));
  } catch {
    try {
      process.kill(pid, 0);
      return true;
    } catch {
      return false;
    }
  }
}

/**
 * Stops the simulator of the lab in `dir`: SIGTERM, then SIGKILL after 15 s. Nothing happens when `pid` is
 * gone or is no longer that simulator; LAB_DOWN_FAILED when it survives SIGKILL.
 */
export async function stopSimulatorProcess(pid: number, dir: string): Promise<void> {
  if (!(await isSimulatorProcess(pid, dir))) return;
  if (!sendSignal(pid, 'SIGTERM') || (await waitGone(pid, 15_000))) return;
  if (!sendSignal(pid, 'SIGKILL') || (await waitGone(pid, 5_000))) return;
  throw new SnapkeeperError('LAB_DOWN_FAILED', `the simulator (pid ${pid}) did not stop`);
}

/** Sends `name` to `pid`; false when the process is already gone. */
export function sendSignal(pid: number, name: NodeJS.Signals): boolean {
  try {
    process.kill(pid, name);
    return true;
  } catch {
    return false;
  }
}

async function waitGone(pid: number, ms: number): Promise<boolean> {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    if ((await processState(pid)) === 'dead') return true;
    // The simulator is not our child in a later CLI run, so there is no exit event to wait for.
    await new Promise((r) => setTimeout(r, 25));
  }
  return false;
}
