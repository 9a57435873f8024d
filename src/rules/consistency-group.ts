import type { Vm } from '../model/inventory.js';
import type { DatastoreMapping } from './datastores.js';
import { isRdmKind } from './disks.js';

/** A disk the hardware snapshot does not hold. */
export interface ExcludedDisk {
  /** VM name. */
  vm: string;
  label: string;
  lun?: string;
  reason: string;
}

export interface ConsistencyGroup {
  /** Every datastore holding any file of any selected VM, sorted, unique. */
  datastores: string[];
  /** Array name (sorted) -> its volumes behind those datastores, sorted, unique. */
  byArray: Map<string, string[]>;
  /** Datastores of `datastores` no array holds, sorted: their files would be missing from the backup. */
  unmappedDatastores: string[];
  /** RDM disks, in VM then disk order. */
  excludedDisks: ExcludedDisk[];
}

/**
 * SPEC section 1: all volumes behind all datastores holding any file of the selected VMs (home, the VM's
 * datastore list, every disk's file). RDM LUNs are not datastores and never join the group; such disks are
 * listed as excluded. The datastore of an RDM's mapping file does join it: the mapping file is part of the
 * VM's configuration and is needed to re-create the VM.
 */
export function consistencyGroup(vms: readonly Vm[], mapping: DatastoreMapping): ConsistencyGroup {
  const datastores = new Set<string>();
  const excludedDisks: ExcludedDisk[] = [];
  for (const vm of vms) {
    if (vm.homeDatastore !== '') datastores.add(vm.homeDatastore);
    for (const ds of vm.datastores) if (ds !== '') datastores.add(ds);
    for (const disk of vm.disks) {
      if (disk.datastore !== '') datastores.add(disk.datastore);
      if (isRdmKind(disk.kind)) {
        const excluded: ExcludedDisk = {
          vm: vm.name,
          label: disk.label,
          reason: 'raw device mapping: the LUN is not on a datastore and is not backed up',
        };
        if (disk.lun !== undefined) excluded.lun = disk.lun;
        excludedDisks.push(excluded);
      }
    }
  }
  const sorted = [...datastores].sort(compareStrings);
  const volumesByArray = new Map<string, Set<string>>();
  const unmappedDatastores: string[] = [];
  for (const ds of sorted) {
    const location = mapping.mapped.get(ds);
    if (location === undefined) {
      unmappedDatastores.push(ds);
      continue;
    }
    let set = volumesByArray.get(location.array);
    if (set === undefined) {
      set = new Set();
      volumesByArray.set(location.array, set);
    }
    for (const v of location.volumes) set.add(v);
  }
  const byArray = new Map<string, string[]>();
  for (const array of [...volumesByArray.keys()].sort(compareStrings)) {
    byArray.set(array, [...(volumesByArray.get(array) ?? [])].sort(compareStrings));
  }
  return { datastores: sorted, byArray, unmappedDatastores, excludedDisks };
}

/** Code-unit order, not locale order: the result must not depend on the machine's locale. */
function compareStrings(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
