import { operationPidAlive } from '../catalog/index.js';
import { ConflictError, errorMessage } from '../errors.js';
import { isGone } from '../vsphere/vm-ops.js';
import type { EngineContext } from './context.js';
import { BACKUP_ID_PATTERN, backupIdOfVmSnapshot, vmSnapshotName } from './ids.js';
import { releaseVm } from './release.js';
import { extraSweeps, operationRecovery, type RecoveryStep } from './undo.js';

export interface RecoverOptions {
  /** Only repair operations whose process is gone (what a new run does before it starts); skip the sweeps. */
  onlyDeadOperations?: boolean;
  /** Report what would be done, change nothing. */
  dryRun?: boolean;
}

export interface RecoverReport {
  dryRun: boolean;
  /** Interrupted operations that were (or would be) closed. */
  operations: { id: string; kind: string }[];
  /** Interrupted operations that could not be repaired completely: left open for the next recover. */
  stillOpen: { id: string; kind: string }[];
  /** Operations still running in a live process: left alone. */
  running: { id: string; kind: string; pid: number }[];
  removedVmSnapshots: { vm: string; snapshot: string }[];
  poweredOnVms: string[];
  deletedArraySnapshots: { array: string; snapshotId: string }[];
  failedBackups: string[];
  /** What the recovery of other operation kinds (restore, mount, attach) did, one line each. */
  actions: string[];
  errors: string[];
}

/**
 * Repairs whatever interrupted runs left behind, from their journals: removes snapkeeper VM snapshots,
 * powers on VMs that snapkeeper suspended, deletes array snapshots labelled with a backup id that no backup
 * owns, marks interrupted backups failed and closes their operations (which frees their locks). An operation
 * whose repair fails stays open (`stillOpen`) for the next recover; the others are repaired all the same.
 * Operations of live processes are never touched. Idempotent: running it twice is harmless.
 */
export async function recover(ctx: EngineContext, options: RecoverOptions = {}): Promise<RecoverReport> {
  const { catalog } = ctx;
  const dryRun = options.dryRun === true;
  const report: RecoverReport = {
    dryRun,
    operations: [],
    stillOpen: [],
    running: [],
    removedVmSnapshots: [],
    poweredOnVms: [],
    deletedArraySnapshots: [],
    failedBackups: [],
    actions: [],
    errors: [],
  };

  const unfinished = catalog.unfinishedOperations();
  const dead = unfinished.filter((op) => !operationPidAlive(op));
  for (const op of unfinished) {
    if (operationPidAlive(op) && op.pid !== process.pid)
      report.running.push({ id: op.id, kind: op.kind, pid: op.pid });
  }
  if (options.onlyDeadOperations && dead.length === 0) return report;
  ctx.events.phase('recover');

  const vc = await ctx.vcenter();
  for (const op of dead) {
    const step: RecoveryStep = { ctx, vc, op, entries: catalog.journalEntries(op.id), report, dryRun };
    const handler = op.kind === 'backup' ? recoverBackupOperation : operationRecovery[op.kind];
    let clean = false;
    try {
      if (handler) clean = await handler(step);
      else report.errors.push(`operation ${op.id}: no recovery for operations of kind ${op.kind}`);
      // finishOperation also frees the operation's locks.
      if (!dryRun && clean) finishRecovered(ctx, op.id);
    } catch (err) {
      // One operation's failure must not stop the repair of the others: it stays open for the next recover.
      clean = false;
      report.errors.push(`${op.kind} ${op.id}: ${errorMessage(err)}`);
    }
    (clean ? report.operations : report.stillOpen).push({ id: op.id, kind: op.kind });
  }

  if (!options.onlyDeadOperations) {
    await sweep(ctx, report);
    for (const extra of extraSweeps) await extra(ctx, report);
  }
  return report;
}

/** Closes a repaired operation (and frees its locks); one a concurrent recover closed first is closed all the same. */
function finishRecovered(ctx: EngineContext, id: string): void {
  try {
    ctx.catalog.finishOperation(id, 'failed');
  } catch (err) {
    if (!(err instanceof ConflictError && err.code === 'OPERATION_FINISHED')) throw err;
  }
}

