import { errorMessage } from '../../errors.js';
import type { QuiescePolicy } from '../../model/modes.js';
import { runLimited } from '../../util/scheduler.js';
import type { VcenterSession } from '../../vsphere/index.js';
import type { EngineContext } from '../context.js';
import type { JournalWrite } from '../journal/actions.js';
import { journalAll } from '../journal/write.js';
import { releaseVm } from '../release.js';
import { failPrepare, type VmRun } from './backup-record.js';
import { createVmSnapshotWithFallback } from './quiesce-fallback.js';

/**
 * Holding the VMs of a backup run and letting them go: the journal of intents, the prepare (VM snapshot or
 * suspend, in parallel within the global and per-host limits) and the release, which records each held VM's
 * quiesce window.
 */

/** The backup being prepared: its id (the operation's), the VM snapshot name, the VMs. */
export interface HoldRun {
  backupId: string;
  snapshotName: string;
  runs: VmRun[];
  /** What a VM whose quiesce is impossible or fails gets: the task's policy, else the configured default. */
  onQuiesceFailure: QuiescePolicy;
}

/** Journals every intent, then prepares each VM; one that fails is released at once and reported. */
export async function prepareAll(
  ctx: EngineContext,
  vc: VcenterSession,
  hold: HoldRun,
  signal: AbortSignal | undefined,
): Promise<void> {
  ctx.events.phase('prepare');
  await journalIntents(ctx, hold);
  await runLimited(hold.runs, limits(ctx), hostKey, async (run) => {
    run.quiesceStart = ctx.now();
    if (signal?.aborted) {
      failPrepare(run, 'backup interrupted before this VM was prepared');
      return;
    }
    try {
      await prepareOne(ctx, vc, hold, run);
    } catch (err) {
      failPrepare(run, `could not prepare (${run.plan.decision.effectiveMode}): ${errorMessage(err)}`);
      ctx.events.item(run.plan.vm.name, `failed: ${errorMessage(err)}`);
      // Release at once: the call may have half-succeeded (a snapshot made before the connection dropped).
      await releaseOne(ctx, vc, hold.snapshotName, run);
    }
  });
}

/**
 * Write-ahead intent for every VM about to be held, in one transaction (one sync, not one per VM):
 * recovery re-reads each named VM's live state, so no per-VM completion record is needed.
 */
async function journalIntents(ctx: EngineContext, hold: HoldRun): Promise<void> {
  await journalAll(
    ctx.catalog,
    hold.backupId,
    hold.runs.flatMap((run): JournalWrite[] => {
      const action = run.plan.decision.before;
      if (action === null) return [];
      return [
        {
          action: action.kind === 'suspend' ? 'suspend' : 'vm-snapshot',
          target: run.plan.vm.id,
          data: { vm: run.plan.vm.name, name: hold.snapshotName },
        },
      ];
    }),
  );
}

async function prepareOne(ctx: EngineContext, vc: VcenterSession, hold: HoldRun, run: VmRun): Promise<void> {
  const { vm, decision } = run.plan;
  const action = decision.before;
  if (action?.kind === 'create-vm-snapshot') {
    ctx.events.item(vm.name, 'creating VM snapshot');
    run.vmSnapshotId = await createVmSnapshotWithFallback(ctx, vc, run, {
      name: hold.snapshotName,
      description: `snapkeeper backup ${hold.backupId}; removed right after the array snapshot`,
      action,
      onQuiesceFailure: hold.onQuiesceFailure,
    });
  } else if (action?.kind === 'suspend') {
    ctx.events.item(vm.name, 'suspending');
    await vc.suspendVm(vm.id);
    run.suspended = true;
  }
  run.prepared = true;
  ctx.events.item(vm.name, 'prepared');
}

/** Releases every prepared VM; false when one could not be released (the run then stays open for recover). */
export async function releaseAll(
  ctx: EngineContext,
  vc: VcenterSession,
  snapshotName: string,
  runs: VmRun[],
): Promise<boolean> {
  ctx.events.phase('release');
  const toRelease = runs.filter((r) => r.prepared);
  const results = await runLimited(toRelease, limits(ctx), hostKey, (run) =>
    releaseOne(ctx, vc, snapshotName, run),
  );
  return results.every((r) => r.status === 'fulfilled' && r.value);
}

function limits(ctx: EngineContext): { global: number; perKey: number } {
  return { global: ctx.config.defaults.concurrency.global, perKey: ctx.config.defaults.concurrency.perHost };
}

function hostKey(run: VmRun): string {
  return run.plan.vm.host;
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
  if (decision.before === null) return true;
  ctx.events.item(vm.name, 'releasing');
  let released = true;
  try {
    await releaseDirect(vc, run, decision.before.kind);
    ctx.events.item(vm.name, 'released');
  } catch {
    // The direct call failed or half-succeeded: fall back to the idempotent release that reads the VM's
    // state first and retries with backoff.
    try {
      await releaseVm(vc, vm.id, { snapshotName, resume: decision.before.kind === 'suspend' });
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
  recordQuiesceWindow(ctx, run);
  return released;
}

/**
 * Only VMs that were held have a quiesce window; powered-off, suspended and ASIS VMs never wait, and one
 * whose prepare failed was never held.
 */
function recordQuiesceWindow(ctx: EngineContext, run: VmRun): void {
  if (run.notPrepared) return;
  const start = run.quiesceStart ?? ctx.now();
  const end = ctx.now();
  run.record.quiesce = {
    start: start.toISOString(),
    end: end.toISOString(),
    ms: end.getTime() - start.getTime(),
  };
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
