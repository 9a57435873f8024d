import type { TaskConfig } from '../config/schema.js';
import type { BackupRecord, BackupState } from '../model/backup.js';

/**
 * The catalog seam, split by role so that callers take the narrowest one they need (expire needs
 * `BackupStore`, recover needs `OperationJournal` and `LockManager`, the CLI's task commands `TaskStore`).
 * `Catalog` (sqlite/catalog.ts) implements all of them on one SQLite file.
 *
 * Every member returns a Promise, so that an implementation on a database server (several daemons and
 * workers on one catalog) stands behind the same interfaces; await every call. A method is one statement or
 * one transaction, committed (and synced to disk) when its Promise resolves; a rejected one changed nothing.
 * There is no general transaction for callers: an async callback cannot run inside a synchronous SQLite
 * transaction, and one held across awaits on a server would hold its locks for as long as vCenter takes.
 * Writes that must commit together get a role method that does them in one transaction (`journalSteps`,
 * `markBackupLost`).
 */

/** The catalog's identity (12 hex digits), made once with it and read when it is opened. */
export interface CatalogIdentity {
  readonly id: string;
}

export interface BackupFilter {
  /** Exact task name. */
  task?: string;
  /** Backups containing a VM whose name equals this or matches it as a glob (`web*`, `db-0?`). */
  vm?: string;
  /** Any of these states; an empty array means no state filter. */
  state?: BackupState[];
  /** Started at or after this time (any string `Date` parses; compared as UTC instants). */
  since?: string;
  /** Started strictly before this time. */
  until?: string;
  /** At most this many (newest first). */
  limit?: number;
  /** Paging: only backups after this one in the listing order (older, or as old with a smaller id). */
  after?: { startedAt: string; id: string };
}

export interface BackupHead {
  id: string;
  state: BackupState;
  /** As stored: a UTC instant. */
  startedAt: string;
  finishedAt?: string;
}

export interface SnapshotOwner {
  backupId: string;
  state: BackupState;
}

export interface BackupStore {
  /** Stores a new record. ConflictError BACKUP_EXISTS when the id is taken. */
  insertBackup(record: BackupRecord): Promise<void>;
  /** Replaces the whole stored record (and its VM and snapshot index rows). NotFoundError BACKUP_NOT_FOUND. */
  updateBackup(record: BackupRecord): Promise<void>;
  /** The record exactly as stored (JSON round trip: properties whose value is undefined are dropped). */
  getBackup(id: string): Promise<BackupRecord>;
  findBackup(id: string): Promise<BackupRecord | undefined>;
  /** Newest first (by startedAt, then id). */
  listBackups(filter?: BackupFilter): Promise<BackupRecord[]>;
  /**
   * What `listBackups` would list, without the records: id, state and finish time, enough for a caller
   * that keeps summaries of finished backups to know which it has (the daemon's listing).
   */
  listBackupHeads(filter?: BackupFilter): Promise<BackupHead[]>;
  /** The records of these ids, in that order; ids not in the catalog are left out. */
  getBackups(ids: string[]): Promise<BackupRecord[]>;
  /**
   * Marks a complete or partial backup `lost` (its array snapshot is gone): sets `lost` (when, why and the
   * state it had), the state and a BACKUP_LOST warning in one transaction, and returns the new record.
   * Undefined, changing nothing, when the backup is gone or no longer complete or partial (it changed since
   * the caller read it).
   */
  markBackupLost(id: string, lost: { at: string; reason: string }): Promise<BackupRecord | undefined>;
  /** Removes the record. NotFoundError BACKUP_NOT_FOUND; ConflictError BACKUP_MOUNTED while mounts exist. */
  deleteBackup(id: string): Promise<void>;
  /** Every backup whose record lists this array snapshot, whatever its state. */
  snapshotOwners(array: string, snapshotId: string): Promise<SnapshotOwner[]>;
  /**
   * Snapshot ids of `array` owned by backups in one of `states` (default complete and partial: the backups
   * that can be restored). A garbage collector that must spare running backups passes their state too.
   */
  ownedSnapshotIds(array: string, states?: BackupState[]): Promise<Set<string>>;
}

export type OperationKind =
  | 'backup'
  | 'restore'
  | 'mount'
  | 'attach'
  | 'recover'
  | 'expire'
  | 'delete'
  | 'offload'
  | 'prune';
