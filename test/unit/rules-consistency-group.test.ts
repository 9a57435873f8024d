import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { VirtualDisk, Vm } from '../../src/model/inventory.js';
import { consistencyGroup } from '../../src/rules/consistency-group.js';
import type { DatastoreMapping } from '../../src/rules/datastores.js';

function vm(name: string, home: string, disks: Partial<VirtualDisk>[], datastores: string[] = [home]): Vm {
  return {
    id: `vm-${name}`,
    name,
    instanceUuid: `uuid-${name}`,
    powerState: 'poweredOn',
    datacenter: 'DC1',
    host: 'esx01',
    folder: '',
    vmxFile: `[${home}] ${name}/${name}.vmx`,
    homeDatastore: home,
    datastores,
    snapshots: [],
    disks: disks.map((d, i) => ({
      key: 2000 + i,
      label: `Hard disk ${i + 1}`,
      kind: 'flat',
      capacityBytes: 1024,
      file: `[${d.datastore ?? home}] ${name}/${name}_${i}.vmdk`,
      datastore: d.datastore ?? home,
      diskMode: 'persistent',
      ...d,
    })),
  };
}

const MAPPING: DatastoreMapping = {
  mapped: new Map([
    ['ds-a', { array: 'arr1', volumes: ['vol-a'], subPath: '' }],
    ['ds-b', { array: 'arr1', volumes: ['vol-b'], subPath: '' }],
    ['ds-span', { array: 'arr1', volumes: ['vol-c', 'vol-a'], subPath: '' }],
    ['ds-x', { array: 'arr0', volumes: ['vol-x'], subPath: 'sub' }],
    ['ds-x2', { array: 'arr0', volumes: ['vol-x'], subPath: 'other' }],
  ]),
  unmapped: ['ds-lost'],
};

describe('consistencyGroup', () => {
  it('no VMs, empty group', () => {
    const g = consistencyGroup([], MAPPING);
    assert.deepEqual(g.datastores, []);
    assert.equal(g.byArray.size, 0);
    assert.deepEqual(g.unmappedDatastores, []);
    assert.deepEqual(g.excludedDisks, []);
  });

  it('collects home, datastore list and disk datastores; volumes per array sorted and unique', () => {
    const g = consistencyGroup(
      [
        vm('web01', 'ds-b', [{ datastore: 'ds-b' }, { datastore: 'ds-span', kind: 'independent' }], ['ds-b']),
        vm('db01', 'ds-x', [{ datastore: 'ds-a' }], ['ds-x', 'ds-x2']),
      ],
      MAPPING,
    );
    assert.deepEqual(g.datastores, ['ds-a', 'ds-b', 'ds-span', 'ds-x', 'ds-x2']);
    assert.deepEqual([...g.byArray.keys()], ['arr0', 'arr1']);
    assert.deepEqual(g.byArray.get('arr0'), ['vol-x']);
    assert.deepEqual(g.byArray.get('arr1'), ['vol-a', 'vol-b', 'vol-c']);
    assert.deepEqual(g.unmappedDatastores, []);
    assert.deepEqual(g.excludedDisks, []);
  });

  it('RDM LUNs are excluded disks, never volumes; the mapping file datastore joins the group', () => {
    const lun = 'naa.600a0980383030534a3f463045727a71';
    const g = consistencyGroup(
      [
        vm('sql01', 'ds-a', [
          { datastore: 'ds-a' },
          { kind: 'rdm-physical', lun, datastore: 'ds-b', label: 'Hard disk 2' },
          { kind: 'rdm-virtual', datastore: 'ds-a', label: 'Hard disk 3' },
        ]),
      ],
      MAPPING,
    );
    assert.deepEqual(g.datastores, ['ds-a', 'ds-b']);
    assert.deepEqual(g.byArray.get('arr1'), ['vol-a', 'vol-b']);
    for (const volumes of g.byArray.values()) assert.ok(!volumes.includes(lun));
    assert.equal(g.excludedDisks.length, 2);
    assert.deepEqual(g.excludedDisks[0], {
      vm: 'sql01',
      label: 'Hard disk 2',
      lun,
      reason: 'raw device mapping: the LUN is not on a datastore and is not backed up',
    });
    assert.equal(g.excludedDisks[1]?.label, 'Hard disk 3');
    assert.equal('lun' in (g.excludedDisks[1] ?? {}), false);
  });

  it('datastores no array holds are reported, the rest still grouped', () => {
    const g = consistencyGroup(
      [vm('app', 'ds-lost', [{ datastore: 'ds-a' }, { datastore: 'ds-unknown' }])],
      MAPPING,
    );
    assert.deepEqual(g.datastores, ['ds-a', 'ds-lost', 'ds-unknown']);
    assert.deepEqual(g.unmappedDatastores, ['ds-lost', 'ds-unknown']);
    assert.deepEqual([...g.byArray.entries()], [['arr1', ['vol-a']]]);
  });

  it('the same datastore from many VMs appears once', () => {
    const vms = Array.from({ length: 5 }, (_, i) => vm(`v${i}`, 'ds-a', [{}, {}]));
    const g = consistencyGroup(vms, MAPPING);
    assert.deepEqual(g.datastores, ['ds-a']);
    assert.deepEqual(g.byArray.get('arr1'), ['vol-a']);
  });
});
