import { ConflictError } from '../../errors.js';
import { backupNotFound, mountNotFound } from '../errors.js';
import { type MountRow, parseOf, toMount } from '../rows.js';
import type { Mount, MountStore } from '../types.js';
import type { SqliteDatabase } from './database.js';

/** Mounts and attaches of backups: while one exists, its backup cannot be deleted. */
export class SqliteMountStore implements MountStore {
  constructor(readonly db: SqliteDatabase) {}

  async addMount(mount: {
    id: string;
    backupId: string;
    kind: string;
    data?: Record<string, unknown>;
  }): Promise<Mount> {
    return this.db.write(() => {
      if (!this.db.get('SELECT 1 FROM backups WHERE id = ?', mount.backupId)) {
        throw backupNotFound(mount.backupId);
      }
      if (this.db.get('SELECT 1 FROM mounts WHERE id = ?', mount.id)) {
        throw new ConflictError('MOUNT_EXISTS', `mount ${mount.id} already exists in the catalog`);
      }
      const stored: Mount = {
        id: mount.id,
        backupId: mount.backupId,
        kind: mount.kind,
        data: mount.data ?? {},
        createdAt: this.db.stamp(),
      };
      this.db.run(
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

  async removeMount(id: string): Promise<void> {
    const changed = this.db.write(() => this.db.run('DELETE FROM mounts WHERE id = ?', id));
    if (changed === 0) throw mountNotFound(id);
  }

  async getMount(id: string): Promise<Mount> {
    const row = this.db.get<MountRow>('SELECT * FROM mounts WHERE id = ?', id);
    if (!row) throw mountNotFound(id);
    return toMount(parseOf(this.db), row);
  }

  async mountsOf(backupId: string): Promise<Mount[]> {
    return mountsOf(this.db, backupId);
  }

  async listMounts(): Promise<Mount[]> {
    return this.db
      .all<MountRow>('SELECT * FROM mounts ORDER BY created_at, rowid')
      .map((r) => toMount(parseOf(this.db), r));
  }
}

/** Oldest first; synchronous, for the backup store's checks inside its write transactions. */
export function mountsOf(db: SqliteDatabase, backupId: string): Mount[] {
  return db
    .all<MountRow>('SELECT * FROM mounts WHERE backup_id = ? ORDER BY created_at, rowid', backupId)
    .map((r) => toMount(parseOf(db), r));
}