export type OperationState = 'running' | 'done' | 'failed';

export interface Operation {
  id: string;
  kind: OperationKind;
  /** What it works on, e.g. a task name or a backup id. */
  subject?: string;
  pid: number;
  /** Host name of the process that began it: a pid means something only on that host. */
  host: string;
  state: OperationState;
  startedAt: string;
  finishedAt?: string;
  heartbeatAt?: string;
  /** Set by `markRecovered` once recover has undone or completed what the journal says. */
  recoveredAt?: string;
}

export interface JournalEntry {
  id: number;
  operationId: string;
  /** What is about to be done, e.g. `vm.snapshot.create`, `vm.suspend`, `array.snapshot`. */
  action: string;
  /** What it is done to, e.g. a VM id or `array/volume`. */
  target: string;
  /** Intent data, merged with the result data given to `completeJournal`. */
  data: Record<string, unknown>;
  createdAt: string;
  /** Set once the step's side effect is known to have happened (or to need no undo). */
  completedAt?: string;
}

/** What a journal entry announces. */
export interface JournalStep {
  action: string;
  target: string;
  data?: Record<string, unknown>;
}

export interface OperationFilter {
  state?: OperationState[];
  kind?: OperationKind[];
  /** true: only recovered ones; false: only not yet recovered ones. */
  recovered?: boolean;
  limit?: number;
}

/**
 * The write-ahead intent log that makes crash repair possible: before each side effect on vCenter or the
 * array, the engine journals what it is about to do (committed and synced before it returns), then does it,
 * then completes the entry. After a crash, `recover` finds the operation still `running` with a dead pid,
 * marks it failed and undoes (or finishes) every journaled step.
 */
export interface OperationJournal {
  /** State `running`, pid defaults to process.pid. ConflictError OPERATION_EXISTS when the id is taken. */
  beginOperation(op: { id: string; kind: OperationKind; subject?: string; pid?: number }): Promise<void>;
  /**
   * Ends a running operation and releases its locks in the same transaction. A failed operation whose
   * effects are known to be undone (`repaired`) is marked recovered at once; any other failed one is for
   * recover to repair and mark (`listOperations({ state: ['failed'], recovered: false })`). NotFoundError
   * OPERATION_NOT_FOUND; ConflictError OPERATION_FINISHED when it already ended (a crashed run's operation
   * may be finished by recover while a late process tries too: the first one wins).
   */
  finishOperation(id: string, state: 'done' | 'failed', options?: { repaired?: boolean }): Promise<void>;
  /** NotFoundError OPERATION_NOT_FOUND. */
  getOperation(id: string): Promise<Operation>;
  findOperation(id: string): Promise<Operation | undefined>;
  /** Operations in state running, oldest first: crashed ones among them are for recover. */
  unfinishedOperations(): Promise<Operation[]>;
  /** Newest first. */
  listOperations(filter?: OperationFilter): Promise<Operation[]>;
  /** Records that the operation's process is alive. NotFoundError OPERATION_NOT_FOUND. */
  heartbeat(id: string): Promise<void>;
  /** Appends an intent entry and returns its id; committed before it returns. NotFoundError OPERATION_NOT_FOUND. */
  journal(operationId: string, entry: JournalStep): Promise<number>;
  /**
   * Appends several intent entries in one transaction (one sync to disk, not one per entry) and returns
   * their ids in order: all are committed, or none. NotFoundError OPERATION_NOT_FOUND.
   */
  journalSteps(operationId: string, entries: JournalStep[]): Promise<number[]>;
  /** Marks the step done; `data` (e.g. the created snapshot id) is merged into the entry's data. Idempotent. */
  completeJournal(entryId: number, data?: Record<string, unknown>): Promise<void>;
  /** In the order they were written. */
  journalEntries(operationId: string): Promise<JournalEntry[]>;
  /** NotFoundError OPERATION_NOT_FOUND; ConflictError OPERATION_RUNNING if it is still running. */
  markRecovered(operationId: string): Promise<void>;
  /** Deletes finished operations (and their journals) that ended before `before` and need no recovery. */
  pruneOperations(before: string): Promise<number>;
}

/**
 * `shared`: any number of operations may hold it together (restore, mount and attach reading a backup);
 * `exclusive`: one operation alone (delete and expire of that backup, a backup run on its VMs).
 */
