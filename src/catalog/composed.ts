import type { TaskConfig } from '../config/schema.js';
import type { BackupRecord, BackupState } from '../model/backup.js';
import type {
  ApiToken,
  AuthStore,
  BackupCopy,
  BackupFilter,
  BackupHead,
  BackupStore,
  CatalogHandle,
  CopyStore,
  DaemonMember,
  DaemonStore,
  JobRow,
  JobState,
  JournalEntry,
  JournalStep,
  Leadership,
  LockHolder,
  LockManager,
  LockRequest,
  Mount,
  MountStore,
  NewBackupCopy,
  Operation,
  OperationFilter,
  OperationJournal,
  OperationKind,
  Role,
  ScheduleState,
  SnapshotOwner,
  TaskStore,
  User,
} from './types.js';

/** The stores a dialect implements, one per role (a dialect may give one object several roles). */
export interface CatalogStores {
  backups: BackupStore;
  operations: OperationJournal;
  locks: LockManager;
  tasks: TaskStore;
  mounts: MountStore;
  copies: CopyStore;
  auth: AuthStore;
  daemon: DaemonStore;
}

/**
 * Every role of `CatalogHandle`, each member handed to the store of its role: what the SQLite and the
 * PostgreSQL catalog share. A dialect's class extends it with how it opens, closes and tells time.
 */
