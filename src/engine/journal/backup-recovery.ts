import type { Operation } from '../../catalog/index.js';
import { errorMessage } from '../../errors.js';
import { isGone, type VcenterSession } from '../../vsphere/index.js';
import type { EngineContext } from '../context.js';
import { ownedLabel, vmSnapshotName } from '../ids.js';
import { releaseVm } from '../release.js';
import { groupAlive, killHookProcess } from '../steps/hooks.js';
import type { TypedEntry } from './actions.js';
import { type BackupAction, dispatch, type RecoverReport, type Recovery } from './report.js';

/**
 * The recovery of backups' journal actions: VMs released first, then the array snapshots of a backup that did
 * not finish.
 */

/** One backup's repair in progress: it never stops at a failure (every VM is released that can be). */
interface BackupRun {
  ctx: EngineContext;
  vc: VcenterSession;
  op: Operation;
  report: RecoverReport;
  dryRun: boolean;
  clean: boolean;
  /** The backup finished (complete or partial): its array snapshots are the backup, never deleted. */
  keepsSnapshots: boolean;
}

/** Releases a VM a backup held (snapshot removed, or resumed); a VM that is gone holds nothing of ours. */
async function releaseHeld(
  r: BackupRun,
  e: TypedEntry<'vm-snapshot' | 'suspend'>,
  hold: { snapshot: boolean; resume: boolean },
): Promise<void> {
  const name = e.data.vm ?? e.target;
  const snapshotName = vmSnapshotName(r.op.id, r.ctx.catalog.id);
  try {
    if (r.dryRun) {
      const state = await r.vc.vmState(e.target);
      if (hold.snapshot && state.snapshots.some((s) => s.name === snapshotName)) {
        r.report.removedVmSnapshots.push({ vm: name, snapshot: snapshotName });
      }
      if (hold.resume && state.powerState === 'suspended') r.report.poweredOnVms.push(name);
      return;
    }
    const done = await releaseVm(r.vc, e.target, {
      ...(hold.snapshot ? { snapshotName } : {}),
      resume: hold.resume,
    });
    for (let i = 0; i < done.removedSnapshots; i++) {
      r.report.removedVmSnapshots.push({ vm: name, snapshot: snapshotName });
    }
    if (done.poweredOn) r.report.poweredOnVms.push(name);
  } catch (err) {
    if (isGone(err)) return;
    r.clean = false;
    r.report.errors.push(`${name}: ${errorMessage(err)}`);
  }
}

export const backupRecovery: { [A in BackupAction]: Recovery<BackupRun, A> } = {
  'vm-snapshot': { kind: 'undo', run: (r, e) => releaseHeld(r, e, { snapshot: true, resume: false }) },
  suspend: { kind: 'undo', run: (r, e) => releaseHeld(r, e, { snapshot: false, resume: true }) },
  'array-snapshot': {
    kind: 'undo',
    // Found by label, not by the entry's snapshot id: a crash may come before the id was journaled.
    run: async (r, e) => {
      if (r.keepsSnapshots) return;
      const label = ownedLabel(r.op.id, r.ctx.catalog.id);
      try {
        const array = await r.ctx.array(e.target);
        for (const s of await array.listSnapshots()) {
          if (s.label !== label) continue;
          if (r.report.deletedArraySnapshots.some((d) => d.array === e.target && d.snapshotId === s.id))
            continue;
          if (!r.dryRun) await array.deleteSnapshot(s.id);
          r.report.deletedArraySnapshots.push({ array: e.target, snapshotId: s.id });
        }
      } catch (err) {
        r.clean = false;
        r.report.errors.push(`array ${e.target}: ${errorMessage(err)}`);
      }
    },
  },
  'hook.run': {
    kind: 'undo',
    // A hook of a run that died is still running in its own process group (spawned detached): end it.
    run: async (r, e) => {
      const { pid, pgid, startTicks } = e.data;
      if (pid === undefined || pgid === undefined) return;
      const hook = { pid, pgid, ...(startTicks !== undefined ? { startTicks } : {}) };
      const killed = r.dryRun ? groupAlive(pgid) : await killHookProcess(hook);
      if (killed)
        r.report.actions.push(`killed the ${e.target} hook of backup ${r.op.id} (process group ${pgid})`);
    },
  },
  'delete-snapshot': {
    kind: 'none',
    why: "only a failed backup deletes its snapshots; what is left is found by label by array-snapshot's undo",
  },
};

/** Undoes what a backup's journal says it did: VMs released first, then its array snapshots unless it finished. */
export async function recoverBackup(
  ctx: EngineContext,
  vc: VcenterSession,
  op: Operation,
  entries: TypedEntry[],
  report: RecoverReport,
): Promise<boolean> {
  const { catalog } = ctx;
  const backup = await catalog.findBackup(op.id);
  const run: BackupRun = {
    ctx,
    vc,
    op,
    report,
    dryRun: report.dryRun,
    clean: true,
    keepsSnapshots: backup !== undefined && (backup.state === 'complete' || backup.state === 'partial'),
  };
  // VMs first: a suspended VM or a VM snapshot hurts production, a stray array snapshot only costs space.
  const holdsVm = (e: TypedEntry) => e.action === 'vm-snapshot' || e.action === 'suspend';
  for (const e of [...entries.filter(holdsVm), ...entries.filter((x) => !holdsVm(x))]) {
    await dispatch(backupRecovery, run, e, entries);
  }
  if (backup && backup.state === 'running') {
    report.failedBackups.push(backup.id);
    if (!report.dryRun) {
      backup.state = 'failed';
      backup.error = 'interrupted: the process ended before the backup finished; repaired by recover';
      backup.finishedAt ??= ctx.now().toISOString();
      backup.snapshots = [];
      await catalog.updateBackup(backup);
    }
  }
  return run.clean;
}
