import { createHash } from 'node:crypto';
import type {
  DiskKind,
  Inventory,
  PowerState,
  ToolsState,
  Vm,
  VmSnapshotRef,
} from '../../model/inventory.js';
import { VsphereFault } from '../faults.js';
import { type CapturedDevice, datastoreOfPath, isScsiController } from '../inventory.js';
import type { VmDevices } from '../session.js';
import type { FakeVcenterOptions } from './spec.js';

// The state of a FakeVcenter (its inventory and the files its VMs own) and the views of it the contract returns.

export interface FakeDisk {
  key: number;
  label: string;
  file: string;
  capacityBytes: number;
  diskMode: string;
  controllerKey: number;
  unitNumber: number;
  rdm?: { compatibility: 'physical' | 'virtual'; lun: string };
}

/** A VM's configuration: what its .vmx holds, so an unregistered VM can be registered again. */
export interface VmConfig {
  name: string;
  instanceUuid: string;
  numCpu: number;
  memoryMB: number;
  guestId: string;
  vmxFile: string;
  /** Controllers and NICs. */
  devices: CapturedDevice[];
  disks: FakeDisk[];
  nextKey: number;
}

export interface FakeVm {
  id: string;
  datacenter: string;
  hostId: string;
  folderId: string;
  powerState: PowerState;
  tools: ToolsState;
  config: VmConfig;
  /** Root snapshot ids, in creation order. */
  rootSnapshots: string[];
  currentSnapshot: string | undefined;
}

export interface FakeSnapshot {
  id: string;
  vmId: string;
  name: string;
  description: string | undefined;
  createdAt: string;
  parent: string | undefined;
  children: string[];
  memory: boolean;
  quiesced: boolean;
  powerState: PowerState;
}

export interface FakeDatastore {
  id: string;
  name: string;
  datacenter: string;
  url: string;
  type: string;
  capacityBytes: number;
  lun: string | undefined;
  /** Ids of the hosts that mount it. */
  hosts: Set<string>;
}

export const MiB = 1024 * 1024;
export const GiB = 1024 * MiB;
export const DISKS_PER_BUS = 15;
export const FIRST_SCSI_KEY = 1000;
export const FIRST_DEVICE_KEY = 2000;

/** Controllers every VM gets, as vCenter gives them (keys as the simulator's). */
export const DEFAULT_CONTROLLERS: CapturedDevice[] = [
  { kind: 'controller', type: 'VirtualIDEController', key: 200, busNumber: 0 },
  { kind: 'controller', type: 'VirtualIDEController', key: 201, busNumber: 1 },
];

export function hex(seed: string, length: number): string {
  return createHash('sha256').update(seed).digest('hex').slice(0, length);
}

