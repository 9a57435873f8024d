import { hostname } from 'node:os';
import type { Operation } from './types.js';

/** How often a running operation renews its heartbeat. */
export const HEARTBEAT_INTERVAL_MS = 5_000;

/**
 * How old a heartbeat may be before its operation counts as dead whatever its pid says: twelve missed
 * renewals, so a busy event loop or a slow catalog write never kills a live run.
 */
export const LEASE_MS = 60_000;

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
 * Whether a running operation may still be working at `now`. Its lease decides: a heartbeat (or, before
 * the first one, its start) older than LEASE_MS means dead, on any host and whatever its pid (a daemon
 * running many operations in one process, a host that vanished). On this host a dead pid is dead at once,
 * which spares crash repair the wait for a lease to run out. A finished operation is not alive.
 */
export function operationAlive(
  op: Pick<Operation, 'pid' | 'host' | 'state' | 'startedAt' | 'heartbeatAt'>,
  now: Date,
): boolean {
  if (op.state !== 'running') return false;
  if (op.host === hostname() && !pidAlive(op.pid)) return false;
  const last = Date.parse(op.heartbeatAt ?? op.startedAt);
  if (Number.isNaN(last)) return false;
  return now.getTime() - last <= LEASE_MS;
}
