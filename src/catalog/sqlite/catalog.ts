import type { TaskConfig } from '../../config/schema.js';
import type { BackupRecord, BackupState } from '../../model/backup.js';
import type {
  ApiToken,
  AuthStore,
  BackupCopy,
  BackupFilter,
  BackupHead,
  BackupStore,
  CatalogHandle,
  CatalogIdentity,
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
} from '../types.js';
import { SqliteAuthStore } from './auth.js';
import { SqliteBackupStore } from './backups.js';
import { SqliteCopyStore } from './copies.js';
import { SqliteDaemonStore } from './daemon.js';
import { type CatalogOptions, SqliteDatabase } from './database.js';
import { readCatalogId, schemaVersion } from './identity.js';
import { SqliteLockManager } from './locks.js';
import { SqliteMountStore } from './mounts.js';
import { SqliteOperationJournal } from './operations.js';
import { SqliteTaskStore } from './tasks.js';

/**
 * The catalog on one SQLite file: every role interface, each implemented by its own store on one shared
 * connection (this class only composes them). Several processes may open the same file: WAL lets readers
 * run beside the one writer, every write is an IMMEDIATE transaction (the write lock is taken up front, so
 * two writers never deadlock on an upgrade), and synchronous=FULL makes a committed journal entry survive a
 * power cut before the side effect it announces begins.
 */
