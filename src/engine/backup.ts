import { operationAlive } from '../catalog/index.js';
import { errorMessage, LockedError, UsageError } from '../errors.js';
import type { BackupRecord, VmRecord } from '../model/backup.js';
import type { BackupMode } from '../model/modes.js';
import { runLimited } from '../util/scheduler.js';
import { isFault, type VcenterSession } from '../vsphere/index.js';
import type { EngineContext } from './context.js';
import {
  ADHOC_TASK,
  newBackupId,
  ownedLabel,
  ownershipOf,
  parseVmSnapshotName,
  vmSnapshotName,
} from './ids.js';
import type { JournalWrite } from './journal/actions.js';
import { journal, journalAll } from './journal/write.js';
import { RunningOperation } from './operation.js';
import { listArrayVolumes } from './placement.js';
import { type BackupPlan, planBackup, type VmPlan } from './plan.js';
import { type RecoverReport, recover } from './recover.js';
import { releaseVm } from './release.js';
import { expireTask } from './retention.js';
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
}

/** Per-VM progress of one run, kept beside the record while it is being built. */
interface VmRun {
  plan: VmPlan;
  record: VmRecord;
  prepared: boolean;
  quiesceStart?: Date;
  /** The VM snapshot this run created, once vCenter confirmed it. */
  vmSnapshotId?: string;
  /** True once vCenter confirmed this run suspended the VM. */
  suspended?: boolean;
  /** Preparing failed: the VM was never held in its mode's state, so it has no quiesce window. */
  notPrepared?: boolean;
}

/**
 * One backup run: plan -> journal -> prepare VMs -> group snapshot -> release VMs -> record -> retention.
 * Every side effect is journaled in the catalog before it is made, so a crash at any point is repaired by
 * `recover` (which the next run calls once its request is known to be valid). A VM that cannot be prepared
 * is released and reported; the others complete and the backup is `partial`.
 */
