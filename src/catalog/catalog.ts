import { mkdirSync, statSync } from 'node:fs';
import { hostname } from 'node:os';
import { dirname, resolve } from 'node:path';
import Database from 'better-sqlite3';
import picomatch from 'picomatch';
import { type TaskConfig, taskSchema } from '../config/schema.js';
import {
  ConflictError,
  errorMessage,
  LockedError,
  NotFoundError,
  SnapkeeperError,
  UsageError,
} from '../errors.js';
import type { BackupRecord, BackupState } from '../model/backup.js';
import { applyMigrations } from './migrate.js';
import type {
  BackupFilter,
  BackupStore,
  JournalEntry,
  LockHolder,
  LockManager,
  LockMode,
  LockRequest,
  Mount,
  MountStore,
  Operation,
  OperationFilter,
  OperationJournal,
  OperationKind,
  OperationState,
  SnapshotOwner,
  TaskStore,
} from './types.js';

export interface CatalogOptions {
  /** How long a write waits for another process's write transaction before failing (CATALOG_BUSY). */
  busyTimeoutMs?: number;
  /** Clock for the times the catalog stamps itself (operations, journal, locks, tasks, mounts). */
  now?: () => Date;
  /**
   * Create the file (and its directory) when it does not exist. Only `init`, `lab up` and `catalog create`
   * do: anywhere else a missing catalog is a mistyped path, and a new empty catalog there would make every
   * existing backup look like garbage to recover.
   */
  create?: boolean;
}

const BACKUP_STATES: readonly BackupState[] = ['running', 'complete', 'partial', 'failed', 'lost'];
const OPERATION_KINDS: readonly OperationKind[] = [
  'backup',
  'restore',
  'mount',
  'attach',
  'recover',
  'expire',
  'delete',
];
const RESTORABLE: BackupState[] = ['complete', 'partial'];

interface OperationRow {
  id: string;
  kind: OperationKind;
  subject: string | null;
  pid: number;
  host: string;
  state: OperationState;
  started_at: string;
  finished_at: string | null;
  heartbeat_at: string | null;
  recovered_at: string | null;
}

interface JournalRow {
  id: number;
  operation_id: string;
  action: string;
  target: string;
  data: string;
  created_at: string;
  completed_at: string | null;
}

interface MountRow {
  id: string;
  backup_id: string;
  kind: string;
  data: string;
  created_at: string;
}

/**
 * The catalog on one SQLite file: backup records, the operation journal, locks, CLI-created tasks and
 * mounts. Several processes may open the same file: WAL lets readers run beside the one writer, every
 * write is an IMMEDIATE transaction (the write lock is taken up front, so two writers never deadlock on
 * an upgrade), and synchronous=FULL makes a committed journal entry survive a power cut before the side
 * effect it announces begins.
 */
export class Catalog implements BackupStore, OperationJournal, LockManager, TaskStore, MountStore {
  readonly #db: Database.Database;
  readonly #now: () => Date;
  readonly #statements = new Map<string, Database.Statement>();
  #id: string | undefined;

  private constructor(
    /** Absolute path of the catalog file. */
    readonly path: string,
    db: Database.Database,
    now: () => Date,
  ) {
    this.#db = db;
    this.#now = now;
  }

