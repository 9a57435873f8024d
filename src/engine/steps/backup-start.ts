import { operationAlive } from '../../catalog/index.js';
import { errorMessage, LockedError } from '../../errors.js';
import type { BackupRecord } from '../../model/backup.js';
import { isFault, type VcenterSession } from '../../vsphere/index.js';
import type { EngineContext } from '../context.js';
import { ownershipOf, parseVmSnapshotName } from '../ids.js';
import type { BackupPlan } from '../plan.js';

/**
 * The start of a backup run: what it locks, the refusal of a run that a live one would collide with (before
 * anything changes), and the removal of VM snapshots earlier runs of this catalog left on its VMs.
 */

/** The resources a run locks: each of its VMs and each volume of its consistency group. */
export function lockResources(plan: BackupPlan): string[] {
  return [
    ...plan.vms.map((p) => `vm:${p.vm.id}`),
    ...plan.groups.flatMap((g) => g.volumes.map((v) => `volume:${g.array}/${v}`)),
  ];
}

/**
 * Refuses the run before anything changes when a live run holds one of its VMs or volumes. The lock itself
 * is taken later (after the repair of dead runs, whose stale locks it takes over); this only makes a
 * refusal happen before that repair.
 */
export async function assertNotLockedByLiveRun(ctx: EngineContext, resources: string[]): Promise<void> {
  const wanted = new Set(resources);
  const now = await ctx.catalogNow();
  for (const op of await ctx.catalog.unfinishedOperations()) {
    if (!operationAlive(op, now)) continue;
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

/**
 * SPEC 2: the next run repairs leftovers. VM snapshots on the selected VMs that this catalog's backups made
 * (ids.ts ownershipOf: its catalog id, an operation of its journal) and whose backup is no longer live (a
 * recovery that could not finish) are removed before this run prepares the VMs (it holds their locks now).
 * Another catalog's, or an earlier release's, are left alone. Read from the inventory the plan was made
 * from: no extra round trip per VM.
 */
export async function removeStrayVmSnapshots(
  ctx: EngineContext,
  vc: VcenterSession,
  plan: BackupPlan,
  record: BackupRecord,
): Promise<void> {
  const now = await ctx.catalogNow();
  const live = new Set(
    (await ctx.catalog.unfinishedOperations()).filter((op) => operationAlive(op, now)).map((op) => op.id),
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
