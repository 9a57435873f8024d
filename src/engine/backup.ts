import { operationAlive } from '../catalog/index.js';
import type { HookConfig, Retention } from '../config/schema.js';
import { errorMessage, UsageError } from '../errors.js';
import type { BackupRecord } from '../model/backup.js';
import type { BackupMode, QuiescePolicy } from '../model/modes.js';
import type { VcenterSession } from '../vsphere/index.js';
import type { EngineContext } from './context.js';
import { ADHOC_TASK, newBackupId, vmSnapshotName } from './ids.js';
import { RunningOperation } from './operation.js';
import { listArrayVolumes } from './placement.js';
import { type BackupPlan, type PlanRequest, planBackup } from './plan.js';
import { type RecoverReport, recover } from './recover.js';
import { expireTask } from './retention.js';
import { BackupHooks } from './steps/backup-hooks.js';
import { failPrepare, failVm, settleState, startRecord, type VmRun } from './steps/backup-record.js';
import { deleteSnapshotsOf, snapshotGroups } from './steps/backup-snapshot.js';
import { assertNotLockedByLiveRun, lockResources, removeStrayVmSnapshots } from './steps/backup-start.js';
import { type HoldRun, prepareAll, releaseAll } from './steps/backup-vms.js';
import { findTask } from './tasks.js';

export interface BackupRequest {
  /** Run this task (from the config file or the catalog). */
  taskName?: string;
  /** Or back up these VMs (names or globs) as an ad-hoc backup. */
  vmPatterns?: string[];
  /** Overrides the task's mode and the default. */
  mode?: BackupMode;
  /** Stops preparing further VMs; VMs already prepared are still released. */
  signal?: AbortSignal;
  /** Overrides the task's onQuiesceFailure and the default. */
  onQuiesceFailure?: QuiescePolicy;
  /**
   * The backup is followed by an offload to this repository (`backup --offload NAME`, which
   * runBackupThenOffload does): the RDM rule then keeps the requested mode, as for a task with `offload`.
   */
  offload?: string;
}

/** A request resolved against the configuration and the catalog's tasks. */
interface ResolvedRequest {
  taskName: string;
  retention: Retention | undefined;
  planRequest: PlanRequest;
  hooks?: HookConfig[];
  onQuiesceFailure: QuiescePolicy;
}

/**
 * One backup run: plan -> journal -> prepare VMs -> group snapshot -> release VMs -> record -> retention.
 * Every side effect is journaled in the catalog before it is made, so a crash at any point is repaired by
 * `recover` (which the next run calls once its request is known to be valid). A VM that cannot be prepared
 * is released and reported; the others complete and the backup is `partial`.
 *
 * The steps are in steps/: backup-start.ts (locks, stray VM snapshots), backup-vms.ts (journal of intents,
 * prepare, release), backup-snapshot.ts (group snapshot, clean-up of a failed backup), backup-record.ts.
 */
export async function runBackup(ctx: EngineContext, request: BackupRequest): Promise<BackupRecord> {
  const {
    taskName,
    retention,
    planRequest,
    hooks: taskHooks,
    onQuiesceFailure,
  } = await resolveRequest(ctx, request);
  ctx.events.phase('connect');
  const vc = await ctx.vcenter();
  const plan = await checkedPlan(ctx, vc, planRequest);

  const id = newBackupId(ctx.now());
  const operation = await RunningOperation.begin(ctx.catalog, {
    id,
    kind: 'backup',
    subject: taskName,
    locks: lockResources(plan),
  });
  const snapshotName = vmSnapshotName(id, ctx.catalog.id);
  const { record, runs } = startRecord(id, taskName, plan, snapshotName, ctx.now());
  await ctx.catalog.insertBackup(record);
  const hooks = new BackupHooks(ctx, record, taskHooks);

  const releaseFailed = !(await holdAndSnapshot(
    ctx,
    vc,
    plan,
    record,
    { backupId: id, snapshotName, runs, onQuiesceFailure },
    request.signal,
    hooks,
  ));
  settleState(record, runs);
  if (record.state === 'failed') await hooks.run('on-failure');
  const cleanupFailed = record.state === 'failed' && !(await deleteSnapshotsOf(ctx, id, record));
  record.finishedAt = ctx.now().toISOString();
  // record.warnings holds run-level warnings only; each VM's stay in vms[].warnings.
  await ctx.catalog.updateBackup(record);
  await ctx.crashPoint('recorded');

  if (record.state !== 'failed') await applyRetention(ctx, taskName, retention, record);
  await closeRun(ctx, operation, { releaseFailed, cleanupFailed });
  return record;
}