export function uuidOf(seed: string): string {
  const h = hex(seed, 32);
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

/** A VM name as vCenter writes it into directory and file names: `%`, `/` and `\` escaped. */
export function fileNameOf(vmName: string): string {
  return vmName.replace(/%/g, '%25').replace(/\//g, '%2f').replace(/\\/g, '%5c');
}

/** `[ds] dir/` of a .vmx path: everything below it is the VM's home directory. */
export function homeDirOf(vmxFile: string): string {
  return vmxFile.slice(0, vmxFile.lastIndexOf('/') + 1);
}

export function kindOf(disk: FakeDisk): DiskKind {
  if (disk.rdm) return disk.rdm.compatibility === 'physical' ? 'rdm-physical' : 'rdm-virtual';
  return disk.diskMode.startsWith('independent') ? 'independent' : 'flat';
}

export function fault(type: string, message: string, managedObject?: string, method?: string): VsphereFault {
  const what = method === undefined ? '' : `${method}: `;
  return new VsphereFault(type, `${what}vSphere fault ${type}: ${message}`, managedObject, method);
}

export function notFound(type: string, id: string, method: string): VsphereFault {
  return fault('ManagedObjectNotFound', `${type}:${id}`, `${type}:${id}`, method);
}

/** What a FakeVcenter holds; the operations (fake-vcenter.ts) and the builder (build.ts) change it. */
export class FakeState {
  nextId = 1;
  readonly datacenters = new Map<string, { id: string; name: string; rootFolder: string }>();
  readonly clusters = new Map<string, { id: string; name: string; datacenter: string }>();
  readonly hosts = new Map<string, { id: string; name: string; datacenter: string; cluster?: string }>();
  readonly folders = new Map<string, { id: string; path: string; datacenter: string }>();
  readonly datastores = new Map<string, FakeDatastore>();
  readonly vms = new Map<string, FakeVm>();
  readonly snapshots = new Map<string, FakeSnapshot>();
  /** Datastore paths of files that exist (.vmx and disks), as vCenter would find them. */
  readonly files = new Set<string>();
  /** Configurations of unregistered VMs by .vmx path: what RegisterVM reads back. */
  readonly vmxConfigs = new Map<string, VmConfig>();

  constructor(readonly options: FakeVcenterOptions) {}

  /** The next id of a kind (`vm-7`): one counter, so the same calls always give the same ids. */
  id(prefix: string): string {
    return `${prefix}-${this.nextId++}`;
  }

  /** The folder at `path` below a datacenter's VM folder, made (with its parents) when missing. */
  folderFor(datacenter: string, rootFolder: string, path: string): string {
    let id = rootFolder;
    const parts = path.split('/').filter((p) => p !== '');
    for (let i = 0; i < parts.length; i++) {
      const sub = parts.slice(0, i + 1).join('/');
      const found = [...this.folders.values()].find((f) => f.datacenter === datacenter && f.path === sub);
      if (found) id = found.id;
      else {
        id = this.id('group-v');
        this.folders.set(id, { id, path: sub, datacenter });
      }
    }
    return id;
  }

  datastoreByName(datacenter: string, name: string): FakeDatastore | undefined {
    return [...this.datastores.values()].find((d) => d.datacenter === datacenter && d.name === name);
  }

  /**
   * Whether a datastore file (`[ds] dir/file`) exists: known to the fake, or found by the `pathExists` hook
   * below the datastore's URL; undefined when the fake cannot tell (no hook).
   */
  exists(datacenter: string, file: string): boolean | undefined {
    const host = this.hostPathOf(datacenter, file);
    if (this.options.hostFiles) return host !== undefined && this.options.hostFiles.exists(host);
    if (this.files.has(file)) return true;
    const hostPathExists = this.options.pathExists;
    if (!hostPathExists) return undefined;
    return host !== undefined && hostPathExists(host);
  }

  /** Where a datastore file (`[ds] dir/file`) is on the host, below its datastore's URL. */
  hostPathOf(datacenter: string, file: string): string | undefined {
    const ds = this.datastoreByName(datacenter, datastoreOfPath(file));
    const relative = file.replace(/^\[[^\]]*\]\s*/, '').replace(/\/+$/, '');
    return ds && `${ds.url.replace(/^file:\/\//, '').replace(/\/+$/, '')}/${relative}`;
  }

  usedBytes(datastore: string): number {
    let used = 0;
    for (const vm of this.vms.values()) {
      for (const d of vm.config.disks)
        if (!d.rdm && datastoreOfPath(d.file) === datastore) used += d.capacityBytes;
    }
    return used;
  }

  inventoryVm(vm: FakeVm): Vm {
    const host = this.hosts.get(vm.hostId);
    const c = vm.config;
    const homeDatastore = datastoreOfPath(c.vmxFile);
    return {
      id: vm.id,
      name: c.name,
      instanceUuid: c.instanceUuid,
      powerState: vm.powerState,
      // As the lab's simulator: the configured state whatever the power state (only a powered-on VM quiesces).
      tools: vm.tools,
      datacenter: vm.datacenter,
      host: host?.name ?? '',
      ...(host?.cluster ? { cluster: host.cluster } : {}),
      folder: this.folders.get(vm.folderId)?.path ?? '',
      vmxFile: c.vmxFile,
      homeDatastore,
      datastores: [...new Set([homeDatastore, ...c.disks.map((d) => datastoreOfPath(d.file))])],
      disks: c.disks.map((d) => ({
        key: d.key,
        label: d.label,
        kind: kindOf(d),
        capacityBytes: d.capacityBytes,
        file: d.file,
        datastore: datastoreOfPath(d.file),
        diskMode: d.diskMode,
        ...(d.rdm ? { lun: d.rdm.lun } : {}),
        controllerKey: d.controllerKey,
        unitNumber: d.unitNumber,
      })),
      snapshots: this.snapshotList(vm),
      hardware: {
        numCpu: c.numCpu,
        memoryMB: c.memoryMB,
        guestId: c.guestId,
        devices: c.devices.map((d) => ({ ...d })),
      },
    };
  }

  /** Depth first, parents before children, as vCenter's snapshot tree flattens. */
  snapshotList(vm: FakeVm): VmSnapshotRef[] {
    const out: VmSnapshotRef[] = [];
    const walk = (ids: string[]) => {
      for (const id of ids) {
        const s = this.snapshots.get(id)!;
        out.push({ id: s.id, name: s.name, createdAt: s.createdAt });
        walk(s.children);
      }
    };
    walk(vm.rootSnapshots);
    return out;
  }

  /** The inventory as vCenter would report it now. */
  inventory(): Inventory {
    return {
      datacenters: [...this.datacenters.values()].map(({ id, name }) => ({ id, name })),
      clusters: [...this.clusters.values()].map((c) => ({ ...c })),
      hosts: [...this.hosts.values()].map((h) => ({ ...h })),
      folders: [...this.folders.values()].map((f) => ({ ...f })),
      datastores: [...this.datastores.values()].map((d) => ({
        id: d.id,
        name: d.name,
        datacenter: d.datacenter,
        url: d.url,
        type: d.type,
        capacityBytes: d.capacityBytes,
        freeBytes: Math.max(0, d.capacityBytes - this.usedBytes(d.name)),
        extents: d.lun === undefined ? [] : [{ lun: d.lun, partition: 1 }],
        hosts: [...d.hosts].map((h) => this.hosts.get(h)?.name ?? h),
      })),
      vms: [...this.vms.values()].map((vm) => this.inventoryVm(vm)),
    };
  }

  devices(vm: FakeVm): VmDevices {
    const c = vm.config;
    return {
      powerState: vm.powerState,
      name: c.name,
      vmxFile: c.vmxFile,
      disks: c.disks.map((d) => ({
        key: d.key,
        file: d.file,
        diskMode: d.diskMode,
        capacityBytes: d.capacityBytes,
        controllerKey: d.controllerKey,
        unitNumber: d.unitNumber,
        label: d.label,
      })),
      scsiControllers: c.devices
        .filter((d) => d.kind === 'controller' && isScsiController(d.type))
        .map((d) => ({ key: d.key, busNumber: (d as { busNumber: number }).busNumber }))
        .sort((a, b) => a.busNumber - b.busNumber),
    };
  }
}
