import assert from 'node:assert/strict';
import { test } from 'node:test';
import { MemoryArray } from '../../src/arrays/index.js';
import { UsageError } from '../../src/errors.js';
import { parseLabSpec } from '../../src/lab/spec.js';
import { mapDatastoresToVolumes } from '../../src/rules/datastores.js';
import { type FakeSpec, FakeVcenter } from '../../src/vsphere/fake/index.js';
import { isFault } from '../../src/vsphere/faults.js';
import type { CreateVmSpec } from '../../src/vsphere/session.js';
import { TransportError } from '../../src/vsphere/transport.js';
import { CONFORMANCE_SPEC, sessionConformance } from './session-conformance.js';

sessionConformance(
  'FakeVcenter',
  async () => {
    // What the hosts can see, as an array's exports would show it.
    const hostPaths = new Set<string>();
    const session = FakeVcenter.fromLabSpec(CONFORMANCE_SPEC, { pathExists: (path) => hostPaths.has(path) });
    return {
      session,
      async newDatastorePath(files = []) {
        const dir = `/memory/mounts/${hostPaths.size}`;
        for (const path of [dir, ...files.map((f) => `${dir}/${f}`)]) hostPaths.add(path);
        return dir;
      },
      cleanup: () => session.logout(),
    };
  },
  { suspendNeedsPoweredOn: true, uniqueVmNamesPerFolder: true },
);

const SPEC: FakeSpec = {
  datacenters: [
    {
      name: 'DC1',
      clusters: [{ name: 'Prod', hosts: ['esx01', 'esx02'] }],
      hosts: ['esx-standalone'],
      datastores: [
        { name: 'ds-a', capacityGB: 1 },
        { name: 'ds-b', capacityGB: 1 },
      ],
      vms: [
        { name: 'web01', host: 'esx01', disks: [{ datastore: 'ds-a', sizeMB: 64 }], folder: 'prod/web' },
        { name: 'notools', host: 'esx02', tools: 'notRunning', disks: [{ datastore: 'ds-b', sizeMB: 8 }] },
        {
          name: 'off01',
          host: 'esx-standalone',
          power: 'poweredOff',
          disks: [{ datastore: 'ds-a', sizeMB: 8 }],
        },
      ],
    },
  ],
};

function fake(): { vc: FakeVcenter; id: (name: string) => string } {
  const vc = FakeVcenter.fromLabSpec(SPEC);
  return {
    vc,
    id: (name) => {
      const vm = vc.vm(name);
      assert.ok(vm, `VM ${name} exists`);
      return vm.id;
    },
  };
}

const snapshotOptions = { name: 'snapkeeper-x', memory: false, quiesce: false };

test('failNext before the effect: the call fails once and changes nothing; calls are counted', async () => {
  const { vc, id } = fake();
  vc.failNext('createVmSnapshot');
  const mine = new Error('vCenter restarting');
  vc.failNext('createVmSnapshot', mine);
  await assert.rejects(vc.createVmSnapshot(id('web01'), snapshotOptions), (err: unknown) => {
    assert.ok(isFault(err, 'SystemError'), String(err));
    assert.match((err as Error).message, /CreateSnapshot_Task|createVmSnapshot/);
    return true;
  });
  await assert.rejects(vc.createVmSnapshot(id('web01'), snapshotOptions), (err) => err === mine);
  assert.deepEqual(
    (await vc.vmState(id('web01'))).snapshots,
    [],
    'a call failed before its effect changes nothing',
  );
  const snap = await vc.createVmSnapshot(id('web01'), snapshotOptions);
  assert.deepEqual(
    (await vc.vmState(id('web01'))).snapshots.map((s) => s.id),
    [snap],
  );
  assert.equal(vc.calls('createVmSnapshot'), 3);
  assert.equal(vc.calls('vmState'), 2);
  assert.equal(vc.calls('suspendVm'), 0);
  assert.equal(vc.roundTrips, 5);
});

