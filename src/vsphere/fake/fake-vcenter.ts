import { setTimeout as sleep } from 'node:timers/promises';
import type { Inventory, PowerState, Vm, VmSnapshotRef } from '../../model/inventory.js';
import { datastoreOfPath } from '../inventory.js';
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
import { addDatacenter } from './build.js';
import type { FakeSpec, FakeVcenterOptions } from './spec.js';
import {
  DEFAULT_CONTROLLERS,
  type FakeSnapshot,
  FakeState,
  type FakeVm,
  FIRST_DEVICE_KEY,
  fault,
  hex,
  homeDirOf,
  notFound,
  uuidOf,
  type VmConfig,
} from './state.js';

/** The operations whose calls are counted and which `failNext` and `delay` can target. */
export type FaultableMethod = Exclude<keyof VcenterSession, 'roundTrips'>;

/** vCenter's power tasks: the states each accepts and the state it leaves. */
const POWER_CHANGES = {
  suspendVm: { method: 'SuspendVM_Task', from: ['poweredOn'], to: 'suspended' },
  powerOnVm: { method: 'PowerOnVM_Task', from: ['poweredOff', 'suspended'], to: 'poweredOn' },
  powerOffVm: { method: 'PowerOffVM_Task', from: ['poweredOn', 'suspended'], to: 'poweredOff' },
} as const satisfies Record<string, { method: string; from: PowerState[]; to: PowerState }>;

interface Injected {
  error: Error;
  after: boolean;
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
  readonly #state: FakeState;
  #roundTrips = 0;
  #loggedOut = false;
  readonly #faults = new Map<FaultableMethod, Injected[]>();
  readonly #delays = new Map<FaultableMethod, number>();
  readonly #calls = new Map<FaultableMethod, number>();
  /** VMs with a task running (only ever seen while a delayed operation waits). */
  readonly #busyVms = new Set<string>();

  constructor(options: FakeVcenterOptions = {}) {
    this.#state = new FakeState(options);
  }

  /**
   * A fake vCenter holding the inventory of a lab spec (the shape of src/lab/spec.ts, with the lab's
   * defaults and file names: `[ds] vm/vm.vmx`, disk N at `[ds] vm/vm_N.vmdk`, RDM mapping files in the home
   * directory). Dangling references are a UsageError.
   */
  static fromLabSpec(spec: FakeSpec, options: FakeVcenterOptions = {}): FakeVcenter {
    const vc = new FakeVcenter(options);
    for (const dc of spec.datacenters) addDatacenter(vc.#state, dc);
    return vc;
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
    const vm =
      this.#state.vms.get(idOrName) ?? [...this.#state.vms.values()].find((v) => v.config.name === idOrName);
    return vm && this.#state.inventoryVm(vm);
  }

  /** A snapshot's recorded facts (for assertions on memory and quiesce); undefined when there is none. */
  snapshot(id: string): Readonly<Omit<FakeSnapshot, 'children'>> | undefined {
    const s = this.#state.snapshots.get(id);
    if (!s) return undefined;
    const { children: _children, ...facts } = s;
    return facts;
  }

  /** Whether a file (datastore path `[ds] dir/file`) exists as far as this vCenter knows. */
  fileExists(path: string): boolean {
    return this.#state.files.has(path);
  }

  /** Makes a file known to exist (e.g. a disk an array restored), so RegisterVM-like checks can find it. */
  addFile(path: string): void {
    this.#state.files.add(path);
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
    return this.#run('inventory', {}, () => this.#state.inventory());
  }

  #vm(vmId: string, method: string): FakeVm {
    const vm = this.#state.vms.get(vmId);
    if (!vm) throw notFound('VirtualMachine', vmId, method);
    return vm;
  }

