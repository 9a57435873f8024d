import { createHash } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { UsageError } from '../../errors.js';
import type { DiskKind, Inventory, PowerState, Vm, VmSnapshotRef } from '../../model/inventory.js';
import { VsphereFault } from '../faults.js';
import { type CapturedDevice, datastoreOfPath, isScsiController } from '../inventory.js';
import type {
  CreateVmSnapshotOptions,
  CreateVmSpec,
  DiskAttachment,
  DiskChanges,
  OperationOptions,
  VcenterSession,
  VmDevices,
} from '../session.js';
import { TransportError } from '../transport.js';
import type { FakeDiskSpec, FakeSpec, FakeVmSpec } from './spec.js';

/** The operations whose calls are counted and which `failNext` and `delay` can target. */
export type FaultableMethod = Exclude<keyof VcenterSession, 'roundTrips'>;

export interface FakeVcenterOptions {
  /** Per datastore name: URL and LUN to use instead of the defaults (e.g. a memory array's volumes). */
  datastores?: Record<string, { url?: string; lun?: string }>;
  /**
   * Whether a host path exists: the directory of createDatastore, a file below a datastore's URL (disks and
   * .vmx files of createVm, registerVm, reconfigureDisks). With it the fake fails as vCenter does (NotFound,
   * FileNotFound, FileAlreadyExists); without it only the files the fake made itself are known, and disk files
   * it does not know are taken to exist.
   */
  pathExists?: (path: string) => boolean;
  /** Clock for snapshot creation times; default the system clock. */
  now?: () => Date;
}