export type LockMode = 'shared' | 'exclusive';

/** A resource name alone asks for it exclusively. */
export type LockRequest = string | { resource: string; mode: LockMode };

export interface LockHolder {
  mode: LockMode;
  operation: Operation;
}

export interface LockManager {
  /**
   * Takes every resource for the operation, or none: LockedError RESOURCE_LOCKED names the first conflict
   * (exclusive against anything, shared against exclusive) and the holder's id, kind, pid and host. A lock
   * held by an operation that is no longer running is stale and taken over. Re-taking a lock the operation
   * already holds is a no-op (shared asked again as exclusive is upgraded, if nobody else shares it).
   * NotFoundError OPERATION_NOT_FOUND; ConflictError OPERATION_FINISHED when the operation is not running.
   */
  acquireLocks(operationId: string, resources: LockRequest[]): Promise<void>;
  /** The running operations holding `resource`, oldest lock first. */
  lockHolders(resource: string): Promise<LockHolder[]>;
  releaseLocks(operationId: string): Promise<void>;
  /** Resources the operation holds, sorted. */
  locksOf(operationId: string): Promise<string[]>;
}

export interface TaskStore {
  /** UsageError TASK_INVALID when taskSchema refuses it; ConflictError TASK_EXISTS. */
  createTask(task: TaskConfig): Promise<void>;
  /** UsageError TASK_INVALID; NotFoundError TASK_NOT_FOUND. */
  updateTask(task: TaskConfig): Promise<void>;
  /** NotFoundError TASK_NOT_FOUND. */
  deleteTask(name: string): Promise<void>;
  /** NotFoundError TASK_NOT_FOUND. */
  getTask(name: string): Promise<TaskConfig>;
  findTask(name: string): Promise<TaskConfig | undefined>;
  /** Sorted by name. */
  listTasks(): Promise<TaskConfig[]>;
}

export interface Mount {
  id: string;
  backupId: string;
  /** What was made: e.g. `datastore` (mount) or `attach`. */
  kind: string;
  /** What is needed to undo it (host, datastore name, clone id, target VM, ...). */
  data: Record<string, unknown>;
  createdAt: string;
}

export interface MountStore {
  /** NotFoundError BACKUP_NOT_FOUND; ConflictError MOUNT_EXISTS. Returns the stored mount. */
  addMount(mount: {
    id: string;
    backupId: string;
    kind: string;
    data?: Record<string, unknown>;
  }): Promise<Mount>;
  /** NotFoundError MOUNT_NOT_FOUND. */
  removeMount(id: string): Promise<void>;
  /** NotFoundError MOUNT_NOT_FOUND. */
  getMount(id: string): Promise<Mount>;
  /** Oldest first. */
  mountsOf(backupId: string): Promise<Mount[]>;
  /** Oldest first. */
  listMounts(): Promise<Mount[]>;
}

/** What one VM of a backup put into a repository copy. */
export interface CopyVmSummary {
  name: string;
  /** Included disks stored (base disks in SNAPSHOT modes). */
  disks: number;
  /** Disks listed as excluded (RDM, task exclusions): not in the copy. */
  excludedDisks: number;
  /** Bytes of the VM's files (logical, zeros included). */
  bytes: number;
}

/** A copy of a backup in a repository (issue 8): what `inquire` shows beside the array copy. */
export interface BackupCopy {
  backupId: string;
  task: string;
  /** Repository name in the configuration at offload time. */
  repository: string;
  /** The repository's own id (from its config object): names it whatever the configuration calls it. */
  repositoryId: string;
  /** The manifest that describes the backup in that repository. */
  manifestId: string;
  offloadedAt: string;
  /** Logical bytes of the copy (every file, zeros included). */
  bytes: number;
  /** New bytes this offload wrote to the repository (compressed, encrypted). */
  bytesAdded: number;
  vms: CopyVmSummary[];
  /**
   * Whether the backup's catalog record (and so its array snapshot) still exists: false once it was deleted
   * or expired; the repository copy stays until the repository's own retention forgets it.
   */
  arrayCopy: boolean;
}

export type NewBackupCopy = Omit<BackupCopy, 'arrayCopy' | 'offloadedAt'> & { offloadedAt?: string };

/**
 * Copies of backups in repositories. Rows are independent of the backup records: deleting a backup keeps its
 * copies (their `arrayCopy` turns false). One copy per backup and repository id.
 */
