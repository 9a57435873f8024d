import assert from 'node:assert/strict';
import type { FakeSpec } from '../../src/vsphere/index.js';
import { type EngineLab, engineLabPerTest } from './harness.js';

const RDM_LUN = 'naa.600a0980383030534a3f463045727a71';

/** The VMs of the backup tests: running, powered off, suspended, one with an RDM disk. */
const SPEC: FakeSpec = {
  datacenters: [
    {
      name: 'DC1',
      clusters: [{ name: 'Prod', hosts: ['esx01', 'esx02'] }],
      datastores: [
        { name: 'ds-a', capacityGB: 50 },
        { name: 'ds-b', capacityGB: 20 },
      ],
      vms: [
        { name: 'web01', host: 'esx01', disks: [{ datastore: 'ds-a', sizeMB: 8 }] },
        {
          name: 'db01',
          host: 'esx02',
          disks: [
            { datastore: 'ds-a', sizeMB: 8 },
            { datastore: 'ds-b', sizeMB: 8 },
          ],
        },
        { name: 'off01', host: 'esx01', power: 'poweredOff', disks: [{ datastore: 'ds-b', sizeMB: 8 }] },
        { name: 'susp01', host: 'esx02', power: 'suspended', disks: [{ datastore: 'ds-b', sizeMB: 8 }] },
        {
          name: 'rdm01',
          host: 'esx01',
          disks: [
            { datastore: 'ds-a', sizeMB: 8 },
            { rdm: 'physical', lun: RDM_LUN, sizeMB: 64 },
          ],
        },
      ],
    },
  ],
};

const startLab = engineLabPerTest();

/** A fresh lab, closed after the test. */
export const start = (): Promise<EngineLab> => startLab(SPEC);

/** Nothing of the run is left on any VM: no snapkeeper snapshot, the power state it had before. */
export async function assertReleased(l: EngineLab, power: Record<string, string>): Promise<void> {
  for (const vm of (await l.vc.inventory()).vms) {
    assert.deepEqual(
      vm.snapshots.filter((s) => s.name.startsWith('snapkeeper-')),
      [],
      `${vm.name} keeps a VM snapshot`,
    );
    if (power[vm.name] !== undefined) assert.equal(vm.powerState, power[vm.name], vm.name);
  }
}

/** The power states the VMs of SPEC start in. */
export const BEFORE = { web01: 'poweredOn', db01: 'poweredOn', off01: 'poweredOff', susp01: 'suspended' };

export async function arraySnapshotIds(l: EngineLab): Promise<string[]> {
  return (await l.array.listSnapshots()).map((s) => s.id);
}
