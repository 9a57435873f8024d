import type { Inventory, PowerState, VmSnapshotRef } from '../model/inventory.js';

/**
 * What the layers above the vSphere client use: domain operations on VMs and datastores, addressed by the
 * opaque ids the inventory returns. Every method maps vSphere faults to VsphereFault (see faults.ts), waits
 * for the task it starts, and honours `signal` while waiting. Implemented by `Vcenter` in client.ts.
 */
export interface OperationOptions {
  signal?: AbortSignal;
}

export interface CreateVmSnapshotOptions extends OperationOptions {
  name: string;
  description?: string;
  /** Include the VM's memory (running state). */
  memory: boolean;
  /** Quiesce the guest file systems through VMware Tools. */
  quiesce: boolean;
}

export interface VcenterSession {
  /** The whole inventory, fetched with a constant number of round trips per object type. */
  inventory(): Promise<Inventory>;

  /** Current power state and snapshots of one VM (fresh from vCenter). */
  vmState(
    vmId: string,
    options?: OperationOptions,
  ): Promise<{ powerState: PowerState; snapshots: VmSnapshotRef[] }>;

  /** Creates a VM snapshot and returns its id. */
  createVmSnapshot(vmId: string, options: CreateVmSnapshotOptions): Promise<string>;
  /** Removes one VM snapshot (consolidating its delta disks), not its children. */
  removeVmSnapshot(snapshotId: string, options?: OperationOptions): Promise<void>;
  suspendVm(vmId: string, options?: OperationOptions): Promise<void>;
  powerOnVm(vmId: string, options?: OperationOptions): Promise<void>;
  powerOffVm(vmId: string, options?: OperationOptions): Promise<void>;

  /** SOAP round trips made so far by this session (for benchmarks and tests). */
  readonly roundTrips: number;

  /** Ends the vCenter session. Safe to call twice. */
  logout(): Promise<void>;
}
