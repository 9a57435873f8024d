import { ConflictError } from '../../errors.js';
import type { BackupRecord, BackupState } from '../../model/backup.js';
import { backupNotFound } from '../errors.js';
import type { BackupFilter, BackupHead, BackupStore, SnapshotOwner } from '../types.js';
import { checkLimit, checkRecord, namesMatching, RESTORABLE, toInstant } from '../validate.js';
import type { PostgresDatabase, Queryable } from './database.js';
import { mountsOf } from './mounts.js';

/** Backup records, stored whole as JSON text, with the `backup_vms` and `backup_snapshots` index tables. */
export class PostgresBackupStore implements BackupStore {
  constructor(readonly db: PostgresDatabase) {}

  async insertBackup(record: BackupRecord): Promise<void> {
    const startedAt = checkRecord(record);
    await this.db.write(async (q) => {
      const inserted = await q.query(
        `INSERT INTO backups (id, task, state, started_at, finished_at, record) VALUES ($1, $2, $3, $4, $5, $6)
         ON CONFLICT (id) DO NOTHING`,
        [record.id, record.task, record.state, startedAt, record.finishedAt ?? null, JSON.stringify(record)],
      );
      if (inserted.rowCount === 0) {
        throw new ConflictError('BACKUP_EXISTS', `backup ${record.id} already exists in the catalog`);
      }
      await index(q, record);
    });
  }

  async updateBackup(record: BackupRecord): Promise<void> {
    const startedAt = checkRecord(record);
    await this.db.write(async (q) => replace(q, record, startedAt));
  }

  async markBackupLost(id: string, lost: { at: string; reason: string }): Promise<BackupRecord | undefined> {
    toInstant(lost.at, 'lost at');
    return this.db.write(async (q) => {
      const current = await this.#find(q, id, true);
      if (!current || (current.state !== 'complete' && current.state !== 'partial')) return undefined;
      current.lost = { at: lost.at, reason: lost.reason, previousState: current.state };
      current.state = 'lost';
      current.warnings.push({ code: 'BACKUP_LOST', message: `backup ${id} is lost: ${lost.reason}` });
      await replace(q, current, checkRecord(current));
      return current;
    });
  }

  async getBackup(id: string): Promise<BackupRecord> {
    const record = await this.#find(this.db, id);
    if (!record) throw backupNotFound(id);
    return record;
  }

  async findBackup(id: string): Promise<BackupRecord | undefined> {
    return this.#find(this.db, id);
  }

  async listBackups(filter: BackupFilter = {}): Promise<BackupRecord[]> {
    const query = await this.#query(filter, 'b.id, b.record');
    if (query === undefined) return [];
    const rows = await this.db.all<{ id: string; record: string }>(query.sql, query.params);
    return rows.map((r) => this.db.parse<BackupRecord>(r.record, `backup ${r.id}`));
  }

  async listBackupHeads(filter: BackupFilter = {}): Promise<BackupHead[]> {
    const query = await this.#query(filter, 'b.id, b.state, b.started_at, b.finished_at');
    if (query === undefined) return [];
    const rows = await this.db.all<{
      id: string;
      state: BackupState;
      started_at: string;
      finished_at: string | null;
    }>(query.sql, query.params);
    return rows.map((r) => ({
      id: r.id,
      state: r.state,
      startedAt: r.started_at,
      ...(r.finished_at ? { finishedAt: r.finished_at } : {}),
    }));
  }

  async getBackups(ids: string[]): Promise<BackupRecord[]> {
    if (ids.length === 0) return [];
    const rows = await this.db.all<{ id: string; record: string }>(
      'SELECT id, record FROM backups WHERE id = ANY($1::text[])',
      [ids],
    );
    const byId = new Map(rows.map((r) => [r.id, this.db.parse<BackupRecord>(r.record, `backup ${r.id}`)]));
    return ids.flatMap((id) => {
      const record = byId.get(id);
      return record ? [record] : [];
    });
  }