interface FakeDisk {
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
interface VmConfig {
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

interface FakeVm {
  id: string;
  datacenter: string;
  hostId: string;
  folderId: string;
  powerState: PowerState;
  tools: boolean;
  config: VmConfig;
  /** Root snapshot ids, in creation order. */
  rootSnapshots: string[];
  currentSnapshot: string | undefined;
}

interface FakeSnapshot {
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

interface FakeDatastore {
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

interface Injected {
  error: Error;
  after: boolean;
}

const MiB = 1024 * 1024;
const GiB = 1024 * MiB;
const DISKS_PER_BUS = 15;
const FIRST_SCSI_KEY = 1000;
const FIRST_DEVICE_KEY = 2000;
/** Controllers every VM gets, as vCenter gives them (keys as the simulator's). */
const DEFAULT_CONTROLLERS: CapturedDevice[] = [
  { kind: 'controller', type: 'VirtualIDEController', key: 200, busNumber: 0 },
  { kind: 'controller', type: 'VirtualIDEController', key: 201, busNumber: 1 },
];

function hex(seed: string, length: number): string {
  return createHash('sha256').update(seed).digest('hex').slice(0, length);
}

function uuidOf(seed: string): string {
  const h = hex(seed, 32);
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

/** A VM name as vCenter writes it into directory and file names: `%`, `/` and `\` escaped. */
function fileNameOf(vmName: string): string {
  return vmName.replace(/%/g, '%25').replace(/\//g, '%2f').replace(/\\/g, '%5c');
}

/** `[ds] dir/` of a .vmx path: everything below it is the VM's home directory. */
function homeDirOf(vmxFile: string): string {
  return vmxFile.slice(0, vmxFile.lastIndexOf('/') + 1);
}

function kindOf(disk: FakeDisk): DiskKind {
  if (disk.rdm) return disk.rdm.compatibility === 'physical' ? 'rdm-physical' : 'rdm-virtual';
  return disk.diskMode.startsWith('independent') ? 'independent' : 'flat';
}

function fault(type: string, message: string, managedObject?: string, method?: string): VsphereFault {
  const what = method === undefined ? '' : `${method}: `;
  return new VsphereFault(type, `${what}vSphere fault ${type}: ${message}`, managedObject, method);
}

function notFound(type: string, id: string, method: string): VsphereFault {
  return fault('ManagedObjectNotFound', `${type}:${id}`, `${type}:${id}`, method);
}

/**
 * A stateful in-memory vCenter behind the same contract as the SOAP client (`VcenterSession`), for engine
 * tests that must run in milliseconds. It keeps an inventory (datacenters, clusters, hosts, folders,
 * datastores, VMs with power states, disks of every kind, snapshot trees, the files VMs own) and answers every
 * operation with vCenter's semantics where the engine depends on them: wrong power states are
 * InvalidPowerState, unknown ids ManagedObjectNotFound, a .vmx that exists FileAlreadyExists, a datastore in
 * use ResourceInUse, a quiesced snapshot without VMware Tools ToolsUnavailable. It passes the session
 * conformance suite (test/vsphere/session-conformance.ts) like the real client does against the simulator.
 *
 * For tests: `failNext` (one failure of an operation, before its effect or after it, as a lost answer),
 * `delay`, `calls`, and read access to the state (`vm`, `snapshot`, `fileExists`). Ids are deterministic:
 * the same spec and the same calls give the same ids.
 */
export class FakeVcenter implements VcenterSession {
  readonly #options: FakeVcenterOptions;
  #nextId = 1;
  #roundTrips = 0;
  #loggedOut = false;
  readonly #datacenters = new Map<string, { id: string; name: string; rootFolder: string }>();
  readonly #clusters = new Map<string, { id: string; name: string; datacenter: string }>();
  readonly #hosts = new Map<string, { id: string; name: string; datacenter: string; cluster?: string }>();
  readonly #folders = new Map<string, { id: string; path: string; datacenter: string }>();
  readonly #datastores = new Map<string, FakeDatastore>();
  readonly #vms = new Map<string, FakeVm>();
  readonly #snapshots = new Map<string, FakeSnapshot>();
  /** Datastore paths of files that exist (.vmx and disks), as vCenter would find them. */
  readonly #files = new Set<string>();
  /** Configurations of unregistered VMs by .vmx path: what RegisterVM reads back. */
  readonly #vmxConfigs = new Map<string, VmConfig>();
  readonly #faults = new Map<FaultableMethod, Injected[]>();
  readonly #delays = new Map<FaultableMethod, number>();
  readonly #calls = new Map<FaultableMethod, number>();
  /** VMs with a task running (only ever seen while a delayed operation waits). */
  readonly #busyVms = new Set<string>();

  constructor(options: FakeVcenterOptions = {}) {
    this.#options = options;
  }

  /**
   * A fake vCenter holding the inventory of a lab spec (the shape of src/lab/spec.ts, with the lab's
   * defaults and file names: `[ds] vm/vm.vmx`, disk N at `[ds] vm/vm_N.vmdk`, RDM mapping files in the home
   * directory). Dangling references are a UsageError.
   */
  static fromLabSpec(spec: FakeSpec, options: FakeVcenterOptions = {}): FakeVcenter {
    const vc = new FakeVcenter(options);
    for (const dc of spec.datacenters) vc.#addDatacenter(dc);
    return vc;
  }

  #id(prefix: string): string {
    return `${prefix}-${this.#nextId++}`;
  }

  #addDatacenter(dc: FakeSpec['datacenters'][number]): void {
    const bad = (message: string) => new UsageError('FAKE_SPEC_INVALID', `datacenter ${dc.name}: ${message}`);
    const id = this.#id('datacenter');
    const rootFolder = this.#id('group-v');
    this.#datacenters.set(id, { id, name: dc.name, rootFolder });
    this.#folders.set(rootFolder, { id: rootFolder, path: '', datacenter: dc.name });
    const hostIds = new Map<string, string>();
    const addHost = (name: string, cluster?: string) => {
      const hostId = this.#id('host');
      this.#hosts.set(hostId, { id: hostId, name, datacenter: dc.name, ...(cluster ? { cluster } : {}) });
      hostIds.set(name, hostId);
    };
    for (const c of dc.clusters ?? []) {
      const clusterId = this.#id('domain-c');
      this.#clusters.set(clusterId, { id: clusterId, name: c.name, datacenter: dc.name });
      for (const h of c.hosts) addHost(h, c.name);
    }
    for (const h of dc.hosts ?? []) addHost(h);
    for (const ds of dc.datastores ?? []) {
      const given = this.#options.datastores?.[ds.name];
      const type = ds.type ?? 'VMFS';
      const dsId = this.#id('datastore');
      this.#datastores.set(dsId, {
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
        if (!this.#datastoreByName(dc.name, name))
          throw bad(`VM ${vm.name}: datastore ${name} is not defined`);
      }
      this.#addVm(vm, { datacenter: dc.name, hostId, home, rootFolder });
    }
  }

  /** A VM of the spec as the lab makes it: PVSCSI controllers of 15 disks, the lab's file names. */
  #addVm(
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
      this.#files.add(file);
    });
    this.#files.add(vmxFile);
    const vmId = this.#id('vm');
    this.#vms.set(vmId, {
      id: vmId,
      datacenter,
      hostId,
      folderId: this.#folderFor(datacenter, rootFolder, spec.folder ?? ''),
      powerState: spec.power ?? 'poweredOn',
      tools: spec.tools ?? true,
      config,
      rootSnapshots: [],
      currentSnapshot: undefined,
    });
  }

  /** The folder at `path` below a datacenter's VM folder, made (with its parents) when missing. */
  #folderFor(datacenter: string, rootFolder: string, path: string): string {
    let id = rootFolder;
    const parts = path.split('/').filter((p) => p !== '');
    for (let i = 0; i < parts.length; i++) {
      const sub = parts.slice(0, i + 1).join('/');
      const found = [...this.#folders.values()].find((f) => f.datacenter === datacenter && f.path === sub);
      if (found) id = found.id;
      else {
        id = this.#id('group-v');
        this.#folders.set(id, { id, path: sub, datacenter });
      }
    }
    return id;
  }

  #datastoreByName(datacenter: string, name: string): FakeDatastore | undefined {
    return [...this.#datastores.values()].find((d) => d.datacenter === datacenter && d.name === name);
  }

  // --- test controls -------------------------------------------------------------------------------------

  /**
   * Makes the next call of `method` fail once, with `error` (default: a VsphereFault `SystemError`, or with
   * `after`, a lost answer: TransportError VCENTER_CONNECTION_FAILED). Without `after` the call changes
   * nothing; with it, the effect happens and the caller is told it failed. Calls queue up in order.
   */
  failNext(method: FaultableMethod, error?: Error, options: { after?: boolean } = {}): void {
    const after = options.after === true;
    const queue = this.#faults.get(method) ?? [];
    queue.push({
      error:
        error ??
        (after
          ? new TransportError('VCENTER_CONNECTION_FAILED', `fake vCenter: answer to ${method} lost`, false)
          : fault('SystemError', 'injected failure', undefined, method)),
      after,
    });
    this.#faults.set(method, queue);
  }

  /** Makes every later call of `method` wait `ms` before acting (0 removes it); an abort ends the wait. */
  delay(method: FaultableMethod, ms: number): void {
    if (ms > 0) this.#delays.set(method, ms);
    else this.#delays.delete(method);
  }

  /** How many times `method` was called (failed calls included). */
  calls(method: FaultableMethod): number {
    return this.#calls.get(method) ?? 0;
  }

  /** One per operation called: the fake's round trip is the whole operation. */
  get roundTrips(): number {
    return this.#roundTrips;
  }

  /** The VM with this id or name, as the inventory would show it; undefined when there is none. */
  vm(idOrName: string): Vm | undefined {
    const vm = this.#vms.get(idOrName) ?? [...this.#vms.values()].find((v) => v.config.name === idOrName);
    return vm && this.#inventoryVm(vm);
  }

  /** A snapshot's recorded facts (for assertions on memory and quiesce); undefined when there is none. */
  snapshot(id: string): Readonly<Omit<FakeSnapshot, 'children'>> | undefined {
    const s = this.#snapshots.get(id);
    if (!s) return undefined;
    const { children: _children, ...facts } = s;
    return facts;
  }

  /** Whether a file (datastore path `[ds] dir/file`) exists as far as this vCenter knows. */
  fileExists(path: string): boolean {
    return this.#files.has(path);
  }

  /** Makes a file known to exist (e.g. a disk an array restored), so RegisterVM-like checks can find it. */
  addFile(path: string): void {
    this.#files.add(path);
  }

  /**
   * Counts the call, waits for an injected delay, and throws an injected failure; after `effect`, throws a
   * failure injected `after`. Every operation goes through here once.
   */
  async #run<T>(
    method: FaultableMethod,
    options: OperationOptions,
    effect: () => T,
    taskOnVm?: string,
  ): Promise<T> {
    this.#calls.set(method, this.calls(method) + 1);
    this.#roundTrips++;
    options.signal?.throwIfAborted();
    if (taskOnVm === undefined) return this.#act(method, options, effect);
    // vCenter runs one task at a time on a VM: a second one while the first runs is TaskInProgress.
    if (this.#busyVms.has(taskOnVm)) {
      throw fault(
        'TaskInProgress',
        `another task is in progress on ${taskOnVm}`,
        `VirtualMachine:${taskOnVm}`,
        method,
      );
    }
    this.#busyVms.add(taskOnVm);
    try {
      return await this.#act(method, options, effect);
    } finally {
      this.#busyVms.delete(taskOnVm);
    }
  }

  async #act<T>(method: FaultableMethod, options: OperationOptions, effect: () => T): Promise<T> {
    const ms = this.#delays.get(method);
    if (ms !== undefined) {
      try {
        await sleep(ms, undefined, options.signal ? { signal: options.signal } : {});
      } catch (err) {
        // As the client: an abort rejects with the signal's reason, not a generic AbortError.
        throw options.signal?.aborted ? options.signal.reason : err;
      }
    } else {
      // Never act synchronously inside the call: a real vCenter acts after the caller has moved on.
      await Promise.resolve();
    }
    if (this.#loggedOut && method !== 'logout') {
      throw fault('NotAuthenticated', 'the session is logged out', undefined, method);
    }
    const injected = this.#faults.get(method)?.shift();
    if (injected && !injected.after) throw injected.error;
    const result = effect();
    if (injected) throw injected.error;
    return result;
  }

  // --- the contract --------------------------------------------------------------------------------------

  inventory(): Promise<Inventory> {
    return this.#run('inventory', {}, () => ({
      datacenters: [...this.#datacenters.values()].map(({ id, name }) => ({ id, name })),
      clusters: [...this.#clusters.values()].map((c) => ({ ...c })),
      hosts: [...this.#hosts.values()].map((h) => ({ ...h })),
      folders: [...this.#folders.values()].map((f) => ({ ...f })),
      datastores: [...this.#datastores.values()].map((d) => ({
        id: d.id,
        name: d.name,
        datacenter: d.datacenter,
        url: d.url,
        type: d.type,
        capacityBytes: d.capacityBytes,
        freeBytes: Math.max(0, d.capacityBytes - this.#usedBytes(d.name)),
        extents: d.lun === undefined ? [] : [{ lun: d.lun, partition: 1 }],
        hosts: [...d.hosts].map((h) => this.#hosts.get(h)?.name ?? h),
      })),
      vms: [...this.#vms.values()].map((vm) => this.#inventoryVm(vm)),
    }));
  }

  #usedBytes(datastore: string): number {
    let used = 0;
    for (const vm of this.#vms.values()) {
      for (const d of vm.config.disks)
        if (!d.rdm && datastoreOfPath(d.file) === datastore) used += d.capacityBytes;
    }
    return used;
  }

  #inventoryVm(vm: FakeVm): Vm {
    const host = this.#hosts.get(vm.hostId);
    const c = vm.config;
    const homeDatastore = datastoreOfPath(c.vmxFile);
    return {
      id: vm.id,
      name: c.name,
      instanceUuid: c.instanceUuid,
      powerState: vm.powerState,
      datacenter: vm.datacenter,
      host: host?.name ?? '',
      ...(host?.cluster ? { cluster: host.cluster } : {}),
      folder: this.#folders.get(vm.folderId)?.path ?? '',
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
      snapshots: this.#snapshotList(vm),
      hardware: {
        numCpu: c.numCpu,
        memoryMB: c.memoryMB,
        guestId: c.guestId,
        devices: c.devices.map((d) => ({ ...d })),
      },
    };
  }

  /** Depth first, parents before children, as vCenter's snapshot tree flattens. */
  #snapshotList(vm: FakeVm): VmSnapshotRef[] {
    const out: VmSnapshotRef[] = [];
    const walk = (ids: string[]) => {
      for (const id of ids) {
        const s = this.#snapshots.get(id)!;
        out.push({ id: s.id, name: s.name, createdAt: s.createdAt });
        walk(s.children);
      }
    };
    walk(vm.rootSnapshots);
    return out;
  }

  #vm(vmId: string, method: string): FakeVm {
    const vm = this.#vms.get(vmId);
    if (!vm) throw notFound('VirtualMachine', vmId, method);
    return vm;
  }

  vmState(
    vmId: string,
    options: OperationOptions = {},
  ): Promise<{ powerState: PowerState; snapshots: VmSnapshotRef[] }> {
    return this.#run('vmState', options, () => {
      const vm = this.#vm(vmId, 'RetrievePropertiesEx');
      return { powerState: vm.powerState, snapshots: this.#snapshotList(vm) };
    });
  }

  createVmSnapshot(vmId: string, options: CreateVmSnapshotOptions): Promise<string> {
    return this.#run(
      'createVmSnapshot',
      options,
      () => {
        const method = 'CreateSnapshot_Task';
        const vm = this.#vm(vmId, method);
        const running = vm.powerState === 'poweredOn';
        if (running && options.quiesce && !vm.tools) {
          throw fault(
            'ToolsUnavailable',
            `VMware Tools are not running in ${vm.config.name}`,
            `VirtualMachine:${vmId}`,
            method,
          );
        }
        const id = this.#id('snapshot');
        const parent = vm.currentSnapshot;
        this.#snapshots.set(id, {
          id,
          vmId,
          name: options.name,
          description: options.description,
          createdAt: (this.#options.now?.() ?? new Date()).toISOString(),
          parent,
          children: [],
          // vCenter ignores memory and quiesce unless the VM runs.
          memory: options.memory && running,
          quiesced: options.quiesce && running,
          powerState: vm.powerState,
        });
        if (parent === undefined) vm.rootSnapshots.push(id);
        else this.#snapshots.get(parent)!.children.push(id);
        vm.currentSnapshot = id;
        return id;
      },
      vmId,
    );
  }

  removeVmSnapshot(snapshotId: string, options: OperationOptions = {}): Promise<void> {
    return this.#run(
      'removeVmSnapshot',
      options,
      () => {
        const s = this.#snapshots.get(snapshotId);
        if (!s) throw notFound('VirtualMachineSnapshot', snapshotId, 'RemoveSnapshot_Task');
        const vm = this.#vms.get(s.vmId)!;
        const siblings = s.parent === undefined ? vm.rootSnapshots : this.#snapshots.get(s.parent)!.children;
        siblings.splice(siblings.indexOf(snapshotId), 1, ...s.children);
        for (const child of s.children) this.#snapshots.get(child)!.parent = s.parent;
        if (vm.currentSnapshot === snapshotId) vm.currentSnapshot = s.parent;
        this.#snapshots.delete(snapshotId);
      },
      this.#snapshots.get(snapshotId)?.vmId,
    );
  }

  #setPower(vmId: string, method: string, from: PowerState[], to: PowerState): void {
    const vm = this.#vm(vmId, method);
    if (!from.includes(vm.powerState)) {
      throw fault(
        'InvalidPowerState',
        `${vm.config.name} is ${vm.powerState}, the operation needs ${from.join(' or ')}`,
        `VirtualMachine:${vmId}`,
        method,
      );
    }
    vm.powerState = to;
  }

  suspendVm(vmId: string, options: OperationOptions = {}): Promise<void> {
    return this.#run(
      'suspendVm',
      options,
      () => this.#setPower(vmId, 'SuspendVM_Task', ['poweredOn'], 'suspended'),
      vmId,
    );
  }

  powerOnVm(vmId: string, options: OperationOptions = {}): Promise<void> {
    return this.#run(
      'powerOnVm',
      options,
      () => this.#setPower(vmId, 'PowerOnVM_Task', ['poweredOff', 'suspended'], 'poweredOn'),
      vmId,
    );
  }

  powerOffVm(vmId: string, options: OperationOptions = {}): Promise<void> {
    return this.#run(
      'powerOffVm',
      options,
      () => this.#setPower(vmId, 'PowerOffVM_Task', ['poweredOn', 'suspended'], 'poweredOff'),
      vmId,
    );
  }

  /**
   * Checks the folder (and that no VM there has the name: vCenter keeps VM names unique per folder), the host
   * and that the host mounts the .vmx's datastore; returns the datacenter.
   */
  #placement(spec: CreateVmSpec, method: string): string {
    const folder = this.#folders.get(spec.folderId);
    if (!folder) throw notFound('Folder', spec.folderId, method);
    const same = [...this.#vms.values()].find(
      (v) => v.folderId === spec.folderId && v.config.name === spec.name,
    );
    if (same) {
      throw fault(
        'DuplicateName',
        `a VM named ${spec.name} exists in folder ${folder.path || '/'}`,
        `VirtualMachine:${same.id}`,
        method,
      );
    }
    const host = this.#hosts.get(spec.hostId);
    if (!host) throw notFound('HostSystem', spec.hostId, method);
    const ds = this.#datastoreByName(folder.datacenter, datastoreOfPath(spec.vmxFile));
    if (!ds?.hosts.has(spec.hostId)) {
      throw fault(
        'InvalidDatastore',
        `host ${host.name} does not mount the datastore of ${spec.vmxFile}`,
        undefined,
        method,
      );
    }
    return folder.datacenter;
  }

  #register(id: string, datacenter: string, spec: CreateVmSpec, config: VmConfig): string {
    this.#vms.set(id, {
      id,
      datacenter,
      hostId: spec.hostId,
      folderId: spec.folderId,
      powerState: 'poweredOff',
      tools: true,
      config,
      rootSnapshots: [],
      currentSnapshot: undefined,
    });
    return id;
  }

  /** The controllers, NICs and disks of a captured configuration, as vCenter would key them. */
  #configOf(spec: CreateVmSpec, vmId: string, datacenter: string, method: string): VmConfig {
    const config: VmConfig = {
      name: spec.name,
      instanceUuid: spec.instanceUuid ?? uuidOf(`instance:${vmId}`),
      numCpu: Math.max(1, spec.numCpu),
      memoryMB: Math.max(4, spec.memoryMB),
      guestId: spec.guestId,
      vmxFile: spec.vmxFile,
      devices: [...DEFAULT_CONTROLLERS],
      disks: [],
      nextKey: FIRST_DEVICE_KEY,
    };
    for (const d of spec.devices) {
      if (d.kind === 'controller') {
        if (!config.devices.some((c) => c.key === d.key)) config.devices.push({ ...d });
      } else {
        const key = config.nextKey++;
        const mac = spec.keepMacAddresses
          ? d.macAddress
          : `00:50:56:${hex(`mac:${vmId}:${key}`, 6).replace(/(..)(?=.)/g, '$1:')}`;
        config.devices.push({ ...d, key, ...(mac === undefined ? {} : { macAddress: mac }) });
      }
    }
    this.#addDisks(datacenter, config, spec.disks, method);
    return config;
  }

  /**
   * Whether a datastore file (`[ds] dir/file`) exists: known to the fake, or found by the `pathExists` hook
   * below the datastore's URL; undefined when the fake cannot tell (no hook).
   */
  #exists(datacenter: string, file: string): boolean | undefined {
    if (this.#files.has(file)) return true;
    const hostPathExists = this.#options.pathExists;
    if (!hostPathExists) return undefined;
    const ds = this.#datastoreByName(datacenter, datastoreOfPath(file));
    const relative = file.replace(/^\[[^\]]*\]\s*/, '');
    return ds !== undefined && hostPathExists(`${ds.url.replace(/\/+$/, '')}/${relative}`);
  }

  /** Adds disk devices (existing files) to a configuration; returns their keys. */
  #addDisks(datacenter: string, config: VmConfig, disks: DiskAttachment[], method: string): number[] {
    const keys: number[] = [];
    for (const d of disks) {
      if (this.#exists(datacenter, d.file) === false) {
        throw fault('FileNotFound', `file ${d.file} was not found`, undefined, method);
      }
      const controller = config.devices.find((c) => c.kind === 'controller' && c.key === d.controllerKey);
      const taken = config.disks.some(
        (x) => x.controllerKey === d.controllerKey && x.unitNumber === d.unitNumber,
      );
      if (!controller || taken || d.unitNumber === 7 || d.unitNumber < 0 || d.unitNumber > 15) {
        throw fault(
          'InvalidDeviceSpec',
          `no free slot ${d.controllerKey}:${d.unitNumber} for ${d.file} in ${config.name}`,
          undefined,
          method,
        );
      }
      const key = config.nextKey++;
      const label = d.label ?? `Hard disk ${config.disks.length + 1}`;
      config.disks.push({
        key,
        label,
        file: d.file,
        capacityBytes: d.capacityBytes,
        diskMode: d.diskMode,
        controllerKey: d.controllerKey,
        unitNumber: d.unitNumber,
      });
      keys.push(key);
    }
    return keys;
  }

  createVm(spec: CreateVmSpec, options: OperationOptions = {}): Promise<string> {
    return this.#run('createVm', options, () => {
      const method = 'CreateVM_Task';
      const datacenter = this.#placement(spec, method);
      if (this.#exists(datacenter, spec.vmxFile) === true) {
        throw fault('FileAlreadyExists', `${spec.vmxFile} exists`, undefined, method);
      }
      const id = this.#id('vm');
      const config = this.#configOf(spec, id, datacenter, method);
      this.#files.add(spec.vmxFile);
      return this.#register(id, datacenter, spec, config);
    });
  }

  registerVm(spec: CreateVmSpec, options: OperationOptions = {}): Promise<string> {
    return this.#run('registerVm', options, () => {
      const method = 'RegisterVM_Task';
      if ([...this.#vms.values()].some((v) => v.config.vmxFile === spec.vmxFile)) {
        throw fault('AlreadyExists', `${spec.vmxFile} is registered already`, undefined, method);
      }
      const datacenter = this.#placement(spec, method);
      if (this.#exists(datacenter, spec.vmxFile) !== true) {
        throw fault('NotFound', `${spec.vmxFile} does not exist`, undefined, method);
      }
      // vCenter reads the .vmx: the VM comes back as it was unregistered, under its new name.
      const kept = this.#vmxConfigs.get(spec.vmxFile);
      const id = this.#id('vm');
      const config = kept ? { ...kept, name: spec.name } : this.#configOf(spec, id, datacenter, method);
      this.#vmxConfigs.delete(spec.vmxFile);
      return this.#register(id, datacenter, spec, config);
    });
  }

  #devices(vm: FakeVm): VmDevices {
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

  vmDevices(vmId: string, options: OperationOptions = {}): Promise<VmDevices> {
    return this.#run('vmDevices', options, () => this.#devices(this.#vm(vmId, 'RetrievePropertiesEx')));
  }

  /** Applies removals then additions atomically: on a fault nothing changes, as one ReconfigVM_Task. */
  #reconfigure(vm: FakeVm, changes: DiskChanges, method: string): number[] {
    const draft: VmConfig = { ...vm.config, disks: [...vm.config.disks] };
    for (const r of changes.remove ?? []) {
      const at = draft.disks.findIndex((d) => d.key === r.key);
      if (at < 0)
        throw fault('InvalidDeviceSpec', `${vm.config.name} has no device ${r.key}`, undefined, method);
      draft.disks.splice(at, 1);
    }
    const host = vm.hostId;
    for (const a of changes.add ?? []) {
      const ds = this.#datastoreByName(vm.datacenter, datastoreOfPath(a.file));
      if (!ds?.hosts.has(host)) {
        throw fault(
          'InvalidDatastore',
          `the host of ${vm.config.name} does not mount ${a.file}`,
          undefined,
          method,
        );
      }
    }
    const keys = this.#addDisks(vm.datacenter, draft, changes.add ?? [], method);
    vm.config = draft;
    return keys;
  }

  reconfigureDisks(vmId: string, changes: DiskChanges, options: OperationOptions = {}): Promise<number[]> {
    return this.#run(
      'reconfigureDisks',
      options,
      () => {
        // As the client: no change, no ReconfigVM_Task (so no lookup of the VM either).
        if ((changes.add?.length ?? 0) + (changes.remove?.length ?? 0) === 0) return [];
        return this.#reconfigure(this.#vm(vmId, 'ReconfigVM_Task'), changes, 'ReconfigVM_Task');
      },
      vmId,
    );
  }

  detachDiskFiles(vmId: string, files: string[], options: OperationOptions = {}): Promise<number> {
    return this.#run(
      'detachDiskFiles',
      options,
      () => {
        const vm = this.#vm(vmId, 'ReconfigVM_Task');
        const remove = this.#devices(vm).disks.filter((d) => files.includes(d.file));
        this.#reconfigure(vm, { remove }, 'ReconfigVM_Task');
        return remove.length;
      },
      vmId,
    );
  }

  #unregister(vm: FakeVm): void {
    for (const s of this.#snapshotList(vm)) this.#snapshots.delete(s.id);
    this.#vms.delete(vm.id);
  }

  unregisterVm(vmId: string, options: OperationOptions = {}): Promise<void> {
    return this.#run(
      'unregisterVm',
      options,
      () => {
        const vm = this.#vm(vmId, 'UnregisterVM');
        if (vm.powerState === 'poweredOn') {
          throw fault(
            'InvalidPowerState',
            `${vm.config.name} is powered on`,
            `VirtualMachine:${vmId}`,
            'UnregisterVM',
          );
        }
        this.#vmxConfigs.set(vm.config.vmxFile, vm.config);
        this.#unregister(vm);
      },
      vmId,
    );
  }

  destroyVm(vmId: string, options: OperationOptions = {}): Promise<void> {
    return this.#run(
      'destroyVm',
      options,
      () => {
        const vm = this.#vms.get(vmId);
        if (!vm) return;
        // Destroy_Task deletes the VM's home directory; disks elsewhere stay.
        const home = homeDirOf(vm.config.vmxFile);
        for (const f of [...this.#files]) if (f.startsWith(home)) this.#files.delete(f);
        this.#unregister(vm);
      },
      vmId,
    );
  }

  createDatastore(
    hostId: string,
    name: string,
    path: string,
    options: OperationOptions = {},
  ): Promise<string> {
    return this.#run('createDatastore', options, () => {
      const method = 'CreateLocalDatastore';
      const host = this.#hosts.get(hostId);
      if (!host) throw notFound('HostSystem', hostId, method);
      const same = this.#datastoreByName(host.datacenter, name);
      if (same && (same.hosts.has(hostId) || same.url !== path)) {
        throw fault('DuplicateName', `a datastore named ${name} exists`, `Datastore:${same.id}`, method);
      }
      if (this.#options.pathExists && !this.#options.pathExists(path)) {
        throw fault('NotFound', `${path} does not exist on host ${host.name}`, undefined, method);
      }
      if (same) {
        // The same directory mounted on one more host is the same datastore, as in vCenter.
        same.hosts.add(hostId);
        return same.id;
      }
      const id = this.#id('datastore');
      this.#datastores.set(id, {
        id,
        name,
        datacenter: host.datacenter,
        url: path,
        type: 'OTHER',
        capacityBytes: 0,
        lun: undefined,
        hosts: new Set([hostId]),
      });
      return id;
    });
  }

  removeDatastore(hostId: string, datastoreId: string, options: OperationOptions = {}): Promise<void> {
    return this.#run('removeDatastore', options, () => {
      const ds = this.#datastores.get(datastoreId);
      if (!ds) return;
      const user = [...this.#vms.values()].find(
        (vm) =>
          vm.datacenter === ds.datacenter &&
          [vm.config.vmxFile, ...vm.config.disks.map((d) => d.file)].some(
            (f) => datastoreOfPath(f) === ds.name,
          ),
      );
      if (user) {
        throw fault(
          'ResourceInUse',
          `The resource '${ds.name}' is in use: VM ${user.config.name} has files on it`,
          undefined,
          'RemoveDatastore',
        );
      }
      ds.hosts.delete(hostId);
      if (ds.hosts.size === 0) this.#datastores.delete(datastoreId);
    });
  }

  logout(): Promise<void> {
    if (this.#loggedOut) return Promise.resolve();
    return this.#run('logout', {}, () => {
      this.#loggedOut = true;
    });
  }
}
