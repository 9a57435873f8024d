import type { DiskKind, PowerState, VmHardware } from './inventory.js';
import type { BackupMode } from './modes.js';

/** SPEC section 6: the backup record, as `backup --json` and `inquire --backup ID --json` return it. */

/** `lost`: it was complete or partial, but its array snapshot is gone (see `BackupRecord.lost`). */
export type BackupState = 'running' | 'complete' | 'partial' | 'failed' | 'lost';

/**
 * `not-prepared`: the VM could not be brought into its mode's state (vCenter unreachable, a fault): nothing
 * of it is in the backup as a consistent image, whatever the mode promised.
 */
export type Consistency =
  | 'running-state'
  | 'file-system'
  | 'suspended'
  | 'crash'
  | 'powered-off'
  | 'not-prepared';

export interface Warning {
  code: string;
  message: string;
}

/** Why a disk is not part of a backup. */
export type DiskExclusion = 'rdm' | 'task';

export interface DiskRecord {
  key: number;
  label: string;
  kind: DiskKind;
  capacityBytes: number;
  file: string;
  datastore: string;
  diskMode: string;
  /**
   * Whether the disk is part of the backup: restore, attach and offload use only included disks. False for
   * RDM disks (no data captured) and for disks a task excludes (still inside the array snapshot, see
   * `exclusion`).
   */
  included: boolean;
  /** Why an excluded disk is out: `rdm`, or `task` (the task's exclude.disks). Absent on records before issue 11. */
  exclusion?: DiskExclusion;
  /** Why a disk is excluded, or how consistent an included one is when it differs from the VM's. */
  note?: string;
  consistency?: Consistency;
  lun?: string;
  controllerKey?: number;
  unitNumber?: number;
}

export interface VmRecord {
  id: string;
  name: string;
  instanceUuid: string;
  host: string;
  folder: string;
  datacenter: string;
  vmxFile: string;
  homeDatastore: string;
  datastores: string[];
  powerState: PowerState;
  requestedMode: BackupMode;
  effectiveMode: BackupMode;
  consistency: Consistency;
  /** Name of the VM snapshot preserved inside the array snapshot (SNAPSHOT modes only). */
  vmSnapshot?: string;
  /** Prepare start to release end, the time the VM was held. */
  quiesce?: { start: string; end: string; ms: number };
  state: 'ok' | 'failed';
  error?: string;
  disks: DiskRecord[];
  warnings: Warning[];
  hardware?: VmHardware;
}

export interface ArraySnapshotRecord {
  array: string;
  snapshotId: string;
  volumes: string[];
  pointInTime: 'atomic' | 'sequential';
  driver: string;
  /** Datastore name -> volume names of this array. */
  datastores: Record<string, string[]>;
}

export interface BackupRecord {
  id: string;
  task: string;
  state: BackupState;
  startedAt: string;
  finishedAt?: string;
  snapshotAt?: string;
  requestedMode?: BackupMode;
  snapshots: ArraySnapshotRecord[];
  vms: VmRecord[];
  warnings: Warning[];
  error?: string;
  /** Set when the backup turned `lost`: when recover found its array snapshot gone, and which. */
  lost?: { at: string; reason: string; previousState: 'complete' | 'partial' };
}