test('failNext after the effect models a lost answer: the snapshot exists, the caller saw a connection failure', async () => {
  const { vc, id } = fake();
  vc.failNext('createVmSnapshot', undefined, { after: true });
  await assert.rejects(
    vc.createVmSnapshot(id('web01'), snapshotOptions),
    (err: unknown) => err instanceof TransportError && err.code === 'VCENTER_CONNECTION_FAILED',
  );
  const left = (await vc.vmState(id('web01'))).snapshots;
  assert.deepEqual(
    left.map((s) => s.name),
    ['snapkeeper-x'],
    'the effect happened: recovery must find it by name',
  );
  vc.failNext('suspendVm', new Error('lost'), { after: true });
  await assert.rejects(vc.suspendVm(id('web01')), /lost/);
  assert.equal((await vc.vmState(id('web01'))).powerState, 'suspended');
});

test('delay holds an operation until its time, and an abort ends the wait without the effect', async () => {
  const { vc, id } = fake();
  vc.delay('suspendVm', 60_000);
  const controller = new AbortController();
  const pending = vc.suspendVm(id('web01'), { signal: controller.signal });
  assert.equal((await vc.vmState(id('web01'))).powerState, 'poweredOn', 'still waiting');
  controller.abort(new Error('backup cancelled'));
  await assert.rejects(pending, /backup cancelled/);
  assert.equal((await vc.vmState(id('web01'))).powerState, 'poweredOn');
  vc.delay('suspendVm', 0);
  await vc.suspendVm(id('web01'));
  assert.equal((await vc.vmState(id('web01'))).powerState, 'suspended');
});

test('vCenter rules the simulator does not show: quiesce needs Tools, suspend needs a running VM', async () => {
  const { vc, id } = fake();
  await assert.rejects(
    vc.createVmSnapshot(id('notools'), { ...snapshotOptions, quiesce: true }),
    (err: unknown) => isFault(err, 'ToolsUnavailable'),
  );
  assert.deepEqual((await vc.vmState(id('notools'))).snapshots, []);
  const plain = await vc.createVmSnapshot(id('notools'), { ...snapshotOptions, memory: true });
  assert.equal(vc.snapshot(plain)?.memory, true);
  // Memory and quiesce mean nothing for a VM that does not run: vCenter ignores them.
  const offSnap = await vc.createVmSnapshot(id('off01'), { ...snapshotOptions, memory: true, quiesce: true });
  assert.deepEqual([vc.snapshot(offSnap)?.memory, vc.snapshot(offSnap)?.quiesced], [false, false]);
  assert.equal(vc.snapshot(offSnap)?.powerState, 'poweredOff');
  await assert.rejects(vc.suspendVm(id('off01')), (err: unknown) => isFault(err, 'InvalidPowerState'));
});

test('fromLabSpec takes a parsed lab spec as it is, with the lab names, and ids are deterministic', async () => {
  const parsed: FakeSpec = parseLabSpec(CONFORMANCE_SPEC, 'conformance spec');
  const a = await FakeVcenter.fromLabSpec(parsed).inventory();
  const b = await FakeVcenter.fromLabSpec(parsed).inventory();
  assert.deepEqual(
    a.vms.map((v) => v.disks),
    b.vms.map((v) => v.disks),
  );
  assert.deepEqual(
    [a.vms, a.datastores, a.hosts, a.folders].map((list) => list.map((x) => x.id)),
    [b.vms, b.datastores, b.hosts, b.folders].map((list) => list.map((x) => x.id)),
  );
  const inv01 = a.vms.find((v) => v.name === 'inv01')!;
  assert.deepEqual(
    inv01.disks.map((d) => d.file),
    [
      '[ds-a] inv01/inv01_0.vmdk',
      '[ds-b] inv01/inv01_1.vmdk',
      '[ds-a] inv01/inv01_2.vmdk',
      '[ds-a] inv01/inv01_3.vmdk',
    ],
  );
});

