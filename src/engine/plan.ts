import type { Config } from '../config/load.js';
import type { Selection, TaskExclude } from '../config/schema.js';
import { UsageError } from '../errors.js';
import type { DiskRecord, Warning } from '../model/backup.js';
import type { Inventory, Vm } from '../model/inventory.js';
import type { BackupMode } from '../model/modes.js';
import {
  applyDiskExclusions,
  classifyDisks,
  consistencyGroup,
  decideMode,
  describeUnmatched,
  describeUnmatchedDiskExclusions,
  hasRdm,
  type ModeDecision,
  resolveRequestedMode,
  selectVms,
  unmatchedCriteria,
  unmatchedDiskExclusions,
} from '../rules/index.js';
import { ADHOC_TASK } from './ids.js';
import { mapConfiguredDatastores, type VolumesByArray } from './placement.js';

export interface VmPlan {
  vm: Vm;
  requestedMode: BackupMode;
  decision: ModeDecision;
  disks: DiskRecord[];
}

export interface ArrayGroup {
  array: string;
  volumes: string[];
  /** Datastore name -> volume names, for the datastores of this backup on this array. */
  datastores: Record<string, string[]>;
}

export interface BackupPlan {
  taskName: string;
  vms: VmPlan[];
  groups: ArrayGroup[];
  /** Where each datastore of the backup lives: array, volumes and the datastore's path below the volume. */
  datastoreLocations: Map<string, { array: string; volumes: string[]; subPath: string }>;
  /** Run-level warnings the plan found (SELECTION_UNMATCHED), for the backup record. */
  warnings: Warning[];
}

export interface PlanRequest {
  taskName: string;
  select: Selection;
  /** VMs left out (selection criteria) and disks left out of the VMs kept (`disks`). */
  exclude?: TaskExclude;
  taskMode?: BackupMode;
  modeOverride?: BackupMode;
  followedByOffload: boolean;
  /**
   * What a selection pattern matching no VM is: an `error` for names typed on the command line (a typo must
   * not shrink the backup silently), a `warning` for a task, so a nightly run still protects the VMs that
   * remain. Default: error for ad-hoc backups, warning for tasks.
   */
  unmatched?: 'error' | 'warning';
}

/**
 * Pure planning over fetched state: which VMs, in which mode, and which volumes form the consistency group.
 * Throws UsageError (nothing changed yet) for an empty selection, a command-line pattern matching no VM, or
 * datastores no array can snapshot.
 */
export function planBackup(
  config: Config,
  inventory: Inventory,
  volumesByArray: VolumesByArray,
  request: PlanRequest,
): BackupPlan {
  const unmatched = unmatchedCriteria(inventory, request.select);
  const what = describeUnmatched(unmatched);
  const vms = selectVms(inventory, request.select, request.exclude);
  if (vms.length === 0) {
    throw new UsageError(
      'SELECTION_EMPTY',
      `the selection of ${request.taskName} matches no VM (${JSON.stringify(request.select)})${what === '' ? '' : `; no VM matches ${what}`}`,
      { details: { unmatched } },
    );
  }
  const warnings: Warning[] = [];
  if (unmatched.length > 0) {
    const unmatchedIsError =
      (request.unmatched ?? (request.taskName === ADHOC_TASK ? 'error' : 'warning')) === 'error';
    if (unmatchedIsError) {
      throw new UsageError('SELECTION_UNMATCHED', `no VM matches ${what}; nothing was backed up`, {
        details: { unmatched },
      });
    }
    warnings.push({
      code: 'SELECTION_UNMATCHED',
      message: `the selection of ${request.taskName} names what matches no VM: ${what}`,
    });
  }
  const mapping = mapConfiguredDatastores(config, inventory.datastores, volumesByArray);
  const group = consistencyGroup(vms, mapping);
  if (group.unmappedDatastores.length > 0) {
    throw new UsageError(
      'DATASTORE_NOT_ON_ARRAY',
      `datastore(s) ${group.unmappedDatastores.join(', ')} of the selected VMs are not on any volume of the configured arrays (${config.arrays.map((a) => a.name).join(', ')}); map them under arrays[].datastores`,
    );
  }

  const requestedMode = resolveRequestedMode({
    ...(request.modeOverride ? { override: request.modeOverride } : {}),
    ...(request.taskMode ? { taskMode: request.taskMode } : {}),
    defaultMode: config.defaults.mode,
  });
  const vmPlans = vms.map((vm): VmPlan => {
    const decision = decideMode({
      vmName: vm.name,
      requested: requestedMode,
      powerState: vm.powerState,
      hasRdm: hasRdm(vm.disks),
      followedByOffload: request.followedByOffload,
    });
    return {
      vm,
      requestedMode,
      decision,
      disks: applyDiskExclusions(
        vm.name,
        classifyDisks(vm.disks, decision.effectiveMode, decision.consistency),
        request.exclude?.disks ?? [],
        request.taskName,
      ),
    };
  });
  warnings.push(...diskExclusionWarnings(vms, request));

  const datastoreLocations = new Map<string, { array: string; volumes: string[]; subPath: string }>();
  for (const name of group.datastores) {
    const loc = mapping.mapped.get(name);
    if (loc) datastoreLocations.set(name, loc);
  }
  const groups: ArrayGroup[] = [...group.byArray.entries()].map(([array, volumes]) => {
    const datastores: Record<string, string[]> = {};
    for (const [ds, loc] of datastoreLocations) if (loc.array === array) datastores[ds] = loc.volumes;
    return { array, volumes, datastores };
  });

  return { taskName: request.taskName, vms: vmPlans, groups, datastoreLocations, warnings };
}

/** DISK_EXCLUSION_UNMATCHED: a rule of exclude.disks that left nothing out in this run (a typo, a renamed disk). */
function diskExclusionWarnings(vms: readonly Vm[], request: PlanRequest): Warning[] {
  const unmatched = unmatchedDiskExclusions(vms, request.exclude?.disks ?? []);
  if (unmatched.length === 0) return [];
  return [
    {
      code: 'DISK_EXCLUSION_UNMATCHED',
      message: `the disk exclusions of ${request.taskName} match nothing: ${describeUnmatchedDiskExclusions(unmatched)}`,
    },
  ];
}