  /**
   * Opens and migrates the catalog; with `create`, creates the file (and its parent directory) first when it
   * does not exist. UsageError CATALOG_NOT_FOUND for a missing file without `create` (nothing is created),
   * CATALOG_INVALID for an empty file, a file that is not SQLite or an SQLite file that is not a catalog
   * (left untouched), CATALOG_TOO_NEW for a schema newer than this code, CATALOG_OPEN_FAILED when the file
   * cannot be opened at all; SnapkeeperError CATALOG_CORRUPT for a damaged one.
   */
  static open(path: string, options: CatalogOptions = {}): Catalog {
    const file = path === ':memory:' ? path : resolve(path);
    const create = options.create === true || file === ':memory:';
    if (file !== ':memory:') checkCatalogFile(file, create);
    let db: Database.Database;
    try {
      if (create && file !== ':memory:') mkdirSync(dirname(file), { recursive: true });
      db = new Database(file, { timeout: options.busyTimeoutMs ?? 5000, fileMustExist: !create });
    } catch (err) {
      throw new UsageError('CATALOG_OPEN_FAILED', `cannot open catalog ${file}: ${errorMessage(err)}`, {
        cause: err,
        details: { file },
      });
    }
    try {
      // Read the header before any PRAGMA that writes, so a foreign file is refused untouched.
      const tables = db
        .prepare<[], { n: number }>(
          "SELECT count(*) AS n FROM sqlite_master WHERE name = 'schema_migrations'",
        )
        .get();
      if (!create && tables?.n === 0) {
        // Not ours, or an empty SQLite file: migrating would turn it into a catalog behind the user's back.
        throw new UsageError(
          'CATALOG_INVALID',
          `${file} is an SQLite database but not a snapkeeper catalog (no schema_migrations table); left untouched`,
          { details: { file } },
        );
      }
      db.pragma('journal_mode = WAL');
      db.pragma('synchronous = FULL');
      applyMigrations(db, file);
      db.pragma('foreign_keys = ON');
    } catch (err) {
      db.close();
      if (isSqliteError(err, 'SQLITE_NOTADB')) {
        throw new UsageError(
          'CATALOG_INVALID',
          `${file} is not a snapkeeper catalog (not an SQLite database); left untouched`,
          {
            cause: err,
            details: { file },
          },
        );
      }
      throw catalogError(err, file);
    }
    return new Catalog(file, db, options.now ?? (() => new Date()));
  }

  /** Creates the catalog at `path` (or opens the one there): what `init`, `lab up` and `catalog create` do. */
  static create(path: string, options: Omit<CatalogOptions, 'create'> = {}): Catalog {
    return Catalog.open(path, { ...options, create: true });
  }

  /**
   * The catalog's identity, made once with it and never changed. Everything snapkeeper makes on an array
   * or in vCenter carries it, so that clean-up tells its own leftovers from another catalog's.
   */
  get id(): string {
    this.#id ??= this.#get<{ value: string }>("SELECT value FROM meta WHERE key = 'catalog_id'")?.value;
    if (this.#id === undefined) {
      throw new SnapkeeperError('CATALOG_CORRUPT', `catalog ${this.path} has no identity (meta.catalog_id)`, {
        details: { file: this.path },
      });
    }
    return this.#id;
  }

  /** Closes the connection. Safe to call twice. */
  close(): void {
    if (this.#db.open) this.#db.close();
  }

  /** Version of the schema in the file (the newest migration applied). */
  schemaVersion(): number {
    return this.#get<{ v: number | null }>('SELECT max(version) AS v FROM schema_migrations')?.v ?? 0;
  }

  /**
   * Runs `fn` in one IMMEDIATE transaction: every catalog write inside commits together or not at all.
   * Nested calls (and the catalog's own methods called inside) become savepoints.
   */
  transaction<T>(fn: () => T): T {
    try {
      return this.#db.transaction(fn).immediate();
    } catch (err) {
      throw catalogError(err, this.path);
    }
  }

  // ---- backups -------------------------------------------------------------------------------------

  insertBackup(record: BackupRecord): void {
    const startedAt = checkRecord(record);
    this.transaction(() => {
      if (this.#get('SELECT 1 FROM backups WHERE id = ?', record.id)) {
        throw new ConflictError('BACKUP_EXISTS', `backup ${record.id} already exists in the catalog`);
      }
      this.#run(
        'INSERT INTO backups (id, task, state, started_at, finished_at, record) VALUES (?, ?, ?, ?, ?, ?)',
        record.id,
        record.task,
        record.state,
        startedAt,
        record.finishedAt ?? null,
        JSON.stringify(record),
      );
      this.#indexBackup(record);
    });
  }

