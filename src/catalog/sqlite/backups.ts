import { ConflictError } from '../../errors.js';
import type { BackupRecord, BackupState } from '../../model/backup.js';
import { backupNotFound } from '../errors.js';
import type { BackupFilter, BackupHead, BackupStore, SnapshotOwner } from '../types.js';
import { checkLimit, checkRecord, namesMatching, RESTORABLE, toInstant } from '../validate.js';
import type { SqliteDatabase } from './database.js';
import { mountsOf } from './mounts.js';

/** Backup records, stored whole as JSON, with the `backup_vms` and `backup_snapshots` index tables. */
export class SqliteBackupStore implements BackupStore {
  constructor(readonly db: SqliteDatabase) {}

  async insertBackup(record: BackupRecord): Promise<void> {
    const startedAt = checkRecord(record);
    this.db.write(() => {
      if (this.db.get('SELECT 1 FROM backups WHERE id = ?', record.id)) {
        throw new ConflictError('BACKUP_EXISTS', `backup ${record.id} already exists in the catalog`);
      }
      this.db.run(
        'INSERT INTO backups (id, task, state, started_at, finished_at, record) VALUES (?, ?, ?, ?, ?, ?)',
        record.id,
        record.task,
        record.state,
        startedAt,
        record.finishedAt ?? null,
        JSON.stringify(record),
      );
      this.#index(record);
    });
  }

  async updateBackup(record: BackupRecord): Promise<void> {
    const startedAt = checkRecord(record);
    this.db.write(() => this.#replace(record, startedAt));
  }

  async markBackupLost(id: string, lost: { at: string; reason: string }): Promise<BackupRecord | undefined> {
    toInstant(lost.at, 'lost at');
    return this.db.write(() => {
      const current = this.#find(id);
      if (!current || (current.state !== 'complete' && current.state !== 'partial')) return undefined;
      current.lost = { at: lost.at, reason: lost.reason, previousState: current.state };
      current.state = 'lost';
      current.warnings.push({ code: 'BACKUP_LOST', message: `backup ${id} is lost: ${lost.reason}` });
      this.#replace(current, checkRecord(current));
      return current;
    });
  }

  async getBackup(id: string): Promise<BackupRecord> {
    const record = this.#find(id);
    if (!record) throw backupNotFound(id);
    return record;
  }

  async findBackup(id: string): Promise<BackupRecord | undefined> {
    return this.#find(id);
  }

  async listBackups(filter: BackupFilter = {}): Promise<BackupRecord[]> {
    const query = this.#query(filter, 'b.id, b.record');
    if (query === undefined) return [];
    return this.db
      .all<{ id: string; record: string }>(query.sql, ...query.params)
      .map((r) => this.db.parse<BackupRecord>(r.record, `backup ${r.id}`));
  }

  async listBackupHeads(filter: BackupFilter = {}): Promise<BackupHead[]> {
    const query = this.#query(filter, 'b.id, b.state, b.started_at, b.finished_at');
    if (query === undefined) return [];
    return this.db
      .all<{ id: string; state: BackupState; started_at: string; finished_at: string | null }>(
        query.sql,
        ...query.params,
      )
      .map((r) => ({
        id: r.id,
        state: r.state,
        startedAt: r.started_at,
        ...(r.finished_at ? { finishedAt: r.finished_at } : {}),
      }));
  }

  async getBackups(ids: string[]): Promise<BackupRecord[]> {
    if (ids.length === 0) return [];
    const rows = this.db.all<{ id: string; record: string }>(
      'SELECT id, record FROM backups WHERE id IN (SELECT value FROM json_each(?))',
      JSON.stringify(ids),
    );
    const byId = new Map(rows.map((r) => [r.id, this.db.parse<BackupRecord>(r.record, `backup ${r.id}`)]));
    return ids.flatMap((id) => {
      const record = byId.get(id);
      return record ? [record] : [];
    });
  }

  /** The listing query of `filter` selecting `columns`; undefined when nothing can match. */
  #query(filter: BackupFilter, columns: string): { sql: string; params: unknown[] } | undefined {
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
    if (filter.after !== undefined) {
      const at = toInstant(filter.after.startedAt, 'after');
      where.push('(b.started_at < ? OR (b.started_at = ? AND b.id < ?))');
      params.push(at, at, filter.after.id);
    }
    if (filter.vm !== undefined) {
      const known = this.db
        .all<{ name: string }>('SELECT DISTINCT vm_name AS name FROM backup_vms')
        .map((r) => r.name);
      const names = namesMatching(known, filter.vm);
      if (names.length === 0) return undefined;
      where.push(
        'EXISTS (SELECT 1 FROM backup_vms v WHERE v.backup_id = b.id AND v.vm_name IN (SELECT value FROM json_each(?)))',
      );
      params.push(JSON.stringify(names));
    }
    params.push(checkLimit(filter.limit));
    const sql = `SELECT ${columns} FROM backups b ${where.length > 0 ? `WHERE ${where.join(' AND ')}` : ''}
      ORDER BY b.started_at DESC, b.id DESC LIMIT ?`;
    return { sql, params };
  }