  vmState(
    vmId: string,
    options: OperationOptions = {},
  ): Promise<{ powerState: PowerState; snapshots: VmSnapshotRef[] }> {
    return this.#run('vmState', options, () => {
      const vm = this.#vm(vmId, 'RetrievePropertiesEx');
      return { powerState: vm.powerState, snapshots: this.#state.snapshotList(vm) };
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
        if (running && options.quiesce && vm.tools !== 'running') {
          throw fault(
            'ToolsUnavailable',
            `VMware Tools are not running in ${vm.config.name}`,
            `VirtualMachine:${vmId}`,
            method,
          );
        }
        const id = this.#state.id('snapshot');
        const parent = vm.currentSnapshot;
        this.#state.snapshots.set(id, {
          id,
          vmId,
          name: options.name,
          description: options.description,
          createdAt: (this.#state.options.now?.() ?? new Date()).toISOString(),
          parent,
          children: [],
          // vCenter ignores memory and quiesce unless the VM runs.
          memory: options.memory && running,
          quiesced: options.quiesce && running,
          powerState: vm.powerState,
        });
        if (parent === undefined) vm.rootSnapshots.push(id);
        else this.#state.snapshots.get(parent)!.children.push(id);
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
        const s = this.#state.snapshots.get(snapshotId);
        if (!s) throw notFound('VirtualMachineSnapshot', snapshotId, 'RemoveSnapshot_Task');
        const vm = this.#state.vms.get(s.vmId)!;
        const siblings =
          s.parent === undefined ? vm.rootSnapshots : this.#state.snapshots.get(s.parent)!.children;
        siblings.splice(siblings.indexOf(snapshotId), 1, ...s.children);
        for (const child of s.children) this.#state.snapshots.get(child)!.parent = s.parent;
        if (vm.currentSnapshot === snapshotId) vm.currentSnapshot = s.parent;
        this.#state.snapshots.delete(snapshotId);
      },
      this.#state.snapshots.get(snapshotId)?.vmId,
    );
  }

  /** Changes a VM's power state as vCenter's task would, refusing from a state the task does not accept. */
  #changePower(
    operation: keyof typeof POWER_CHANGES,
    vmId: string,
    options: OperationOptions,
  ): Promise<void> {
    const { method, to } = POWER_CHANGES[operation];
    const from: readonly PowerState[] = POWER_CHANGES[operation].from;
    return this.#run(
      operation,
      options,
      () => {
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
      },
      vmId,
    );
  }

  suspendVm(vmId: string, options: OperationOptions = {}): Promise<void> {
    return this.#changePower('suspendVm', vmId, options);
  }

  powerOnVm(vmId: string, options: OperationOptions = {}): Promise<void> {
    return this.#changePower('powerOnVm', vmId, options);
  }

  powerOffVm(vmId: string, options: OperationOptions = {}): Promise<void> {
    return this.#changePower('powerOffVm', vmId, options);
  }

  /**
   * Checks the folder (and that no VM there has the name: vCenter keeps VM names unique per folder), the host
   * and that the host mounts the .vmx's datastore; returns the datacenter.
   */
  #placement(spec: CreateVmSpec, method: string): string {
    const folder = this.#state.folders.get(spec.folderId);
    if (!folder) throw notFound('Folder', spec.folderId, method);
    const same = [...this.#state.vms.values()].find(
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
    const host = this.#state.hosts.get(spec.hostId);
    if (!host) throw notFound('HostSystem', spec.hostId, method);
    const ds = this.#state.datastoreByName(folder.datacenter, datastoreOfPath(spec.vmxFile));
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
    this.#state.vms.set(id, {
      id,
      datacenter,
      hostId: spec.hostId,
      folderId: spec.folderId,
      powerState: 'poweredOff',
      tools: 'running',
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

  /** Adds disk devices (existing files) to a configuration; returns their keys. */
  #addDisks(datacenter: string, config: VmConfig, disks: DiskAttachment[], method: string): number[] {
    const keys: number[] = [];
    for (const d of disks) {
      if (this.#state.exists(datacenter, d.file) === false) {
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
      if (this.#state.exists(datacenter, spec.vmxFile) === true) {
        throw fault('FileAlreadyExists', `${spec.vmxFile} exists`, undefined, method);
      }
      const id = this.#state.id('vm');
      const config = this.#configOf(spec, id, datacenter, method);
      this.#state.files.add(spec.vmxFile);
      const vmxHostPath = this.#state.hostPathOf(datacenter, spec.vmxFile);
      if (vmxHostPath !== undefined)
        this.#state.options.hostFiles?.write(vmxHostPath, `displayName = "${spec.name}"\n`);
      return this.#register(id, datacenter, spec, config);
    });
  }

  registerVm(spec: CreateVmSpec, options: OperationOptions = {}): Promise<string> {
    return this.#run('registerVm', options, () => {
      const method = 'RegisterVM_Task';
      if ([...this.#state.vms.values()].some((v) => v.config.vmxFile === spec.vmxFile)) {
        throw fault('AlreadyExists', `${spec.vmxFile} is registered already`, undefined, method);
      }
      const datacenter = this.#placement(spec, method);
      if (this.#state.exists(datacenter, spec.vmxFile) !== true) {
        throw fault('NotFound', `${spec.vmxFile} does not exist`, undefined, method);
      }
      // vCenter reads the .vmx: the VM comes back as it was unregistered, under its new name.
      const kept = this.#state.vmxConfigs.get(spec.vmxFile);
      const id = this.#state.id('vm');
      const config = kept ? { ...kept, name: spec.name } : this.#configOf(spec, id, datacenter, method);
      this.#state.vmxConfigs.delete(spec.vmxFile);
      return this.#register(id, datacenter, spec, config);
    });
  }

  vmDevices(vmId: string, options: OperationOptions = {}): Promise<VmDevices> {
    return this.#run('vmDevices', options, () => this.#state.devices(this.#vm(vmId, 'RetrievePropertiesEx')));
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
      const ds = this.#state.datastoreByName(vm.datacenter, datastoreOfPath(a.file));
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
        const remove = this.#state.devices(vm).disks.filter((d) => files.includes(d.file));
        this.#reconfigure(vm, { remove }, 'ReconfigVM_Task');
        return remove.length;
      },
      vmId,
    );
  }

  #unregister(vm: FakeVm): void {
    for (const s of this.#state.snapshotList(vm)) this.#state.snapshots.delete(s.id);
    this.#state.vms.delete(vm.id);
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
        this.#state.vmxConfigs.set(vm.config.vmxFile, vm.config);
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
        const vm = this.#state.vms.get(vmId);
        if (!vm) return;
        // Destroy_Task deletes the VM's home directory; disks elsewhere stay.
        const home = homeDirOf(vm.config.vmxFile);
        for (const f of [...this.#state.files]) if (f.startsWith(home)) this.#state.files.delete(f);
        const homeHostPath = this.#state.hostPathOf(vm.datacenter, home);
        if (homeHostPath !== undefined) this.#state.options.hostFiles?.remove(homeHostPath);
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
      const host = this.#state.hosts.get(hostId);
      if (!host) throw notFound('HostSystem', hostId, method);
      const same = this.#state.datastoreByName(host.datacenter, name);
      if (same && (same.hosts.has(hostId) || same.url !== path)) {
        throw fault('DuplicateName', `a datastore named ${name} exists`, `Datastore:${same.id}`, method);
      }
      const pathExists = this.#state.options.hostFiles?.exists ?? this.#state.options.pathExists;
      if (pathExists && !pathExists(path)) {
        throw fault('NotFound', `${path} does not exist on host ${host.name}`, undefined, method);
      }
      if (same) {
        // The same directory mounted on one more host is the same datastore, as in vCenter.
        same.hosts.add(hostId);
        return same.id;
      }
      const id = this.#state.id('datastore');
      this.#state.datastores.set(id, {
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
      const ds = this.#state.datastores.get(datastoreId);
      if (!ds) return;
      const user = [...this.#state.vms.values()].find(
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
      if (ds.hosts.size === 0) this.#state.datastores.delete(datastoreId);
    });
  }

  logout(): Promise<void> {
    if (this.#loggedOut) return Promise.resolve();
    return this.#run('logout', {}, () => {
      this.#loggedOut = true;
    });
  }
}
