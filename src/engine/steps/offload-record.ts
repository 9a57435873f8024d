import type { BackupCopy, CopyStore } from '../../catalog/index.js';
import { ConflictError } from '../../errors.js';
import type { BackupRecord } from '../../model/backup.js';
import type { ManifestSummary, Repository } from '../../repository/index.js';
import type { EngineContext } from '../context.js';
import { openConfiguredRepository } from '../repository-access.js';

/**
 * Recording an offloaded backup's copy in the catalog, once. The repository is the truth: a copy is recorded
 * only for a manifest the repository holds, and recording it twice (an offload and the recovery of its crash,
 * or two runs) keeps the first record.
 */

/** The manifest this catalog wrote for `backupId` in the repository, if any (the newest when several). */
export async function storedManifest(
  repository: Repository,
  backupId: string,
  catalogId: string,
  signal?: AbortSignal,
): Promise<ManifestSummary | undefined> {
  const found = (await repository.listManifests(signal ? { signal } : {}))
    .filter((m) => m.backupId === backupId && m.catalogId === catalogId)
    .sort((a, b) => a.offloadedAt.localeCompare(b.offloadedAt));
  return found.at(-1);
}

/** Per VM of a copy: its included and excluded disks (from the record) and its bytes (from the manifest). */
export function copyVms(record: BackupRecord, summary: ManifestSummary): BackupCopy['vms'] {
  return summary.vms.map((v) => {
    const vm = record.vms.find((r) => r.id === v.vmId) ?? record.vms.find((r) => r.name === v.name);
    const disks = vm?.disks ?? [];
    return {
      name: v.name,
      disks: disks.filter((d) => d.included).length,
      excludedDisks: disks.filter((d) => !d.included).length,
      bytes: v.bytes,
    };
  });
}

/**
 * Records the copy of `backup` that manifest `summary` describes in repository `repository` (by name and id),
 * unless the catalog already has the backup's copy there. Returns the record and whether it was made now.
 */
export async function recordCopy(
  catalog: CopyStore,
  copy: {
    backup: BackupRecord;
    repository: string;
    repositoryId: string;
    summary: ManifestSummary;
    bytesAdded: number;
  },
): Promise<{ copy: BackupCopy; recorded: boolean }> {
  const existing = await catalog.findCopy(copy.backup.id, copy.repositoryId);
  if (existing) return { copy: existing, recorded: false };
  const vms = copyVms(copy.backup, copy.summary);
  try {
    const added = await catalog.addCopy({
      backupId: copy.backup.id,
      task: copy.backup.task,
      repository: copy.repository,
      repositoryId: copy.repositoryId,
      manifestId: copy.summary.id,
      offloadedAt: copy.summary.offloadedAt,
      bytes: vms.reduce((n, v) => n + v.bytes, 0),
      bytesAdded: copy.bytesAdded,
      vms,
    });
    return { copy: added, recorded: true };
  } catch (err) {
    // Another run recorded it between the look and the write: that record stands.
    if (!(err instanceof ConflictError && err.code === 'COPY_EXISTS')) throw err;
    const again = await catalog.findCopy(copy.backup.id, copy.repositoryId);
    if (!again) throw err;
    return { copy: again, recorded: false };
  }
}

/**
 * The roll-forward of an interrupted offload (journal action `repository.offload`): when the repository holds
 * a manifest this catalog wrote for the backup, its copy is recorded (once); otherwise the offload stopped
 * before its manifest, and nothing needs undoing (what it stored is reused by the next offload and collected
 * by prune). Returns what it did, for the recover report.
 */
export async function rollForwardOffload(
  ctx: EngineContext,
  data: { repository: string; repositoryId: string; backupId: string },
  dryRun: boolean,
): Promise<string> {
  if (!ctx.config.repositories.some((r) => r.name === data.repository)) {
    // Nothing of it is at risk: the repository's manifest (if any) stays, and `repo backups` lists it.
    return `repository ${data.repository} is no longer configured: the copy of backup ${data.backupId}, if its offload got that far, is not recorded in the catalog`;
  }
  const opened = await openConfiguredRepository(ctx, data.repository);
  try {
    const { repository } = opened;
    if (repository.id !== data.repositoryId) {
      return `repository ${data.repository} is now another repository (id ${repository.id}, the offload wrote to ${data.repositoryId}): nothing recorded`;
    }
    const summary = await storedManifest(repository, data.backupId, ctx.catalog.id);
    if (!summary) {
      return `offload of backup ${data.backupId} to ${data.repository} stopped before its manifest: nothing to record (stored data is reused by the next offload)`;
    }
    if (await ctx.catalog.findCopy(data.backupId, repository.id)) {
      return `copy of backup ${data.backupId} in ${data.repository} already recorded`;
    }
    if (dryRun)
      return `would record the copy of backup ${data.backupId} in ${data.repository} (manifest ${summary.id})`;
    const backup =
      (await ctx.catalog.findBackup(data.backupId)) ??
      ((await repository.loadManifest(summary.id)).body.record as BackupRecord);
    await recordCopy(ctx.catalog, {
      backup,
      repository: data.repository,
      repositoryId: repository.id,
      summary,
      bytesAdded: 0,
    });
    return `recorded the copy of backup ${data.backupId} in ${data.repository} (manifest ${summary.id})`;
  } finally {
    await opened.repository.close();
  }
}