export async function runBackup(ctx: EngineContext, request: BackupRequest): Promise<BackupRecord> {
  const { config, catalog, events } = ctx;
  let taskName = ADHOC_TASK;
  let planRequest: Parameters<typeof planBackup>[3];
  let retention = config.defaults.retention;
  if (request.taskName !== undefined && request.vmPatterns !== undefined) {
    throw new UsageError(
      'BACKUP_TASK_AND_VMS',
      'a backup runs a task or backs up the VMs named, not both (--task and --vm)',
    );
  }
  if (request.taskName !== undefined) {
    const { task } = await findTask(config, catalog, request.taskName);
    taskName = task.name;
    retention = task.retention ?? retention;
    planRequest = {
      taskName,
      select: task.select,
      ...(task.exclude ? { exclude: task.exclude } : {}),
      ...(task.mode ? { taskMode: task.mode } : {}),
      ...(request.mode ? { modeOverride: request.mode } : {}),
      followedByOffload: task.offload !== undefined,
    };
  } else if (request.vmPatterns && request.vmPatterns.length > 0) {
    planRequest = {
      taskName,
      select: { vms: request.vmPatterns },
      ...(request.mode ? { modeOverride: request.mode } : {}),
      followedByOffload: false,
    };
  } else {
    throw new UsageError('BACKUP_NO_SELECTION', 'backup needs --task NAME or --vm GLOB...');
  }

  events.phase('connect');
  const vc = await ctx.vcenter();

  // Validate first (selection, datastores on arrays, locks of live runs): a refused request changes nothing.
  events.phase('plan');
  const volumes = await listArrayVolumes(ctx);
  let inventory = await vc.inventory();
  let plan = planBackup(config, inventory, volumes, planRequest);
  await assertNotLockedByLiveRun(ctx, lockResources(plan));

  // A crashed earlier run may still hold VMs or snapshots: repair before touching anything. What it
  // repaired changes the VMs' state (a VM it had suspended is powered on again), so plan again from fresh
  // state: the mode decisions depend on it.
  if ((await catalog.unfinishedOperations()).some((op) => !operationAlive(op, ctx.now()))) {
    const report = await recover(ctx, { onlyDeadOperations: true });
    if (changedAnything(report)) {
      inventory = await vc.inventory();
      plan = planBackup(config, inventory, volumes, planRequest);
    }
  }

  const id = newBackupId(ctx.now());
  const operation = await RunningOperation.begin(catalog, {
    id,
    kind: 'backup',
    subject: taskName,
    locks: lockResources(plan),
  });

  const snapshotName = vmSnapshotName(id, catalog.id);
  const runs: VmRun[] = plan.vms.map((p) => ({
    plan: p,
    record: vmRecordOf(p, snapshotName),
    prepared: false,
  }));
  const record: BackupRecord = {
    id,
    task: taskName,
    state: 'running',
    startedAt: ctx.now().toISOString(),
    requestedMode: plan.vms[0]!.requestedMode,
    snapshots: [],
    vms: runs.map((r) => r.record),
    warnings: [...plan.warnings],
  };
  await catalog.insertBackup(record);

  let releaseFailed = false;
  try {
    await removeStrayVmSnapshots(ctx, vc, plan, record);
    await prepareAll(ctx, vc, id, snapshotName, runs, request.signal);
    await ctx.crashPoint('prepared');

    const preparedCount = runs.filter((r) => r.prepared).length;
    if (preparedCount > 0) {
      try {
        await snapshotGroups(ctx, id, plan, record);
        record.snapshotAt = ctx.now().toISOString();
        await catalog.updateBackup(record);
      } catch (err) {
        for (const r of runs) failVm(r, `array snapshot failed: ${errorMessage(err)}`);
        record.error = `array snapshot failed: ${errorMessage(err)}`;
      }
    }
    await ctx.crashPoint('snapshotted');

    releaseFailed = !(await releaseAll(ctx, vc, snapshotName, runs));
    await ctx.crashPoint('released');
  } catch (err) {
    // Unexpected failure (catalog, programming error): release what was prepared, then report.
    releaseFailed = !(await releaseAll(ctx, vc, snapshotName, runs));
    record.error = errorMessage(err);
    for (const r of runs) failVm(r, record.error);
  }

  addPointInTimeWarnings(record);
  const okCount = runs.filter((r) => r.record.state === 'ok').length;
  record.state =
    record.error !== undefined || okCount === 0 ? 'failed' : okCount === runs.length ? 'complete' : 'partial';
  const cleanupFailed = record.state === 'failed' && !(await deleteSnapshotsOf(ctx, id, record));
  record.finishedAt = ctx.now().toISOString();
  // record.warnings holds run-level warnings only; each VM's stay in vms[].warnings.
  await catalog.updateBackup(record);
  await ctx.crashPoint('recorded');

  if (record.state !== 'failed') {
    let errors: string[];
    let skipped: { id: string; reason: string }[] = [];
    try {
      ({ errors, skipped } = await expireTask(ctx, taskName, retention, { dryRun: false, keep: id }));
    } catch (err) {
      errors = [errorMessage(err)];
    }
    for (const e of errors) {
      record.warnings.push({ code: 'EXPIRE_FAILED', message: `retention after backup failed: ${e}` });
    }
    for (const s of skipped) {
      record.warnings.push({ code: 'EXPIRE_SKIPPED', message: `backup ${s.id} not expired: ${s.reason}` });
    }
    if (errors.length > 0 || skipped.length > 0) await catalog.updateBackup(record);
  }

  if (releaseFailed || cleanupFailed) {
    // The operation stays open: `recover` (or the next run) finds it, retries the release or deletes the
    // failed backup's array snapshots by label, and closes it.
    events.log(
      releaseFailed
        ? 'some VMs could not be released; run snapkeeper recover'
        : 'array snapshots of the failed backup could not be deleted; run snapkeeper recover',
    );
    operation.abandon();
  } else {
    // Also frees the locks.
    await operation.finish('done');
  }
  return record;
}

/**
 * Refuses the run before anything changes when a live run holds one of its VMs or volumes. The lock itself
 * is taken later (after the repair of dead runs, whose stale locks it takes over); this only makes a
 * refusal happen before that repair.
 */
