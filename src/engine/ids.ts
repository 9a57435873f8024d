import { randomBytes } from 'node:crypto';
import { RESERVED_TASK_NAME } from '../config/schema.js';

/** The task name of ad-hoc backups (`backup --vm`); reserved, so no configured task merges into it. */
export const ADHOC_TASK = RESERVED_TASK_NAME;

/** Backup ids sort by time and are safe in file names and snapshot labels: `20261125-081500-a1b2c3`. */
export function newBackupId(now: Date): string {
  const iso = now.toISOString();
  const stamp = `${iso.slice(0, 10).replaceAll('-', '')}-${iso.slice(11, 19).replaceAll(':', '')}`;
  return `${stamp}-${randomBytes(3).toString('hex')}`;
}

export const BACKUP_ID_PATTERN = /^\d{8}-\d{6}-[0-9a-f]{6}$/;

/** The VM snapshot a backup creates is named after it, so recovery can find strays by name alone. */
const VM_SNAPSHOT_PREFIX = 'snapkeeper-';

export function vmSnapshotName(backupId: string): string {
  return `${VM_SNAPSHOT_PREFIX}${backupId}`;
}

/** The backup id a snapkeeper VM snapshot belongs to, or undefined for any other snapshot. */
export function backupIdOfVmSnapshot(name: string): string | undefined {
  if (!name.startsWith(VM_SNAPSHOT_PREFIX)) return undefined;
  const id = name.slice(VM_SNAPSHOT_PREFIX.length);
  return BACKUP_ID_PATTERN.test(id) ? id : undefined;
}
