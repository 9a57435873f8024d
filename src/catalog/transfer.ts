import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import Database from 'better-sqlite3';
import type { PostgresCatalogConfig } from '../config/catalog.js';
import { ConflictError, errorMessage, UsageError } from '../errors.js';
import { LATEST_SCHEMA_VERSION } from './migrations.js';
import { PostgresCatalog } from './postgres/catalog.js';
import type { Queryable } from './postgres/database.js';
import { MIGRATION_LOCK } from './postgres/migrate.js';

/**
 * Each table copied by `catalog migrate`, parents before children: its SQLite columns, the PostgreSQL name of
 * each where it differs (`array` is a reserved word there), and the SQLite order its rows keep (rowid, for
 * tables whose listings break ties by insertion order).
 */
const TABLES: readonly { name: string; columns: string[]; rename?: Record<string, string>; order: string }[] =
  [
    {
      name: 'backups',
      columns: ['id', 'task', 'state', 'started_at', 'finished_at', 'record'],
      order: 'rowid',
    },
    { name: 'backup_vms', columns: ['backup_id', 'vm_id', 'vm_name'], order: 'rowid' },
    {
      name: 'backup_snapshots',
      columns: ['backup_id', 'array', 'snapshot_id'],
      rename: { array: 'array_name' },
      order: 'rowid',
    },
    {
      name: 'operations',
      columns: [
        'id',
        'kind',
        'subject',
        'pid',
        'host',
        'state',
        'started_at',
        'finished_at',
        'heartbeat_at',
        'recovered_at',
      ],
      order: 'rowid',
    },
    {
      name: 'journal',
      columns: ['id', 'operation_id', 'action', 'target', 'data', 'created_at', 'completed_at'],
      order: 'id',
    },
    { name: 'locks', columns: ['resource', 'operation_id', 'mode', 'acquired_at'], order: 'rowid' },
    { name: 'tasks', columns: ['name', 'config', 'created_at', 'updated_at'], order: 'name' },
    { name: 'mounts', columns: ['id', 'backup_id', 'kind', 'data', 'created_at'], order: 'rowid' },
    {
      name: 'copies',
      columns: [
        'backup_id',
        'repository_id',
        'repository',
        'task',
        'manifest_id',
        'offloaded_at',
        'bytes',
        'bytes_added',
        'vms',
      ],
      order: 'rowid',
    },
    {
      name: 'api_tokens',
      columns: ['id', 'name', 'role', 'token_hash', 'created_at', 'last_used_at'],
      order: 'rowid',
    },
    { name: 'users', columns: ['name', 'role', 'password_hash', 'created_at', 'updated_at'], order: 'name' },
    { name: 'sessions', columns: ['id_hash', 'user_name', 'created_at', 'expires_at'], order: 'rowid' },
    { name: 'schedule_state', columns: ['task', 'handled_at', 'last_run_at', 'last_job_id'], order: 'task' },
    {
      name: 'daemon_members',
      columns: ['instance_id', 'host', 'pid', 'listen', 'started_at', 'heartbeat_at'],
      order: 'rowid',
    },
    {
      name: 'jobs',
      columns: [
        'id',
        'kind',
        'subject',
        'state',
        'instance_id',
        'started_at',
        'finished_at',
        'progress',
        'result',
        'error',
        'backup_id',
      ],
      order: 'rowid',
    },
  ];

/** Rows per INSERT statement (one JSON document each). */
const BATCH = 500;

export interface CatalogMigration {
  from: string;
  to: string;
  /** The catalog id, kept: everything snapkeeper made carries it. */
  catalogId: string;
  schemaVersion: number;
  /** Rows copied per table (and the leadership's term). */
  counts: Record<string, number>;
}

/**
 * Copies every table of the SQLite catalog `fromFile` into an empty PostgreSQL catalog (created there if the
 * database has none) in one transaction, keeping the catalog id. Refuses (UsageError or ConflictError, the
 * target unchanged): no catalog file, a file of another schema version (open it with this snapkeeper first),
 * a source with running operations (finish them, or run recover), a target that already holds anything.
 * The source is only read.
 */
