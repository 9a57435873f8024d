/**
 * The inventory in domain terms: what the vSphere layer reads from vCenter and everything above it works
 * with. Types only; no vSphere managed-object words leak out beyond the opaque `id` strings.
 */

export type PowerState = 'poweredOn' | 'poweredOff' | 'suspended';

/** VMware Tools in the guest, as vCenter reports them (guest.toolsRunningStatus, guest.toolsStatus). */
export const TOOLS_STATES = ['running', 'notRunning', 'notInstalled'] as const;
export type ToolsState = (typeof TOOLS_STATES)[number];

/** SPEC section 6: the kinds a virtual disk can be. */
export type DiskKind = 'flat' | 'rdm-physical' | 'rdm-virtual' | 'independent';

export interface Datacenter {
  id: string;
  name: string;
}

export interface Cluster {
  id: string;
  name: string;
  datacenter: string;
}

export interface Host {
  id: string;
  name: string;
  datacenter: string;
  /** Cluster name, absent for a standalone host. */
  cluster?: string;
}

export interface Folder {
  id: string;
  /** Path below the datacenter's VM folder, e.g. `prod/web`; empty string for the root VM folder. */
  path: string;
  datacenter: string;
}

export interface DatastoreExtent {
  /** LUN canonical name, e.g. `naa.600a...`. */
  lun: string;
  partition?: number;
}

export interface Datastore {
  id: string;
  name: string;
  datacenter: string;
  /** The datastore URL as vCenter reports it (for the simulator a local directory). */
  url: string;
  /** `VMFS`, `NFS`, `NFS41`, `vsan`, `OTHER`, ... as reported by vCenter. */
  type: string;
  capacityBytes: number;
  freeBytes: number;
  /** VMFS extents with their LUN canonical names; empty for non-VMFS datastores. */
  extents: DatastoreExtent[];
  /** Names of the hosts that mount it. */
  hosts: string[];
}

export interface VirtualDisk {
  /** Device key, unique within the VM. */
  key: number;
  /** Device label as vSphere shows it, e.g. `Hard disk 1`. */
  label: string;
  kind: DiskKind;
  capacityBytes: number;
  /** Datastore path of the backing file, e.g. `[ds-a] web01/web01.vmdk` (for RDM: the mapping file). */
  file: string;
  /** Name of the datastore holding `file`. */
  datastore: string;
  /** vSphere disk mode: `persistent`, `independent_persistent`, `independent_nonpersistent`, ... */
  diskMode: string;
  /** LUN canonical name behind an RDM disk. */
  lun?: string;
  controllerKey?: number;
  unitNumber?: number;
}

export interface VmSnapshotRef {
  id: string;
  name: string;
  createdAt?: string;
}

export interface Vm {
  id: string;
  name: string;
  instanceUuid: string;
  powerState: PowerState;
  /** Absent when vCenter did not say (the quiesce is then tried, and a fault decides). */
  tools?: ToolsState;
  datacenter: string;
  /** Host name. */
  host: string;
  cluster?: string;
  /** Folder path below the datacenter's VM folder ('' = root). */
  folder: string;
  /** Datastore path of the .vmx file. */
  vmxFile: string;
  /** Datastore holding the .vmx. */
  homeDatastore: string;
  /** Every datastore holding any file of the VM (home, disks, snapshots). */
  datastores: string[];
  disks: VirtualDisk[];
  /** Current VM snapshots, flattened from the snapshot tree. */
  snapshots: VmSnapshotRef[];
  /** Hardware summary, captured into backup records so a VM can be re-created. */
  hardware?: VmHardware;
}

export interface VmHardware {
  numCpu: number;
  memoryMB: number;
  guestId: string;
  /** Raw-ish device descriptions (controllers, NICs) needed to re-create the VM; opaque above vSphere. */
  devices: unknown[];
}

export interface Inventory {
  datacenters: Datacenter[];
  clusters: Cluster[];
  hosts: Host[];
  folders: Folder[];
  datastores: Datastore[];
  vms: Vm[];
  /**
   * Names of VMs whose configuration could not be read (their disks and files are unknown; `vmxFile` is
   * empty). They are still in `vms`; a backup must refuse them rather than capture an empty VM.
   */
  unreadableVms?: string[];
}