  async deleteBackup(id: string): Promise<void> {
    this.db.write(() => {
      if (!this.db.get('SELECT 1 FROM backups WHERE id = ?', id)) throw backupNotFound(id);
      const mounts = mountsOf(this.db, id);
      if (mounts.length > 0) {
        throw new ConflictError(
          'BACKUP_MOUNTED',
          `backup ${id} is mounted (${mounts.map((m) => `${m.kind} ${m.id}`).join(', ')}): unmount or detach it first`,
          { details: { backupId: id, mounts: mounts.map((m) => m.id) } },
        );
      }
      this.db.run('DELETE FROM backups WHERE id = ?', id);
    });
  }

  async snapshotOwners(array: string, snapshotId: string): Promise<SnapshotOwner[]> {
    return this.db.all<SnapshotOwner>(
      `SELECT s.backup_id AS backupId, b.state AS state FROM backup_snapshots s JOIN backups b ON b.id = s.backup_id
       WHERE s.array = ? AND s.snapshot_id = ? ORDER BY b.started_at, b.id`,
      array,
      snapshotId,
    );
  }

  async ownedSnapshotIds(array: string, states: BackupState[] = RESTORABLE): Promise<Set<string>> {
    const rows = this.db.all<{ id: string }>(
      `SELECT DISTINCT s.snapshot_id AS id FROM backup_snapshots s JOIN backups b ON b.id = s.backup_id
       WHERE s.array = ? AND b.state IN (SELECT value FROM json_each(?))`,
      array,
      JSON.stringify(states),
    );
    return new Set(rows.map((r) => r.id));
  }

  #find(id: string): BackupRecord | undefined {
    const row = this.db.get<{ record: string }>('SELECT record FROM backups WHERE id = ?', id);
    return row ? this.db.parse<BackupRecord>(row.record, `backup ${id}`) : undefined;
  }

  /** The whole record and its index rows; call inside `write`. */
  #replace(record: BackupRecord, startedAt: string): void {
    const changed = this.db.run(
      'UPDATE backups SET task = ?, state = ?, started_at = ?, finished_at = ?, record = ? WHERE id = ?',
      record.task,
      record.state,
      startedAt,
      record.finishedAt ?? null,
      JSON.stringify(record),
      record.id,
    );
    if (changed === 0) throw backupNotFound(record.id);
    this.db.run('DELETE FROM backup_vms WHERE backup_id = ?', record.id);
    this.db.run('DELETE FROM backup_snapshots WHERE backup_id = ?', record.id);
    this.#index(record);
  }

  #index(record: BackupRecord): void {
    for (const vm of record.vms) {
      this.db.run(
        'INSERT OR IGNORE INTO backup_vms (backup_id, vm_id, vm_name) VALUES (?, ?, ?)',
        record.id,
        vm.id,
        vm.name,
      );
    }
    for (const s of record.snapshots) {
      this.db.run(
        'INSERT OR IGNORE INTO backup_snapshots (backup_id, array, snapshot_id) VALUES (?, ?, ?)',
        record.id,
        s.array,
        s.snapshotId,
      );
    }
  }
}
