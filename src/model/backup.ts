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

/** When a task's hook runs in a backup (docs/configuration.md, "Backup hooks"). */
export const HOOK_PHASES = ['before-prepare', 'after-snapshot', 'after-release', 'on-failure'] as const;
export type HookPhase = (typeof HOOK_PHASES)[number];

/** One hook run of a backup (a task's `hooks`): what ran, how it ended, the tail of its output. */
export interface HookRecord {
  phase: HookPhase;
  run: string[];
  startedAt: string;
  ms: number;
  /** null when it did not exit by itself (killed at its timeout, or it could not be started). */
  exitCode: number | null;
  signal?: string;
  timedOut: boolean;
  ok: boolean;
  /** The last 4 KiB of its stdout and stderr, interleaved as written. */
  output: string;
  /** Why it failed, for a hook that could not be started or timed out. */
  error?: string;
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
  /** The task's hooks that ran, in order (absent when the task has none). */
  hooks?: HookRecord[];
  error?: string;
  /** Set when the backup turned `lost`: when recover found its array snapshot gone, and which. */
  lost?: { at: string; reason: string; previousState: 'complete' | 'partial' };
}