  updateBackup(record: BackupRecord): void {
    const startedAt = checkRecord(record);
    this.transaction(() => {
      const changed = this.#run(
        'UPDATE backups SET task = ?, state = ?, started_at = ?, finished_at = ?, record = ? WHERE id = ?',
        record.task,
        record.state,
        startedAt,
        record.finishedAt ?? null,
        JSON.stringify(record),
        record.id,
      );
      if (changed === 0) throw backupNotFound(record.id);
      this.#run('DELETE FROM backup_vms WHERE backup_id = ?', record.id);
      this.#run('DELETE FROM backup_snapshots WHERE backup_id = ?', record.id);
      this.#indexBackup(record);
    });
  }

  getBackup(id: string): BackupRecord {
    const record = this.findBackup(id);
    if (!record) throw backupNotFound(id);
    return record;
  }

  findBackup(id: string): BackupRecord | undefined {
    const row = this.#get<{ record: string }>('SELECT record FROM backups WHERE id = ?', id);
    return row ? this.#parse<BackupRecord>(row.record, `backup ${id}`) : undefined;
  }

  listBackups(filter: BackupFilter = {}): BackupRecord[] {
    const where: string[] = [];
    const params: unknown[] = [];
    if (filter.task !== undefined) {
      where.push('b.task = ?');
      params.push(filter.task);
    }
    if (filter.state !== undefined && filter.state.length > 0) {
      where.push(`b.state IN (${filter.state.map(() => '?').join(', ')})`);
      params.push(...filter.state);
    }
    if (filter.since !== undefined) {
      where.push('b.started_at >= ?');
      params.push(toInstant(filter.since, 'since'));
    }
    if (filter.until !== undefined) {
      where.push('b.started_at < ?');
      params.push(toInstant(filter.until, 'until'));
    }
    if (filter.vm !== undefined) {
      const names = this.#vmNamesMatching(filter.vm);
      if (names.length === 0) return [];
      where.push(
        'EXISTS (SELECT 1 FROM backup_vms v WHERE v.backup_id = b.id AND v.vm_name IN (SELECT value FROM json_each(?)))',
      );
      params.push(JSON.stringify(names));
    }
    let limit = -1;
    if (filter.limit !== undefined) {
      if (!Number.isInteger(filter.limit) || filter.limit < 0) {
        throw new UsageError('INVALID_LIMIT', `limit must be a whole number >= 0, got ${filter.limit}`);
      }
      limit = filter.limit;
    }
    params.push(limit);
    const sql = `SELECT b.id, b.record FROM backups b ${where.length > 0 ? `WHERE ${where.join(' AND ')}` : ''}
      ORDER BY b.started_at DESC, b.id DESC LIMIT ?`;
    return this.#all<{ id: string; record: string }>(sql, ...params).map((r) =>
      this.#parse<BackupRecord>(r.record, `backup ${r.id}`),
    );
  }

  deleteBackup(id: string): void {
    this.transaction(() => {
      if (!this.#get('SELECT 1 FROM backups WHERE id = ?', id)) throw backupNotFound(id);
      const mounts = this.mountsOf(id);
      if (mounts.length > 0) {
        throw new ConflictError(
          'BACKUP_MOUNTED',
          `backup ${id} is mounted (${mounts.map((m) => `${m.kind} ${m.id}`).join(', ')}): unmount or detach it first`,
          { details: { backupId: id, mounts: mounts.map((m) => m.id) } },
        );
      }
      this.#run('DELETE FROM backups WHERE id = ?', id);
    });
  }

  snapshotOwners(array: string, snapshotId: string): SnapshotOwner[] {
    return this.#all<SnapshotOwner>(
      `SELECT s.backup_id AS backupId, b.state AS state FROM backup_snapshots s JOIN backups b ON b.id = s.backup_id
       WHERE s.array = ? AND s.snapshot_id = ? ORDER BY b.started_at, b.id`,
      array,
      snapshotId,
    );
  }

  ownedSnapshotIds(array: string, states: BackupState[] = RESTORABLE): Set<string> {
    const rows = this.#all<{ id: string }>(
      `SELECT DISTINCT s.snapshot_id AS id FROM backup_snapshots s JOIN backups b ON b.id = s.backup_id
       WHERE s.array = ? AND b.state IN (SELECT value FROM json_each(?))`,
      array,
      JSON.stringify(states),
    );
    return new Set(rows.map((r) => r.id));
  }

  #indexBackup(record: BackupRecord): void {
    for (const vm of record.vms) {
      this.#run(
        'INSERT OR IGNORE INTO backup_vms (backup_id, vm_id, vm_name) VALUES (?, ?, ?)',
        record.id,
        vm.id,
        vm.name,
      );
    }
    for (const s of record.snapshots) {
      this.#run(
        'INSERT OR IGNORE INTO backup_snapshots (backup_id, array, snapshot_id) VALUES (?, ?, ?)',
        record.id,
        s.array,
        s.snapshotId,
      );
    }
  }

  /** VM names in the catalog equal to `pattern` or matching it as a glob (a name like `a(b)` stays literal). */
  #vmNamesMatching(pattern: string): string[] {
    const names = this.#all<{ name: string }>('SELECT DISTINCT vm_name AS name FROM backup_vms').map(
      (r) => r.name,
    );
    let isMatch: (name: string) => boolean;
    try {
      isMatch = picomatch(pattern, { dot: true });
    } catch (err) {
      throw new UsageError('INVALID_PATTERN', `invalid VM name pattern "${pattern}": ${errorMessage(err)}`);
    }
    return names.filter((n) => n === pattern || isMatch(n));
  }

  // ---- operations and journal ----------------------------------------------------------------------

  beginOperation(op: { id: string; kind: OperationKind; subject?: string; pid?: number }): void {
    if (!OPERATION_KINDS.includes(op.kind)) {
      throw new UsageError('INVALID_OPERATION', `unknown operation kind "${op.kind}"`);
    }
    this.transaction(() => {
      if (this.findOperation(op.id)) {
        throw new ConflictError('OPERATION_EXISTS', `operation ${op.id} already exists in the catalog`);
      }
      const now = this.#stamp();
      this.#run(
        `INSERT INTO operations (id, kind, subject, pid, host, state, started_at, heartbeat_at)
         VALUES (?, ?, ?, ?, ?, 'running', ?, ?)`,
        op.id,
        op.kind,
        op.subject ?? null,
        op.pid ?? process.pid,
        hostname(),
        now,
        now,
      );
    });
  }

  finishOperation(id: string, state: 'done' | 'failed', options: { repaired?: boolean } = {}): void {
    this.transaction(() => {
      const op = this.getOperation(id);
      if (op.state !== 'running') {
        throw new ConflictError('OPERATION_FINISHED', `operation ${id} has already finished (${op.state})`);
      }
      const now = this.#stamp();
      this.#run(
        'UPDATE operations SET state = ?, finished_at = ?, recovered_at = ? WHERE id = ?',
        state,
        now,
        state === 'failed' && options.repaired === true ? now : null,
        id,
      );
      this.#run('DELETE FROM locks WHERE operation_id = ?', id);
    });
  }

  getOperation(id: string): Operation {
    const op = this.findOperation(id);
    if (!op) throw operationNotFound(id);
    return op;
  }

  findOperation(id: string): Operation | undefined {
    const row = this.#get<OperationRow>('SELECT * FROM operations WHERE id = ?', id);
    return row ? toOperation(row) : undefined;
  }

  unfinishedOperations(): Operation[] {
    return this.#all<OperationRow>(
      "SELECT * FROM operations WHERE state = 'running' ORDER BY started_at, rowid",
    ).map(toOperation);
  }

  listOperations(filter: OperationFilter = {}): Operation[] {
    const where: string[] = [];
    const params: unknown[] = [];
    if (filter.state !== undefined && filter.state.length > 0) {
      where.push('state IN (SELECT value FROM json_each(?))');
      params.push(JSON.stringify(filter.state));
    }
    if (filter.kind !== undefined && filter.kind.length > 0) {
      where.push('kind IN (SELECT value FROM json_each(?))');
      params.push(JSON.stringify(filter.kind));
    }
    if (filter.recovered !== undefined) {
      where.push(filter.recovered ? 'recovered_at IS NOT NULL' : 'recovered_at IS NULL');
    }
    params.push(filter.limit ?? -1);
    return this.#all<OperationRow>(
      `SELECT * FROM operations ${where.length > 0 ? `WHERE ${where.join(' AND ')}` : ''}
       ORDER BY started_at DESC, rowid DESC LIMIT ?`,
      ...params,
    ).map(toOperation);
  }

  heartbeat(id: string): void {
    const changed = this.transaction(() =>
      this.#run('UPDATE operations SET heartbeat_at = ? WHERE id = ?', this.#stamp(), id),
    );
    if (changed === 0) throw operationNotFound(id);
  }

  journal(
    operationId: string,
    entry: { action: string; target: string; data?: Record<string, unknown> },
  ): number {
    return this.transaction(() => {
      if (!this.#get('SELECT 1 FROM operations WHERE id = ?', operationId))
        throw operationNotFound(operationId);
      const result = this.#statement(
        'INSERT INTO journal (operation_id, action, target, data, created_at) VALUES (?, ?, ?, ?, ?)',
      ).run(operationId, entry.action, entry.target, JSON.stringify(entry.data ?? {}), this.#stamp());
      return Number(result.lastInsertRowid);
    });
  }

  completeJournal(entryId: number, data?: Record<string, unknown>): void {
    this.transaction(() => {
      const row = this.#get<JournalRow>('SELECT * FROM journal WHERE id = ?', entryId);
      if (!row) {
        throw new NotFoundError(
          'JOURNAL_ENTRY_NOT_FOUND',
          `journal entry ${entryId} not found in the catalog`,
        );
      }
      const merged = {
        ...this.#parse<Record<string, unknown>>(row.data, `journal entry ${entryId}`),
        ...data,
      };
      this.#run(
        'UPDATE journal SET data = ?, completed_at = coalesce(completed_at, ?) WHERE id = ?',
        JSON.stringify(merged),
        this.#stamp(),
        entryId,
      );
    });
  }

  journalEntries(operationId: string): JournalEntry[] {
    return this.#all<JournalRow>('SELECT * FROM journal WHERE operation_id = ? ORDER BY id', operationId).map(
      (r) => {
        const entry: JournalEntry = {
          id: r.id,
          operationId: r.operation_id,
          action: r.action,
          target: r.target,
          data: this.#parse<Record<string, unknown>>(r.data, `journal entry ${r.id}`),
          createdAt: r.created_at,
        };
        if (r.completed_at !== null) entry.completedAt = r.completed_at;
        return entry;
      },
    );
  }

  markRecovered(operationId: string): void {
    this.transaction(() => {
      const op = this.getOperation(operationId);
      if (op.state === 'running') {
        throw new ConflictError(
          'OPERATION_RUNNING',
          `operation ${operationId} is still running: finish it as failed before marking it recovered`,
        );
      }
      this.#run('UPDATE operations SET recovered_at = ? WHERE id = ?', this.#stamp(), operationId);
    });
  }

  pruneOperations(before: string): number {
    const cutoff = toInstant(before, 'before');
    return this.transaction(() =>
      this.#run(
        `DELETE FROM operations WHERE finished_at < ?
         AND (state = 'done' OR (state = 'failed' AND recovered_at IS NOT NULL))`,
        cutoff,
      ),
    );
  }

  // ---- locks ---------------------------------------------------------------------------------------

  acquireLocks(operationId: string, requests: LockRequest[]): void {
    const wanted = new Map<string, LockMode>();
    for (const r of requests) {
      const { resource, mode } = typeof r === 'string' ? { resource: r, mode: 'exclusive' as const } : r;
      if (typeof resource !== 'string' || resource.length === 0) {
        throw new UsageError('INVALID_RESOURCE', 'lock resource names must be non-empty strings');
      }
      if (mode !== 'shared' && mode !== 'exclusive') {
        throw new UsageError(
          'INVALID_RESOURCE',
          `lock mode must be shared or exclusive, got ${String(mode)}`,
        );
      }
      // Asking for one resource twice: the stronger mode wins.
      if (wanted.get(resource) !== 'exclusive') wanted.set(resource, mode);
    }
    this.transaction(() => {
      const op = this.getOperation(operationId);
      if (op.state !== 'running') {
        throw new ConflictError(
          'OPERATION_FINISHED',
          `operation ${operationId} has finished (${op.state}) and cannot take locks`,
        );
      }
      const conflicts: { resource: string; holder: LockHolder }[] = [];
      for (const [resource, mode] of wanted) {
        for (const holder of this.lockHolders(resource)) {
          if (holder.operation.id === operationId) continue;
          // Readers share; a writer excludes everyone and is excluded by everyone.
          if (mode === 'exclusive' || holder.mode === 'exclusive') conflicts.push({ resource, holder });
        }
      }
      const first = conflicts[0];
      if (first) {
        const h = first.holder.operation;
        const more = conflicts.length > 1 ? ` (and ${conflicts.length - 1} more)` : '';
        throw new LockedError(
          'RESOURCE_LOCKED',
          `${first.resource} is ${first.holder.mode === 'shared' ? 'in use' : 'locked'} by ${h.kind} operation ${h.id} (pid ${h.pid} on ${h.host}, started ${h.startedAt})${more}`,
          {
            details: {
              conflicts: conflicts.map((c) => ({
                resource: c.resource,
                operationId: c.holder.operation.id,
                kind: c.holder.operation.kind,
                pid: c.holder.operation.pid,
                host: c.holder.operation.host,
              })),
            },
          },
        );
      }
      const now = this.#stamp();
      for (const [resource, mode] of wanted) {
        // Rows of operations that are no longer running are stale: taken over.
        this.#run(
          `DELETE FROM locks WHERE resource = ? AND operation_id IN (SELECT id FROM operations WHERE state != 'running')`,
          resource,
        );
        // Our own row keeps its first time; a shared lock asked again as exclusive is upgraded.
        this.#run(
          `INSERT INTO locks (resource, operation_id, mode, acquired_at) VALUES (?, ?, ?, ?)
           ON CONFLICT (resource, operation_id) DO UPDATE SET mode = 'exclusive' WHERE excluded.mode = 'exclusive'`,
          resource,
          operationId,
          mode,
          now,
        );
      }
    });
  }

  lockHolders(resource: string): LockHolder[] {
    return this.#all<OperationRow & { lock_mode: LockMode }>(
      `SELECT o.*, l.mode AS lock_mode FROM locks l JOIN operations o ON o.id = l.operation_id
       WHERE l.resource = ? AND o.state = 'running' ORDER BY l.acquired_at, o.id`,
      resource,
    ).map((r) => ({ mode: r.lock_mode, operation: toOperation(r) }));
  }

  releaseLocks(operationId: string): void {
    this.transaction(() => this.#run('DELETE FROM locks WHERE operation_id = ?', operationId));
  }

  locksOf(operationId: string): string[] {
    return this.#all<{ resource: string }>(
      'SELECT resource FROM locks WHERE operation_id = ? ORDER BY resource',
      operationId,
    ).map((r) => r.resource);
  }

  // ---- tasks ---------------------------------------------------------------------------------------

  createTask(task: TaskConfig): void {
    const valid = validTask(task);
    this.transaction(() => {
      if (this.#get('SELECT 1 FROM tasks WHERE name = ?', valid.name)) {
        throw new ConflictError('TASK_EXISTS', `task ${valid.name} already exists in the catalog`);
      }
      const now = this.#stamp();
      this.#run(
        'INSERT INTO tasks (name, config, created_at, updated_at) VALUES (?, ?, ?, ?)',
        valid.name,
        JSON.stringify(valid),
        now,
        now,
      );
    });
  }

  updateTask(task: TaskConfig): void {
    const valid = validTask(task);
    const changed = this.transaction(() =>
      this.#run(
        'UPDATE tasks SET config = ?, updated_at = ? WHERE name = ?',
        JSON.stringify(valid),
        this.#stamp(),
        valid.name,
      ),
    );
    if (changed === 0) throw taskNotFound(valid.name);
  }

  deleteTask(name: string): void {
    const changed = this.transaction(() => this.#run('DELETE FROM tasks WHERE name = ?', name));
    if (changed === 0) throw taskNotFound(name);
  }

  getTask(name: string): TaskConfig {
    const task = this.findTask(name);
    if (!task) throw taskNotFound(name);
    return task;
  }

  findTask(name: string): TaskConfig | undefined {
    const row = this.#get<{ config: string }>('SELECT config FROM tasks WHERE name = ?', name);
    return row ? this.#storedTask(name, row.config) : undefined;
  }

  listTasks(): TaskConfig[] {
    return this.#all<{ name: string; config: string }>('SELECT name, config FROM tasks ORDER BY name').map(
      (r) => this.#storedTask(r.name, r.config),
    );
  }

  #storedTask(name: string, json: string): TaskConfig {
    const parsed = taskSchema.safeParse(this.#parse<unknown>(json, `task ${name}`));
    if (!parsed.success) {
      throw new SnapkeeperError(
        'TASK_INVALID',
        `task ${name} stored in catalog ${this.path} is invalid: ${issuesText(parsed.error.issues)}`,
      );
    }
    return parsed.data;
  }

  // ---- mounts --------------------------------------------------------------------------------------

  addMount(mount: { id: string; backupId: string; kind: string; data?: Record<string, unknown> }): Mount {
    return this.transaction(() => {
      if (!this.#get('SELECT 1 FROM backups WHERE id = ?', mount.backupId))
        throw backupNotFound(mount.backupId);
      if (this.#get('SELECT 1 FROM mounts WHERE id = ?', mount.id)) {
        throw new ConflictError('MOUNT_EXISTS', `mount ${mount.id} already exists in the catalog`);
      }
      const stored: Mount = {
        id: mount.id,
        backupId: mount.backupId,
        kind: mount.kind,
        data: mount.data ?? {},
        createdAt: this.#stamp(),
      };
      this.#run(
        'INSERT INTO mounts (id, backup_id, kind, data, created_at) VALUES (?, ?, ?, ?, ?)',
        stored.id,
        stored.backupId,
        stored.kind,
        JSON.stringify(stored.data),
        stored.createdAt,
      );
      return stored;
    });
  }

  removeMount(id: string): void {
    const changed = this.transaction(() => this.#run('DELETE FROM mounts WHERE id = ?', id));
    if (changed === 0) throw mountNotFound(id);
  }

  getMount(id: string): Mount {
    const row = this.#get<MountRow>('SELECT * FROM mounts WHERE id = ?', id);
    if (!row) throw mountNotFound(id);
    return this.#toMount(row);
  }

  mountsOf(backupId: string): Mount[] {
    return this.#all<MountRow>(
      'SELECT * FROM mounts WHERE backup_id = ? ORDER BY created_at, rowid',
      backupId,
    ).map((r) => this.#toMount(r));
  }

  listMounts(): Mount[] {
    return this.#all<MountRow>('SELECT * FROM mounts ORDER BY created_at, rowid').map((r) =>
      this.#toMount(r),
    );
  }

  #toMount(r: MountRow): Mount {
    return {
      id: r.id,
      backupId: r.backup_id,
      kind: r.kind,
      data: this.#parse<Record<string, unknown>>(r.data, `mount ${r.id}`),
      createdAt: r.created_at,
    };
  }

  // ---- plumbing ------------------------------------------------------------------------------------

  #stamp(): string {
    return this.#now().toISOString();
  }

  #statement(sql: string): Database.Statement {
    let s = this.#statements.get(sql);
    if (!s) {
      s = this.#db.prepare(sql);
      this.#statements.set(sql, s);
    }
    return s;
  }

  #get<T>(sql: string, ...params: unknown[]): T | undefined {
    try {
      return this.#statement(sql).get(...params) as T | undefined;
    } catch (err) {
      throw catalogError(err, this.path);
    }
  }

  #all<T>(sql: string, ...params: unknown[]): T[] {
    try {
      return this.#statement(sql).all(...params) as T[];
    } catch (err) {
      throw catalogError(err, this.path);
    }
  }

  /** Runs a write and returns the number of rows it changed. */
  #run(sql: string, ...params: unknown[]): number {
    try {
      return this.#statement(sql).run(...params).changes;
    } catch (err) {
      throw catalogError(err, this.path);
    }
  }

  #parse<T>(json: string, what: string): T {
    try {
      return JSON.parse(json) as T;
    } catch (err) {
      throw new SnapkeeperError('CATALOG_CORRUPT', `${what} in catalog ${this.path} is not valid JSON`, {
        cause: err,
      });
    }
  }
}

