import { UsageError } from '../../errors.js';
import type { FakeDatacenterSpec, FakeDiskSpec, FakeVmSpec } from './spec.js';
import {
  DEFAULT_CONTROLLERS,
  DISKS_PER_BUS,
  type FakeState,
  FIRST_DEVICE_KEY,
  FIRST_SCSI_KEY,
  fileNameOf,
  GiB,
  hex,
  MiB,
  uuidOf,
  type VmConfig,
} from './state.js';

// Builds a FakeVcenter's state from the lab spec format (spec.ts), with the lab's defaults and file names.

/** Adds a datacenter of the spec with its clusters, hosts, datastores and VMs. */
export function addDatacenter(state: FakeState, dc: FakeDatacenterSpec): void {
  const bad = (message: string) => new UsageError('FAKE_SPEC_INVALID', `datacenter ${dc.name}: ${message}`);
  const id = state.id('datacenter');
  const rootFolder = state.id('group-v');
  state.datacenters.set(id, { id, name: dc.name, rootFolder });
  state.folders.set(rootFolder, { id: rootFolder, path: '', datacenter: dc.name });
  const hostIds = new Map<string, string>();
  const addHost = (name: string, cluster?: string) => {
    const hostId = state.id('host');
    state.hosts.set(hostId, { id: hostId, name, datacenter: dc.name, ...(cluster ? { cluster } : {}) });
    hostIds.set(name, hostId);
  };
  for (const c of dc.clusters ?? []) {
    const clusterId = state.id('domain-c');
    state.clusters.set(clusterId, { id: clusterId, name: c.name, datacenter: dc.name });
    for (const h of c.hosts) addHost(h, c.name);
  }
  for (const h of dc.hosts ?? []) addHost(h);
  for (const ds of dc.datastores ?? []) {
    const given = state.options.datastores?.[ds.name];
    const type = ds.type ?? 'VMFS';
    const dsId = state.id('datastore');
    state.datastores.set(dsId, {
      id: dsId,
      name: ds.name,
      datacenter: dc.name,
      url: given?.url ?? ds.url ?? `/vmfs/volumes/${ds.name}`,
      type,
      capacityBytes: Math.round(ds.capacityGB * GiB),
      lun: type === 'VMFS' ? (given?.lun ?? ds.lun ?? `naa.6${hex(`lun:${ds.name}`, 31)}`) : undefined,
      hosts: new Set(hostIds.values()),
    });
  }
  for (const vm of dc.vms ?? []) {
    const hostId = hostIds.get(vm.host);
    if (hostId === undefined) throw bad(`VM ${vm.name}: host ${vm.host} is not defined`);
    const onDatastores = vm.disks.flatMap((d) => ('datastore' in d ? [d.datastore] : []));
    const home = vm.datastore ?? onDatastores[0];
    if (home === undefined) throw bad(`VM ${vm.name} has no home datastore`);
    for (const name of [home, ...onDatastores]) {
      if (!state.datastoreByName(dc.name, name)) throw bad(`VM ${vm.name}: datastore ${name} is not defined`);
    }
    addVm(state, vm, { datacenter: dc.name, hostId, home, rootFolder });
  }
}

/** A VM of the spec as the lab makes it: PVSCSI controllers of 15 disks, the lab's file names. */
function addVm(
  state: FakeState,
  spec: FakeVmSpec,
  where: { datacenter: string; hostId: string; home: string; rootFolder: string },
): void {
  const { datacenter, hostId, home, rootFolder } = where;
  const base = fileNameOf(spec.name);
  const vmxFile = `[${home}] ${base}/${base}.vmx`;
  const config: VmConfig = {
    name: spec.name,
    instanceUuid: uuidOf(`vm:${datacenter}/${spec.name}`),
    numCpu: 1,
    memoryMB: 256,
    guestId: 'otherGuest64',
    vmxFile,
    devices: [...DEFAULT_CONTROLLERS],
    disks: [],
    nextKey: FIRST_DEVICE_KEY,
  };
  spec.disks.forEach((d: FakeDiskSpec, index) => {
    const bus = Math.floor(index / DISKS_PER_BUS);
    const controllerKey = FIRST_SCSI_KEY + bus;
    if (!config.devices.some((c) => c.key === controllerKey)) {
      config.devices.push({
        kind: 'controller',
        type: 'ParaVirtualSCSIController',
        key: controllerKey,
        busNumber: bus,
        sharedBus: 'noSharing',
      });
    }
    const unit = index % DISKS_PER_BUS;
    const rdm = 'rdm' in d;
    const file = `[${rdm ? home : d.datastore}] ${base}/${base}_${index}.vmdk`;
    // vCenter keeps physical-mode RDMs out of snapshots by making them independent.
    const rdmMode = rdm && d.rdm === 'physical' ? 'independent_persistent' : 'persistent';
    config.disks.push({
      key: config.nextKey++,
      label: `Hard disk ${index + 1}`,
      file,
      capacityBytes: d.sizeMB * MiB,
      diskMode: rdm ? rdmMode : (d.mode ?? 'persistent'),
      controllerKey,
      unitNumber: unit >= 7 ? unit + 1 : unit,
      ...(rdm ? { rdm: { compatibility: d.rdm, lun: d.lun } } : {}),
    });
    state.files.add(file);
  });
  state.files.add(vmxFile);
  const vmId = state.id('vm');
  state.vms.set(vmId, {
    id: vmId,
    datacenter,
    hostId,
    folderId: state.folderFor(datacenter, rootFolder, spec.folder ?? ''),
    powerState: spec.power ?? 'poweredOn',
    tools: spec.tools ?? 'running',
    config,
    rootSnapshots: [],
    currentSnapshot: undefined,
  });
}