export interface CopyStore {
  /**
   * Records a copy (`offloadedAt` defaults to now). ConflictError COPY_EXISTS when the backup already has a
   * copy in that repository (same repository id); nothing changes then.
   */
  addCopy(copy: NewBackupCopy): Promise<BackupCopy>;
  /** The copy of a backup in a repository (by repository id), or undefined. */
  findCopy(backupId: string, repositoryId: string): Promise<BackupCopy | undefined>;
  /** Copies of one backup, oldest first. */
  copiesOf(backupId: string): Promise<BackupCopy[]>;
  /** Copies of each of these backups (one query: a page of the daemon's backup list); none: an empty list. */
  copiesOfBackups(backupIds: string[]): Promise<Map<string, BackupCopy[]>>;
  /** Copies, oldest first, optionally of one repository (by name) or one task. */
  listCopies(filter?: { repository?: string; repositoryId?: string; task?: string }): Promise<BackupCopy[]>;
  /** Removes a copy (its manifest was forgotten). NotFoundError COPY_NOT_FOUND. */
  removeCopy(backupId: string, repositoryId: string): Promise<void>;
}

/** Roles of the daemon's API, each allowing what the one before allows: read-only < operator < admin. */
export const ROLES = ['read-only', 'operator', 'admin'] as const;
export type Role = (typeof ROLES)[number];

/** An API token as listed: never the token itself, which is shown once when it is made. */
export interface ApiToken {
  id: string;
  name: string;
  role: Role;
  createdAt: string;
  lastUsedAt?: string;
}

export interface User {
  name: string;
  role: Role;
  createdAt: string;
  updatedAt: string;
}

/**
 * The daemon's credentials. Nothing secret is stored: tokens and session ids are kept as their SHA-256 (hex),
 * passwords as a memory-hard hash made by the caller (the server's `hashPassword`).
 */
export interface AuthStore {
  /** ConflictError TOKEN_EXISTS when the name is taken. */
  addToken(token: { id: string; name: string; role: Role; tokenHash: string }): Promise<ApiToken>;
  /** Oldest first. */
  listTokens(): Promise<ApiToken[]>;
  /** By id or by name. NotFoundError TOKEN_NOT_FOUND. */
  removeToken(idOrName: string): Promise<ApiToken>;
  /** The token of that hash; undefined when none. A read only: callers stamp its use with `markTokenUsed`. */
  tokenByHash(tokenHash: string): Promise<ApiToken | undefined>;
  /** Records when the token was last used (callers throttle: it is a write). */
  markTokenUsed(id: string, at: string): Promise<void>;
  /** ConflictError USER_EXISTS. */
  addUser(user: { name: string; role: Role; passwordHash: string }): Promise<User>;
  /** Sorted by name. */
  listUsers(): Promise<User[]>;
  /** The user and its password hash (to verify a login); undefined when there is none. */
  findUserCredentials(name: string): Promise<{ user: User; passwordHash: string } | undefined>;
  /** NotFoundError USER_NOT_FOUND. Ends the user's sessions. */
  setUserPassword(name: string, passwordHash: string): Promise<void>;
  /** NotFoundError USER_NOT_FOUND. Ends the user's sessions. */
  removeUser(name: string): Promise<void>;
  addSession(session: { idHash: string; user: string; expiresAt: string }): Promise<void>;
  /** The user of a session not yet expired; undefined otherwise. */
  sessionUser(idHash: string, now: string): Promise<User | undefined>;
  removeSession(idHash: string): Promise<void>;
  /** Deletes sessions expired before `now`; returns how many. */
  pruneSessions(now: string): Promise<number>;
}

/**
 * A daemon serving the catalog, as its membership row says. Several daemons may serve one catalog (on
 * PostgreSQL, on several machines); each renews its row's heartbeat, stamped by the catalog's own clock.
 */
export interface DaemonMember {
  instanceId: string;
  host: string;
  pid: number;
  listen: string;
  startedAt: string;
  heartbeatAt: string;
}

/**
 * Who runs the schedules: one leader at a time among the daemons of a catalog. `term` grows by one each time
 * the leadership changes hands, so a leader that lost it (paused past its lease) is fenced off: writes made
 * "as leader" name the term and are refused once it is over.
 */
