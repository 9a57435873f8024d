import type { Inventory, PowerState, VmSnapshotRef } from '../model/inventory.js';
import type { CapturedDevice } from './inventory.js';

/**
 * What the layers above the vSphere client use: domain operations on VMs and datastores, addressed by the
 * opaque ids the inventory returns. Every method maps vSphere faults to VsphereFault (see faults.ts), waits
 * for the task it starts, and honours `signal` while waiting. Implemented by `Vcenter` in client.ts (SOAP)
 * and by `FakeVcenter` in fake/ (in memory); both pass test/vsphere/session-conformance.ts.
 *
 * "Not found": an id that names nothing throws an error for which `isGone(err)` is true (vm-ops.ts; in
 * practice a VsphereFault `ManagedObjectNotFound`). Wrong power states throw VsphereFault `InvalidPowerState`.
 */
export interface OperationOptions {
  signal?: AbortSignal;
}

export interface CreateVmSnapshotOptions extends OperationOptions {
  name: string;
  description?: string;
  /** Include the VM's memory (running state). Ignored by vCenter for a VM that is not powered on. */
  memory: boolean;
  /** Quiesce the guest file systems through VMware Tools. Ignored by vCenter for a VM not powered on. */
  quiesce: boolean;
}

/** One virtual disk as attached to a VM: an existing file, never created or destroyed by these calls. */
export interface DiskAttachment {
  /** Datastore path of the descriptor, `[ds] dir/file.vmdk`. */
  file: string;
  capacityBytes: number;
  /** vSphere disk mode (`persistent`, `independent_persistent`, ...). */
  diskMode: string;
  controllerKey: number;
  unitNumber: number;
  /** Device label to keep (e.g. `Hard disk 1`); vCenter chooses one when absent. */
  label?: string;
}

export interface CreateVmSpec {
  name: string;
  /** Folder id (from the inventory) the VM is created in. */
  folderId: string;
  hostId: string;
  /** Datastore path of the .vmx, `[ds] dir/name.vmx`; it must not exist. */
  vmxFile: string;
  numCpu: number;
  memoryMB: number;
  guestId: string;
  /** Keep this instance UUID (restore to the original place); vCenter assigns one when absent. */
  instanceUuid?: string;
  /** Controllers and NICs as captured at backup time (inventory.ts CapturedDevice). */
  devices: CapturedDevice[];
  /** Keep the NICs' MAC addresses (original place); new ones are generated otherwise. */
  keepMacAddresses: boolean;
  disks: DiskAttachment[];
}

export interface VmDevices {
  powerState: PowerState;
  name: string;
  vmxFile: string;
  disks: (DiskAttachment & { key: number })[];
  /** Keys of the SCSI controllers, with their bus numbers. */
  scsiControllers: { key: number; busNumber: number }[];
}

/** Disks to add (existing files) and to remove (by device key, files kept) in one reconfiguration. */
export interface DiskChanges {
  add?: DiskAttachment[];
  remove?: (DiskAttachment & { key: number })[];
}

export interface VcenterSession {
  /** The whole inventory, fetched with a constant number of round trips per object type. */
  inventory(): Promise<Inventory>;

  /** Current power state and snapshots of one VM (fresh from vCenter); snapshots depth first, parents first. */
  vmState(
    vmId: string,
    options?: OperationOptions,
  ): Promise<{ powerState: PowerState; snapshots: VmSnapshotRef[] }>;

  /**
   * Creates a VM snapshot and returns its id. Allowed in every power state; names need not be unique. The new
   * snapshot becomes the child of the VM's current one.
   */
  createVmSnapshot(vmId: string, options: CreateVmSnapshotOptions): Promise<string>;
  /** Removes one VM snapshot (consolidating its delta disks), not its children: they move to its parent. */
  removeVmSnapshot(snapshotId: string, options?: OperationOptions): Promise<void>;
  /** Suspends a powered-on VM; any other state is InvalidPowerState. */
  suspendVm(vmId: string, options?: OperationOptions): Promise<void>;
  /** Powers on (or resumes) a VM that is off or suspended; a powered-on VM is InvalidPowerState. */
  powerOnVm(vmId: string, options?: OperationOptions): Promise<void>;
  /** Powers off a VM that is on or suspended (a suspended state is lost); a powered-off VM is InvalidPowerState. */
  powerOffVm(vmId: string, options?: OperationOptions): Promise<void>;

  /**
   * Creates a powered-off VM from a captured configuration with existing disk files (none is created or
   * copied) and returns its id. A .vmx that exists already is a VsphereFault `FileAlreadyExists`.
   */
  createVm(spec: CreateVmSpec, options?: OperationOptions): Promise<string>;
  /**
   * Registers a VM again from its .vmx (after `unregisterVm`) and returns its new id; the captured disks of
   * `spec` are applied when the registered VM has none (vCenter reads them from the .vmx, the simulator not).
   */
  registerVm(spec: CreateVmSpec, options?: OperationOptions): Promise<string>;
  /** The VM's power state, name, .vmx, disks and SCSI controllers (sorted by bus). */
  vmDevices(vmId: string, options?: OperationOptions): Promise<VmDevices>;
  /**
   * Adds existing disk files and removes disks (files kept) in one reconfiguration; returns the device keys of
   * the added disks, in order.
   */
  reconfigureDisks(vmId: string, changes: DiskChanges, options?: OperationOptions): Promise<number[]>;
  /** Removes every disk of the VM whose file is one of `files`, keeping the files; returns how many. */
  detachDiskFiles(vmId: string, files: string[], options?: OperationOptions): Promise<number>;
  /** Removes a VM from the inventory, keeping its files. A powered-on VM is InvalidPowerState. */
  unregisterVm(vmId: string, options?: OperationOptions): Promise<void>;
  /** Powers off (if needed) and destroys a VM with its home directory. Idempotent: a missing VM is done. */
  destroyVm(vmId: string, options?: OperationOptions): Promise<void>;
  /**
   * Mounts a directory the host can reach as a datastore named `name` on the host; returns its id. A name
   * taken on that host is VsphereFault `DuplicateName`.
   */
  createDatastore(hostId: string, name: string, path: string, options?: OperationOptions): Promise<string>;
  /**
   * Unmounts a datastore from a host, keeping its files. A datastore holding a VM's home or disk is VsphereFault
   * `ResourceInUse`. Idempotent: a datastore that is gone is done.
   */
  removeDatastore(hostId: string, datastoreId: string, options?: OperationOptions): Promise<void>;

  /** vCenter round trips made so far by this session (for benchmarks and tests). */
  readonly roundTrips: number;

  /** Ends the vCenter session. Safe to call twice. */
  logout(): Promise<void>;
}
