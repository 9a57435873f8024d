/** SPEC section 2: the backup modes. */
export const BACKUP_MODES = ['SNAPSHOT_INCL_MEM', 'SNAPSHOT_EXCL_MEM', 'SUSPEND', 'ASIS'] as const;
export type BackupMode = (typeof BACKUP_MODES)[number];

export function isBackupMode(value: string): value is BackupMode {
  return (BACKUP_MODES as readonly string[]).includes(value);
}

/** What a backup does when a VMware Tools quiesce is impossible or fails (task `onQuiesceFailure`). */
export const QUIESCE_POLICIES = ['crash-consistent', 'fail'] as const;
export type QuiescePolicy = (typeof QUIESCE_POLICIES)[number];
