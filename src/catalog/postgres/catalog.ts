import type { PostgresCatalogConfig } from '../../config/catalog.js';
import type { TaskConfig } from '../../config/schema.js';
import { SnapkeeperError } from '../../errors.js';
import type { BackupRecord, BackupState } from '../../model/backup.js';
import type {
  ApiToken,
  BackupCopy,
  BackupFilter,
  BackupHead,
  CatalogHandle,
  DaemonMember,
  JobRow,
  JobState,
  JournalEntry,
  JournalStep,
  Leadership,
  LockHolder,
  LockRequest,
  Mount,
  NewBackupCopy,
  Operation,
  OperationFilter,
  OperationKind,
  Role,
  ScheduleState,
  SnapshotOwner,
  User,
} from '../types.js';
import { PostgresAuthStore } from './auth.js';
import { PostgresBackupStore } from './backups.js';
import { PostgresCopyStore } from './copies.js';
import { PostgresDaemonStore } from './daemon.js';
import { PostgresDatabase, type PostgresOptions } from './database.js';
import { applyPostgresMigrations } from './migrate.js';
import { PostgresMountStore } from './mounts.js';
import { PostgresOperationJournal } from './operations.js';
import { PostgresTaskStore } from './tasks.js';

/**
 * The catalog on a PostgreSQL server: every role interface, each implemented by its own store on one shared
 * pool of connections (this class only composes them). Any number of processes on any number of machines
 * may open it: each multi-statement write is one transaction, locks are taken under row locks and an
 * advisory lock, and every time (heartbeats, leases, leadership, lock times) is the server's clock.
 */
export class PostgresCatalog implements CatalogHandle {
  readonly #db: PostgresDatabase;
  readonly #backups: PostgresBackupStore;
  readonly #operations: PostgresOperationJournal;
  readonly #tasks: PostgresTaskStore;
  readonly #mounts: PostgresMountStore;
  readonly #copies: PostgresCopyStore;
  readonly #auth: PostgresAuthStore;
  readonly #daemon: PostgresDaemonStore;
  readonly id: string;
  readonly dialect = 'postgres' as const;

  private constructor(db: PostgresDatabase, id: string) {
    this.#db = db;
    this.id = id;
    this.#backups = new PostgresBackupStore(db);
    this.#operations = new PostgresOperationJournal(db);
    this.#tasks = new PostgresTaskStore(db);
    this.#mounts = new PostgresMountStore(db);
    this.#copies = new PostgresCopyStore(db);
    this.#auth = new PostgresAuthStore(db);
    this.#daemon = new PostgresDaemonStore(db);
  }

  /**
   * Connects, migrates (an older schema is brought up to date; a newer one refused: CATALOG_TOO_NEW) and
   * reads the catalog's id. Without `create` a database holding no catalog is refused (CATALOG_NOT_FOUND);
   * CATALOG_UNREACHABLE, CATALOG_AUTH_FAILED name host:port and database, never the password.
   */
  static async open(
    config: PostgresCatalogConfig,
    options: PostgresOptions & { create?: boolean } = {},
  ): Promise<PostgresCatalog> {
    const db = new PostgresDatabase(config, options);
    try {
      await applyPostgresMigrations(db, { create: options.create === true });
      const row = await db.get<{ value: string }>("SELECT value FROM meta WHERE key = 'catalog_id'");
      if (row === undefined) {
        throw new SnapkeeperError(
          'CATALOG_CORRUPT',
          `catalog ${db.location} has no identity (meta.catalog_id)`,
          {
            details: { location: db.location },
          },
        );
      }
      return new PostgresCatalog(db, row.value);
    } catch (err) {
      await db.close();
      throw err;
    }
  }

  /** Creates the catalog in the (existing, empty) database, or opens the one there. */
  static create(config: PostgresCatalogConfig, options: PostgresOptions = {}): Promise<PostgresCatalog> {
    return PostgresCatalog.open(config, { ...options, create: true });
  }

  /** The URL without a password. */
  get location(): string {
    return this.#db.location;
  }

  /** The pool, for the migration from SQLite (catalog migrate) alone. */
  get database(): PostgresDatabase {
    return this.#db;
  }

  /** Ends every connection of the pool. Safe to call twice. */
  close(): Promise<void> {
    return this.#db.close();
  }

  async schemaVersion(): Promise<number> {
    return (
      (await this.#db.get<{ v: number | null }>('SELECT max(version) AS v FROM schema_migrations'))?.v ?? 0
    );
  }

  /** The server's clock (or the test clock it was opened with). */
  async now(): Promise<Date> {
    return new Date(await this.#db.stamp());
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
    return this.#operations.acquireLocks(operationId, resources);
  }
  lockHolders(resource: string): Promise<LockHolder[]> {
    return this.#operations.lockHolders(resource);
  }
  releaseLocks(operationId: string): Promise<void> {
    return this.#operations.releaseLocks(operationId);
  }
  locksOf(operationId: string): Promise<string[]> {
    return this.#operations.locksOf(operationId);
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
