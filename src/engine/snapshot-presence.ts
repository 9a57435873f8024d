import { SnapkeeperError } from '../errors.js';
import type { BackupRecord } from '../model/backup.js';
import type { EngineContext } from './context.js';

/**
 * The backup's array snapshots that the arrays no longer list. A record says what was made; only the array
 * says what still exists (an admin, another tool or a rebuilt array may have removed it since).
 */
export async function missingSnapshots(
  ctx: EngineContext,
  backup: BackupRecord,
): Promise<{ array: string; snapshotId: string }[]> {
  const missing: { array: string; snapshotId: string }[] = [];
  for (const s of backup.snapshots) {
    const listed = await (await ctx.array(s.array)).listSnapshots();
    if (!listed.some((x) => x.id === s.snapshotId))
      missing.push({ array: s.array, snapshotId: s.snapshotId });
  }
  return missing;
}

/**
 * For dry runs of restore, mount and attach: "ok" must mean the data is there. SnapkeeperError
 * SNAPSHOT_MISSING (exit 2) names the missing snapshots; `recover` then marks the backup lost.
 */
export async function assertSnapshotsPresent(ctx: EngineContext, backup: BackupRecord): Promise<void> {
  const missing = await missingSnapshots(ctx, backup);
  if (missing.length === 0) return;
  throw new SnapkeeperError(
    'SNAPSHOT_MISSING',
    `backup ${backup.id} cannot be restored: its array snapshot ${missing.map((m) => `${m.array}/${m.snapshotId}`).join(', ')} no longer exists (run snapkeeper recover to mark the backup lost)`,
    { details: { backupId: backup.id, missing } },
  );
}