function toOperation(r: OperationRow): Operation {
  const op: Operation = {
    id: r.id,
    kind: r.kind,
    pid: r.pid,
    host: r.host,
    state: r.state,
    startedAt: r.started_at,
  };
  if (r.subject !== null) op.subject = r.subject;
  if (r.finished_at !== null) op.finishedAt = r.finished_at;
  if (r.heartbeat_at !== null) op.heartbeatAt = r.heartbeat_at;
  if (r.recovered_at !== null) op.recoveredAt = r.recovered_at;
  return op;
}

/** Checks what the columns need and returns startedAt as a sortable UTC instant. */
function checkRecord(record: BackupRecord): string {
  if (typeof record.id !== 'string' || record.id.length === 0) {
    throw new UsageError('BACKUP_INVALID', 'a backup record needs a non-empty id');
  }
  if (typeof record.task !== 'string' || record.task.length === 0) {
    throw new UsageError('BACKUP_INVALID', `backup ${record.id} needs a task name`);
  }
  if (!BACKUP_STATES.includes(record.state)) {
    throw new UsageError('BACKUP_INVALID', `backup ${record.id} has an unknown state "${record.state}"`);
  }
  if (!Array.isArray(record.vms) || !Array.isArray(record.snapshots)) {
    throw new UsageError('BACKUP_INVALID', `backup ${record.id} needs vms and snapshots lists`);
  }
  return toInstant(record.startedAt, `backup ${record.id} startedAt`);
}

