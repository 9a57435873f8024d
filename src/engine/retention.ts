import type { Retention } from '../config/schema.js';
import { ConflictError, errorMessage, LockedError, NotFoundError } from '../errors.js';
import type { BackupRecord } from '../model/backup.js';
import { expiredBackups } from '../rules/index.js';
import type { EngineContext } from './context.js';
import { ADHOC_TASK, newOperationId } from './ids.js';
import { withOperation } from './operation.js';
import { applyRule } from './rule-errors.js';
import { listTasks } from './tasks.js';

export interface DeletedBackup {
  id: string;
  task: string;
  reason: string;
  snapshots: { array: string; snapshotId: string }[];
}

/** A backup retention left alone because an operation reads it now; the next expire deletes it. */
export interface SkippedBackup {
  id: string;
  reason: string;
}

/**
 * Deletes one backup: its catalog record first, then its array snapshots. In that order a crash leaves at
 * worst an unowned snapshot, which recover deletes; never a record that points to a missing snapshot.
 * A mounted backup is refused; so is one an operation holds (a restore, mount or attach reading it holds
 * `backup:<id>` shared, and deleting needs it exclusively): ConflictError BACKUP_IN_USE naming the holder.
 */
export async function deleteBackup(
  ctx: EngineContext,
  id: string,
  options: { dryRun: boolean; reason?: string },
): Promise<DeletedBackup> {
  const record = await ctx.catalog.getBackup(id);
  if (record.state === 'running') {
    throw new ConflictError('BACKUP_RUNNING', `backup ${id} is still running; it cannot be deleted`);
  }
  if ((await ctx.catalog.mountsOf(id)).length > 0) {
    throw new ConflictError('BACKUP_MOUNTED', `backup ${id} is mounted; unmount it before deleting it`);
  }
  const result = describe(record, options.reason ?? 'deleted on request');
  const hold = { resource: `backup:${id}`, mode: 'exclusive' as const };
  if (options.dryRun) {
    const [holder] = await ctx.catalog.lockHolders(hold.resource);
    if (holder) throw inUse(id, `${hold.resource} is in use by ${describeHolder(holder.operation)}`);
    return result;
  }
  try {
    await withOperation(
      ctx.catalog,
      { id: newOperationId('delete', ctx.now()), kind: 'delete', subject: id, locks: [hold] },
      async () => {
        await ctx.catalog.deleteBackup(id);
        for (const s of record.snapshots) {
          await (await ctx.array(s.array)).deleteSnapshot(s.snapshotId);
        }
      },
    );
  } catch (err) {
    if (err instanceof LockedError && err.code === 'RESOURCE_LOCKED') throw inUse(id, err.message);
    throw err;
  }
  return result;
}

function describeHolder(op: {
  kind: string;
  id: string;
  pid: number;
  host: string;
  startedAt: string;
}): string {
  return `${op.kind} operation ${op.id} (pid ${op.pid} on ${op.host}, started ${op.startedAt})`;
}

function inUse(id: string, why: string): ConflictError {
  return new ConflictError('BACKUP_IN_USE', `backup ${id} is in use and was not deleted: ${why}`, {
    details: { backupId: id },
  });
}

function describe(record: BackupRecord, reason: string): DeletedBackup {
  return {
    id: record.id,
    task: record.task,
    reason,
    snapshots: record.snapshots.map((s) => ({ array: s.array, snapshotId: s.snapshotId })),
  };
}

/**
 * Applies a task's retention (max versions, max age) and deletes what it expires. `keep` protects the
 * backup just made. Mounted backups are never expired. Ad-hoc backups (task `adhoc`) back up unrelated VMs:
 * the policy applies to each set of VMs on its own, so backups of one VM never expire those of another.
 */
export async function expireTask(
  ctx: EngineContext,
  task: string,
  retention: Retention | undefined,
  options: { dryRun: boolean; keep?: string },
): Promise<ExpireResult> {
  const deleted: DeletedBackup[] = [];
  const errors: string[] = [];
  const skipped: SkippedBackup[] = [];
  if (!retention || (retention.versions === undefined && retention.days === undefined))
    return { deleted, errors, skipped };
  const backups = await ctx.catalog.listBackups({ task });
  const mounted = new Set((await ctx.catalog.listMounts()).map((m) => m.backupId));
  const groups = new Map<string, BackupRecord[]>();
  for (const b of backups) {
    const key = task === ADHOC_TASK ? JSON.stringify([...new Set(b.vms.map((v) => v.name))].sort()) : '';
    const group = groups.get(key);
    if (group) group.push(b);
    else groups.set(key, [b]);
  }
  for (const group of groups.values()) {
    const expired = applyRule(() =>
      expiredBackups(
        group.map((b) => ({
          id: b.id,
          task: b.task,
          state: b.state,
          startedAt: b.startedAt,
          pinned: b.id === options.keep || mounted.has(b.id),
        })),
        retention,
        ctx.now(),
      ),
    );
    for (const e of expired) {
      try {
        deleted.push(await deleteBackup(ctx, e.id, { dryRun: options.dryRun, reason: e.reason }));
      } catch (err) {
        if (err instanceof ConflictError && err.code === 'BACKUP_IN_USE') {
          skipped.push({ id: e.id, reason: `${e.reason}, but ${errorMessage(err)}` });
        } else {
          errors.push(`${e.id}: ${errorMessage(err)}`);
        }
      }
    }
  }
  return { deleted, errors, skipped };
}

export interface ExpireResult {
  deleted: DeletedBackup[];
  errors: string[];
  /** Expired but in use: kept this time (a warning, exit 1). */
  skipped: SkippedBackup[];
}

/**
 * Retention of every task (or one), as `snapkeeper expire` runs it. Backups of no known task (ad-hoc ones,
 * those of deleted tasks) follow the default retention. A task name that is neither a task nor found on any
 * backup is refused (NotFoundError TASK_NOT_FOUND).
 */
export async function expireAll(
  ctx: EngineContext,
  options: { dryRun: boolean; task?: string },
): Promise<ExpireResult> {
  const deleted: DeletedBackup[] = [];
  const errors: string[] = [];
  const skipped: SkippedBackup[] = [];
  const allTasks = (await listTasks(ctx.config, ctx.catalog)).map((e) => e.task);
  const taskNames = new Set(allTasks.map((t) => t.name));
  const orphanTasks = [
    ...new Set((await ctx.catalog.listBackups()).map((b) => b.task).filter((t) => !taskNames.has(t))),
  ].filter((t) => options.task === undefined || t === options.task);
  const tasks = allTasks.filter((t) => options.task === undefined || t.name === options.task);
  if (options.task !== undefined && tasks.length === 0 && orphanTasks.length === 0) {
    throw new NotFoundError(
      'TASK_NOT_FOUND',
      `no task named ${options.task} and no backup of it (see snapkeeper task list)`,
    );
  }
  const expireOptions = { dryRun: options.dryRun };
  for (const t of tasks) {
    const r = await expireTask(ctx, t.name, t.retention ?? ctx.config.defaults.retention, expireOptions);
    deleted.push(...r.deleted);
    errors.push(...r.errors);
    skipped.push(...r.skipped);
  }
  for (const t of orphanTasks) {
    const r = await expireTask(ctx, t, ctx.config.defaults.retention, expireOptions);
    deleted.push(...r.deleted);
    errors.push(...r.errors);
    skipped.push(...r.skipped);
  }
  return { deleted, errors, skipped };
}
