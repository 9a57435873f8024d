import { type Operation, operationAlive } from '../catalog/index.js';
import { ConflictError, errorMessage } from '../errors.js';
import type { BackupRecord } from '../model/backup.js';
import { isGone } from '../vsphere/vm-ops.js';
import type { EngineContext } from './context.js';
import { ownedLabel, ownershipOf, parseLabel, parseVmSnapshotName, vmSnapshotName } from './ids.js';
import { releaseVm } from './release.js';
import { missingSnapshots, presentSnapshots, type SnapshotRef } from './snapshot-presence.js';
import { extraSweeps, operationRecovery, type RecoveryStep } from './undo.js';

export interface RecoverOptions {
  /** Only repair operations whose process is gone (what a new run does before it starts); skip the sweeps. */
  onlyDeadOperations?: boolean;
  /** Report what would be done, change nothing. */
  dryRun?: boolean;
}

export interface RecoverReport {
  dryRun: boolean;
  /** Interrupted operations that were (or would be) closed and repaired. */
  operations: { id: string; kind: string }[];
  /**
   * Interrupted operations that could not be repaired completely: closed all the same (no lock outlives its
   * holder) and repaired again by every later recover until clean.
   */
  stillOpen: { id: string; kind: string }[];
  /** Operations still running in a live process: left alone. */
  running: { id: string; kind: string; pid: number }[];
  removedVmSnapshots: { vm: string; snapshot: string }[];
  poweredOnVms: string[];
  deletedArraySnapshots: { array: string; snapshotId: string }[];
  failedBackups: string[];
  /** Complete or partial backups whose array snapshot is gone: marked (or, dry, to be marked) `lost`. */
  lostBackups: { id: string; missing: { array: string; snapshotId: string }[] }[];
  /**
   * Things that look like snapkeeper's but are not provably this catalog's (another catalog's, an earlier
   * release's, or of an operation this catalog's journal does not have): left alone, never deleted.
   */
  foreign: ForeignThing[];
  /** What the recovery of other operation kinds (restore, mount, attach) did, one line each. */
  actions: string[];
  errors: string[];
}

export interface ForeignThing {
  kind: 'vm-snapshot' | 'array-snapshot' | 'clone' | 'datastore';
  /** The VM or array it is on. */
  where: string;
  name: string;
  why: string;
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
    lostBackups: [],
    foreign: [],
    actions: [],
    errors: [],
  };

  const now = ctx.now();
  const unfinished = await catalog.unfinishedOperations();
  const dead = unfinished.filter((op) => !operationAlive(op, now));
  for (const op of unfinished) {
    if (operationAlive(op, now) && op.pid !== process.pid)
      report.running.push({ id: op.id, kind: op.kind, pid: op.pid });
  }
  // Closed by an earlier recover whose repair was incomplete: retried by every full recover until clean.
  const unrepaired = options.onlyDeadOperations
    ? []
    : (await catalog.listOperations({ state: ['failed'], recovered: false })).reverse();
  if (options.onlyDeadOperations && dead.length === 0) return report;
  ctx.events.phase('recover');

  const vc = await ctx.vcenter();
  for (const op of [...dead, ...unrepaired]) {
    const step: RecoveryStep = { ctx, vc, op, entries: await catalog.journalEntries(op.id), report, dryRun };
    const handler = op.kind === 'backup' ? recoverBackupOperation : operationRecovery[op.kind];
    let clean = false;
    try {
      if (handler) clean = await handler(step);
      else if (op.kind === 'delete' || op.kind === 'expire' || op.kind === 'recover') clean = true;
      else report.errors.push(`operation ${op.id}: no recovery for operations of kind ${op.kind}`);
    } catch (err) {
      // One operation's failure must not stop the repair of the others: it is retried by the next recover.
      clean = false;
      report.errors.push(`${op.kind} ${op.id}: ${errorMessage(err)}`);
    }
    try {
      // Closed whatever the repair achieved (finishOperation also frees its locks): a lock must never
      // outlive its holder. An incomplete repair stays listed as failed and unrecovered for the next recover.
      if (!dryRun) await closeRecovered(ctx, op, clean);
    } catch (err) {
      clean = false;
      report.errors.push(`${op.kind} ${op.id}: ${errorMessage(err)}`);
    }
    (clean ? report.operations : report.stillOpen).push({ id: op.id, kind: op.kind });
  }

  if (!options.onlyDeadOperations) {
    await sweep(ctx, report);
    for (const extra of extraSweeps) await extra(ctx, report);
    await markLostBackups(ctx, report);
  }
  return report;
}

