import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import { NotFoundError } from '../errors.js';
import { RepositoryError } from './errors.js';
import type { RepositoryBackend } from './types.js';

/**
 * Locks (docs/repository-format.md, "Locks"): plain JSON objects under `locks/`. Writers hold a shared lock,
 * prune an exclusive one; a lock conflicts with another run's fresh lock of the other kind (exclusive
 * conflicts with both). A lock is stale when not refreshed for `STALE_MS`, or when its host is this one and
 * its pid is dead. Refreshing writes a new lock object and removes the old one (objects are write-once).
 */

export const STALE_MS = 30 * 60_000;
export const REFRESH_MS = 5 * 60_000;

export interface LockBody {
  kind: 'shared' | 'exclusive';
  host: string;
  pid: number;
  created: string;
  refreshed: string;
}

export interface HeldLock {
  readonly key: string;
  release(): Promise<void>;
}

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

export function isStale(lock: LockBody, now: Date): boolean {
  const refreshed = Date.parse(lock.refreshed);
  if (!Number.isFinite(refreshed) || now.getTime() - refreshed > STALE_MS) return true;
  return lock.host === hostname() && lock.pid !== process.pid && !pidAlive(lock.pid);
}

export async function listLocks(
  backend: RepositoryBackend,
  signal?: AbortSignal,
): Promise<{ key: string; lock: LockBody | undefined }[]> {
  const out: { key: string; lock: LockBody | undefined }[] = [];
  for await (const o of backend.list('locks/', { signal })) {
    try {
      out.push({ key: o.key, lock: JSON.parse((await backend.load(o.key, { signal })).toString('utf8')) });
    } catch (err) {
      if (err instanceof NotFoundError) continue;
      out.push({ key: o.key, lock: undefined });
    }
  }
  return out;
}

function describe(lock: LockBody): string {
  return `${lock.kind} lock of pid ${lock.pid} on ${lock.host}, refreshed ${lock.refreshed}`;
}

/**
 * Takes a lock: writes ours first, then looks at the others, and backs off (removing ours) when a fresh one
 * conflicts. Two runs racing may both back off; neither proceeds wrongly.
 */
export async function acquireLock(
  backend: RepositoryBackend,
  kind: LockBody['kind'],
  options: { signal?: AbortSignal; now?: () => Date } = {},
): Promise<HeldLock> {
  const now = options.now ?? (() => new Date());
  const created = now().toISOString();
  const body = (): LockBody => ({
    kind,
    host: hostname(),
    pid: process.pid,
    created,
    refreshed: now().toISOString(),
  });
  let key = `locks/${randomBytes(16).toString('hex')}`;
  await backend.save(key, Buffer.from(JSON.stringify(body())), { signal: options.signal });
  try {
    for (const other of await listLocks(backend, options.signal)) {
      if (other.key === key || other.lock === undefined) continue;
      if (isStale(other.lock, now())) continue;
      if (kind === 'exclusive' || other.lock.kind === 'exclusive') {
        throw new RepositoryError(
          'REPOSITORY_LOCKED',
          `${backend.description}: locked by another run (${describe(other.lock)}, ${other.key})`,
          { details: { lock: other.key, holder: { host: other.lock.host, pid: other.lock.pid } } },
        );
      }
    }
  } catch (err) {
    await backend.remove(key).catch(() => undefined);
    throw err;
  }
  let released = false;
  let refreshing: Promise<void> = Promise.resolve();
  const timer = setInterval(() => {
    refreshing = refreshing.then(async () => {
      if (released) return;
      const next = `locks/${randomBytes(16).toString('hex')}`;
      try {
        await backend.save(next, Buffer.from(JSON.stringify(body())));
        const old = key;
        key = next;
        await backend.remove(old);
      } catch {
        // A failed refresh is retried at the next tick; the lock only goes stale after STALE_MS.
      }
    });
  }, REFRESH_MS);
  timer.unref();
  return {
    get key() {
      return key;
    },
    async release() {
      released = true;
      clearInterval(timer);
      await refreshing;
      await backend.remove(key);
    },
  };
}
