import type { BackupState } from '../model/backup.js';
import { RuleError } from './errors.js';

/** What retention needs to know of a backup. */
export interface RetentionCandidate {
  id: string;
  task: string;
  state: BackupState;
  /** ISO 8601 time the backup started; its age is measured from here. */
  startedAt: string;
  /** Mounted, attached or otherwise in use: never expired. */
  pinned?: boolean;
}

export interface RetentionPolicy {
  /** Keep at most this many complete or partial backups. */
  versions?: number;
  /** Keep backups at most this many days old (fractions allowed). */
  days?: number;
}

export interface Expiry {
  id: string;
  /** Why, for logs and the `expire --json` output; several rules are joined with `; `. */
  reason: string;
}

const DAY_MS = 24 * 60 * 60 * 1000;

/**
 * SPEC section 5 for ONE task's backups (RuleError `RETENTION_MIXED_TASKS` otherwise). Returns the backups
 * to expire, oldest first. The rules:
 * - a backup that is `running` or `pinned` is never expired, by any rule; a pinned one still counts as a
 *   version, so the backups after it expire as they would without the pin;
 * - "successful" means `complete` or `partial`: a partial backup holds the VMs that worked and is a version;
 * - `versions` N: successful backups, newest first; those after the first N expire. Failed ones do not count;
 * - `days` D: a backup whose age (`now - startedAt`) is more than D days expires, the newest successful one
 *   included (SPEC: "at most D days"); exactly D days old is kept. A task that stopped running thus loses its
 *   last backup after D days: pin it, or set `versions` only, to keep it;
 * - a failed backup older than the newest successful one expires (it has nothing a newer backup lacks);
 *   failed backups newer than it are kept as evidence, until `days` expires them;
 * - with both `versions` and `days`, a backup expires when either rule says so;
 * - with neither set, nothing expires: no policy means keep everything.
 * Order is by `startedAt`; a tie is broken by id, the greater id counting as newer. A `startedAt` that is
 * not a date throws RuleError `BAD_TIMESTAMP` rather than guessing an age for data that is to be deleted.
 */
export function expiredBackups(
  backups: readonly RetentionCandidate[],
  policy: RetentionPolicy,
  now: Date,
): Expiry[] {
  const nowMs = now.getTime();
  if (Number.isNaN(nowMs)) throw new RuleError('BAD_TIMESTAMP', 'retention: `now` is not a valid date');
  const { versions, days } = policy;
  if (versions !== undefined && !(Number.isInteger(versions) && versions >= 1)) {
    throw new RuleError('BAD_RETENTION', `retention: versions must be a positive integer, got ${versions}`);
  }
  if (days !== undefined && !(Number.isFinite(days) && days > 0)) {
    throw new RuleError('BAD_RETENTION', `retention: days must be a positive number, got ${days}`);
  }
  const tasks = new Set(backups.map((b) => b.task));
  if (tasks.size > 1) {
    throw new RuleError(
      'RETENTION_MIXED_TASKS',
      `retention applies to one task at a time, got ${[...tasks].join(', ')}`,
    );
  }
  if (versions === undefined && days === undefined) return [];

  const dated = backups.map((b) => {
    const ms = Date.parse(b.startedAt);
    if (Number.isNaN(ms)) {
      throw new RuleError(
        'BAD_TIMESTAMP',
        `backup ${b.id}: startedAt ${JSON.stringify(b.startedAt)} is not a date`,
      );
    }
    return { backup: b, ms };
  });
  // Newest first.
  dated.sort((a, b) => b.ms - a.ms || compareStrings(b.backup.id, a.backup.id));

  const reasons = new Map<string, string[]>();
  const add = (id: string, reason: string) => {
    const list = reasons.get(id);
    if (list === undefined) reasons.set(id, [reason]);
    else list.push(reason);
  };

  const successful = dated.filter((d) => isSuccessful(d.backup.state));
  const newestSuccessful = successful[0];
  if (versions !== undefined) {
    for (const d of successful.slice(versions)) {
      add(d.backup.id, `beyond the newest ${versions} version${versions === 1 ? '' : 's'}`);
    }
  }
  if (days !== undefined) {
    for (const d of dated) {
      if (nowMs - d.ms > days * DAY_MS) add(d.backup.id, `older than ${days} day${days === 1 ? '' : 's'}`);
    }
  }
  if (newestSuccessful !== undefined) {
    for (const d of dated) {
      if (d.backup.state === 'failed' && isOlder(d, newestSuccessful)) {
        add(d.backup.id, `failed, and a newer backup succeeded (${newestSuccessful.backup.id})`);
      }
    }
  }

  const out: Expiry[] = [];
  for (const d of [...dated].reverse()) {
    const r = reasons.get(d.backup.id);
    if (r === undefined || d.backup.state === 'running' || d.backup.pinned === true) continue;
    out.push({ id: d.backup.id, reason: r.join('; ') });
  }
  return out;
}

function isSuccessful(state: BackupState): boolean {
  return state === 'complete' || state === 'partial';
}

function isOlder(
  a: { backup: { id: string }; ms: number },
  b: { backup: { id: string }; ms: number },
): boolean {
  return a.ms < b.ms || (a.ms === b.ms && a.backup.id < b.backup.id);
}

function compareStrings(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
