import { ConflictError } from '../../errors.js';
import { backupNotFound, mountNotFound } from '../errors.js';
import { type MountRow, parseOf, toMount } from '../rows.js';
import type { Mount, MountStore } from '../types.js';
import type { PostgresDatabase, Queryable } from './database.js';

/** Mounts and attaches of backups: while one exists, its backup cannot be deleted. */
export class PostgresMountStore implements MountStore {
  constructor(readonly db: PostgresDatabase) {}

  async addMount(mount: {
    id: string;
    backupId: string;
    kind: string;
    data?: Record<string, unknown>;
  }): Promise<Mount> {
    return this.db.write(async (q) => {
      // FOR SHARE: a concurrent deleteBackup (FOR UPDATE) waits for this mount, then sees it.
      const backup = await q.query('SELECT 1 FROM backups WHERE id = $1 FOR SHARE', [mount.backupId]);
      if (backup.rowCount === 0) throw backupNotFound(mount.backupId);
      const stored: Mount = {
        id: mount.id,
        backupId: mount.backupId,
        kind: mount.kind,
        data: mount.data ?? {},
        createdAt: await this.db.stamp(q),
      };
      const inserted = await q.query(
        `INSERT INTO mounts (id, backup_id, kind, data, created_at) VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (id) DO NOTHING`,
        [stored.id, stored.backupId, stored.kind, JSON.stringify(stored.data), stored.createdAt],
      );
      if (inserted.rowCount === 0) {
        throw new ConflictError('MOUNT_EXISTS', `mount ${mount.id} already exists in the catalog`);
      }
      return stored;
    });
  }

  async removeMount(id: string): Promise<void> {
    const changed = await this.db.run('DELETE FROM mounts WHERE id = $1', [id]);
    if (changed === 0) throw mountNotFound(id);
  }

  async getMount(id: string): Promise<Mount> {
    const row = await this.db.get<MountRow>('SELECT * FROM mounts WHERE id = $1', [id]);
    if (!row) throw mountNotFound(id);
    return toMount(parseOf(this.db), row);
  }

  async mountsOf(backupId: string): Promise<Mount[]> {
    return mountsOf(this.db, this.db, backupId);
  }

  async listMounts(): Promise<Mount[]> {
    const rows = await this.db.all<MountRow>('SELECT * FROM mounts ORDER BY created_at, seq');
    return rows.map((r) => toMount(parseOf(this.db), r));
  }
}

/** Oldest first. */
export async function mountsOf(db: PostgresDatabase, q: Queryable, backupId: string): Promise<Mount[]> {
  const rows = (
    await q.query<MountRow>('SELECT * FROM mounts WHERE backup_id = $1 ORDER BY created_at, seq', [backupId])
  ).rows;
  return rows.map((r) => toMount(parseOf(db), r));
}
