import type {
  ApiToken,
  BackupCopy,
  CopyVmSummary,
  DaemonMember,
  JobRow,
  JobState,
  JournalEntry,
  Leadership,
  Mount,
  Operation,
  OperationKind,
  OperationState,
  Role,
  User,
} from './types.js';

/**
 * The tables' rows as both dialects read them (the same columns under the same names), and how each becomes
 * the role interfaces' object. JSON columns are text in both; `parse` is the dialect's (it names the record
 * of a malformed one: CATALOG_CORRUPT).
 */
export type ParseJson = <T>(json: string, what: string) => T;

export interface OperationRow {
  id: string;
  kind: OperationKind;
  subject: string | null;
  pid: number;
  host: string;
  state: OperationState;
  started_at: string;
  finished_at: string | null;
  heartbeat_at: string | null;
  recovered_at: string | null;
}

export interface JournalRow {
  id: number;
  operation_id: string;
  action: string;
  target: string;
  data: string;
  created_at: string;
  completed_at: string | null;
}

export function toOperation(r: OperationRow): Operation {
  const op: Operation = {
    id: r.id,
    kind: r.kind,
    pid: r.pid,
    host: r.host,
    state: r.state,
    startedAt: r.started_at,
  };
  if (r.subject !== null) op.subject = r.subject;
  if (r.finished_at !== null) op.finishedAt = r.finished_at;
  if (r.heartbeat_at !== null) op.heartbeatAt = r.heartbeat_at;
  if (r.recovered_at !== null) op.recoveredAt = r.recovered_at;
  return op;
}

export interface MountRow {
  id: string;
  backup_id: string;
  kind: string;
  data: string;
  created_at: string;
}

export function toMount(parse: ParseJson, r: MountRow): Mount {
  return {
    id: r.id,
    backupId: r.backup_id,
    kind: r.kind,
    data: parse<Record<string, unknown>>(r.data, `mount ${r.id}`),
    createdAt: r.created_at,
  };
}

export interface CopyRow {
  backup_id: string;
  repository_id: string;
  repository: string;
  task: string;
  manifest_id: string;
  offloaded_at: string;
  bytes: number;
  bytes_added: number;
  vms: string;
  /** Whether the backup's record exists (LEFT JOIN on backups): 1/0 on SQLite, a boolean on PostgreSQL. */
  in_catalog: number | boolean;
}

export function toCopy(parse: ParseJson, r: CopyRow): BackupCopy {
  return {
    backupId: r.backup_id,
    task: r.task,
    repository: r.repository,
    repositoryId: r.repository_id,
    manifestId: r.manifest_id,
    offloadedAt: r.offloaded_at,
    bytes: r.bytes,
    bytesAdded: r.bytes_added,
    vms: parse<CopyVmSummary[]>(r.vms, `copy of backup ${r.backup_id}`),
    arrayCopy: r.in_catalog === true || r.in_catalog === 1,
  };
}

export interface TokenRow {
  id: string;
  name: string;
  role: Role;
  created_at: string;
  last_used_at: string | null;
}

export interface UserRow {
  name: string;
  role: Role;
  password_hash: string;
  created_at: string;
  updated_at: string;
}

export function toToken(r: TokenRow): ApiToken {
  return {
    id: r.id,
    name: r.name,
    role: r.role,
    createdAt: r.created_at,
    ...(r.last_used_at ? { lastUsedAt: r.last_used_at } : {}),
  };
}

export function toUser(r: UserRow): User {
  return { name: r.name, role: r.role, createdAt: r.created_at, updatedAt: r.updated_at };
}

export interface MemberRow {
  instance_id: string;
  host: string;
  pid: number;
  listen: string;
  started_at: string;
  heartbeat_at: string;
}

export interface LeadershipRow {
  holder: string | null;
  term: number;
  expires_at: string | null;
}

export interface JobTableRow {
  id: string;
  kind: string;
  subject: string;
  state: JobState;
  instance_id: string;
  started_at: string;
  finished_at: string | null;
  progress: string | null;
  result: string | null;
  error: string | null;
  backup_id: string | null;
}

export function toMember(r: MemberRow): DaemonMember {
  return {
    instanceId: r.instance_id,
    host: r.host,
    pid: r.pid,
    listen: r.listen,
    startedAt: r.started_at,
    heartbeatAt: r.heartbeat_at,
  };
}

export function toJob(parse: ParseJson, r: JobTableRow): JobRow {
  return {
    id: r.id,
    kind: r.kind,
    subject: r.subject,
    state: r.state,
    instanceId: r.instance_id,
    startedAt: r.started_at,
    ...(r.finished_at ? { finishedAt: r.finished_at } : {}),
    ...(r.progress ? { progress: parse<Record<string, unknown>>(r.progress, `job ${r.id}`) } : {}),
    ...(r.result ? { result: parse<unknown>(r.result, `job ${r.id}`) } : {}),
    ...(r.error ? { error: parse<{ code: string; message: string }>(r.error, `job ${r.id}`) } : {}),
    ...(r.backup_id ? { backupId: r.backup_id } : {}),
  };
}

/** The dialect database's JSON parser as a free function (it names the record of a malformed column). */
export function parseOf(db: { parse<T>(json: string, what: string): T }): ParseJson {
  return (json, what) => db.parse(json, what);
}

/** The journal entry of a row. */
export function toJournalEntry(parse: ParseJson, r: JournalRow): JournalEntry {
  const entry: JournalEntry = {
    id: r.id,
    operationId: r.operation_id,
    action: r.action,
    target: r.target,
    data: parse<Record<string, unknown>>(r.data, `journal entry ${r.id}`),
    createdAt: r.created_at,
  };
  if (r.completed_at !== null) entry.completedAt = r.completed_at;
  return entry;
}

/** The leadership as it stands at `now` (by the catalog's clock): nobody's once its lease has run out. */
export function leadershipAt(row: LeadershipRow, now: string): Leadership {
  const live = row.holder !== null && row.expires_at !== null && row.expires_at > now;
  return live
    ? { holder: row.holder ?? undefined, term: row.term, expiresAt: row.expires_at ?? undefined, mine: false }
    : { term: row.term, mine: false };
}

/**
 * What `claimLeadership` decides, the same on both dialects: the holder renews (same term); anyone takes a
 * leadership that is free or whose lease ran out (term + 1); otherwise it stays with its holder. `write` is
 * the row to store when the claim is granted.
 */
export function claimDecision(
  row: LeadershipRow,
  instanceId: string,
  now: string,
  ttlMs: number,
): { leadership: Leadership; write?: { holder: string; term: number; expiresAt: string } } {
  const current = leadershipAt(row, now);
  if (current.holder !== undefined && current.holder !== instanceId) return { leadership: current };
  const term = current.holder === instanceId ? row.term : row.term + 1;
  const expiresAt = new Date(Date.parse(now) + ttlMs).toISOString();
  return {
    leadership: { holder: instanceId, term, expiresAt, mine: true },
    write: { holder: instanceId, term, expiresAt },
  };
}

/** A job's column values in the order of the jobs table (id, kind, subject, state, instance_id, started_at, finished_at, progress, result, error, backup_id). */
export function jobValues(job: JobRow): (string | null)[] {
  return [
    job.id,
    job.kind,
    job.subject,
    job.state,
    job.instanceId,
    job.startedAt,
    job.finishedAt ?? null,
    job.progress === undefined ? null : JSON.stringify(job.progress),
    job.result === undefined ? null : JSON.stringify(job.result),
    job.error === undefined ? null : JSON.stringify(job.error),
    job.backupId ?? null,
  ];
}
