import { errorMessage } from '../../errors.js';
import type { BackupRecord } from '../../model/backup.js';
import type { EngineContext } from '../context.js';
import { ownedLabel } from '../ids.js';
import { journal } from '../journal/write.js';
import type { BackupPlan } from '../plan.js';

/**
 * The array side of a backup run: one group snapshot per array of the consistency group, each journaled
 * before it is taken and labelled with the backup and this catalog; and, for a backup that failed and so
 * owns nothing, the deletion of what it took.
 */

/** Takes the group snapshots of `plan` and adds each to `record` as soon as the array confirms it. */
export async function snapshotGroups(
  ctx: EngineContext,
  backupId: string,
  plan: BackupPlan,
  record: BackupRecord,
): Promise<void> {
  const { catalog, events } = ctx;
  events.phase('array snapshot');
  for (const group of plan.groups) {
    const array = await ctx.array(group.array);
    const label = ownedLabel(backupId, catalog.id);
    const entry = await journal(catalog, backupId, {
      action: 'array-snapshot',
      target: group.array,
      data: { volumes: group.volumes, label },
    });
    await ctx.crashPoint('array-snapshot');
    events.item(`array ${group.array}`, `snapshot of ${group.volumes.length} volume(s)`);
    const snapshot = await array.snapshotGroup(group.volumes, {
      label,
      onProgress: (done, total) =>
        events.item(`array ${group.array}`, `copying ${Math.floor((100 * done) / Math.max(total, 1))}%`),
    });
    await catalog.completeJournal(entry, { snapshotId: snapshot.id });
    record.snapshots.push({
      array: group.array,
      snapshotId: snapshot.id,
      volumes: snapshot.volumes,
      pointInTime: snapshot.pointInTime,
      driver: snapshot.driver,
      datastores: group.datastores,
    });
    events.item(`array ${group.array}`, `snapshot ${snapshot.id}`);
  }
}

/**
 * Deletes this backup's array snapshots (journaled) — used when the backup failed and owns nothing. Returns
 * false when one could not be deleted: the caller keeps the operation open, so `recover` (or the next run)
 * deletes it by its label.
 */
export async function deleteSnapshotsOf(
  ctx: EngineContext,
  backupId: string,
  record: BackupRecord,
): Promise<boolean> {
  let clean = true;
  for (const s of record.snapshots) {
    const entry = await journal(ctx.catalog, backupId, {
      action: 'delete-snapshot',
      target: s.array,
      data: { snapshotId: s.snapshotId },
    });
    try {
      await (await ctx.array(s.array)).deleteSnapshot(s.snapshotId);
      await ctx.catalog.completeJournal(entry);
    } catch (err) {
      clean = false;
      record.warnings.push({
        code: 'CLEANUP_FAILED',
        message: `could not delete snapshot ${s.array}/${s.snapshotId}: ${errorMessage(err)}; the next run or snapkeeper recover deletes it`,
      });
    }
  }
  record.snapshots = [];
  return clean;
}
