import { createHash } from 'node:crypto';
import { safeName } from '../config/schema.js';
import { el } from '../vsphere/index.js';
import type { SimulatorReady } from './simulator.js';
import type { LabSpec } from './spec.js';
import { connectToLab } from './vcenter.js';

/**
 * The name the simulator creates each VM under: its own when it is file-safe (the simulator makes it a
 * directory and file names), else a stand-in derived from it, renamed to the real name once the simulator
 * runs (as a VM renamed in vCenter keeps its directory).
 */
export function simulatorVmNames(spec: LabSpec): Map<string, string> {
  const names = spec.datacenters.flatMap((dc) => dc.vms.map((vm) => vm.name));
  const taken = new Set(names);
  const out = new Map<string, string>();
  for (const name of names) {
    if (safeName.safeParse(name).success) {
      out.set(name, name);
      continue;
    }
    let standIn = `vm-${createHash('sha256').update(name).digest('hex').slice(0, 12)}`;
    while (taken.has(standIn)) standIn = `${standIn}x`;
    taken.add(standIn);
    out.set(name, standIn);
  }
  return out;
}

/**
 * Gives the VMs the simulator created under a stand-in their real names, through vCenter as a user would
 * rename them, and returns the ready file's VMs under their real names.
 */
export async function renameToRealNames(
  spec: LabSpec,
  ready: SimulatorReady,
  passwordFile: string,
): Promise<SimulatorReady['vms']> {
  const realNames = new Map([...simulatorVmNames(spec)].map(([real, standIn]) => [standIn, real]));
  const renames = ready.vms.filter((vm) => realNames.get(vm.name) !== vm.name);
  if (renames.length === 0) return ready.vms;
  const vc = await connectToLab({ ...ready, passwordFile });
  try {
    for (const vm of renames) {
      await vc.runTask(
        'Rename_Task',
        { type: 'VirtualMachine', value: vm.id },
        el('newName', realNames.get(vm.name)!),
      );
    }
  } finally {
    await vc.logout();
  }
  return ready.vms.map((vm) => ({ ...vm, name: realNames.get(vm.name)! }));
}