export async function migrateSqliteToPostgres(
  fromFile: string,
  to: PostgresCatalogConfig,
): Promise<CatalogMigration> {
  const file = resolve(fromFile);
  if (!existsSync(file)) {
    throw new UsageError('CATALOG_NOT_FOUND', `no catalog at ${file} (--from)`, { details: { file } });
  }
  let source: Database.Database;
  try {
    source = new Database(file, { readonly: true, fileMustExist: true });
  } catch (err) {
    throw new UsageError('CATALOG_OPEN_FAILED', `cannot open catalog ${file}: ${errorMessage(err)}`);
  }
  try {
    // One read transaction: a consistent picture even if a snapkeeper process writes meanwhile.
    source.exec('BEGIN');
    const version = sourceVersion(source, file);
    if (version !== LATEST_SCHEMA_VERSION) {
      throw new UsageError(
        'CATALOG_VERSION_MISMATCH',
        `catalog ${file} has schema version ${version}, this snapkeeper writes version ${LATEST_SCHEMA_VERSION}: ${version < LATEST_SCHEMA_VERSION ? 'open it once with this snapkeeper (e.g. snapkeeper catalog create with catalog.path set to it) to bring it up to date' : 'use the snapkeeper that wrote it'}, then migrate`,
        { details: { file, version, expected: LATEST_SCHEMA_VERSION } },
      );
    }
    const running = source
      .prepare<[], { id: string; kind: string }>("SELECT id, kind FROM operations WHERE state = 'running'")
      .all();
    if (running.length > 0) {
      throw new ConflictError(
        'OPERATION_RUNNING',
        `catalog ${file} has ${running.length} running operation(s) (${running
          .slice(0, 5)
          .map((o) => `${o.kind} ${o.id}`)
          .join(', ')}): let them finish (or run snapkeeper recover), then migrate`,
        { details: { file, operations: running.map((o) => o.id) } },
      );
    }
    const catalogId = source
      .prepare<[], { value: string }>("SELECT value FROM meta WHERE key = 'catalog_id'")
      .get()?.value;
    if (catalogId === undefined) {
      throw new UsageError('CATALOG_INVALID', `catalog ${file} has no identity (meta.catalog_id)`);
    }
    const target = await PostgresCatalog.create(to);
    try {
      const counts = await target.database.write(async (q) => {
        // Under the migration lock: no other snapkeeper creates or migrates this catalog meanwhile.
        await q.query('SELECT pg_advisory_xact_lock($1)', [MIGRATION_LOCK]);
        await refuseNonEmpty(q, target.location);
        return copyTables(source, q, catalogId);
      });
      return { from: file, to: target.location, catalogId, schemaVersion: version, counts };
    } finally {
      await target.close();
    }
  } finally {
    source.close();
  }
}

function sourceVersion(db: Database.Database, file: string): number {
  try {
    return (
      db.prepare<[], { v: number | null }>('SELECT max(version) AS v FROM schema_migrations').get()?.v ?? 0
    );
  } catch (err) {
    throw new UsageError('CATALOG_INVALID', `${file} is not a snapkeeper catalog: ${errorMessage(err)}`, {
      details: { file },
    });
  }
}

async function refuseNonEmpty(q: Queryable, location: string): Promise<void> {
  const held: string[] = [];
  for (const t of TABLES) {
    const n = (await q.query<{ n: number }>(`SELECT count(*)::int AS n FROM ${t.name}`)).rows[0]?.n ?? 0;
    if (n > 0) held.push(`${t.name} (${n})`);
  }
  const lead = (await q.query<{ term: number }>('SELECT term FROM leadership WHERE slot = 1')).rows[0];
  if (lead !== undefined && lead.term > 0) held.push(`leadership (term ${lead.term})`);
  if (held.length > 0) {
    throw new ConflictError(
      'CATALOG_NOT_EMPTY',
      `the PostgreSQL catalog ${location} is not empty (${held.join(', ')}): migrate into a new, empty database`,
      { details: { location, tables: held } },
    );
  }
}

async function copyTables(
  source: Database.Database,
  q: Queryable,
  catalogId: string,
): Promise<Record<string, number>> {
  const counts: Record<string, number> = {};
  await q.query("UPDATE meta SET value = $1 WHERE key = 'catalog_id'", [catalogId]);
  for (const t of TABLES) {
    const rows = source
      .prepare<[], Record<string, unknown>>(
        `SELECT ${t.columns.join(', ')} FROM ${t.name} ORDER BY ${t.order}`,
      )
      .all();
    const target = t.columns.map((c) => t.rename?.[c] ?? c);
    for (let i = 0; i < rows.length; i += BATCH) {
      const batch = rows.slice(i, i + BATCH).map((r) => {
        const out: Record<string, unknown> = {};
        t.columns.forEach((c, k) => {
          out[target[k]!] = r[c];
        });
        return out;
      });
      // The batch as one JSON document, in order (WITH ORDINALITY): identity columns (seq) keep SQLite's order.
      await q.query(
        `INSERT INTO ${t.name} (${target.join(', ')})
         SELECT ${target.map((c) => `r.${c}`).join(', ')}
         FROM json_populate_recordset(NULL::${t.name}, $1::json) WITH ORDINALITY AS r
         ORDER BY r.ordinality`,
        [JSON.stringify(batch)],
      );
    }
    counts[t.name] = rows.length;
  }
  // Journal ids were copied as they are: new entries continue after the largest.
  await q.query(
    "SELECT setval(pg_get_serial_sequence('journal', 'id'), coalesce((SELECT max(id) FROM journal), 0) + 1, false)",
  );
  const lead = source
    .prepare<[], { holder: string | null; term: number; expires_at: string | null }>(
      'SELECT holder, term, expires_at FROM leadership WHERE slot = 1',
    )
    .get();
  if (lead !== undefined) {
    await q.query('UPDATE leadership SET holder = $1, term = $2, expires_at = $3 WHERE slot = 1', [
      lead.holder,
      lead.term,
      lead.expires_at,
    ]);
    counts.leadershipTerm = lead.term;
  }
  return counts;
}