export abstract class ComposedCatalog
  implements Omit<CatalogHandle, 'dialect' | 'location' | 'schemaVersion' | 'now' | 'close'>
{
  readonly #stores: CatalogStores;
  readonly id: string;

  protected constructor(id: string, stores: CatalogStores) {
    this.id = id;
    this.#stores = stores;
  }

  insertBackup(record: BackupRecord): Promise<void> {
    return this.#stores.backups.insertBackup(record);
  }
  updateBackup(record: BackupRecord): Promise<void> {
    return this.#stores.backups.updateBackup(record);
  }
  markBackupLost(id: string, lost: { at: string; reason: string }): Promise<BackupRecord | undefined> {
    return this.#stores.backups.markBackupLost(id, lost);
  }
  getBackup(id: string): Promise<BackupRecord> {
    return this.#stores.backups.getBackup(id);
  }
  findBackup(id: string): Promise<BackupRecord | undefined> {
    return this.#stores.backups.findBackup(id);
  }
  listBackups(filter?: BackupFilter): Promise<BackupRecord[]> {
    return this.#stores.backups.listBackups(filter);
  }
  listBackupHeads(filter?: BackupFilter): Promise<BackupHead[]> {
    return this.#stores.backups.listBackupHeads(filter);
  }
  getBackups(ids: string[]): Promise<BackupRecord[]> {
    return this.#stores.backups.getBackups(ids);
  }
  deleteBackup(id: string): Promise<void> {
    return this.#stores.backups.deleteBackup(id);
  }
  snapshotOwners(array: string, snapshotId: string): Promise<SnapshotOwner[]> {
    return this.#stores.backups.snapshotOwners(array, snapshotId);
  }
  ownedSnapshotIds(array: string, states?: BackupState[]): Promise<Set<string>> {
    return this.#stores.backups.ownedSnapshotIds(array, states);
  }

  beginOperation(op: { id: string; kind: OperationKind; subject?: string; pid?: number }): Promise<void> {
    return this.#stores.operations.beginOperation(op);
  }
  finishOperation(id: string, state: 'done' | 'failed', options?: { repaired?: boolean }): Promise<void> {
    return this.#stores.operations.finishOperation(id, state, options);
  }
  getOperation(id: string): Promise<Operation> {
    return this.#stores.operations.getOperation(id);
  }
  findOperation(id: string): Promise<Operation | undefined> {
    return this.#stores.operations.findOperation(id);
  }
  unfinishedOperations(): Promise<Operation[]> {
    return this.#stores.operations.unfinishedOperations();
  }
  listOperations(filter?: OperationFilter): Promise<Operation[]> {
    return this.#stores.operations.listOperations(filter);
  }
  heartbeat(id: string): Promise<void> {
    return this.#stores.operations.heartbeat(id);
  }
  journal(operationId: string, entry: JournalStep): Promise<number> {
    return this.#stores.operations.journal(operationId, entry);
  }
  journalSteps(operationId: string, entries: JournalStep[]): Promise<number[]> {
    return this.#stores.operations.journalSteps(operationId, entries);
  }
  completeJournal(entryId: number, data?: Record<string, unknown>): Promise<void> {
    return this.#stores.operations.completeJournal(entryId, data);
  }
  journalEntries(operationId: string): Promise<JournalEntry[]> {
    return this.#stores.operations.journalEntries(operationId);
  }
  markRecovered(operationId: string): Promise<void> {
    return this.#stores.operations.markRecovered(operationId);
  }
  pruneOperations(before: string): Promise<number> {
    return this.#stores.operations.pruneOperations(before);
  }

  acquireLocks(operationId: string, resources: LockRequest[]): Promise<void> {
    return this.#stores.locks.acquireLocks(operationId, resources);
  }
  lockHolders(resource: string): Promise<LockHolder[]> {
    return this.#stores.locks.lockHolders(resource);
  }
  releaseLocks(operationId: string): Promise<void> {
    return this.#stores.locks.releaseLocks(operationId);
  }
  locksOf(operationId: string): Promise<string[]> {
    return this.#stores.locks.locksOf(operationId);
  }

  createTask(task: TaskConfig): Promise<void> {
    return this.#stores.tasks.createTask(task);
  }
  updateTask(task: TaskConfig): Promise<void> {
    return this.#stores.tasks.updateTask(task);
  }
  deleteTask(name: string): Promise<void> {
    return this.#stores.tasks.deleteTask(name);
  }
  getTask(name: string): Promise<TaskConfig> {
    return this.#stores.tasks.getTask(name);
  }
  findTask(name: string): Promise<TaskConfig | undefined> {
    return this.#stores.tasks.findTask(name);
  }
  listTasks(): Promise<TaskConfig[]> {
    return this.#stores.tasks.listTasks();
  }

  addMount(mount: {
    id: string;
    backupId: string;
    kind: string;
    data?: Record<string, unknown>;
  }): Promise<Mount> {
    return this.#stores.mounts.addMount(mount);
  }
  removeMount(id: string): Promise<void> {
    return this.#stores.mounts.removeMount(id);
  }
  getMount(id: string): Promise<Mount> {
    return this.#stores.mounts.getMount(id);
  }
  mountsOf(backupId: string): Promise<Mount[]> {
    return this.#stores.mounts.mountsOf(backupId);
  }
  listMounts(): Promise<Mount[]> {
    return this.#stores.mounts.listMounts();
  }

  addCopy(copy: NewBackupCopy): Promise<BackupCopy> {
    return this.#stores.copies.addCopy(copy);
  }
  findCopy(backupId: string, repositoryId: string): Promise<BackupCopy | undefined> {
    return this.#stores.copies.findCopy(backupId, repositoryId);
  }
  copiesOf(backupId: string): Promise<BackupCopy[]> {
    return this.#stores.copies.copiesOf(backupId);
  }

  copiesOfBackups(backupIds: string[]): Promise<Map<string, BackupCopy[]>> {
    return this.#stores.copies.copiesOfBackups(backupIds);
  }
  listCopies(filter?: { repository?: string; repositoryId?: string; task?: string }): Promise<BackupCopy[]> {
    return this.#stores.copies.listCopies(filter);
  }
  removeCopy(backupId: string, repositoryId: string): Promise<void> {
    return this.#stores.copies.removeCopy(backupId, repositoryId);
  }

  addToken(token: { id: string; name: string; role: Role; tokenHash: string }): Promise<ApiToken> {
    return this.#stores.auth.addToken(token);
  }
  listTokens(): Promise<ApiToken[]> {
    return this.#stores.auth.listTokens();
  }
  removeToken(idOrName: string): Promise<ApiToken> {
    return this.#stores.auth.removeToken(idOrName);
  }
  tokenByHash(tokenHash: string): Promise<ApiToken | undefined> {
    return this.#stores.auth.tokenByHash(tokenHash);
  }
  markTokenUsed(id: string, at: string): Promise<void> {
    return this.#stores.auth.markTokenUsed(id, at);
  }
  addUser(user: { name: string; role: Role; passwordHash: string }): Promise<User> {
    return this.#stores.auth.addUser(user);
  }
  listUsers(): Promise<User[]> {
    return this.#stores.auth.listUsers();
  }
  findUserCredentials(name: string): Promise<{ user: User; passwordHash: string } | undefined> {
    return this.#stores.auth.findUserCredentials(name);
  }
  setUserPassword(name: string, passwordHash: string): Promise<void> {
    return this.#stores.auth.setUserPassword(name, passwordHash);
  }
  removeUser(name: string): Promise<void> {
    return this.#stores.auth.removeUser(name);
  }
  addSession(session: { idHash: string; user: string; expiresAt: string }): Promise<void> {
    return this.#stores.auth.addSession(session);
  }
  sessionUser(idHash: string, now: string): Promise<User | undefined> {
    return this.#stores.auth.sessionUser(idHash, now);
  }
  removeSession(idHash: string): Promise<void> {
    return this.#stores.auth.removeSession(idHash);
  }
  pruneSessions(now: string): Promise<number> {
    return this.#stores.auth.pruneSessions(now);
  }

  heartbeatMember(
    member: Pick<DaemonMember, 'instanceId' | 'host' | 'pid' | 'listen'>,
  ): Promise<DaemonMember> {
    return this.#stores.daemon.heartbeatMember(member);
  }
  liveMembers(ttlMs: number): Promise<DaemonMember[]> {
    return this.#stores.daemon.liveMembers(ttlMs);
  }
  removeMember(instanceId: string): Promise<void> {
    return this.#stores.daemon.removeMember(instanceId);
  }
  claimLeadership(instanceId: string, ttlMs: number): Promise<Leadership> {
    return this.#stores.daemon.claimLeadership(instanceId, ttlMs);
  }
  releaseLeadership(instanceId: string): Promise<void> {
    return this.#stores.daemon.releaseLeadership(instanceId);
  }
  currentLeadership(): Promise<Leadership> {
    return this.#stores.daemon.currentLeadership();
  }
  saveJob(job: JobRow): Promise<void> {
    return this.#stores.daemon.saveJob(job);
  }
  findJob(id: string): Promise<JobRow | undefined> {
    return this.#stores.daemon.findJob(id);
  }
  listJobs(filter?: { state?: JobState[]; limit?: number }): Promise<JobRow[]> {
    return this.#stores.daemon.listJobs(filter);
  }
  failOrphanedJobs(ttlMs: number, error: { code: string; message: string }): Promise<number> {
    return this.#stores.daemon.failOrphanedJobs(ttlMs, error);
  }
  scheduleState(task: string): Promise<ScheduleState | undefined> {
    return this.#stores.daemon.scheduleState(task);
  }
  saveScheduleStateAsLeader(
    state: ScheduleState,
    leader: { instanceId: string; term: number },
  ): Promise<boolean> {
    return this.#stores.daemon.saveScheduleStateAsLeader(state, leader);
  }
  backupCounts(): Promise<{ task: string; state: BackupState; count: number; lastCompleteAt?: string }[]> {
    return this.#stores.daemon.backupCounts();
  }
}