async function assertNotLockedByLiveRun(ctx: EngineContext, resources: string[]): Promise<void> {
  const wanted = new Set(resources);
  for (const op of await ctx.catalog.unfinishedOperations()) {
    if (!operationAlive(op, ctx.now())) continue;
    const held = (await ctx.catalog.locksOf(op.id)).filter((r) => wanted.has(r));
    if (held.length === 0) continue;
    const more = held.length > 1 ? ` (and ${held.length - 1} more resources)` : '';
    throw new LockedError(
      'RESOURCE_LOCKED',
      `${held[0]} is locked by ${op.kind} operation ${op.id} (pid ${op.pid} on ${op.host}, started ${op.startedAt})${more}`,
      {
        details: {
          conflicts: held.map((resource) => ({
            resource,
            operationId: op.id,
            kind: op.kind,
            pid: op.pid,
            host: op.host,
          })),
        },
      },
    );
  }
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
 * SPEC 2: the next run repairs leftovers. VM snapshots on the selected VMs that this catalog's backups made
 * (ids.ts ownershipOf: its catalog id, an operation of its journal) and whose backup is no longer live (a
 * recovery that could not finish) are removed before this run prepares the VMs (it holds their locks now).
 * Another catalog's, or an earlier release's, are left alone. Read from the inventory the plan was made
 * from: no extra round trip per VM.
 */
async function removeStrayVmSnapshots(
  ctx: EngineContext,
  vc: VcenterSession,
  plan: BackupPlan,
  record: BackupRecord,
): Promise<void> {
  const live = new Set(
    (await ctx.catalog.unfinishedOperations())
      .filter((op) => operationAlive(op, ctx.now()))
      .map((op) => op.id),
  );
  const removed: string[] = [];
  for (const { vm } of plan.vms) {
    for (const s of vm.snapshots) {
      const owner = await ownershipOf(parseVmSnapshotName(s.name), ctx.catalog);
      if (owner.owner !== 'ours' || live.has(owner.operationId)) continue;
      try {
        await vc.removeVmSnapshot(s.id);
        removed.push(`${vm.name}/${s.name}`);
      } catch (err) {
        if (isFault(err, 'ManagedObjectNotFound')) continue; // removed meanwhile
        record.warnings.push({
          code: 'CLEANUP_FAILED',
          message: `${vm.name}: could not remove the stray VM snapshot ${s.name}: ${errorMessage(err)}; run snapkeeper recover`,
        });
      }
    }
  }
  if (removed.length > 0) {
    record.warnings.push({
      code: 'STRAY_VM_SNAPSHOT_REMOVED',
      message: `removed ${removed.length} VM snapshot(s) left by earlier runs: ${removed.join(', ')}`,
    });
    ctx.events.log(`removed ${removed.length} stray snapkeeper VM snapshot(s)`);
  }
}

function lockResources(plan: BackupPlan): string[] {
  return [
    ...plan.vms.map((p) => `vm:${p.vm.id}`),
    ...plan.groups.flatMap((g) => g.volumes.map((v) => `volume:${g.array}/${v}`)),
  ];
}

function vmRecordOf(p: VmPlan, snapshotName: string): VmRecord {
  const { vm, decision } = p;
  return {
    id: vm.id,
    name: vm.name,
    instanceUuid: vm.instanceUuid,
    host: vm.host,
    folder: vm.folder,
    datacenter: vm.datacenter,
    vmxFile: vm.vmxFile,
    homeDatastore: vm.homeDatastore,
    datastores: vm.datastores,
    powerState: vm.powerState,
    requestedMode: p.requestedMode,
    effectiveMode: decision.effectiveMode,
    consistency: decision.consistency,
    ...(decision.before?.kind === 'create-vm-snapshot' ? { vmSnapshot: snapshotName } : {}),
    state: 'ok',
    disks: p.disks,
    warnings: [...decision.warnings],
    ...(vm.hardware ? { hardware: vm.hardware } : {}),
  };
}

/**
 * The VM was never held in its mode's state: its record says so (no consistency the mode promised, no VM
 * snapshot inside the array snapshot, no quiesce window) instead of what the plan expected.
 */
function failPrepare(run: VmRun, message: string): void {
  run.notPrepared = true;
  run.record.consistency = 'not-prepared';
  delete run.record.vmSnapshot;
  delete run.record.quiesce;
  failVm(run, message);
}

function failVm(run: VmRun, message: string): void {
  if (run.record.state === 'failed') return;
  run.record.state = 'failed';
  run.record.error = message;
  run.record.warnings.push({ code: 'VM_FAILED', message: `${run.record.name}: ${message}` });
}

function hostKey(run: VmRun): string {
  return run.plan.vm.host;
}

async function prepareAll(
  ctx: EngineContext,
  vc: VcenterSession,
  backupId: string,
  snapshotName: string,
  runs: VmRun[],
  signal: AbortSignal | undefined,
): Promise<void> {
  const { catalog, events, config } = ctx;
  events.phase('prepare');
  // Write-ahead intent for every VM about to be held, in one transaction (one sync, not one per VM):
  // recovery re-reads each named VM's live state, so no per-VM completion record is needed.
  await journalAll(
    catalog,
    backupId,
    runs.flatMap((run): JournalWrite[] => {
      const action = run.plan.decision.before;
      if (action === null) return [];
      return [
        {
          action: action.kind === 'suspend' ? 'suspend' : 'vm-snapshot',
          target: run.plan.vm.id,
          data: { vm: run.plan.vm.name, name: snapshotName },
        },
      ];
    }),
  );
  await runLimited(
    runs,
    { global: config.defaults.concurrency.global, perKey: config.defaults.concurrency.perHost },
    hostKey,
    async (run) => {
      const { vm, decision } = run.plan;
      run.quiesceStart = ctx.now();
      if (signal?.aborted) {
        failPrepare(run, 'backup interrupted before this VM was prepared');
        return;
      }
      const action = decision.before;
      try {
        if (action?.kind === 'create-vm-snapshot') {
          events.item(vm.name, 'creating VM snapshot');
          run.vmSnapshotId = await vc.createVmSnapshot(vm.id, {
            name: snapshotName,
            description: `snapkeeper backup ${backupId}; removed right after the array snapshot`,
            memory: action.memory,
            quiesce: action.quiesce,
          });
        } else if (action?.kind === 'suspend') {
          events.item(vm.name, 'suspending');
          await vc.suspendVm(vm.id);
          run.suspended = true;
        }
        run.prepared = true;
        events.item(vm.name, 'prepared');
      } catch (err) {
        failPrepare(run, `could not prepare (${decision.effectiveMode}): ${errorMessage(err)}`);
        events.item(vm.name, `failed: ${errorMessage(err)}`);
        // Release at once: the call may have half-succeeded (a snapshot made before the connection dropped).
        await releaseOne(ctx, vc, snapshotName, run);
      }
    },
  );
}

async function snapshotGroups(ctx: EngineContext, backupId: string, plan: BackupPlan, record: BackupRecord) {
  const { catalog, events } = ctx;
  events.phase('array snapshot');
  for (const group of plan.groups) {
    const array = await ctx.array(group.array);
    const label = ownedLabel(backupId, catalog.id);
    const entry = await journal(catalog, backupId, {
      action: 'array-snapshot',
      target: group.array,
      data: { volumes: group.volumes, label },
    });
    await ctx.crashPoint('array-snapshot');
    events.item(`array ${group.array}`, `snapshot of ${group.volumes.length} volume(s)`);
    const snapshot = await array.snapshotGroup(group.volumes, {
      label,
      onProgress: (done, total) =>
        events.item(`array ${group.array}`, `copying ${Math.floor((100 * done) / Math.max(total, 1))}%`),
    });
    await catalog.completeJournal(entry, { snapshotId: snapshot.id });
    record.snapshots.push({
      array: group.array,
      snapshotId: snapshot.id,
      volumes: snapshot.volumes,
      pointInTime: snapshot.pointInTime,
      driver: snapshot.driver,
      datastores: group.datastores,
    });
    events.item(`array ${group.array}`, `snapshot ${snapshot.id}`);
  }
}

async function releaseAll(
  ctx: EngineContext,
  vc: VcenterSession,
  snapshotName: string,
  runs: VmRun[],
): Promise<boolean> {
  ctx.events.phase('release');
  const toRelease = runs.filter((r) => r.prepared);
  const results = await runLimited(
    toRelease,
    { global: ctx.config.defaults.concurrency.global, perKey: ctx.config.defaults.concurrency.perHost },
    hostKey,
    (run) => releaseOne(ctx, vc, snapshotName, run),
  );
  return results.every((r) => r.status === 'fulfilled' && r.value);
}

/** Undoes a VM's prepare action; records the quiesce window. Returns false when the VM could not be released. */
async function releaseOne(
  ctx: EngineContext,
  vc: VcenterSession,
  snapshotName: string,
  run: VmRun,
): Promise<boolean> {
  const { vm, decision } = run.plan;
  run.prepared = false;
  let released = true;
  if (decision.before !== null) {
    ctx.events.item(vm.name, 'releasing');
    try {
      await releaseDirect(vc, run, decision.before.kind);
      ctx.events.item(vm.name, 'released');
    } catch {
      // The direct call failed or half-succeeded: fall back to the idempotent release that reads the VM's
      // state first and retries with backoff.
      try {
        await releaseVm(vc, vm.id, {
          snapshotName,
          resume: decision.before.kind === 'suspend',
        });
        ctx.events.item(vm.name, 'released');
      } catch (err) {
        released = false;
        run.record.warnings.push({
          code: 'RELEASE_FAILED',
          message: `${vm.name}: could not be released (${errorMessage(err)}); run snapkeeper recover`,
        });
        ctx.events.item(vm.name, `release failed: ${errorMessage(err)}`);
      }
    }
    // Only VMs that were held have a quiesce window; powered-off, suspended and ASIS VMs never wait, and
    // one whose prepare failed was never held.
    if (run.notPrepared) return released;
    const start = run.quiesceStart ?? ctx.now();
    const end = ctx.now();
    run.record.quiesce = {
      start: start.toISOString(),
      end: end.toISOString(),
      ms: end.getTime() - start.getTime(),
    };
  }
  return released;
}

/**
 * The fast path of a release: one call, with what this run knows (the snapshot id it created). It is only
 * taken right after a successful prepare; anything unexpected goes to the state-reading path.
 */
async function releaseDirect(
  vc: VcenterSession,
  run: VmRun,
  kind: 'create-vm-snapshot' | 'suspend',
): Promise<void> {
  if (kind === 'suspend') {
    if (!run.suspended) throw new Error('suspend not confirmed');
    await vc.powerOnVm(run.plan.vm.id);
  } else {
    if (run.vmSnapshotId === undefined) throw new Error('snapshot id unknown');
    await vc.removeVmSnapshot(run.vmSnapshotId);
  }
}

function addPointInTimeWarnings(record: BackupRecord): void {
  const sequential = record.snapshots.filter((s) => s.pointInTime === 'sequential');
  if (sequential.length === 0 && record.snapshots.length <= 1) return;
  for (const vm of record.vms) {
    if (vm.state !== 'ok' || (vm.consistency !== 'crash' && !vm.disks.some((d) => d.consistency === 'crash')))
      continue;
    const spans = record.snapshots.filter((s) => vm.datastores.some((ds) => s.datastores[ds] !== undefined));
    if (spans.length > 1 || spans.some((s) => s.pointInTime === 'sequential')) {
      vm.warnings.push({
        code: 'NOT_POINT_IN_TIME',
        message: `${vm.name}: its volumes were not captured at one point in time (driver ${spans.map((s) => s.driver).join(', ')}); the crash-consistent image may be torn`,
      });
    }
  }
}

/**
 * Deletes this backup's array snapshots (journaled) — used when the backup failed and owns nothing. Returns
 * false when one could not be deleted: the caller keeps the operation open, so `recover` (or the next run)
 * deletes it by its label.
 */
async function deleteSnapshotsOf(
  ctx: EngineContext,
  backupId: string,
  record: BackupRecord,
): Promise<boolean> {
  let clean = true;
  for (const s of record.snapshots) {
    const entry = await journal(ctx.catalog, backupId, {
      action: 'delete-snapshot',
      target: s.array,
      data: { snapshotId: s.snapshotId },
    });
    try {
      await (await ctx.array(s.array)).deleteSnapshot(s.snapshotId);
      await ctx.catalog.completeJournal(entry);
    } catch (err) {
      clean = false;
      record.warnings.push({
        code: 'CLEANUP_FAILED',
        message: `could not delete snapshot ${s.array}/${s.snapshotId}: ${errorMessage(err)}; the next run or snapkeeper recover deletes it`,
      });
    }
  }
  record.snapshots = [];
  return clean;
}