  async #query(
    filter: BackupFilter,
    columns: string,
  ): Promise<{ sql: string; params: unknown[] } | undefined> {
    const where: string[] = [];
    const params: unknown[] = [];
    const p = (v: unknown) => {
      params.push(v);
      return `$${params.length}`;
    };
    if (filter.task !== undefined) where.push(`b.task = ${p(filter.task)}`);
    if (filter.state !== undefined && filter.state.length > 0) {
      where.push(`b.state = ANY(${p(filter.state)}::text[])`);
    }
    if (filter.since !== undefined) where.push(`b.started_at >= ${p(toInstant(filter.since, 'since'))}`);
    if (filter.until !== undefined) where.push(`b.started_at < ${p(toInstant(filter.until, 'until'))}`);
    if (filter.after !== undefined) {
      const at = toInstant(filter.after.startedAt, 'after');
      where.push(`(b.started_at, b.id) < (${p(at)}, ${p(filter.after.id)})`);
    }
    const limit = checkLimit(filter.limit);
    if (filter.vm !== undefined) {
      const known = (
        await this.db.all<{ name: string }>('SELECT DISTINCT vm_name AS name FROM backup_vms')
      ).map((r) => r.name);
      const names = namesMatching(known, filter.vm);
      if (names.length === 0) return undefined;
      where.push(
        `EXISTS (SELECT 1 FROM backup_vms v WHERE v.backup_id = b.id AND v.vm_name = ANY(${p(names)}::text[]))`,
      );
    }
    const sql = `SELECT ${columns} FROM backups b ${where.length > 0 ? `WHERE ${where.join(' AND ')}` : ''}
      ORDER BY b.started_at DESC, b.id DESC LIMIT ${p(limit < 0 ? null : limit)}`;
    return { sql, params };
  }

  async deleteBackup(id: string): Promise<void> {
    await this.db.write(async (q) => {
      // The row lock makes addMount (which locks the backup FOR SHARE) wait: no mount slips in meanwhile.
      const found = await q.query('SELECT 1 FROM backups WHERE id = $1 FOR UPDATE', [id]);
      if (found.rowCount === 0) throw backupNotFound(id);
      const mounts = await mountsOf(this.db, q, id);
      if (mounts.length > 0) {
        throw new ConflictError(
          'BACKUP_MOUNTED',
          `backup ${id} is mounted (${mounts.map((m) => `${m.kind} ${m.id}`).join(', ')}): unmount or detach it first`,
          { details: { backupId: id, mounts: mounts.map((m) => m.id) } },
        );
      }
      await q.query('DELETE FROM backups WHERE id = $1', [id]);
    });
  }

  async snapshotOwners(array: string, snapshotId: string): Promise<SnapshotOwner[]> {
    return this.db.all<SnapshotOwner>(
      `SELECT s.backup_id AS "backupId", b.state AS state FROM backup_snapshots s JOIN backups b ON b.id = s.backup_id
       WHERE s.array_name = $1 AND s.snapshot_id = $2 ORDER BY b.started_at, b.id`,
      [array, snapshotId],
    );
  }

  async ownedSnapshotIds(array: string, states: BackupState[] = RESTORABLE): Promise<Set<string>> {
    const rows = await this.db.all<{ id: string }>(
      `SELECT DISTINCT s.snapshot_id AS id FROM backup_snapshots s JOIN backups b ON b.id = s.backup_id
       WHERE s.array_name = $1 AND b.state = ANY($2::text[])`,
      [array, states],
    );
    return new Set(rows.map((r) => r.id));
  }

  async #find(q: Queryable, id: string, forUpdate = false): Promise<BackupRecord | undefined> {
    const row = (
      await q.query<{ record: string }>(
        `SELECT record FROM backups WHERE id = $1${forUpdate ? ' FOR UPDATE' : ''}`,
        [id],
      )
    ).rows[0];
    return row ? this.db.parse<BackupRecord>(row.record, `backup ${id}`) : undefined;
  }
}

/** The whole record and its index rows; inside a transaction. */
async function replace(q: Queryable, record: BackupRecord, startedAt: string): Promise<void> {
  const changed = await q.query(
    'UPDATE backups SET task = $1, state = $2, started_at = $3, finished_at = $4, record = $5 WHERE id = $6',
    [record.task, record.state, startedAt, record.finishedAt ?? null, JSON.stringify(record), record.id],
  );
  if (changed.rowCount === 0) throw backupNotFound(record.id);
  await q.query('DELETE FROM backup_vms WHERE backup_id = $1', [record.id]);
  await q.query('DELETE FROM backup_snapshots WHERE backup_id = $1', [record.id]);
  await index(q, record);
}

async function index(q: Queryable, record: BackupRecord): Promise<void> {
  if (record.vms.length > 0) {
    await q.query(
      `INSERT INTO backup_vms (backup_id, vm_id, vm_name)
       SELECT $1, v.id, v.name FROM unnest($2::text[], $3::text[]) AS v(id, name) ON CONFLICT DO NOTHING`,
      [record.id, record.vms.map((v) => v.id), record.vms.map((v) => v.name)],
    );
  }
  if (record.snapshots.length > 0) {
    await q.query(
      `INSERT INTO backup_snapshots (backup_id, array_name, snapshot_id)
       SELECT $1, s.a, s.id FROM unnest($2::text[], $3::text[]) AS s(a, id) ON CONFLICT DO NOTHING`,
      [record.id, record.snapshots.map((s) => s.array), record.snapshots.map((s) => s.snapshotId)],
    );
  }
}
