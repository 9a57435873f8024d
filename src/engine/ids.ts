import { randomBytes } from 'node:crypto';
import type { CatalogIdentity, OperationJournal } from '../catalog/index.js';
import { RESERVED_TASK_NAME } from '../config/schema.js';

/**
 * Every name snapkeeper gives to what it makes, and how clean-up reads them back: one place, so that the
 * maker and the sweeper can never disagree.
 *
 *   backup id            20261125-081500-a1b2c3
 *   operation id         the backup id for backups; restore-/mount-/attach-<backup-id-shaped stamp> otherwise
 *   array snapshot/clone label   <operation id>.<catalog id>       e.g. 20261125-081500-a1b2c3.0f3e9a1b2c4d
 *   VM snapshot name     snapkeeper-<backup id>.<catalog id>
 *
 * The catalog id (12 hex digits, made once with the catalog: `Catalog.id`) tells one catalog's leftovers from
 * another's on a shared array or vCenter. Names of earlier releases lack it: they parse, with no catalog id.
 */

/** The task name of ad-hoc backups (`backup --vm`); reserved, so no configured task merges into it. */
export const ADHOC_TASK = RESERVED_TASK_NAME;

/** Backup ids sort by time and are safe in file names and snapshot labels: `20261125-081500-a1b2c3`. */
export function newBackupId(now: Date): string {
  const iso = now.toISOString();
  const stamp = `${iso.slice(0, 10).replaceAll('-', '')}-${iso.slice(11, 19).replaceAll(':', '')}`;
  return `${stamp}-${randomBytes(3).toString('hex')}`;
}

export const BACKUP_ID_PATTERN = /^\d{8}-\d{6}-[0-9a-f]{6}$/;

/** An operation id other than a backup's: its kind and a backup-id-shaped stamp, `delete-20261125-091500-a1b2c3`. */
export function newOperationId(kind: string, now: Date): string {
  return `${kind}-${newBackupId(now)}`;
}

const STAMP = '\\d{8}-\\d{6}-[0-9a-f]{6}';
const CATALOG_ID = '[0-9a-f]{12}';
/** Any operation id snapkeeper makes: a backup id, or a kind and a backup-id-shaped stamp. */
const OPERATION_ID = `(?:[a-z]+-)?${STAMP}`;
const LABEL_PATTERN = new RegExp(`^(${OPERATION_ID})(?:\\.(${CATALOG_ID}))?$`);

/** The label of an array snapshot or clone that operation `operationId` of catalog `catalogId` makes. */
export function ownedLabel(operationId: string, catalogId: string): string {
  return `${operationId}.${catalogId}`;
}

/** What snapkeeper's name says about its maker; undefined when the name is not one snapkeeper gives. */
export interface MakerName {
  operationId: string;
  /** Absent in names of releases before catalog identities. */
  catalogId?: string;
}

/** Reads an array snapshot or clone label back; undefined for labels snapkeeper never makes. */
export function parseLabel(label: string): MakerName | undefined {
  const m = LABEL_PATTERN.exec(label);
  if (!m) return undefined;
  return m[2] === undefined ? { operationId: m[1]! } : { operationId: m[1]!, catalogId: m[2] };
}

/** The VM snapshot a backup creates is named after it, so recovery can find strays by name alone. */
const VM_SNAPSHOT_PREFIX = 'snapkeeper-';

export function vmSnapshotName(backupId: string, catalogId: string): string {
  return `${VM_SNAPSHOT_PREFIX}${ownedLabel(backupId, catalogId)}`;
}

/** Reads a VM snapshot name back (the operation id is the backup id); undefined for any other snapshot. */
export function parseVmSnapshotName(name: string): MakerName | undefined {
  if (!name.startsWith(VM_SNAPSHOT_PREFIX)) return undefined;
  const parsed = parseLabel(name.slice(VM_SNAPSHOT_PREFIX.length));
  return parsed && BACKUP_ID_PATTERN.test(parsed.operationId) ? parsed : undefined;
}

/**
 * Whose a thing snapkeeper named is, for clean-up: `ours` only when it carries this catalog's id AND this
 * catalog's journal has the operation that made it; `foreign` when it looks like snapkeeper's but is not
 * provably ours (another catalog's, an earlier release's, or made after a catalog was restored from an older
 * copy) — clean-up never deletes those; `unrelated` when snapkeeper never gives such a name.
 */
export type Ownership =
  | { owner: 'ours'; operationId: string }
  | { owner: 'foreign'; why: string }
  | { owner: 'unrelated' };

export async function ownershipOf(
  name: MakerName | undefined,
  catalog: CatalogIdentity & Pick<OperationJournal, 'findOperation'>,
): Promise<Ownership> {
  if (name === undefined) return { owner: 'unrelated' };
  if (name.catalogId === undefined) {
    return { owner: 'foreign', why: 'named by an earlier snapkeeper without a catalog id' };
  }
  if (name.catalogId !== catalog.id) return { owner: 'foreign', why: `made by catalog ${name.catalogId}` };
  if ((await catalog.findOperation(name.operationId)) === undefined) {
    return { owner: 'foreign', why: `operation ${name.operationId} is not in this catalog's journal` };
  }
  return { owner: 'ours', operationId: name.operationId };
}
