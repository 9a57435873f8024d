import type { QuiescePolicy } from '../../model/modes.js';
import {
  decideQuiesce,
  type PrepareAction,
  QUIESCE_FAILED,
  type QuiesceDecision,
} from '../../rules/index.js';
import { type VcenterSession, VsphereFault } from '../../vsphere/index.js';
import type { EngineContext } from '../context.js';
import type { VmRun } from './backup-record.js';

/** The VM snapshot a SNAPSHOT mode takes, with its name and description already chosen by the run. */
export interface VmSnapshotRequest {
  name: string;
  description: string;
  action: Extract<PrepareAction, { kind: 'create-vm-snapshot' }>;
  onQuiesceFailure: QuiescePolicy;
}

/**
 * Creates the VM snapshot of a SNAPSHOT mode; when the quiesce it asks for is impossible (Tools known not to
 * run: nothing is tried in vain) or vCenter answers with a quiesce fault, the task's onQuiesceFailure decides
 * between a snapshot without quiesce (recorded crash consistent, with a QUIESCE_FAILED warning) and failing
 * the VM. Returns the snapshot id.
 */
export async function createVmSnapshotWithFallback(
  ctx: EngineContext,
  vc: VcenterSession,
  run: VmRun,
  request: VmSnapshotRequest,
): Promise<string> {
  const { vm } = run.plan;
  const create = (quiesce: boolean): Promise<string> =>
    vc.createVmSnapshot(vm.id, {
      name: request.name,
      description: request.description,
      memory: request.action.memory,
      quiesce,
    });
  const input = {
    vmName: vm.name,
    planned: request.action,
    tools: vm.tools,
    policy: request.onQuiesceFailure,
  };
  const before = decideQuiesce(input);
  if (before.outcome !== 'as-planned') return fallBack(ctx, run, before, create);
  try {
    return await create(request.action.quiesce);
  } catch (err) {
    if (!(err instanceof VsphereFault)) throw err;
    const after = decideQuiesce({ ...input, fault: { type: err.faultType, message: err.message } });
    if (after.outcome === 'as-planned') throw err;
    return fallBack(ctx, run, after, create);
  }
}

async function fallBack(
  ctx: EngineContext,
  run: VmRun,
  decision: Exclude<QuiesceDecision, { outcome: 'as-planned' }>,
  create: (quiesce: boolean) => Promise<string>,
): Promise<string> {
  const { vm } = run.plan;
  if (decision.outcome === 'fail') {
    // The record says why beside VM_FAILED, so a report filtering on QUIESCE_FAILED finds every such VM.
    run.record.warnings.push({ code: QUIESCE_FAILED, message: `VM ${vm.name}: ${decision.reason}` });
    throw new Error(decision.reason);
  }
  ctx.events.item(vm.name, 'quiesce impossible: creating a VM snapshot without quiesce');
  const id = await create(false);
  // Only once the crash-consistent snapshot exists: a VM whose retry fails too is not-prepared, not crash.
  run.record.consistency = decision.consistency;
  run.record.warnings.push(decision.warning);
  return id;
}
