import type { JournalEntry, Operation, OperationKind } from '../catalog/index.js';
import { errorMessage } from '../errors.js';
import type { VcenterSession } from '../vsphere/session.js';
import { detachOne } from './attach.js';
import type { EngineContext } from './context.js';
import { type Ownership, ownershipOf, parseLabel } from './ids.js';
import type { MountData } from './mount.js';
import { unmountOne } from './mount.js';
import { liveOperationIds, type RecoverReport, reportForeign } from './recover.js';
import { detachAllAndRemoveDatastore, isMountedDatastore, mountedDatastorePrefix } from './restore-common.js';
import { undoJournal } from './restore-undo.js';

/** What recovering one interrupted operation gets: its journal, the report to fill, and whether to act. */
export interface RecoveryStep {
  ctx: EngineContext;
  vc: VcenterSession;
  op: Operation;
  entries: JournalEntry[];
  report: RecoverReport;
  dryRun: boolean;
}

/**
 * Undoes (or finishes) an interrupted operation of one kind from its journal. Returns true when nothing of
 * it is left, so the operation can be closed; false keeps it open for the next recover. Must be idempotent.
 */
export type OperationRecovery = (step: RecoveryStep) => Promise<boolean>;

/**
 * Restore, mount and attach: an operation that reached `commit` is only finalized (old files of a replaced
 * VM deleted); an unmount or detach that began is finished (roll forward: the user asked to let go); anything
 * else is undone step by step from its journal (restore-undo.ts), the same code the operation's own failure
 * path runs.
 */
async function recoverJournaled({ ctx, vc, op, entries, report, dryRun }: RecoveryStep): Promise<boolean> {
  const committed = entries.some((e) => e.action === 'commit');
  const forward = entries.filter((e) => e.action === 'unmount.begin' || e.action === 'detach.begin');
  let clean = true;
  if (!committed && forward.length > 0) {
    for (const e of forward) {
      const id = String(e.data.mountId ?? e.data.attachId);
      const record = (await ctx.catalog.listMounts()).find((m) => m.id === id);
      if (!record) continue;
      const what = `${op.kind} ${op.id}: ${e.action === 'unmount.begin' ? 'finish unmounting' : 'finish detaching'} ${id}`;
      report.actions.push(`${dryRun ? 'would ' : ''}${what}`);
      if (dryRun) continue;
      try {
        if (e.action === 'unmount.begin') await unmountOne(ctx, vc, record);
        else await detachOne(ctx, vc, record);
      } catch (err) {
        clean = false;
        report.errors.push(`${what}: ${errorMessage(err)}`);
      }
    }
    return clean;
  }
  const outcome = await undoJournal(ctx, vc, entries, { dryRun });
  report.actions.push(...outcome.actions.map((a) => `${op.kind} ${op.id}: ${a}`));
  report.errors.push(...outcome.errors.map((a) => `${op.kind} ${op.id}: ${a}`));
  return outcome.clean;
}

/** Recovery per operation kind other than backup (which recover.ts handles itself). */
export const operationRecovery: Partial<Record<OperationKind, OperationRecovery>> = {
  restore: recoverJournaled,
  mount: recoverJournaled,
  attach: recoverJournaled,
};

/**
 * Mounted datastores and array clones that no mount record owns and no live operation is making: what a
 * crash left that no journal step names. Only what this catalog made is touched: clones whose label carries
 * its catalog id and an operation of its journal (ids.ts `ownershipOf`), and datastores named
 * `snapkeeper-<backup id>-<datastore>` (isMountedDatastore; a user's `snapkeeper-data` is left alone) that
 * point into such a clone. Another catalog's (or an earlier release's) are reported as foreign and left
 * alone. Disks a VM still has on a stray datastore are detached first (their files stay in the clone until
 * it is deleted).
 */
async function sweepMounts(ctx: EngineContext, report: RecoverReport): Promise<void> {
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
  const mounts = (await ctx.catalog.listMounts()).filter((m) => m.kind === 'datastore');
  const ownedDatastores = new Set(
    mounts.flatMap((m) => ((m.data as unknown as MountData).datastores ?? []).map((d) => d.name)),
  );
  const ownedClones = new Set(
    mounts.flatMap((m) =>
      ((m.data as unknown as MountData).clones ?? []).map((c) => `${c.array}/${c.cloneId}`),
    ),
  );
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

/** Sweeps run by a full `recover` after the journals: leftovers no journal names (clones, mounted datastores). */
export const extraSweeps: ((ctx: EngineContext, report: RecoverReport) => Promise<void>)[] = [sweepMounts];
