/**
 * The shapes the REST API returns (base /api/v1), as far as the UI reads them. They mirror the CLI's JSON
 * (`inventory --json`, `inquire --backup ID --json`); fields the UI does not need are left out, and every field
 * a daemon may omit is optional so that an older or newer daemon still renders.
 */

export type Role = 'read-only' | 'operator' | 'admin';

export interface Session {
  user: string;
  role: Role;
  csrfToken: string;
}

export interface ApiWarning {
  code: string;
  message: string;
}

export type DiskKind = 'flat' | 'rdm-physical' | 'rdm-virtual' | 'independent';

export interface InventoryDisk {
  label: string;
  kind: DiskKind;
  capacityBytes: number;
  file?: string;
  datastore?: string;
  diskMode?: string;
  lun?: string;
}

export interface InventoryVm {
  name: string;
  id: string;
  powerState: string;
  tools?: string;
  datacenter?: string;
  host?: string;
  cluster?: string;
  folder?: string;
  datastores?: string[];
  disks: InventoryDisk[];
  snapshots?: Array<string | { name: string }>;
}

export interface InventoryDatastore {
  name: string;
  url?: string;
  type?: string;
  capacityBytes?: number;
  freeBytes?: number;
  volumes?: string[];
  hosts?: string[];
}

export interface Inventory {
  vms: InventoryVm[];
  datastores: InventoryDatastore[];
  /** The daemon adds these for the tree, so that a host or folder without VMs shows too. */
  datacenters?: Array<{ name: string }>;
  clusters?: Array<{ name: string; datacenter: string }>;
  hosts?: Array<{ name: string; datacenter: string; cluster?: string }>;
  folders?: Array<{ path: string; datacenter: string }>;
}

export interface DiskRecord {
  key?: number;
  label: string;
  kind: DiskKind;
  capacityBytes: number;
  file?: string;
  datastore?: string;
  diskMode?: string;
  included: boolean;
  exclusion?: 'rdm' | 'task' | string;
  note?: string;
  consistency?: string;
  lun?: string;
}

export interface VmRecord {
  id: string;
  name: string;
  host?: string;
  folder?: string;
  datacenter?: string;
  powerState?: string;
  requestedMode: string;
  effectiveMode: string;
  consistency: string;
  vmSnapshot?: string;
  quiesce?: { start: string; end: string; ms: number };
  state: 'ok' | 'failed';
  error?: string;
  disks: DiskRecord[];
  warnings: ApiWarning[];
}

/** One of a backup's copies, as `inquire` shows them: its array snapshot first, then repository copies. */
export type BackupCopy =
  | { kind: 'array'; present: boolean; snapshots: Array<{ array: string; snapshotId: string }> }
  | {
      kind: 'repository';
      name: string;
      repositoryId?: string;
      manifestId?: string;
      offloadedAt?: string;
      bytes?: number;
      bytesAdded?: number;
    };

/** A configured repository with the copies the catalog records there (`GET /api/v1/repositories`). */
export interface Repository {
  name: string;
  type: string;
  backups: number;
  /** Bytes the recorded offloads added (compressed, encrypted, deduplicated). */
  bytes: number;
  logicalBytes?: number;
  lastOffloadAt?: string;
}

export interface BackupRecord {
  id: string;
  task: string;
  state: string;
  startedAt: string;
  finishedAt?: string;
  snapshotAt?: string;
  requestedMode?: string;
  snapshots?: Array<{
    array: string;
    snapshotId: string;
    volumes: string[];
    pointInTime?: string;
    driver?: string;
  }>;
  vms: VmRecord[];
  warnings: ApiWarning[];
  error?: string;
  bytes?: number;
  copies?: BackupCopy[];
  lost?: { at: string; reason: string; previousState: string };
}

export interface BackupSummary {
  id: string;
  task: string;
  state: string;
  startedAt: string;
  finishedAt?: string;
  vms: string[];
  warnings: number;
  /** Sum of the included disks' capacities. */
  bytes?: number;
  /** Where there are repository copies: the new bytes their offloads wrote. */
  bytesAdded?: number;
  copies?: BackupCopy[];
}

export interface Page<T> {
  items: T[];
  nextCursor?: string | null;
}

export interface LastRun {
  backupId: string;
  state: string;
  startedAt: string;
  finishedAt?: string;
  warnings?: ApiWarning[];
}

export interface Job {
  id: string;
  kind: string;
  subject?: string;
  state: 'queued' | 'running' | 'done' | 'failed';
  startedAt?: string;
  finishedAt?: string;
  progress?: {
    phase?: string;
    done?: number;
    total?: number;
    bytesDone?: number;
    bytesTotal?: number;
    /** Bytes per second of a byte-counted step (offload). */
    rate?: number;
    /** Seconds left, estimated. */
    eta?: number;
  };
  result?: unknown;
  error?: ApiWarning;
  operationId?: string;
  backupId?: string;
}

export interface Dashboard {
  tasks: Array<{ name: string; schedule?: string; nextRun?: string; lastRun?: LastRun | null }>;
  failures: Array<Partial<BackupSummary> & { id?: string; backupId?: string; error?: string }>;
  warnings: Array<{ backupId: string; vm?: string; code: string; message: string }>;
  snapshotsHeld: number;
  repositories?: Repository[];
  running: Job[];
}

export interface RestoreRequest {
  backupId: string;
  vm: string;
  newName?: string;
  original?: boolean;
  confirmed?: boolean;
  disks?: string[];
  datastore?: string;
  host?: string;
  powerOn?: boolean;
  /** Where the files are read: the array snapshot (default) or a repository copy. */
  source?: 'array' | 'repository';
  repository?: string;
}

export interface TaskSelection {
  vms?: string[];
  folders?: string[];
  hosts?: string[];
  clusters?: string[];
  datastores?: string[];
  datacenters?: string[];
}

export interface TaskConfig {
  name: string;
  description?: string;
  select: TaskSelection;
  exclude?: TaskSelection & { disks?: Array<{ vm: string; disks: string[] }> };
  mode?: string;
  retention?: { versions?: number; days?: number };
  offload?: { repository: string };
  schedule?: string;
  timezone?: string;
  onQuiesceFailure?: string;
  hooks?: unknown[];
}

export interface TaskListItem extends Partial<TaskConfig> {
  name: string;
  source?: 'config' | 'catalog';
  nextRun?: string | null;
  lastRun?: LastRun | null;
  running?: boolean;
}

export interface TaskDetail extends TaskListItem {
  /** The task as in the configuration (the daemon nests it; a flat answer is read as the config itself). */
  config?: TaskConfig;
  lastRuns?: Array<BackupSummary | (LastRun & { id?: string })>;
}

/** A mount (`kind: datastore`) or an attach of a backup, as the catalog keeps it. */
export interface MountItem {
  id: string;
  backupId: string;
  kind: string;
  data?: Record<string, unknown>;
  createdAt?: string;
}

export interface EngineEvent {
  time: string;
  type: string;
  message: string;
  jobId?: string;
  backupId?: string;
  task?: string;
  code?: string;
}

export interface BackupStat {
  backupId: string;
  task: string;
  startedAt: string;
  durationMs?: number;
  /** Sum of the included disks' capacities. */
  bytes?: number;
  /** Where there are repository copies: the new bytes their offloads wrote. */
  bytesAdded?: number;
  state: string;
}

export const BACKUP_MODES = ['SNAPSHOT_INCL_MEM', 'SNAPSHOT_EXCL_MEM', 'SUSPEND', 'ASIS'] as const;
export const BACKUP_STATES = ['running', 'complete', 'partial', 'failed', 'lost'] as const;