/** Undoes what a backup's journal says it did: VMs released first, then its array snapshots unless it finished. */
async function recoverBackupOperation({
  ctx,
  vc,
  op,
  entries,
  report,
  dryRun,
}: RecoveryStep): Promise<boolean> {
  const { catalog } = ctx;
  let clean = true;

  // VMs first: a suspended VM or a VM snapshot hurts production, a stray array snapshot only costs space.
  const vmTargets = new Map<string, { name: string; resume: boolean; snapshot: boolean }>();
  for (const e of entries) {
    if (e.action !== 'vm-snapshot' && e.action !== 'suspend') continue;
    const t = vmTargets.get(e.target) ?? {
      name: String(e.data?.vm ?? e.target),
      resume: false,
      snapshot: false,
    };
    if (e.action === 'suspend') t.resume = true;
    else t.snapshot = true;
    vmTargets.set(e.target, t);
  }
  for (const [vmId, t] of vmTargets) {
    try {
      if (dryRun) {
        const state = await vc.vmState(vmId);
        if (t.snapshot && state.snapshots.some((s) => s.name === vmSnapshotName(op.id))) {
          report.removedVmSnapshots.push({ vm: t.name, snapshot: vmSnapshotName(op.id) });
        }
        if (t.resume && state.powerState === 'suspended') report.poweredOnVms.push(t.name);
        continue;
      }
      const done = await releaseVm(vc, vmId, {
        ...(t.snapshot ? { snapshotName: vmSnapshotName(op.id) } : {}),
        resume: t.resume,
      });
      for (let i = 0; i < done.removedSnapshots; i++) {
        report.removedVmSnapshots.push({ vm: t.name, snapshot: vmSnapshotName(op.id) });
      }
      if (done.poweredOn) report.poweredOnVms.push(t.name);
    } catch (err) {
      if (isGone(err)) continue; // The VM is gone: nothing of ours is left on it.
      clean = false;
      report.errors.push(`${t.name}: ${errorMessage(err)}`);
    }
  }

  const backup = catalog.findBackup(op.id);
  const keepsSnapshots = backup !== undefined && (backup.state === 'complete' || backup.state === 'partial');
  if (!keepsSnapshots) {
    const arrays = new Set(entries.filter((e) => e.action === 'array-snapshot').map((e) => e.target));
    for (const arrayName of arrays) {
      try {
        const array = await ctx.array(arrayName);
        for (const s of await array.listSnapshots()) {
          if (s.label !== op.id) continue;
          if (!dryRun) await array.deleteSnapshot(s.id);
          report.deletedArraySnapshots.push({ array: arrayName, snapshotId: s.id });
        }
      } catch (err) {
        clean = false;
        report.errors.push(`array ${arrayName}: ${errorMessage(err)}`);
      }
    }
  }
  if (backup && backup.state === 'running') {
    report.failedBackups.push(backup.id);
    if (!dryRun) {
      backup.state = 'failed';
      backup.error = 'interrupted: the process ended before the backup finished; repaired by recover';
      backup.finishedAt ??= ctx.now().toISOString();
      backup.snapshots = [];
      catalog.updateBackup(backup);
    }
  }
  return clean;
}

/**
 * Catches what no journal names (a catalog restored from an older copy, a snapshot made by hand with our
 * name): VM snapshots named snapkeeper-<id> and array snapshots labelled with a backup id that no complete,
 * partial or running backup owns, unless a live operation is making them right now. Snapshots with any
 * other label (made by an admin or another tool) are never touched.
 */
async function sweep(ctx: EngineContext, report: RecoverReport): Promise<void> {
  const vc = await ctx.vcenter();
  // State first, then the set of live operations: an operation that made something we listed began before
  // it, so it is in the set (or has finished and owns it) — no race with a backup starting meanwhile.
  const inventory = await vc.inventory();
  let liveIds = liveOperationIds(ctx);
  for (const vm of inventory.vms) {
    for (const s of vm.snapshots) {
      const owner = backupIdOfVmSnapshot(s.name);
      if (owner === undefined || liveIds.has(owner)) continue;
      if (report.removedVmSnapshots.some((r) => r.vm === vm.name && r.snapshot === s.name)) continue;
      try {
        if (!report.dryRun) await vc.removeVmSnapshot(s.id);
        report.removedVmSnapshots.push({ vm: vm.name, snapshot: s.name });
      } catch (err) {
        if (!isGone(err)) report.errors.push(`${vm.name}: ${errorMessage(err)}`);
      }
    }
  }
  for (const [name, array] of await ctx.arrays()) {
    const snapshots = (await array.listSnapshots()).filter((s) => BACKUP_ID_PATTERN.test(s.label));
    // Listing, then live operations, then owners: a snapshot listed was made by an operation begun before the
    // listing. If that operation is not live at the second read, it had finished (or died) before it, so
    // its record's snapshots are in the catalog by the third read. Reading owners first would lose the
    // snapshot of a backup that records it and finishes between the reads. Running backups count as owners
    // too (a backup records its snapshot before it turns complete); the running records of dead operations
    // were marked failed by the operation pass above.
    liveIds = liveOperationIds(ctx);
    const owned = ctx.catalog.ownedSnapshotIds(name, ['complete', 'partial', 'running']);
    for (const s of snapshots) {
      if (owned.has(s.id) || liveIds.has(s.label)) continue;
      if (report.deletedArraySnapshots.some((d) => d.array === name && d.snapshotId === s.id)) continue;
      try {
        if (!report.dryRun) await array.deleteSnapshot(s.id);
        report.deletedArraySnapshots.push({ array: name, snapshotId: s.id });
      } catch (err) {
        report.errors.push(`array ${name} snapshot ${s.id}: ${errorMessage(err)}`);
      }
    }
  }
}

function liveOperationIds(ctx: EngineContext): Set<string> {
  return new Set(
    ctx.catalog
      .unfinishedOperations()
      .filter((op) => operationPidAlive(op))
      .map((op) => op.id),
  );
}