export class Catalog
  implements
    CatalogHandle,
    CopyStore,
    CatalogIdentity,
    BackupStore,
    OperationJournal,
    LockManager,
    TaskStore,
    MountStore,
    AuthStore,
    DaemonStore
{
  readonly #db: SqliteDatabase;
  readonly #backups: SqliteBackupStore;
  readonly #operations: SqliteOperationJournal;
  readonly #locks: SqliteLockManager;
  readonly #tasks: SqliteTaskStore;
  readonly #mounts: SqliteMountStore;
  readonly #copies: SqliteCopyStore;
  readonly #auth: SqliteAuthStore;
  readonly #daemon: SqliteDaemonStore;
  readonly id: string;
  readonly dialect = 'sqlite' as const;

  private constructor(db: SqliteDatabase) {
    this.#db = db;
    this.id = readCatalogId(db);
    this.#backups = new SqliteBackupStore(db);
    this.#operations = new SqliteOperationJournal(db);
    this.#locks = new SqliteLockManager(db);
    this.#tasks = new SqliteTaskStore(db);
    this.#mounts = new SqliteMountStore(db);
    this.#copies = new SqliteCopyStore(db);
    this.#auth = new SqliteAuthStore(db);
    this.#daemon = new SqliteDaemonStore(db);
  }

  /** See `SqliteDatabase.open` for what it refuses. */
  static open(path: string, options: CatalogOptions = {}): Catalog {
    const db = SqliteDatabase.open(path, options);
    try {
      return new Catalog(db);
    } catch (err) {
      db.close();
      throw err;
    }
  }

  /** Creates the catalog at `path` (or opens the one there): what `init`, `lab up` and `catalog create` do. */
  static create(path: string, options: Omit<CatalogOptions, 'create'> = {}): Catalog {
    return Catalog.open(path, { ...options, create: true });
  }

  /** Absolute path of the catalog file. */
  get path(): string {
    return this.#db.path;
  }

  /** The file's absolute path (for messages and logs). */
  get location(): string {
    return this.#db.path;
  }

  /**
   * Closes the connection. Safe to call twice. The file is closed before the Promise is returned (SQLite
   * closes synchronously), so a caller that cannot await (an exit hook) may ignore it.
   */
  async close(): Promise<void> {
    this.#db.close();
  }

  /** Version of the schema in the file (the newest migration applied). */
  async schemaVersion(): Promise<number> {
    return schemaVersion(this.#db);
  }

  /** This process's clock (the `now` option, if any): one machine, one clock. */
  async now(): Promise<Date> {
    return new Date(this.#db.stamp());
  }

  insertBackup(record: BackupRecord): Promise<void> {
    return this.#backups.insertBackup(record);
  }
  updateBackup(record: BackupRecord): Promise<void> {
    return this.#backups.updateBackup(record);
  }
  markBackupLost(id: string, lost: { at: string; reason: string }): Promise<BackupRecord | undefined> {
    return this.#backups.markBackupLost(id, lost);
  }
  getBackup(id: string): Promise<BackupRecord> {
    return this.#backups.getBackup(id);
  }
  findBackup(id: string): Promise<BackupRecord | undefined> {
    return this.#backups.findBackup(id);
  }
  listBackups(filter?: BackupFilter): Promise<BackupRecord[]> {
    return this.#backups.listBackups(filter);
  }
  listBackupHeads(filter?: BackupFilter): Promise<BackupHead[]> {
    return this.#backups.listBackupHeads(filter);
  }
  getBackups(ids: string[]): Promise<BackupRecord[]> {
    return this.#backups.getBackups(ids);
  }
  deleteBackup(id: string): Promise<void> {
    return this.#backups.deleteBackup(id);
  }
  snapshotOwners(array: string, snapshotId: string): Promise<SnapshotOwner[]> {
    return this.#backups.snapshotOwners(array, snapshotId);
  }
  ownedSnapshotIds(array: string, states?: BackupState[]): Promise<Set<string>> {
    return this.#backups.ownedSnapshotIds(array, states);
  }

  beginOperation(op: { id: string; kind: OperationKind; subject?: string; pid?: number }): Promise<void> {
    return this.#operations.beginOperation(op);
  }
  finishOperation(id: string, state: 'done' | 'failed', options?: { repaired?: boolean }): Promise<void> {
    return this.#operations.finishOperation(id, state, options);
  }
  getOperation(id: string): Promise<Operation> {
    return this.#operations.getOperation(id);
  }
  findOperation(id: string): Promise<Operation | undefined> {
    return this.#operations.findOperation(id);
  }
  unfinishedOperations(): Promise<Operation[]> {
    return this.#operations.unfinishedOperations();
  }
  listOperations(filter?: OperationFilter): Promise<Operation[]> {
    return this.#operations.listOperations(filter);
  }
  heartbeat(id: string): Promise<void> {
    return this.#operations.heartbeat(id);
  }
  journal(operationId: string, entry: JournalStep): Promise<number> {
    return this.#operations.journal(operationId, entry);
  }
  journalSteps(operationId: string, entries: JournalStep[]): Promise<number[]> {
    return this.#operations.journalSteps(operationId, entries);
  }
  completeJournal(entryId: number, data?: Record<string, unknown>): Promise<void> {
    return this.#operations.completeJournal(entryId, data);
  }
  journalEntries(operationId: string): Promise<JournalEntry[]> {
    return this.#operations.journalEntries(operationId);
  }
  markRecovered(operationId: string): Promise<void> {
    return this.#operations.markRecovered(operationId);
  }
  pruneOperations(before: string): Promise<number> {
    return this.#operations.pruneOperations(before);
  }

  acquireLocks(operationId: string, resources: LockRequest[]): Promise<void> {
    return this.#locks.acquireLocks(operationId, resources);
  }
  lockHolders(resource: string): Promise<LockHolder[]> {
    return this.#locks.lockHolders(resource);
  }
  releaseLocks(operationId: string): Promise<void> {
    return this.#locks.releaseLocks(operationId);
  }
  locksOf(operationId: string): Promise<string[]> {
    return this.#locks.locksOf(operationId);
  }

  createTask(task: TaskConfig): Promise<void> {
    return this.#tasks.createTask(task);
  }
  updateTask(task: TaskConfig): Promise<void> {
    return this.#tasks.updateTask(task);
  }
  deleteTask(name: string): Promise<void> {
    return this.#tasks.deleteTask(name);
  }
  getTask(name: string): Promise<TaskConfig> {
    return this.#tasks.getTask(name);
  }
  findTask(name: string): Promise<TaskConfig | undefined> {
    return this.#tasks.findTask(name);
  }
  listTasks(): Promise<TaskConfig[]> {
    return this.#tasks.listTasks();
  }

  addMount(mount: {
    id: string;
    backupId: string;
    kind: string;
    data?: Record<string, unknown>;
  }): Promise<Mount> {
    return this.#mounts.addMount(mount);
  }
  removeMount(id: string): Promise<void> {
    return this.#mounts.removeMount(id);
  }
  getMount(id: string): Promise<Mount> {
    return this.#mounts.getMount(id);
  }
  mountsOf(backupId: string): Promise<Mount[]> {
    return this.#mounts.mountsOf(backupId);
  }
  listMounts(): Promise<Mount[]> {
    return this.#mounts.listMounts();
  }

  addCopy(copy: NewBackupCopy): Promise<BackupCopy> {
    return this.#copies.addCopy(copy);
  }
  findCopy(backupId: string, repositoryId: string): Promise<BackupCopy | undefined> {
    return this.#copies.findCopy(backupId, repositoryId);
  }
  copiesOf(backupId: string): Promise<BackupCopy[]> {
    return this.#copies.copiesOf(backupId);
  }

  copiesOfBackups(backupIds: string[]): Promise<Map<string, BackupCopy[]>> {
    return this.#copies.copiesOfBackups(backupIds);
  }
  listCopies(filter?: { repository?: string; repositoryId?: string; task?: string }): Promise<BackupCopy[]> {
    return this.#copies.listCopies(filter);
  }
  removeCopy(backupId: string, repositoryId: string): Promise<void> {
    return this.#copies.removeCopy(backupId, repositoryId);
  }

  addToken(token: { id: string; name: string; role: Role; tokenHash: string }): Promise<ApiToken> {
    return this.#auth.addToken(token);
  }
  listTokens(): Promise<ApiToken[]> {
    return this.#auth.listTokens();
  }
  removeToken(idOrName: string): Promise<ApiToken> {
    return this.#auth.removeToken(idOrName);
  }
  tokenByHash(tokenHash: string): Promise<ApiToken | undefined> {
    return this.#auth.tokenByHash(tokenHash);
  }
  markTokenUsed(id: string, at: string): Promise<void> {
    return this.#auth.markTokenUsed(id, at);
  }
  addUser(user: { name: string; role: Role; passwordHash: string }): Promise<User> {
    return this.#auth.addUser(user);
  }
  listUsers(): Promise<User[]> {
    return this.#auth.listUsers();
  }
  findUserCredentials(name: string): Promise<{ user: User; passwordHash: string } | undefined> {
    return this.#auth.findUserCredentials(name);
  }
  setUserPassword(name: string, passwordHash: string): Promise<void> {
    return this.#auth.setUserPassword(name, passwordHash);
  }
  removeUser(name: string): Promise<void> {
    return this.#auth.removeUser(name);
  }
  addSession(session: { idHash: string; user: string; expiresAt: string }): Promise<void> {
    return this.#auth.addSession(session);
  }
  sessionUser(idHash: string, now: string): Promise<User | undefined> {
    return this.#auth.sessionUser(idHash, now);
  }
  removeSession(idHash: string): Promise<void> {
    return this.#auth.removeSession(idHash);
  }
  pruneSessions(now: string): Promise<number> {
    return this.#auth.pruneSessions(now);
  }

  heartbeatMember(
    member: Pick<DaemonMember, 'instanceId' | 'host' | 'pid' | 'listen'>,
  ): Promise<DaemonMember> {
    return this.#daemon.heartbeatMember(member);
  }
  liveMembers(ttlMs: number): Promise<DaemonMember[]> {
    return this.#daemon.liveMembers(ttlMs);
  }
  removeMember(instanceId: string): Promise<void> {
    return this.#daemon.removeMember(instanceId);
  }
  claimLeadership(instanceId: string, ttlMs: number): Promise<Leadership> {
    return this.#daemon.claimLeadership(instanceId, ttlMs);
  }
  releaseLeadership(instanceId: string): Promise<void> {
    return this.#daemon.releaseLeadership(instanceId);
  }
  currentLeadership(): Promise<Leadership> {
    return this.#daemon.currentLeadership();
  }
  saveJob(job: JobRow): Promise<void> {
    return this.#daemon.saveJob(job);
  }
  findJob(id: string): Promise<JobRow | undefined> {
    return this.#daemon.findJob(id);
  }
  listJobs(filter?: { state?: JobState[]; limit?: number }): Promise<JobRow[]> {
    return this.#daemon.listJobs(filter);
  }
  failOrphanedJobs(ttlMs: number, error: { code: string; message: string }): Promise<number> {
    return this.#daemon.failOrphanedJobs(ttlMs, error);
  }
  scheduleState(task: string): Promise<ScheduleState | undefined> {
    return this.#daemon.scheduleState(task);
  }
  saveScheduleStateAsLeader(
    state: ScheduleState,
    leader: { instanceId: string; term: number },
  ): Promise<boolean> {
    return this.#daemon.saveScheduleStateAsLeader(state, leader);
  }
  backupCounts(): Promise<{ task: string; state: BackupState; count: number; lastCompleteAt?: string }[]> {
    return this.#daemon.backupCounts();
  }
}