/** ISO-8601 UTC form of a time, so that text comparison in SQL is time comparison. */
function toInstant(value: string, what: string): string {
  const t = new Date(value);
  if (typeof value !== 'string' || Number.isNaN(t.getTime())) {
    throw new UsageError('INVALID_TIME', `${what}: "${value}" is not a date or time`);
  }
  return t.toISOString();
}

function validTask(task: TaskConfig): TaskConfig {
  const parsed = taskSchema.safeParse(task);
  if (!parsed.success) {
    const name = typeof task?.name === 'string' ? `task ${task.name}` : 'task';
    throw new UsageError('TASK_INVALID', `${name} is invalid: ${issuesText(parsed.error.issues)}`);
  }
  return parsed.data;
}

function issuesText(issues: readonly { path: PropertyKey[]; message: string }[]): string {
  return issues
    .map((i) => `${i.path.length > 0 ? `${i.path.map(String).join('.')}: ` : ''}${i.message}`)
    .join('; ');
}

function isSqliteError(err: unknown, code: string): boolean {
  return err instanceof Database.SqliteError && err.code === code;
}

/**
 * What SQLite says, in the catalog's words and naming its file: "another process kept the write lock past
 * busy_timeout" becomes CATALOG_BUSY, "database disk image is malformed" CATALOG_CORRUPT.
 */
