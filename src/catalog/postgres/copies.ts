import { ConflictError } from '../../errors.js';
import { copyNotFound } from '../errors.js';
import { type CopyRow, parseOf, toCopy } from '../rows.js';
import type { BackupCopy, CopyStore, NewBackupCopy } from '../types.js';
import type { PostgresDatabase } from './database.js';

const SELECT = `SELECT c.backup_id, c.repository_id, c.repository, c.task, c.manifest_id, c.offloaded_at, c.bytes,
  c.bytes_added, c.vms, (b.id IS NOT NULL) AS in_catalog FROM copies c LEFT JOIN backups b ON b.id = c.backup_id`;

/** Copies of backups in repositories: rows that outlive the backup's own record. */
export class PostgresCopyStore implements CopyStore {
  constructor(readonly db: PostgresDatabase) {}

  async addCopy(copy: NewBackupCopy): Promise<BackupCopy> {
    return this.db.write(async (q) => {
      const offloadedAt = copy.offloadedAt ?? (await this.db.stamp(q));
      const inserted = await q.query(
        `INSERT INTO copies (backup_id, repository_id, repository, task, manifest_id, offloaded_at, bytes,
           bytes_added, vms) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT DO NOTHING`,
        [
          copy.backupId,
          copy.repositoryId,
          copy.repository,
          copy.task,
          copy.manifestId,
          offloadedAt,
          copy.bytes,
          copy.bytesAdded,
          JSON.stringify(copy.vms),
        ],
      );
      if (inserted.rowCount === 0) {
        throw new ConflictError(
          'COPY_EXISTS',
          `backup ${copy.backupId} already has a copy in repository ${copy.repository} (${copy.repositoryId})`,
        );
      }
      const row = (
        await q.query<CopyRow>(`${SELECT} WHERE c.backup_id = $1 AND c.repository_id = $2`, [
          copy.backupId,
          copy.repositoryId,
        ])
      ).rows[0]!;
      return toCopy(parseOf(this.db), row);
    });
  }

  async findCopy(backupId: string, repositoryId: string): Promise<BackupCopy | undefined> {
    const row = await this.db.get<CopyRow>(`${SELECT} WHERE c.backup_id = $1 AND c.repository_id = $2`, [
      backupId,
      repositoryId,
    ]);
    return row ? toCopy(parseOf(this.db), row) : undefined;
  }

  async copiesOf(backupId: string): Promise<BackupCopy[]> {
    const rows = await this.db.all<CopyRow>(
      `${SELECT} WHERE c.backup_id = $1 ORDER BY c.offloaded_at, c.seq`,
      [backupId],
    );
    return rows.map((r) => toCopy(parseOf(this.db), r));
  }

  async copiesOfBackups(backupIds: string[]): Promise<Map<string, BackupCopy[]>> {
    const out = new Map<string, BackupCopy[]>(backupIds.map((id) => [id, []]));
    if (backupIds.length === 0) return out;
    const rows = await this.db.all<CopyRow>(
      `${SELECT} WHERE c.backup_id = ANY($1::text[]) ORDER BY c.offloaded_at, c.seq`,
      [backupIds],
    );
    for (const r of rows) out.get(r.backup_id)?.push(toCopy(parseOf(this.db), r));
    return out;
  }

  async listCopies(
    filter: { repository?: string; repositoryId?: string; task?: string } = {},
  ): Promise<BackupCopy[]> {
    const where: string[] = [];
    const args: string[] = [];
    for (const [column, value] of [
      ['c.repository', filter.repository],
      ['c.repository_id', filter.repositoryId],
      ['c.task', filter.task],
    ] as const) {
      if (value === undefined) continue;
      args.push(value);
      where.push(`${column} = $${args.length}`);
    }
    const sql = `${SELECT}${where.length > 0 ? ` WHERE ${where.join(' AND ')}` : ''} ORDER BY c.offloaded_at, c.seq`;
    return (await this.db.all<CopyRow>(sql, args)).map((r) => toCopy(parseOf(this.db), r));
  }

  async removeCopy(backupId: string, repositoryId: string): Promise<void> {
    const changed = await this.db.run('DELETE FROM copies WHERE backup_id = $1 AND repository_id = $2', [
      backupId,
      repositoryId,
    ]);
    if (changed === 0) throw copyNotFound(backupId, repositoryId);
  }
}