test('builder options: folders, datastore URLs and LUNs of an array, and dangling references refused', async () => {
  const vc = FakeVcenter.fromLabSpec(SPEC, {
    datastores: { 'ds-a': { url: '/memory/mem/vol-a', lun: 'naa.61111111111111111111111111111111' } },
  });
  const inv = await vc.inventory();
  const dsA = inv.datastores.find((d) => d.name === 'ds-a')!;
  assert.equal(dsA.url, '/memory/mem/vol-a');
  assert.deepEqual(dsA.extents, [{ lun: 'naa.61111111111111111111111111111111', partition: 1 }]);
  assert.equal(dsA.freeBytes, dsA.capacityBytes - 72 * 1024 * 1024, 'the flat disks on it take their size');
  assert.deepEqual(
    inv.folders.map((f) => f.path),
    ['', 'prod', 'prod/web'],
  );
  assert.equal(vc.vm('web01')?.folder, 'prod/web');
  const broken = (vm: object) => ({ datacenters: [{ ...SPEC.datacenters[0]!, vms: [vm as never] }] });
  assert.throws(
    () =>
      FakeVcenter.fromLabSpec(
        broken({ name: 'x', host: 'nohost', disks: [{ datastore: 'ds-a', sizeMB: 1 }] }),
      ),
    (err: unknown) => err instanceof UsageError && /host nohost/.test(err.message),
  );
  assert.throws(
    () =>
      FakeVcenter.fromLabSpec(
        broken({ name: 'x', host: 'esx01', disks: [{ datastore: 'ds-z', sizeMB: 1 }] }),
      ),
    (err: unknown) => err instanceof UsageError && /datastore ds-z/.test(err.message),
  );
});

test('createDatastore asks the host whether the path exists; createVm and disks need a datastore the host mounts', async () => {
  const paths = new Set(['/memory/mem/.clones/c1/vol-a']);
  const vc = FakeVcenter.fromLabSpec(SPEC, { pathExists: (p) => paths.has(p) });
  const inv = await vc.inventory();
  const host = (name: string) => inv.hosts.find((h) => h.name === name)!.id;
  await assert.rejects(vc.createDatastore(host('esx01'), 'mnt', '/memory/mem/nothing'), (err: unknown) =>
    isFault(err, 'NotFound'),
  );
  const ds = await vc.createDatastore(host('esx01'), 'mnt', '/memory/mem/.clones/c1/vol-a');
  assert.equal(
    await vc.createDatastore(host('esx02'), 'mnt', '/memory/mem/.clones/c1/vol-a'),
    ds,
    'one datastore',
  );
  const web01 = vc.vm('web01')!;
  const spec = {
    name: 'restored',
    folderId: inv.folders[0]!.id,
    hostId: host('esx-standalone'),
    vmxFile: '[mnt] restored/restored.vmx',
    numCpu: 1,
    memoryMB: 256,
    guestId: 'otherGuest64',
    devices: web01.hardware!.devices as CreateVmSpec['devices'],
    keepMacAddresses: false,
    disks: [],
  };
  await assert.rejects(vc.createVm(spec), (err: unknown) => isFault(err, 'InvalidDatastore'));
  assert.equal(vc.fileExists('[mnt] restored/restored.vmx'), false);
  const onEsx01 = await vc.createVm({ ...spec, hostId: host('esx01') });
  assert.equal(vc.fileExists('[mnt] restored/restored.vmx'), true);
  // Unmounting from one host leaves it on the other; the VM on it keeps it in use.
  await assert.rejects(vc.removeDatastore(host('esx02'), ds), (err: unknown) =>
    isFault(err, 'ResourceInUse'),
  );
  await vc.destroyVm(onEsx01);
  assert.equal(vc.fileExists('[mnt] restored/restored.vmx'), false, 'destroy removes the home directory');
  await vc.removeDatastore(host('esx02'), ds);
  assert.deepEqual((await vc.inventory()).datastores.find((d) => d.id === ds)?.hosts, ['esx01']);
  await vc.removeDatastore(host('esx01'), ds);
  assert.equal(
    (await vc.inventory()).datastores.find((d) => d.id === ds),
    undefined,
  );
});

test('a reconfiguration that fails changes nothing, like one ReconfigVM_Task', async () => {
  const { vc, id } = fake();
  const devices = await vc.vmDevices(id('web01'));
  const [own] = devices.disks;
  const taken = {
    file: '[ds-b] x/x.vmdk',
    capacityBytes: 1024,
    diskMode: 'persistent',
    controllerKey: own!.controllerKey,
    unitNumber: own!.unitNumber,
  };
  await assert.rejects(
    vc.reconfigureDisks(id('web01'), { remove: [own!], add: [taken, taken] }),
    (err: unknown) => isFault(err, 'InvalidDeviceSpec'),
  );
  assert.deepEqual(await vc.vmDevices(id('web01')), devices);
  await assert.rejects(vc.reconfigureDisks(id('web01'), { remove: [{ ...own!, key: 99 }] }), (err: unknown) =>
    isFault(err, 'InvalidDeviceSpec'),
  );
});