/** The task (or the VMs) asked for, as the planner takes it; exit 3 for a request that names neither or both. */
async function resolveRequest(ctx: EngineContext, request: BackupRequest): Promise<ResolvedRequest> {
  const { config } = ctx;
  const modeOverride = request.mode ? { modeOverride: request.mode } : {};
  if (request.taskName !== undefined && request.vmPatterns !== undefined) {
    throw new UsageError(
      'BACKUP_TASK_AND_VMS',
      'a backup runs a task or backs up the VMs named, not both (--task and --vm)',
    );
  }
  if (request.taskName !== undefined) {
    const { task } = await findTask(config, ctx.catalog, request.taskName);
    return {
      taskName: task.name,
      retention: task.retention ?? config.defaults.retention,
      ...(task.hooks ? { hooks: task.hooks } : {}),
      onQuiesceFailure: request.onQuiesceFailure ?? task.onQuiesceFailure ?? config.defaults.onQuiesceFailure,
      planRequest: {
        taskName: task.name,
        select: task.select,
        ...(task.exclude ? { exclude: task.exclude } : {}),
        ...(task.mode ? { taskMode: task.mode } : {}),
        ...modeOverride,
        followedByOffload: task.offload !== undefined || request.offload !== undefined,
      },
    };
  }
  if (request.vmPatterns && request.vmPatterns.length > 0) {
    return {
      taskName: ADHOC_TASK,
      retention: config.defaults.retention,
      onQuiesceFailure: request.onQuiesceFailure ?? config.defaults.onQuiesceFailure,
      planRequest: {
        taskName: ADHOC_TASK,
        select: { vms: request.vmPatterns },
        ...modeOverride,
        followedByOffload: request.offload !== undefined,
      },
    };
  }
  throw new UsageError('BACKUP_NO_SELECTION', 'backup needs --task NAME or --vm GLOB...');
}

/**
 * The plan, validated first (selection, datastores on arrays, locks of live runs): a refused request changes
 * nothing. Then a crashed earlier run that may still hold VMs or snapshots is repaired before anything is
 * touched; what it repaired changes the VMs' state (a VM it had suspended is powered on again), so the plan
 * is made again from fresh state: the mode decisions depend on it.
 */
async function checkedPlan(
  ctx: EngineContext,
  vc: VcenterSession,
  planRequest: PlanRequest,
): Promise<BackupPlan> {
  ctx.events.phase('plan');
  const volumes = await listArrayVolumes(ctx);
  const plan = planBackup(ctx.config, await vc.inventory(), volumes, planRequest);
  await assertNotLockedByLiveRun(ctx, lockResources(plan));
  const now = await ctx.catalogNow();
  if (!(await ctx.catalog.unfinishedOperations()).some((op) => !operationAlive(op, now))) return plan;
  const report = await recover(ctx, { onlyDeadOperations: true });
  if (!changedAnything(report)) return plan;
  return planBackup(ctx.config, await vc.inventory(), volumes, planRequest);
}

function changedAnything(report: RecoverReport): boolean {
  return (
    report.operations.length > 0 ||
    report.stillOpen.length > 0 ||
    report.removedVmSnapshots.length > 0 ||
    report.poweredOnVms.length > 0 ||
    report.deletedArraySnapshots.length > 0 ||
    report.failedBackups.length > 0 ||
    report.actions.length > 0
  );
}

