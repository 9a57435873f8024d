import { hostname } from 'node:os';
import type { Operation } from './types.js';

/** True when a process with this pid exists on this host (it may belong to another user). */
export function pidAlive(pid: number): boolean {
  // kill(0 or negative, 0) would probe a whole process group: never a single operation's process.
  if (!Number.isInteger(pid) || pid <= 0) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * Whether the process that began `op` may still be running. An operation begun on another host (a catalog
 * on shared storage) cannot be probed from here and counts as alive, so that nobody breaks the locks of a
 * run that is still working; a reused pid also counts as alive, which errs on the same safe side.
 */
export function operationPidAlive(op: Pick<Operation, 'pid' | 'host'>): boolean {
  if (op.host !== hostname()) return true;
  return pidAlive(op.pid);
}