export interface Leadership {
  /** The holder's instance id; undefined when nobody holds it. */
  holder?: string;
  term: number;
  /** When the holder's lease ends unless renewed (by the catalog's clock), as a UTC instant. */
  expiresAt?: string;
  /** True when the caller (of `claimLeadership`) holds it after the call. */
  mine: boolean;
}

export type JobState = 'queued' | 'running' | 'done' | 'failed';

export interface JobRow {
  id: string;
  kind: string;
  subject: string;
  state: JobState;
  instanceId: string;
  startedAt: string;
  finishedAt?: string;
  progress?: Record<string, unknown>;
  result?: unknown;
  error?: { code: string; message: string };
  backupId?: string;
}

export interface ScheduleState {
  task: string;
  /** Due times up to this instant are handled (run, skipped or, on first sight, not owed). */
  handledAt: string;
  lastRunAt?: string;
  lastJobId?: string;
}

/** The daemon's own state: its lease, its jobs, the schedule state of each task. */
export interface DaemonStore {
  /**
   * Registers this daemon, or renews its heartbeat (stamped by the catalog's clock, never the caller's).
   * Returns the row as stored.
   */
  heartbeatMember(
    member: Pick<DaemonMember, 'instanceId' | 'host' | 'pid' | 'listen'>,
  ): Promise<DaemonMember>;
  /** Daemons whose heartbeat is younger than `ttlMs` by the catalog's clock, oldest start first. */
  liveMembers(ttlMs: number): Promise<DaemonMember[]>;
  /** Deletes this daemon's row (a clean stop). Gives up its leadership too. */
  removeMember(instanceId: string): Promise<void>;
  /**
   * Takes or renews the schedules' leadership for `ttlMs` (by the catalog's clock) in one transaction: granted
   * when nobody holds it, when the holder's lease has run out, or when the caller holds it already (then only
   * renewed, same term). Taking it from someone else or from nobody increments `term`.
   */
  claimLeadership(instanceId: string, ttlMs: number): Promise<Leadership>;
  /** Gives the leadership up if `instanceId` holds it (a clean stop): another daemon may take it at once. */
  releaseLeadership(instanceId: string): Promise<void>;
  /** The leadership as it stands (`mine` is false). */
  currentLeadership(): Promise<Leadership>;
  /** Inserts or replaces the job row. */
  saveJob(job: JobRow): Promise<void>;
  findJob(id: string): Promise<JobRow | undefined>;
  /** Newest first. */
  listJobs(filter?: { state?: JobState[]; limit?: number }): Promise<JobRow[]>;
  /**
   * Marks failed every queued or running job whose daemon is gone: no membership row, or a heartbeat older
   * than `ttlMs` by the catalog's clock (the caller's own jobs are never touched: its row is live). Returns how
   * many.
   */
  failOrphanedJobs(ttlMs: number, error: { code: string; message: string }): Promise<number>;
  scheduleState(task: string): Promise<ScheduleState | undefined>;
  /**
   * Saves a task's schedule state only while `leader.instanceId` holds the leadership in `leader.term` and its
   * lease has not run out, checked in the same transaction (fencing: a deposed leader never records a run
   * twice). False, with nothing written, otherwise.
   */
  saveScheduleStateAsLeader(
    state: ScheduleState,
    leader: { instanceId: string; term: number },
  ): Promise<boolean>;
  /** Backups counted by task and state, with the newest finish of a complete backup per task (metrics). */
  backupCounts(): Promise<{ task: string; state: BackupState; count: number; lastCompleteAt?: string }[]>;
}

/**
 * One opened catalog: every role, whichever database stands behind it (`openCatalog` in index.ts chooses by
 * the configuration: a SQLite file, or a PostgreSQL server).
 */
export interface CatalogHandle
  extends CatalogIdentity,
    BackupStore,
    OperationJournal,
    LockManager,
    TaskStore,
    MountStore,
    CopyStore,
    AuthStore,
    DaemonStore {
  readonly dialect: 'sqlite' | 'postgres';
  /** Where it is, fit for messages and logs: the SQLite file's path, or the PostgreSQL URL without a password. */
  readonly location: string;
  schemaVersion(): Promise<number>;
  /**
   * The catalog's clock: the database server's on PostgreSQL (so that machines whose clocks differ agree on
   * leases), this process's on SQLite (one machine).
   */
  now(): Promise<Date>;
  close(): Promise<void>;
}
