import type { Consistency, Warning } from '../model/backup.js';
import type { ToolsState } from '../model/inventory.js';
import type { QuiescePolicy } from '../model/modes.js';
import type { PrepareAction } from './modes.js';

/** Warning code of a VM backed up crash consistent because its quiesce was impossible or failed. */
export const QUIESCE_FAILED = 'QUIESCE_FAILED';

/**
 * vim25 faults of a quiesced CreateSnapshot that mean "the guest could not be quiesced", not "vCenter could
 * not snapshot": only these let a crash-consistent snapshot be tried again.
 */
export const QUIESCE_FAULT_TYPES: readonly string[] = [
  'ToolsUnavailable',
  'ApplicationQuiesceFault',
  'FilesystemQuiesceFault',
];

export interface QuiesceInput {
  vmName: string;
  /** The planned prepare action (decideMode's `before`). */
  planned: PrepareAction | null;
  /** Tools state from the inventory; undefined when vCenter did not report it. */
  tools: ToolsState | undefined;
  /** The vim25 fault type and message of a quiesced CreateSnapshot that failed; undefined before trying. */
  fault?: { type: string; message: string };
  policy: QuiescePolicy;
}

/**
 * `as-planned`: nothing to change (no quiesce planned, or Tools run and nothing failed yet; or the fault is
 * not a quiesce fault, which fails the VM the usual way). `without-quiesce`: snapshot again (or at once)
 * without quiesce, recorded crash consistent with the warning. `fail`: the VM fails with `reason`.
 */
export type QuiesceDecision =
  | { outcome: 'as-planned' }
  | { outcome: 'without-quiesce'; consistency: Consistency; warning: Warning }
  | { outcome: 'fail'; reason: string };

function toolsReason(tools: ToolsState): string {
  return tools === 'notInstalled' ? 'VMware Tools are not installed' : 'VMware Tools are not running';
}

/**
 * Issue 11: whether a VM whose mode asks for a quiesced snapshot gets it, falls back to a crash-consistent
 * snapshot or fails. Called before the snapshot (Tools known not to run: nothing is tried in vain) and after
 * a quiesced CreateSnapshot failed (the fault decides).
 */
export function decideQuiesce(input: QuiesceInput): QuiesceDecision {
  const { vmName, planned, tools, fault, policy } = input;
  if (planned?.kind !== 'create-vm-snapshot' || !planned.quiesce) return { outcome: 'as-planned' };
  let reason: string;
  if (fault !== undefined) {
    if (!QUIESCE_FAULT_TYPES.includes(fault.type)) return { outcome: 'as-planned' };
    // vSphere fault messages already name their type; others get it added.
    reason = `quiesce failed: ${fault.message.includes(fault.type) ? fault.message : `${fault.type}: ${fault.message}`}`;
  } else if (tools === 'notRunning' || tools === 'notInstalled') {
    reason = toolsReason(tools);
  } else {
    return { outcome: 'as-planned' };
  }
  if (policy === 'fail') {
    return { outcome: 'fail', reason: `cannot quiesce: ${reason} (onQuiesceFailure: fail)` };
  }
  return {
    outcome: 'without-quiesce',
    consistency: 'crash',
    warning: {
      code: QUIESCE_FAILED,
      message: `VM ${vmName}: ${reason}; backed up crash consistent without quiesce (onQuiesceFailure: crash-consistent)`,
    },
  };
}
