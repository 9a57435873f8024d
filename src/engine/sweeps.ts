import { operationAlive } from '../catalog/index.js';
import { errorMessage } from '../errors.js';
import type { BackupRecord } from '../model/backup.js';
import { isGone } from '../vsphere/index.js';
import type { EngineContext } from './context.js';
import { type Ownership, ownershipOf, parseLabel, parseVmSnapshotName } from './ids.js';
import type { ForeignThing, RecoverReport } from './journal/recovery.js';
import { detachAllAndRemoveDatastore, isMountedDatastore, mountedDatastorePrefix } from './restore-common.js';
import { missingSnapshots, presentSnapshots, type SnapshotRef } from './snapshot-presence.js';
import { type MountData, mountDataOf } from './steps/mounts.js';

/**
 * The sweeps of a full `recover`, after the journals: what no journal step names (VM snapshots, array
 * snapshots, clones and mounted datastores this catalog made and nothing owns), and backups whose array
 * snapshot is gone.
 */

/**
 * Catches what no journal step names (an operation whose repair was lost, a catalog restored from an older
 * copy): VM snapshots and array snapshots this catalog's operations made (ids.ts `ownershipOf`: its catalog
 * id and an operation of its journal) that no complete, partial or running backup owns, unless a live
 * operation is making them right now. What looks like snapkeeper's but is not provably this catalog's is
 * reported as foreign and left alone; anything else (an admin's, another tool's) is not even reported.
 */
export async function sweepSnapshots(ctx: EngineContext, report: RecoverReport): Promise<void> {
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
  const now = await ctx.catalogNow();
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
export async function markLostBackups(ctx: EngineContext, report: RecoverReport): Promise<void> {
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

/**
 * Mounted datastores and array clones that no mount record owns and no live operation is making: what a
 * crash left that no journal step names. Only what this catalog made is touched: clones whose label carries
 * its catalog id and an operation of its journal (ids.ts `ownershipOf`), and datastores named
 * `snapkeeper-<backup id>-<datastore>` (isMountedDatastore; a user's `snapkeeper-data` is left alone) that
 * point into such a clone. Another catalog's (or an earlier release's) are reported as foreign and left
 * alone. Disks a VM still has on a stray datastore are detached first (their files stay in the clone until
 * it is deleted).
 */
export async function sweepMounts(ctx: EngineContext, report: RecoverReport): Promise<void> {
  const vc = await ctx.vcenter();
  // State first, then the live operations: anything a live operation made is listed after it began.
  const inventory = await vc.inventory();
  const clonesByArray = new Map<
    string,
    Awaited<ReturnType<Awaited<ReturnType<EngineContext['array']>>['listClones']>>
  >();
  for (const [name, array] of await ctx.arrays()) clonesByArray.set(name, await array.listClones());
  const liveIds = await liveOperationIds(ctx);
  const liveSubjects = (await ctx.catalog.unfinishedOperations())
    .filter((op) => liveIds.has(op.id) && (op.kind === 'mount' || op.kind === 'attach'))
    .map((op) => op.subject ?? '');
  let mounts: MountData[];
  try {
    mounts = (await ctx.catalog.listMounts()).filter((m) => m.kind === 'datastore').map(mountDataOf);
  } catch (err) {
    // A record that cannot be read might own anything: nothing is swept until it is repaired.
    report.errors.push(`mounted datastores and clones not swept: ${errorMessage(err)}`);
    return;
  }
  const ownedDatastores = new Set(mounts.flatMap((m) => m.datastores.map((d) => d.name)));
  const ownedClones = new Set(mounts.flatMap((m) => m.clones.map((c) => `${c.array}/${c.cloneId}`)));
  const verb = report.dryRun ? 'would ' : '';

  const cloneOwner = async (url: string): Promise<Ownership> => {
    const path = url.replace(/^file:\/\//, '');
    for (const [arrayName, clones] of clonesByArray) {
      const where = await (await ctx.array(arrayName)).resolveExport(path);
      const c = where?.kind === 'clone' ? clones.find((x) => x.id === where.cloneId) : undefined;
      if (c) return await ownershipOf(parseLabel(c.label), ctx.catalog);
    }
    return { owner: 'foreign', why: 'it points into no clone of a configured array' };
  };
  for (const ds of inventory.datastores) {
    if (!(await isMountedDatastore(ctx, ds)) || ownedDatastores.has(ds.name)) continue;
    const owner = await cloneOwner(ds.url);
    if (owner.owner !== 'ours') {
      const why = owner.owner === 'foreign' ? owner.why : 'its clone is not one snapkeeper made';
      reportForeign(report, { kind: 'datastore', where: ds.hosts[0] ?? '', name: ds.name, why });
      continue;
    }
    if (liveSubjects.some((s) => s !== '' && ds.name.startsWith(mountedDatastorePrefix(s)))) continue;
    report.actions.push(`${verb}remove stray datastore ${ds.name}`);
    if (report.dryRun) continue;
    try {
      const host = inventory.hosts.find((h) => h.name === ds.hosts[0]);
      await detachAllAndRemoveDatastore(vc, inventory, ds, host?.id ?? '');
    } catch (err) {
      report.errors.push(`datastore ${ds.name}: ${errorMessage(err)}`);
    }
  }
  for (const [arrayName, clones] of clonesByArray) {
    const array = await ctx.array(arrayName);
    for (const c of clones) {
      if (ownedClones.has(`${arrayName}/${c.id}`)) continue;
      const owner = await ownershipOf(parseLabel(c.label), ctx.catalog);
      if (owner.owner === 'foreign') {
        reportForeign(report, { kind: 'clone', where: arrayName, name: c.id, why: owner.why });
        continue;
      }
      if (owner.owner !== 'ours' || liveIds.has(owner.operationId)) continue;
      report.actions.push(`${verb}delete stray clone ${arrayName}/${c.id}`);
      if (report.dryRun) continue;
      try {
        await array.deleteClone(c.id);
      } catch (err) {
        report.errors.push(`clone ${arrayName}/${c.id}: ${errorMessage(err)}`);
      }
    }
  }
}