/**
 * Prepares the VMs, takes the group snapshot when any VM is prepared, releases them. Whatever fails, every
 * prepared VM is released; what failed is written into `record`. Returns false when a VM could not be
 * released.
 */
async function holdAndSnapshot(
  ctx: EngineContext,
  vc: VcenterSession,
  plan: BackupPlan,
  record: BackupRecord,
  hold: HoldRun,
  signal: AbortSignal | undefined,
  hooks: BackupHooks,
): Promise<boolean> {
  const { runs, snapshotName } = hold;
  const refused = await hooks.run('before-prepare');
  if (refused !== undefined) {
    record.error = refused;
    for (const r of runs) failPrepare(r, refused);
    return true;
  }
  try {
    await removeStrayVmSnapshots(ctx, vc, plan, record);
    await prepareAll(ctx, vc, hold, signal);
    await ctx.crashPoint('prepared');
    if (runs.some((r) => r.prepared)) await snapshotPrepared(ctx, plan, record, runs);
    await ctx.crashPoint('snapshotted');
    // The VMs are still held: the hook's timeout (30 s by default) bounds how long it delays the release.
    if (record.snapshotAt !== undefined) await hooks.run('after-snapshot');
    const released = await releaseAll(ctx, vc, snapshotName, runs);
    await ctx.crashPoint('released');
    await hooks.run('after-release');
    return released;
  } catch (err) {
    // Unexpected failure (catalog, programming error): release what was prepared, then report.
    const released = await releaseAll(ctx, vc, snapshotName, runs);
    record.error = errorMessage(err);
    for (const r of runs) failVm(r, record.error);
    await hooks.run('after-release');
    return released;
  }
}

/** The group snapshot, recorded at once; when it fails, every VM of the run fails with it. */
async function snapshotPrepared(
  ctx: EngineContext,
  plan: BackupPlan,
  record: BackupRecord,
  runs: VmRun[],
): Promise<void> {
  try {
    await snapshotGroups(ctx, record.id, plan, record);
    record.snapshotAt = ctx.now().toISOString();
    await ctx.catalog.updateBackup(record);
  } catch (err) {
    for (const r of runs) failVm(r, `array snapshot failed: ${errorMessage(err)}`);
    record.error = `array snapshot failed: ${errorMessage(err)}`;
  }
}

/** Retention after a backup that holds data; what it could not do becomes warnings of the record. */
async function applyRetention(
  ctx: EngineContext,
  taskName: string,
  retention: Retention | undefined,
  record: BackupRecord,
): Promise<void> {
  let errors: string[];
  let skipped: { id: string; reason: string }[] = [];
  try {
    ({ errors, skipped } = await expireTask(ctx, taskName, retention, { dryRun: false, keep: record.id }));
  } catch (err) {
    errors = [errorMessage(err)];
  }
  for (const e of errors) {
    record.warnings.push({ code: 'EXPIRE_FAILED', message: `retention after backup failed: ${e}` });
  }
  for (const s of skipped) {
    record.warnings.push({ code: 'EXPIRE_SKIPPED', message: `backup ${s.id} not expired: ${s.reason}` });
  }
  if (errors.length > 0 || skipped.length > 0) await ctx.catalog.updateBackup(record);
}

/**
 * Finishes the run (which frees its locks), or, when a VM could not be released or a failed backup's array
 * snapshot could not be deleted, leaves it open: `recover` (or the next run) finds it, retries the release
 * or deletes the snapshots by label, and closes it.
 */
async function closeRun(
  ctx: EngineContext,
  operation: RunningOperation,
  outcome: { releaseFailed: boolean; cleanupFailed: boolean },
): Promise<void> {
  if (!outcome.releaseFailed && !outcome.cleanupFailed) {
    await operation.finish('done');
    return;
  }
  ctx.events.log(
    outcome.releaseFailed
      ? 'some VMs could not be released; run snapkeeper recover'
      : 'array snapshots of the failed backup could not be deleted; run snapkeeper recover',
  );
  operation.abandon();
}
