import { ConflictError } from '../../errors.js';
import { copyNotFound } from '../errors.js';
import { type CopyRow, parseOf, toCopy } from '../rows.js';
import type { BackupCopy, CopyStore, NewBackupCopy } from '../types.js';
import type { SqliteDatabase } from './database.js';

const SELECT = `SELECT c.*, (b.id IS NOT NULL) AS in_catalog FROM copies c LEFT JOIN backups b ON b.id = c.backup_id`;

/** Copies of backups in repositories: rows that outlive the backup's own record. */
export class SqliteCopyStore implements CopyStore {
  constructor(readonly db: SqliteDatabase) {}

  async addCopy(copy: NewBackupCopy): Promise<BackupCopy> {
    return this.db.write(() => {
      if (
        this.db.get(
          'SELECT 1 FROM copies WHERE backup_id = ? AND repository_id = ?',
          copy.backupId,
          copy.repositoryId,
        )
      ) {
        throw new ConflictError(
          'COPY_EXISTS',
          `backup ${copy.backupId} already has a copy in repository ${copy.repository} (${copy.repositoryId})`,
        );
      }
      const offloadedAt = copy.offloadedAt ?? this.db.stamp();
      this.db.run(
        `INSERT INTO copies (backup_id, repository_id, repository, task, manifest_id, offloaded_at, bytes,
           bytes_added, vms) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`,
        copy.backupId,
        copy.repositoryId,
        copy.repository,
        copy.task,
        copy.manifestId,
        offloadedAt,
        copy.bytes,
        copy.bytesAdded,
        JSON.stringify(copy.vms),
      );
      const row = this.db.get<CopyRow>(
        `${SELECT} WHERE c.backup_id = ? AND c.repository_id = ?`,
        copy.backupId,
        copy.repositoryId,
      );
      return toCopy(parseOf(this.db), row!);
    });
  }

  async findCopy(backupId: string, repositoryId: string): Promise<BackupCopy | undefined> {
    const row = this.db.get<CopyRow>(
      `${SELECT} WHERE c.backup_id = ? AND c.repository_id = ?`,
      backupId,
      repositoryId,
    );
    return row ? toCopy(parseOf(this.db), row) : undefined;
  }

  async copiesOf(backupId: string): Promise<BackupCopy[]> {
    return this.db
      .all<CopyRow>(`${SELECT} WHERE c.backup_id = ? ORDER BY c.offloaded_at, c.rowid`, backupId)
      .map((r) => toCopy(parseOf(this.db), r));
  }

  async copiesOfBackups(backupIds: string[]): Promise<Map<string, BackupCopy[]>> {
    const out = new Map<string, BackupCopy[]>(backupIds.map((id) => [id, []]));
    if (backupIds.length === 0) return out;
    const rows = this.db.all<CopyRow>(
      `${SELECT} WHERE c.backup_id IN (SELECT value FROM json_each(?)) ORDER BY c.offloaded_at, c.rowid`,
      JSON.stringify(backupIds),
    );
    for (const r of rows) out.get(r.backup_id)?.push(toCopy(parseOf(this.db), r));
    return out;
  }

  async listCopies(
    filter: { repository?: string; repositoryId?: string; task?: string } = {},
  ): Promise<BackupCopy[]> {
    const where: string[] = [];
    const args: string[] = [];
    if (filter.repository !== undefined) {
      where.push('c.repository = ?');
      args.push(filter.repository);
    }
    if (filter.repositoryId !== undefined) {
      where.push('c.repository_id = ?');
      args.push(filter.repositoryId);
    }
    if (filter.task !== undefined) {
      where.push('c.task = ?');
      args.push(filter.task);
    }
    const sql = `${SELECT}${where.length > 0 ? ` WHERE ${where.join(' AND ')}` : ''} ORDER BY c.offloaded_at, c.rowid`;
    return this.db.all<CopyRow>(sql, ...args).map((r) => toCopy(parseOf(this.db), r));
  }

  async removeCopy(backupId: string, repositoryId: string): Promise<void> {
    const changed = this.db.write(() =>
      this.db.run('DELETE FROM copies WHERE backup_id = ? AND repository_id = ?', backupId, repositoryId),
    );
    if (changed === 0) throw copyNotFound(backupId, repositoryId);
  }
}
