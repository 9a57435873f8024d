import { errorMessage, SnapkeeperError } from '../errors.js';
import type { BackupRecord } from '../model/backup.js';
import type { EngineContext } from './context.js';

export interface SnapshotRef {
  array: string;
  snapshotId: string;
}

/**
 * The snapshot ids each configured array lists now. A record says what was made; only the array says what
 * still exists (an admin, another tool or a rebuilt array may have removed it since). An array that cannot
 * be listed is absent from the map, and `onError` hears why: it decides nothing.
 */
export async function presentSnapshots(
  ctx: EngineContext,
  onError: (array: string, message: string) => void,
): Promise<Map<string, Set<string>>> {
  const present = new Map<string, Set<string>>();
  for (const [name, array] of await ctx.arrays()) {
    try {
      present.set(name, new Set((await array.listSnapshots()).map((s) => s.id)));
    } catch (err) {
      onError(name, errorMessage(err));
    }
  }
  return present;
}

/** The backup's array snapshots that `present` (presentSnapshots) lacks, on arrays it could list. */
export function missingSnapshots(backup: BackupRecord, present: Map<string, Set<string>>): SnapshotRef[] {
  return backup.snapshots
    .filter((s) => present.get(s.array)?.has(s.snapshotId) === false)
    .map((s) => ({ array: s.array, snapshotId: s.snapshotId }));
}

/**
 * For dry runs of restore, mount and attach: "ok" must mean the data is there. SnapkeeperError
 * SNAPSHOT_MISSING (exit 2) names the missing snapshots (`recover` then marks the backup lost); an array
 * that cannot be listed is ARRAY_UNAVAILABLE.
 */
export async function assertSnapshotsPresent(ctx: EngineContext, backup: BackupRecord): Promise<void> {
  const present = await presentSnapshots(ctx, (array, message) => {
    if (backup.snapshots.some((s) => s.array === array)) {
      throw new SnapkeeperError('ARRAY_UNAVAILABLE', `array ${array} cannot be listed: ${message}`);
    }
  });
  const missing = missingSnapshots(backup, present);
  if (missing.length === 0) return;
  throw new SnapkeeperError(
    'SNAPSHOT_MISSING',
    `backup ${backup.id} cannot be restored: its array snapshot ${missing.map((m) => `${m.array}/${m.snapshotId}`).join(', ')} no longer exists (run snapkeeper recover to mark the backup lost)`,
    { details: { backupId: backup.id, missing } },
  );
}
