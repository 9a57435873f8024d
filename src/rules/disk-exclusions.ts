import type { DiskExclusionRule } from '../config/schema.js';
import type { DiskRecord } from '../model/backup.js';
import { matchesPattern } from './selection.js';

/**
 * SPEC section 2 with issue 11: marks the disks a task's `exclude.disks` names as excluded (`included: false`,
 * `exclusion: 'task'`, a note naming the task). The array snapshot still holds them (a volume snapshot cannot
 * leave a file out); the record is what keeps restore, attach and offload away from them. A disk already out
 * of the backup (an RDM) keeps its own reason: its data was never captured, which is the stronger statement.
 */
export function applyDiskExclusions(
  vmName: string,
  disks: readonly DiskRecord[],
  rules: readonly DiskExclusionRule[],
  taskName: string,
): DiskRecord[] {
  const labels = new Set(rules.filter((r) => matchesPattern(vmName, r.vm)).flatMap((r) => r.disks));
  return disks.map((disk) => {
    if (!disk.included || !labels.has(disk.label)) return disk;
    const { consistency: _consistency, ...rest } = disk;
    return { ...rest, included: false, exclusion: 'task', note: `excluded by task ${taskName}` };
  });
}

/** A rule of `exclude.disks` that excluded nothing in a run: its VM glob or one of its labels matched nothing. */
export interface UnmatchedDiskExclusion {
  vm: string;
  /** Empty when no selected VM matches `vm`; else the labels no matching VM has. */
  labels: string[];
}

/**
 * The parts of `exclude.disks` that match nothing among the VMs of a run, so a typo shows up as a warning
 * instead of a disk silently backed up: a VM glob matching no selected VM, or a label no matching VM has.
 */
export function unmatchedDiskExclusions(
  vms: readonly { name: string; disks: readonly { label: string }[] }[],
  rules: readonly DiskExclusionRule[],
): UnmatchedDiskExclusion[] {
  const out: UnmatchedDiskExclusion[] = [];
  for (const rule of rules) {
    const matching = vms.filter((vm) => matchesPattern(vm.name, rule.vm));
    if (matching.length === 0) {
      out.push({ vm: rule.vm, labels: [] });
      continue;
    }
    const labels = rule.disks.filter((l) => !matching.some((vm) => vm.disks.some((d) => d.label === l)));
    if (labels.length > 0) out.push({ vm: rule.vm, labels });
  }
  return out;
}

/** One line for the DISK_EXCLUSION_UNMATCHED warning. */
export function describeUnmatchedDiskExclusions(unmatched: readonly UnmatchedDiskExclusion[]): string {
  return unmatched
    .map((u) =>
      u.labels.length === 0
        ? `no VM of this run matches ${u.vm}`
        : `no VM matching ${u.vm} has disk ${u.labels.join(', ')}`,
    )
    .join('; ');
}
