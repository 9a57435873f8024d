import picomatch from 'picomatch';
import { type TaskConfig, taskSchema } from '../config/schema.js';
import { errorMessage, UsageError } from '../errors.js';
import type { BackupRecord, BackupState } from '../model/backup.js';
import type { LockMode, LockRequest, OperationKind } from './types.js';

/*
 * Input checks of the role interfaces, shared by every implementation so that SQLite and a later PostgreSQL
 * catalog refuse the same input with the same error.
 */

const BACKUP_STATES: readonly BackupState[] = ['running', 'complete', 'partial', 'failed', 'lost'];
const OPERATION_KINDS: readonly OperationKind[] = [
  'backup',
  'restore',
  'mount',
  'attach',
  'recover',
  'expire',
  'delete',
  'offload',
  'prune',
];

/** The states of a backup that can be restored. */
export const RESTORABLE: BackupState[] = ['complete', 'partial'];

/** Checks what the columns need and returns startedAt as a sortable UTC instant. */
export function checkRecord(record: BackupRecord): string {
  if (typeof record.id !== 'string' || record.id.length === 0) {
    throw new UsageError('BACKUP_INVALID', 'a backup record needs a non-empty id');
  }
  if (typeof record.task !== 'string' || record.task.length === 0) {
    throw new UsageError('BACKUP_INVALID', `backup ${record.id} needs a task name`);
  }
  if (!BACKUP_STATES.includes(record.state)) {
    throw new UsageError('BACKUP_INVALID', `backup ${record.id} has an unknown state "${record.state}"`);
  }
  if (!Array.isArray(record.vms) || !Array.isArray(record.snapshots)) {
    throw new UsageError('BACKUP_INVALID', `backup ${record.id} needs vms and snapshots lists`);
  }
  return toInstant(record.startedAt, `backup ${record.id} startedAt`);
}

export function checkOperationKind(kind: OperationKind): void {
  if (!OPERATION_KINDS.includes(kind)) {
    throw new UsageError('INVALID_OPERATION', `unknown operation kind "${kind}"`);
  }
}

/** -1 (no limit) when absent; UsageError INVALID_LIMIT for anything but a whole number >= 0. */
export function checkLimit(limit: number | undefined): number {
  if (limit === undefined) return -1;
  if (!Number.isInteger(limit) || limit < 0) {
    throw new UsageError('INVALID_LIMIT', `limit must be a whole number >= 0, got ${limit}`);
  }
  return limit;
}

/** ISO-8601 UTC form of a time, so that text comparison in SQL is time comparison. */
export function toInstant(value: string, what: string): string {
  const t = new Date(value);
  if (typeof value !== 'string' || Number.isNaN(t.getTime())) {
    throw new UsageError('INVALID_TIME', `${what}: "${value}" is not a date or time`);
  }
  return t.toISOString();
}

export function validTask(task: TaskConfig): TaskConfig {
  const parsed = taskSchema.safeParse(task);
  if (!parsed.success) {
    const name = typeof task?.name === 'string' ? `task ${task.name}` : 'task';
    throw new UsageError('TASK_INVALID', `${name} is invalid: ${issuesText(parsed.error.issues)}`);
  }
  return parsed.data;
}

export function issuesText(issues: readonly { path: PropertyKey[]; message: string }[]): string {
  return issues
    .map((i) => `${i.path.length > 0 ? `${i.path.map(String).join('.')}: ` : ''}${i.message}`)
    .join('; ');
}

/** One mode per resource; asking for one resource twice gives the stronger mode. UsageError INVALID_RESOURCE. */
export function lockRequests(requests: LockRequest[]): Map<string, LockMode> {
  const wanted = new Map<string, LockMode>();
  for (const r of requests) {
    const { resource, mode } = typeof r === 'string' ? { resource: r, mode: 'exclusive' as const } : r;
    if (typeof resource !== 'string' || resource.length === 0) {
      throw new UsageError('INVALID_RESOURCE', 'lock resource names must be non-empty strings');
    }
    if (mode !== 'shared' && mode !== 'exclusive') {
      throw new UsageError('INVALID_RESOURCE', `lock mode must be shared or exclusive, got ${String(mode)}`);
    }
    if (wanted.get(resource) !== 'exclusive') wanted.set(resource, mode);
  }
  return wanted;
}

/** The names equal to `pattern` or matching it as a glob (a name like `a(b)` stays literal). */
export function namesMatching(names: string[], pattern: string): string[] {
  let isMatch: (name: string) => boolean;
  try {
    isMatch = picomatch(pattern, { dot: true });
  } catch (err) {
    throw new UsageError('INVALID_PATTERN', `invalid VM name pattern "${pattern}": ${errorMessage(err)}`);
  }
  return names.filter((n) => n === pattern || isMatch(n));
}
