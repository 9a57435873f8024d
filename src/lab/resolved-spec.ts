import { layout } from '../arrays/index.js';
import { homeDatastore, type LabSpec } from './spec.js';
import { simulatorVmNames } from './vm-names.js';

/**
 * The resolved spec the simulator reads (DIR/lab-spec.json): defaults filled in, each VM under the name the
 * simulator creates it with, each datastore with its volume's path in the array at `arrayPath` and its LUN.
 */
export function resolveSpec(spec: LabSpec, arrayPath: string, luns: Map<string, string>): unknown {
  const simulatorNames = simulatorVmNames(spec);
  return {
    datacenters: spec.datacenters.map((dc) => ({
      ...dc,
      datastores: dc.datastores.map((ds) => ({
        ...ds,
        path: layout.volume(arrayPath, ds.name),
        lun: luns.get(ds.name),
      })),
      // Every default is resolved here, the one place: the simulator refuses a VM without power or home
      // datastore and a flat disk without mode.
      vms: dc.vms.map((vm) => ({
        ...vm, // power and tools: the schema's defaults are already applied
        name: simulatorNames.get(vm.name),
        datastore: homeDatastore(vm),
        disks: vm.disks.map((d) => ('rdm' in d ? d : { ...d, mode: d.mode ?? 'persistent' })),
      })),
    })),
  };
}
