import type { PowerState, ToolsState } from '../../model/inventory.js';

/**
 * What a FakeVcenter is built from: the lab spec's shape (src/lab/spec.ts, SPEC 7), so a parsed `LabSpec` is
 * accepted as it is, plus a few optional fields the lab cannot express (VM folders, VMware Tools, datastore
 * URL/LUN/type). Defaults are those of the lab: VMs powered on, home on the first disk's datastore.
 */
export interface FakeSpec {
  datacenters: FakeDatacenterSpec[];
}

export interface FakeDatacenterSpec {
  name: string;
  clusters?: { name: string; hosts: string[] }[];
  hosts?: string[];
  datastores?: FakeDatastoreSpec[];
  vms?: FakeVmSpec[];
}

export interface FakeDatastoreSpec {
  name: string;
  capacityGB: number;
  /** Default `/vmfs/volumes/<name>`; give an array volume's export path to pair the fake with an array. */
  url?: string;
  /** The VMFS extent's LUN; default a stable `naa.6…` derived from the name. None when `type` is not VMFS. */
  lun?: string;
  /** Default `VMFS`. */
  type?: string;
}

export type FakeDiskSpec =
  | { datastore: string; sizeMB: number; mode?: string }
  | { rdm: 'physical' | 'virtual'; lun: string; sizeMB: number };

export interface FakeVmSpec {
  name: string;
  host: string;
  power?: PowerState;
  /** Home (.vmx) datastore; default the first non-RDM disk's. */
  datastore?: string;
  disks: FakeDiskSpec[];
  /** Folder path below the datacenter's VM folder (`prod/web`); default the root folder. */
  folder?: string;
  /** VMware Tools in the guest (a quiesced snapshot needs them running); default `running`. */
  tools?: ToolsState;
}

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
  /**
   * The host's files below the datastores' URLs, when the fake is paired with an array whose exports they
   * are (e.g. a memory array): then they are the only truth about datastore files, as for vCenter. CreateVM
   * writes the .vmx there, Destroy_Task removes the VM's home directory, and a file someone moved or deleted
   * behind vCenter's back (a restore swapping VM directories) is gone for the fake too. Implies `pathExists`.
   */
  hostFiles?: {
    exists(path: string): boolean;
    write(path: string, text: string): void;
    remove(path: string): void;
  };
  /** Clock for snapshot creation times; default the system clock. */
  now?: () => Date;
}