test('after logout every operation is NotAuthenticated; logout twice is fine', async () => {
  const { vc, id } = fake();
  await vc.logout();
  await vc.logout();
  await assert.rejects(vc.vmState(id('web01')), (err: unknown) => isFault(err, 'NotAuthenticated'));
  assert.equal(vc.calls('logout'), 1);
});

test('pairs with the memory array: datastores map onto its volumes, and a clone of a snapshot mounts as a datastore', async () => {
  const array = new MemoryArray({
    name: 'mem',
    volumes: [
      { name: 'ds-a', lun: 'naa.6aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa' },
      { name: 'ds-b', lun: 'naa.6bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb' },
    ],
  });
  const volumes = await array.listVolumes();
  const vc = FakeVcenter.fromLabSpec(SPEC, {
    datastores: Object.fromEntries(volumes.map((v) => [v.name, { url: v.path, lun: v.lun }])),
    pathExists: (path) => array.statPath(path) !== undefined,
  });
  const inv = await vc.inventory();
  const mapping = mapDatastoresToVolumes(inv.datastores, [{ name: array.name, volumes }]);
  assert.deepEqual(mapping.unmapped, []);
  assert.deepEqual(
    [...mapping.mapped].map(([ds, loc]) => [ds, loc.volumes]),
    [
      ['ds-a', ['ds-a']],
      ['ds-b', ['ds-b']],
    ],
  );

  array.writeFile('ds-a', 'web01/web01_0.vmdk', 'disk data');
  const snap = await array.snapshotGroup(['ds-a'], { label: 'b1' });
  const clone = await array.cloneSnapshot(snap.id, { label: 'mount-b1' });
  const esx01 = inv.hosts.find((h) => h.name === 'esx01')!.id;
  const mounted = await vc.createDatastore(esx01, 'snap-ds-a', clone.volumeExports['ds-a']!);
  assert.equal(
    (await vc.inventory()).datastores.find((d) => d.id === mounted)?.url,
    clone.volumeExports['ds-a'],
  );
  await vc.removeDatastore(esx01, mounted);
  await array.deleteClone(clone.id);
  await assert.rejects(vc.createDatastore(esx01, 'snap-ds-a', clone.volumeExports['ds-a']!), (err: unknown) =>
    isFault(err, 'NotFound'),
  );
});

test('one task at a time per VM: a second task while a delayed one runs is TaskInProgress, other VMs are free', async () => {
  const { vc, id } = fake();
  vc.delay('createVmSnapshot', 60_000);
  const controller = new AbortController();
  const slow = vc.createVmSnapshot(id('web01'), { ...snapshotOptions, signal: controller.signal });
  await assert.rejects(vc.suspendVm(id('web01')), (err: unknown) => isFault(err, 'TaskInProgress'));
  assert.equal((await vc.vmState(id('web01'))).powerState, 'poweredOn', 'reads are not tasks');
  await vc.suspendVm(id('notools'));
  controller.abort(new Error('enough'));
  await assert.rejects(slow, /enough/);
  await vc.suspendVm(id('web01'));
  assert.equal((await vc.vmState(id('web01'))).powerState, 'suspended', 'the VM is free again');
});

test('VM names vCenter accepts but file systems do not are escaped in file names as vCenter does', async () => {
  const name = 'odd/name 100% ..';
  const vc = FakeVcenter.fromLabSpec({
    datacenters: [
      {
        name: 'DC1',
        hosts: ['esx01'],
        datastores: [{ name: 'ds-a', capacityGB: 1 }],
        vms: [{ name, host: 'esx01', disks: [{ datastore: 'ds-a', sizeMB: 1 }] }],
      },
    ],
  });
  const vm = vc.vm(name)!;
  assert.equal(vm.name, name);
  assert.equal(vm.vmxFile, '[ds-a] odd%2fname 100%25 ../odd%2fname 100%25 ...vmx');
  assert.deepEqual(
    vm.disks.map((d) => d.file),
    ['[ds-a] odd%2fname 100%25 ../odd%2fname 100%25 .._0.vmdk'],
  );
  await vc.powerOffVm(vm.id);
  await vc.destroyVm(vm.id);
  assert.equal(vc.fileExists(vm.vmxFile), false, 'destroy removes its own home directory');
});