/** Closes a dead operation (a concurrent recover may have closed it first) and marks it repaired when it is. */
async function closeRecovered(ctx: EngineContext, op: Operation, clean: boolean): Promise<void> {
  if (op.state === 'running') {
    try {
      await ctx.catalog.finishOperation(op.id, 'failed');
    } catch (err) {
      if (!(err instanceof ConflictError && err.code === 'OPERATION_FINISHED')) throw err;
    }
  }
  if (clean) await ctx.catalog.markRecovered(op.id);
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
  const snapshotName = vmSnapshotName(op.id, catalog.id);
  const label = ownedLabel(op.id, catalog.id);

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
        if (t.snapshot && state.snapshots.some((s) => s.name === snapshotName)) {
          report.removedVmSnapshots.push({ vm: t.name, snapshot: snapshotName });
        }
        if (t.resume && state.powerState === 'suspended') report.poweredOnVms.push(t.name);
        continue;
      }
      const done = await releaseVm(vc, vmId, {
        ...(t.snapshot ? { snapshotName } : {}),
        resume: t.resume,
      });
      for (let i = 0; i < done.removedSnapshots; i++) {
        report.removedVmSnapshots.push({ vm: t.name, snapshot: snapshotName });
      }
      if (done.poweredOn) report.poweredOnVms.push(t.name);
    } catch (err) {
      if (isGone(err)) continue; // The VM is gone: nothing of ours is left on it.
      clean = false;
      report.errors.push(`${t.name}: ${errorMessage(err)}`);
    }
  }

  const backup = await catalog.findBackup(op.id);
  const keepsSnapshots = backup !== undefined && (backup.state === 'complete' || backup.state === 'partial');
  if (!keepsSnapshots) {
    const arrays = new Set(entries.filter((e) => e.action === 'array-snapshot').map((e) => e.target));
    for (const arrayName of arrays) {
      try {
        const array = await ctx.array(arrayName);
        for (const s of await array.listSnapshots()) {
          if (s.label !== label) continue;
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
      await catalog.updateBackup(backup);
    }
  }
  return clean;
}

/**
 * Catches what no journal step names (an operation whose repair was lost, a catalog restored from an older
 * copy): VM snapshots and array snapshots this catalog's operations made (ids.ts `ownershipOf`: its catalog
 * id and an operation of its journal) that no complete, partial or running backup owns, unless a live
 * operation is making them right now. What looks like snapkeeper's but is not provably this catalog's is
 * reported as foreign and left alone; anything else (an admin's, another tool's) is not even reported.
 */
async function sweep(ctx: EngineContext, report: RecoverReport): Promise<void> {
  const vc = await ctx.vcenter();
  // State first, then the set of live operations: an operation that made something we listed began before
  // it, so it is in the set (or has finished and owns it) — no race with a backup starting meanwhile.
  const inventory = await vc.inventory();
  let liveIds = await liveOperationIds(ctx);
  for (const vm of inventory.vms) {
    for (const s of vm.snapshots) {
      const owner = await ownershipOf(parseVmSnapshotName(s.name), ctx.catalog);
      if (owner.owner === 'foreign') {
        reportForeign(report, { kind: 'vm-snapshot', where: vm.name, name: s.name, why: owner.why });
        continue;
      }
      if (owner.owner !== 'ours' || liveIds.has(owner.operationId)) continue;
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
    const snapshots = await array.listSnapshots();
    // Listing, then live operations, then owners: a snapshot listed was made by an operation begun before the
    // listing. If that operation is not live at the second read, it had finished (or died) before it, so
    // its record's snapshots are in the catalog by the third read. Reading owners first would lose the
    // snapshot of a backup that records it and finishes between the reads. Running backups count as owners
    // too (a backup records its snapshot before it turns complete); the running records of dead operations
    // were marked failed by the operation pass above.
    liveIds = await liveOperationIds(ctx);
    const owned = await ctx.catalog.ownedSnapshotIds(name, ['complete', 'partial', 'running', 'lost']);
    for (const s of snapshots) {
      // A backup of this catalog owns it (one recorded before catalog ids included): nothing to decide.
      if (owned.has(s.id)) continue;
      const owner = await ownershipOf(parseLabel(s.label), ctx.catalog);
      if (owner.owner === 'foreign') {
        reportForeign(report, { kind: 'array-snapshot', where: name, name: s.id, why: owner.why });
        continue;
      }
      if (owner.owner !== 'ours' || liveIds.has(owner.operationId)) continue;
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

/** Adds a foreign find to the report once (the journal pass and the sweeps may both come across it). */
export function reportForeign(report: RecoverReport, thing: ForeignThing): void {
  if (report.foreign.some((f) => f.kind === thing.kind && f.where === thing.where && f.name === thing.name))
    return;
  report.foreign.push(thing);
}

/** Ids of the operations that are running and alive now (their lease is fresh, their pid exists here). */
export async function liveOperationIds(ctx: EngineContext): Promise<Set<string>> {
  const now = ctx.now();
  return new Set(
    (await ctx.catalog.unfinishedOperations()).filter((op) => operationAlive(op, now)).map((op) => op.id),
  );
}

/**
 * SPEC: the catalog never promises a backup the arrays no longer hold. A complete or partial backup one of
 * whose array snapshots is gone (deleted by hand, by another tool, an array rebuilt) is marked `lost`, with
 * when and which, and is never offered as restorable again. Records are read before the arrays are listed:
 * a snapshot of a backup recorded complete existed before the listing, so missing from it means deleted;
 * a backup deleted meanwhile (record first, then snapshot) is found gone when it is re-read, and skipped.
 * An array that cannot be listed decides nothing.
 */
async function markLostBackups(ctx: EngineContext, report: RecoverReport): Promise<void> {
  const { catalog } = ctx;
  const backups = await catalog.listBackups({ state: ['complete', 'partial'] });
  if (backups.length === 0) return;
  const present = await presentSnapshots(ctx, (array, message) =>
    report.errors.push(`array ${array}: cannot check which backups it still holds: ${message}`),
  );
  for (const b of backups) {
    const missing = missingSnapshots(b, present);
    if (missing.length === 0) continue;
    if (!report.dryRun && !(await markLost(ctx, b, missing))) continue;
    report.lostBackups.push({ id: b.id, missing });
  }
}

/** Marks one backup lost if it is still restorable when re-read; false when it changed meanwhile. */
async function markLost(ctx: EngineContext, listed: BackupRecord, missing: SnapshotRef[]): Promise<boolean> {
  const reason = `array snapshot${missing.length > 1 ? 's' : ''} ${missing.map((m) => `${m.array}/${m.snapshotId}`).join(', ')} no longer exist${missing.length > 1 ? '' : 's'}`;
  return (await ctx.catalog.markBackupLost(listed.id, { at: ctx.now().toISOString(), reason })) !== undefined;
}