function catalogError(err: unknown, file: string): unknown {
  if (!(err instanceof Database.SqliteError)) return err;
  if (err.code === 'SQLITE_BUSY' || err.code.startsWith('SQLITE_BUSY_')) {
    return new LockedError(
      'CATALOG_BUSY',
      `catalog ${file} is busy: another process kept it locked too long`,
      {
        cause: err,
        details: { file },
      },
    );
  }
  if (
    err.code === 'SQLITE_CORRUPT' ||
    err.code.startsWith('SQLITE_CORRUPT_') ||
    err.code === 'SQLITE_NOTADB'
  ) {
    return new SnapkeeperError(
      'CATALOG_CORRUPT',
      `catalog ${file} is damaged (${err.message}): restore it from a copy; snapkeeper changed nothing`,
      { cause: err, details: { file } },
    );
  }
  return err;
}

/**
 * Refuses, before SQLite touches it, what cannot be the catalog: nothing at the path (unless creating), a
 * directory, or an empty file (SQLite would take it for an empty database and make a new catalog of it).
 */
function checkCatalogFile(file: string, create: boolean): void {
  let size: number;
  let isFile: boolean;
  try {
    const st = statSync(file);
    size = st.size;
    isFile = st.isFile();
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') {
      throw new UsageError('CATALOG_OPEN_FAILED', `cannot open catalog ${file}: ${errorMessage(err)}`, {
        cause: err,
        details: { file },
      });
    }
    if (create) return;
    throw new UsageError(
      'CATALOG_NOT_FOUND',
      `no catalog at ${file} (catalog.path): check the path, or create one with snapkeeper catalog create`,
      { details: { file } },
    );
  }
  if (!isFile) {
    throw new UsageError('CATALOG_OPEN_FAILED', `cannot open catalog ${file}: not a file`, {
      details: { file },
    });
  }
  if (size === 0) {
    throw new UsageError(
      'CATALOG_INVALID',
      `${file} is an empty file, not a snapkeeper catalog; left untouched (remove it and run snapkeeper catalog create for a new one)`,
      { details: { file } },
    );
  }
}

function backupNotFound(id: string): NotFoundError {
  return new NotFoundError('BACKUP_NOT_FOUND', `backup ${id} not found in the catalog`, {
    details: { backupId: id },
  });
}

function operationNotFound(id: string): NotFoundError {
  return new NotFoundError('OPERATION_NOT_FOUND', `operation ${id} not found in the catalog`, {
    details: { operationId: id },
  });
}

function taskNotFound(name: string): NotFoundError {
  return new NotFoundError('TASK_NOT_FOUND', `task ${name} not found in the catalog`, {
    details: { task: name },
  });
}

function mountNotFound(id: string): NotFoundError {
  return new NotFoundError('MOUNT_NOT_FOUND', `mount ${id} not found in the catalog`, {
    details: { mountId: id },
  });
}
