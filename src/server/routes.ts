import { z } from 'zod';
import type { BackupCopy, BackupHead, CatalogHandle, Role } from '../catalog/index.js';
import type { Config } from '../config/load.js';
import { userTaskSchema } from '../config/schema.js';
import {
  assertEditable,
  type BackupThenOffload,
  copyViews,
  datastoreVolumeNames,
  deleteBackup,
  type EngineContext,
  findTask,
  includedDiskBytes,
  inventoryJson,
  listTasks,
  runAttach,
  runBackupThenOffload,
  runDetach,
  runMount,
  runOffload,
  runRestore,
  runUnmount,
} from '../engine/index.js';
import { ConflictError, NotFoundError, UsageError } from '../errors.js';
import type { BackupRecord, BackupState, Warning } from '../model/backup.js';
import type { Inventory } from '../model/inventory.js';
import { VERSION } from '../version.js';
import { createToken } from './credentials.js';
import type { EventFeed } from './feed.js';
import { type JobEvent, type JobOutcome, type JobRunner, taskSubject } from './jobs.js';
import type { GaugeFamily, Metrics } from './metrics.js';
import { type Route, route } from './route.js';
import type { Scheduler } from './scheduler.js';
import * as s from './schemas.js';
import type { Sessions } from './sessions.js';

/** What the handlers stand on; the daemon builds it, tests may build their own. */
export interface ApiDeps {
  config: Config;
  catalog: CatalogHandle;
  jobs: JobRunner;
  scheduler: Scheduler;
  metrics: Metrics;
  feed: EventFeed;
  sessions: Sessions;
  /** A short-lived engine context for a call answered at once (inventory, delete); closed by the caller. */
  engine: () => EngineContext;
  /** Gauges read from the catalog at scrape time. */
  gauges: () => Promise<GaugeFamily[]>;
  /** The OpenAPI document of these routes (made from the table once it exists). */
  openapi: () => unknown;
  /** The daemons serving the catalog and who leads the schedules (`GET /api/v1/daemons`). */
  daemons: () => Promise<z.input<typeof s.daemonsSchema>>;
  /** How often the event stream of a job another daemon runs re-reads its catalog row. */
  followPollMs: number;
}

const STATES: readonly BackupState[] = ['running', 'complete', 'partial', 'failed', 'lost'];

/** Every warning of a record (run and VMs), each once: what the CLI's `allWarnings` counts. */
function warningsOf(r: BackupRecord): { vm?: string; w: Warning }[] {
  const seen = new Set<string>();
  const out: { vm?: string; w: Warning }[] = [];
  const add = (w: Warning, vm?: string) => {
    const k = `${w.code}\0${w.message}`;
    if (seen.has(k)) return;
    seen.add(k);
    out.push({ ...(vm !== undefined ? { vm } : {}), w });
  };
  for (const vm of r.vms) for (const w of vm.warnings) add(w, vm.name);
  for (const w of r.warnings) add(w);
  return out;
}

type Summary = z.input<typeof s.backupSummarySchema>;

/** A backup's summary without its copies (which change without the record changing: see `withCopies`). */
function baseSummary(r: BackupRecord): Omit<Summary, 'copies'> {
  return {
    id: r.id,
    task: r.task,
    state: r.state,
    startedAt: r.startedAt,
    ...(r.finishedAt ? { finishedAt: r.finishedAt } : {}),
    vms: r.vms.map((v) => v.name),
    warnings: warningsOf(r).length,
    bytes: includedDiskBytes(r),
  };
}

/** A backup's summary without its copies, for a webhook (sent at once, without a catalog read). */
export function backupBrief(r: BackupRecord): Omit<Summary, 'copies'> {
  return baseSummary(r);
}

/** A summary with the copies `inquire` shows (array, then repositories) and the bytes offloads added. */
function withCopies(r: BackupRecord, base: Omit<Summary, 'copies'>, copies: BackupCopy[]): Summary {
  return {
    ...base,
    ...(copies.length > 0 ? { bytesAdded: copies.reduce((n, c) => n + c.bytesAdded, 0) } : {}),
    copies: copyViews(r, copies),
  };
}

async function backupSummaries(catalog: CatalogHandle, records: BackupRecord[]): Promise<Summary[]> {
  const copies = await catalog.copiesOfBackups(records.map((r) => r.id));
  return records.map((r) => withCopies(r, baseSummary(r), copies.get(r.id) ?? []));
}

function encodeCursor(r: { startedAt: string; id: string }): string {
  return Buffer.from(JSON.stringify({ s: r.startedAt, i: r.id })).toString('base64url');
}

function decodeCursor(cursor: string): { startedAt: string; id: string } {
  try {
    const v = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8')) as { s?: unknown; i?: unknown };
    if (typeof v.s === 'string' && typeof v.i === 'string' && !Number.isNaN(Date.parse(v.s)))
      return { startedAt: v.s, id: v.i };
  } catch {
    // falls through to the error below
  }
  throw new UsageError(
    'CURSOR_INVALID',
    'cursor is not one this API gave (use nextCursor of the previous page)',
  );
}

function parseStates(value: string | undefined): BackupState[] | undefined {
  if (value === undefined || value === '') return undefined;
  const states = value.split(',').map((x) => x.trim());
  for (const st of states) {
    if (!(STATES as readonly string[]).includes(st))
      throw new UsageError(
        'STATE_INVALID',
        `state: unknown backup state ${st} (one of ${STATES.join(', ')})`,
      );
  }
  return states as BackupState[];
}

function checkTime(name: string, value: string | undefined): string | undefined {
  if (value === undefined) return undefined;
  if (Number.isNaN(Date.parse(value)))
    throw new UsageError('TIME_INVALID', `${name}: not a date/time: ${value}`);
  return new Date(value).toISOString();
}

/** The inventory document of `inventory --json` (one builder, the engine's), plus the tree around it. */
function inventoryDocument(inv: Inventory, volumes: Map<string, string[]>) {
  const vms = [...inv.vms].sort((a, b) => a.name.localeCompare(b.name));
  return {
    ...inventoryJson(inv, vms, volumes),
    datacenters: inv.datacenters,
    clusters: inv.clusters,
    hosts: inv.hosts,
    folders: inv.folders,
  };
}

async function withEngine<T>(deps: ApiDeps, fn: (ctx: EngineContext) => Promise<T>): Promise<T> {
  const ctx = deps.engine();
  try {
    return await fn(ctx);
  } finally {
    await ctx.close();
  }
}

/**
 * A backup job's outcome: the record (and the offload that followed it, as `backup --task --json` prints
 * it); failed when the backup is partial or failed (the record is kept) or when its offload failed.
 */
function backupOutcome(run: BackupThenOffload): JobOutcome {
  const { record, offload } = run;
  const failed = record.state === 'failed' || record.state === 'partial';
  return {
    result: offload ? { ...record, offload } : record,
    backupId: record.id,
    ...(!failed && offload?.error ? { error: offload.error } : {}),
    ...(failed
      ? {
          error: {
            code: record.state === 'failed' ? 'BACKUP_FAILED' : 'BACKUP_PARTIAL',
            message: record.error ?? `backup ${record.id} is ${record.state}`,
          },
        }
      : {}),
  };
}

export async function startBackupJob(
  deps: ApiDeps,
  request: { task?: string; vms?: string[]; mode?: (typeof s.backupRequestSchema)['_output']['mode'] },
) {
  if (request.task !== undefined) await findTask(deps.config, deps.catalog, request.task);
  const subject = request.task !== undefined ? taskSubject(request.task) : `vms ${request.vms!.join(' ')}`;
  return deps.jobs.start(
    'backup',
    subject,
    async (ctx, signal) =>
      backupOutcome(
        await runBackupThenOffload(ctx, {
          ...(request.task !== undefined ? { taskName: request.task } : {}),
          ...(request.vms !== undefined ? { vmPatterns: request.vms } : {}),
          ...(request.mode !== undefined ? { mode: request.mode } : {}),
          signal,
        }),
      ),
    request.task !== undefined ? { task: request.task } : {},
  );
}

async function taskSummary(
  deps: ApiDeps,
  name: string,
  source: 'config' | 'catalog',
  task: z.input<typeof s.taskConfigSchema>,
) {
  const schedule = typeof task.schedule === 'string' ? task.schedule : undefined;
  const timezone = typeof task.timezone === 'string' ? task.timezone : undefined;
  const next = schedule
    ? deps.scheduler.nextRun({ name, select: {}, schedule, ...(timezone ? { timezone } : {}) })
    : undefined;
  const [last] = await deps.catalog.listBackups({ task: name, limit: 1 });
  return {
    name,
    source,
    ...(schedule ? { schedule } : {}),
    ...(timezone ? { timezone } : {}),
    ...(next ? { nextRun: next.toISOString() } : {}),
    ...(last
      ? {
          lastRun: {
            backupId: last.id,
            state: last.state,
            startedAt: last.startedAt,
            ...(last.finishedAt ? { finishedAt: last.finishedAt } : {}),
            warnings: warningsOf(last).map((x) => x.w),
          },
        }
      : {}),
    running: deps.jobs.taskRunning(name),
  };
}

const okSchema = z.object({ ok: z.literal(true) });

/**
 * Summaries of finished backups, kept by id with the state and finish time they were made for: a record
 * that changes state (lost, deleted and made again) is summarised again. Listing 50 backups then reads 50
 * short index rows instead of parsing 50 records (the API benchmark's hot path).
 */
class SummaryCache {
  readonly #entries = new Map<string, { key: string; summary: Summary }>();
  constructor(readonly capacity = 100_000) {}

  async of(catalog: CatalogHandle, heads: BackupHead[]): Promise<Summary[]> {
    // Copies change without the record changing (an offload, a forget): they are part of the key.
    const copies = await catalog.copiesOfBackups(heads.map((h) => h.id));
    const keyOf = (h: BackupHead) =>
      `${h.state}\0${h.finishedAt ?? ''}\0${(copies.get(h.id) ?? []).map((c) => c.manifestId).join(',')}`;
    const missing = heads.filter((h) => this.#entries.get(h.id)?.key !== keyOf(h)).map((h) => h.id);
    const fresh = new Map(
      (await catalog.getBackups(missing)).map((r) => [
        r.id,
        withCopies(r, baseSummary(r), copies.get(r.id) ?? []),
      ]),
    );
    return heads.flatMap((h) => {
      const made = fresh.get(h.id);
      if (made) {
        // A running backup's record still changes (warnings) without changing its state: never kept.
        if (h.state !== 'running') this.#remember(h.id, keyOf(h), made);
        return [made];
      }
      const kept = this.#entries.get(h.id);
      return kept ? [kept.summary] : [];
    });
  }

  #remember(id: string, key: string, summary: Summary): void {
    if (this.#entries.size >= this.capacity) {
      const oldest = this.#entries.keys().next().value;
      if (oldest !== undefined) this.#entries.delete(oldest);
    }
    this.#entries.set(id, { key, summary });
  }
}

/** The route table: every endpoint of the API, in one place (registered by http.ts, described by openapi.ts). */
export function apiRoutes(deps: ApiDeps): Route[] {
  const summaries = new SummaryCache();
  const job = (
    kind: Parameters<JobRunner['start']>[0],
    subject: string,
    work: Parameters<JobRunner['start']>[2],
  ) => deps.jobs.start(kind, subject, work).then((j) => ({ job: j }));

  return [
    route({
      method: 'GET',
      path: '/healthz',
      access: 'health',
      tag: 'daemon',
      summary: 'liveness: the daemon answers, with its version',
      response: s.healthSchema,
      handler: async () => ({ status: 'ok' as const, version: VERSION }),
    }),
    route({
      method: 'GET',
      path: '/metrics',
      access: 'metrics',
      tag: 'daemon',
      summary: 'Prometheus metrics (text exposition format)',
      contentType: 'text/plain; version=0.0.4',
      handler: async () => deps.metrics.render(await deps.gauges()),
    }),
    route({
      method: 'GET',
      path: '/openapi.json',
      access: 'public',
      tag: 'daemon',
      summary: 'this document: OpenAPI 3.1, generated from the schemas that validate every route',
      response: z.looseObject({
        openapi: z.string(),
        info: z.looseObject({}),
        paths: z.record(z.string(), z.unknown()),
      }),
      handler: async () => deps.openapi(),
    }),
    route({
      method: 'POST',
      path: '/api/v1/session',
      access: 'public',
      tag: 'session',
      summary: 'log in (local user): sets the session cookie; rate-limited per user and address (429)',
      body: s.loginSchema,
      response: s.sessionSchema,
      handler: async ({ body, request, reply }) =>
        deps.sessions.login(body.user, body.password, request, reply),
    }),
    route({
      method: 'GET',
      path: '/api/v1/session',
      access: 'authenticated',
      tag: 'session',
      summary: 'the logged-in user, role and CSRF token (401 without a session)',
      response: s.sessionSchema,
      handler: async ({ principal }) => deps.sessions.describe(principal!),
    }),
    route({
      method: 'DELETE',
      path: '/api/v1/session',
      access: 'authenticated',
      tag: 'session',
      summary: 'log out: ends the session and clears the cookie',
      response: okSchema,
      handler: async ({ principal, reply }) => {
        await deps.sessions.logout(principal!, reply);
        return { ok: true as const };
      },
    }),
    route({
      method: 'GET',
      path: '/api/v1/dashboard',
      access: 'read-only',
      tag: 'overview',
      summary: 'last run per task, failures, warnings, next runs, snapshots held, repositories, running jobs',
      response: s.dashboardSchema,
      handler: async () => {
        const entries = await listTasks(deps.config, deps.catalog);
        const tasks = await Promise.all(entries.map((e) => taskSummary(deps, e.task.name, e.source, e.task)));
        const failures = await deps.catalog.listBackups({ state: ['failed', 'partial', 'lost'], limit: 10 });
        const recent = await deps.catalog.listBackups({ limit: 20 });
        const warnings = recent.flatMap((r) =>
          warningsOf(r).map((x) => ({
            backupId: r.id,
            ...(x.vm ? { vm: x.vm } : {}),
            code: x.w.code,
            message: x.w.message,
          })),
        );
        let held = 0;
        for (const a of deps.config.arrays) held += (await deps.catalog.ownedSnapshotIds(a.name)).size;
        return {
          tasks,
          failures: await backupSummaries(deps.catalog, failures),
          warnings: warnings.slice(0, 50),
          snapshotsHeld: held,
          repositories: await repositoryUsage(deps),
          // Every daemon's: a job another daemon runs shows with the progress its row holds.
          running: await deps.jobs.list({ state: ['queued', 'running'], limit: 100 }),
        };
      },
    }),
    route({
      method: 'GET',
      path: '/api/v1/inventory',
      access: 'read-only',
      tag: 'inventory',
      summary:
        'VMs with their disks (kind flat, rdm-physical, rdm-virtual, independent), datastores, and the tree',
      response: s.inventorySchema,
      handler: async () =>
        withEngine(deps, async (ctx) => {
          const inv = await (await ctx.vcenter()).inventory();
          return inventoryDocument(inv, await datastoreVolumeNames(ctx, inv.datastores));
        }),
    }),
    route({
      method: 'GET',
      path: '/api/v1/tasks',
      access: 'read-only',
      tag: 'tasks',
      summary: 'tasks of the configuration file and of the catalog',
      response: z.array(s.taskSummarySchema),
      handler: async () => {
        const entries = await listTasks(deps.config, deps.catalog);
        return Promise.all(entries.map((e) => taskSummary(deps, e.task.name, e.source, e.task)));
      },
    }),
    route({
      method: 'GET',
      path: '/api/v1/tasks/{name}',
      access: 'read-only',
      tag: 'tasks',
      summary: 'one task: its configuration, source, next run and last runs',
      params: s.nameParams,
      response: s.taskDetailSchema,
      handler: async ({ params }) => {
        const entry = await findTask(deps.config, deps.catalog, params.name);
        const summary = await taskSummary(deps, entry.task.name, entry.source, entry.task);
        const last = await deps.catalog.listBackups({ task: entry.task.name, limit: 10 });
        return {
          name: entry.task.name,
          source: entry.source,
          config: entry.task,
          ...(summary.nextRun ? { nextRun: summary.nextRun } : {}),
          running: summary.running,
          lastRuns: await backupSummaries(deps.catalog, last),
        };
      },
    }),
    route({
      method: 'POST',
      path: '/api/v1/tasks',
      access: 'admin',
      tag: 'tasks',
      summary: 'create a task in the catalog (checked with the configuration rules)',
      body: taskBody(),
      status: 201,
      response: s.taskConfigSchema,
      handler: async ({ body }) => {
        if (deps.config.tasks.some((t) => t.name === body.name)) assertEditable(deps.config, body.name);
        await deps.catalog.createTask(body);
        return body;
      },
    }),
    route({
      method: 'PUT',
      path: '/api/v1/tasks/{name}',
      access: 'admin',
      tag: 'tasks',
      summary: 'replace a catalog task (tasks of the configuration file are read-only: 409)',
      params: s.nameParams,
      body: taskBody(),
      response: s.taskConfigSchema,
      handler: async ({ params, body }) => {
        if (body.name !== params.name)
          throw new UsageError(
            'TASK_NAME_MISMATCH',
            `the body names task ${body.name}, the path ${params.name}`,
          );
        assertEditable(deps.config, params.name);
        await deps.catalog.updateTask(body);
        return body;
      },
    }),
    route({
      method: 'DELETE',
      path: '/api/v1/tasks/{name}',
      access: 'admin',
      tag: 'tasks',
      summary: 'delete a catalog task (its backups stay)',
      params: s.nameParams,
      response: okSchema,
      handler: async ({ params }) => {
        assertEditable(deps.config, params.name);
        await deps.catalog.deleteTask(params.name);
        return { ok: true as const };
      },
    }),
    route({
      method: 'POST',
      path: '/api/v1/tasks/{name}/run',
      access: 'operator',
      tag: 'tasks',
      summary: 'run a task now, as a job',
      params: s.nameParams,
      status: 202,
      response: s.jobAcceptedSchema,
      handler: async ({ params }) => ({ job: await startBackupJob(deps, { task: params.name }) }),
    }),
    route({
      method: 'GET',
      path: '/api/v1/backups',
      access: 'read-only',
      tag: 'backups',
      summary: 'backups, newest first, with filters and paging (limit, cursor -> nextCursor)',
      query: s.backupQuerySchema,
      response: z.object({ items: z.array(s.backupSummarySchema), nextCursor: z.string().optional() }),
      handler: async ({ query }) => {
        const limit = query.limit ?? 50;
        const since = checkTime('since', query.since);
        const until = checkTime('until', query.until);
        const state = parseStates(query.state);
        const heads = await deps.catalog.listBackupHeads({
          ...(query.task ? { task: query.task } : {}),
          ...(query.vm ? { vm: query.vm } : {}),
          ...(state ? { state } : {}),
          ...(since ? { since } : {}),
          ...(until ? { until } : {}),
          ...(query.cursor ? { after: decodeCursor(query.cursor) } : {}),
          limit: limit + 1,
        });
        const page = heads.slice(0, limit);
        const items = await summaries.of(deps.catalog, page);
        const last = page[page.length - 1];
        return {
          items,
          ...(heads.length > limit && last ? { nextCursor: encodeCursor(last) } : {}),
        };
      },
    }),
    route({
      method: 'GET',
      path: '/api/v1/backups/{id}',
      access: 'read-only',
      tag: 'backups',
      summary:
        'the full backup record (as inquire --backup ID --json) with its copies: the array snapshot, then repositories',
      params: s.idParams,
      response: s.backupRecordSchema,
      handler: async ({ params }) => {
        const record = await deps.catalog.getBackup(params.id);
        const copies = await deps.catalog.copiesOf(params.id);
        return { ...record, bytes: includedDiskBytes(record), copies: copyViews(record, copies) };
      },
    }),
    route({
      method: 'DELETE',
      path: '/api/v1/backups/{id}',
      access: 'admin',
      tag: 'backups',
      summary:
        'delete a backup (record, then its array snapshots); 409 while a restore, mount or attach holds it',
      params: s.idParams,
      response: z.object({ deleted: z.looseObject({ id: z.string() }) }),
      handler: async ({ params }) => ({
        deleted: await withEngine(deps, (ctx) => deleteBackup(ctx, params.id, { dryRun: false })),
      }),
    }),
    route({
      method: 'POST',
      path: '/api/v1/backups',
      access: 'operator',
      tag: 'backups',
      summary: 'back up a task or VMs (names or globs) now, as a job',
      body: s.backupRequestSchema,
      status: 202,
      response: s.jobAcceptedSchema,
      handler: async ({ body }) => ({ job: await startBackupJob(deps, body) }),
    }),
    route({
      method: 'POST',
      path: '/api/v1/restores',
      access: 'operator',
      tag: 'restore',
      summary: 'restore a VM (as a new VM, to its place) or disks, as a job',
      body: s.restoreRequestSchema,
      status: 202,
      response: s.jobAcceptedSchema,
      handler: async ({ body }) => {
        const fromRepository = body.source === 'repository';
        if (!fromRepository && body.repository !== undefined) {
          throw new UsageError(
            'SOURCE_INVALID',
            'repository is given only with source: repository (the array snapshot is the default source)',
          );
        }
        // From a repository the engine finds the backup there (the catalog may no longer hold it).
        if (!fromRepository) await deps.catalog.getBackup(body.backupId);
        const from = fromRepository
          ? `${body.backupId} (repository ${body.repository ?? 'holding it'})`
          : body.backupId;
        return job('restore', `${body.vm} from ${from}`, async (ctx, signal) => {
          const result = await runRestore(ctx, {
            backupId: body.backupId,
            vm: body.vm,
            ...(fromRepository ? { source: 'repository' as const } : {}),
            ...(body.repository !== undefined ? { repository: body.repository } : {}),
            ...(body.newName !== undefined ? { as: body.newName } : {}),
            ...(body.original ? { original: true, confirmed: body.confirmed === true } : {}),
            ...(body.disks !== undefined ? { disks: body.disks } : {}),
            ...(body.targetVm !== undefined ? { to: body.targetVm } : {}),
            ...(body.replace !== undefined ? { replace: body.replace } : {}),
            ...(body.force !== undefined ? { force: body.force } : {}),
            ...(body.filesOnly !== undefined ? { filesOnly: body.filesOnly } : {}),
            ...(body.datastore !== undefined ? { datastore: body.datastore } : {}),
            ...(body.host !== undefined ? { host: body.host } : {}),
            ...(body.folder !== undefined ? { folder: body.folder } : {}),
            ...(body.powerOn !== undefined ? { powerOn: body.powerOn } : {}),
            ...(body.dryRun !== undefined ? { dryRun: body.dryRun } : {}),
            signal,
          });
          return { result, backupId: body.backupId };
        });
      },
    }),
    route({
      method: 'POST',
      path: '/api/v1/offloads',
      access: 'operator',
      tag: 'repositories',
      summary:
        'copy a backup into a configured repository (as `offload --backup ID --repository NAME`), as a job whose progress has bytes, rate and eta',
      body: s.offloadRequestSchema,
      status: 202,
      response: s.jobAcceptedSchema,
      handler: async ({ body }) => {
        repositoryConfig(deps, body.repository);
        await deps.catalog.getBackup(body.backupId);
        return job('offload', `${body.backupId} -> ${body.repository}`, async (ctx, signal) => ({
          result: await runOffload(ctx, { backupId: body.backupId, repository: body.repository, signal }),
          backupId: body.backupId,
        }));
      },
    }),
    route({
      method: 'GET',
      path: '/api/v1/repositories',
      access: 'read-only',
      tag: 'repositories',
      summary: 'configured repositories with the backups the catalog records as copied there',
      response: z.array(s.repositorySchema),
      handler: async () => repositoryUsage(deps),
    }),
    route({
      method: 'GET',
      path: '/api/v1/mounts',
      access: 'read-only',
      tag: 'restore',
      summary: 'mounts and attaches of backups',
      response: z.array(z.looseObject({ id: z.string(), backupId: z.string(), kind: z.string() })),
      handler: async () => deps.catalog.listMounts(),
    }),
    route({
      method: 'POST',
      path: '/api/v1/mounts',
      access: 'operator',
      tag: 'restore',
      summary: 'mount a backup as datastores on a host, as a job',
      body: s.mountRequestSchema,
      status: 202,
      response: s.jobAcceptedSchema,
      handler: async ({ body }) => {
        await deps.catalog.getBackup(body.backupId);
        return job('mount', body.backupId, async (ctx) => ({
          result: await runMount(ctx, {
            backupId: body.backupId,
            ...(body.host !== undefined ? { host: body.host } : {}),
            ...(body.dryRun !== undefined ? { dryRun: body.dryRun } : {}),
          }),
          backupId: body.backupId,
        }));
      },
    }),
    route({
      method: 'DELETE',
      path: '/api/v1/mounts/{id}',
      access: 'operator',
      tag: 'restore',
      summary: 'unmount (by mount id), as a job',
      params: s.idParams,
      status: 202,
      response: s.jobAcceptedSchema,
      handler: async ({ params }) => {
        const mount = await deps.catalog.getMount(params.id);
        if (mount.kind !== 'datastore') throw notKind(params.id, 'mount', mount.kind);
        return job('unmount', mount.backupId, async (ctx) => ({
          result: await runUnmount(ctx, { backupId: mount.backupId }),
          backupId: mount.backupId,
        }));
      },
    }),
    route({
      method: 'POST',
      path: '/api/v1/attaches',
      access: 'operator',
      tag: 'restore',
      summary: 'attach a backup’s disks to a running VM, as a job',
      body: s.attachRequestSchema,
      status: 202,
      response: s.jobAcceptedSchema,
      handler: async ({ body }) => {
        await deps.catalog.getBackup(body.backupId);
        return job('attach', `${body.vm} from ${body.backupId} to ${body.targetVm}`, async (ctx) => ({
          result: await runAttach(ctx, {
            backupId: body.backupId,
            vm: body.vm,
            to: body.targetVm,
            ...(body.disks !== undefined ? { disks: body.disks } : {}),
            ...(body.dryRun !== undefined ? { dryRun: body.dryRun } : {}),
          }),
          backupId: body.backupId,
        }));
      },
    }),
    route({
      method: 'DELETE',
      path: '/api/v1/attaches/{id}',
      access: 'operator',
      tag: 'restore',
      summary: 'detach (by attach id), as a job',
      params: s.idParams,
      status: 202,
      response: s.jobAcceptedSchema,
      handler: async ({ params }) => {
        const mount = await deps.catalog.getMount(params.id);
        if (mount.kind !== 'attach') throw notKind(params.id, 'attach', mount.kind);
        const to = String(mount.data.targetVm ?? '');
        return job('detach', `${to} (${mount.backupId})`, async (ctx) => ({
          result: await runDetach(ctx, { to, backupId: mount.backupId }),
          backupId: mount.backupId,
        }));
      },
    }),
    route({
      method: 'GET',
      path: '/api/v1/jobs',
      access: 'read-only',
      tag: 'jobs',
      summary: 'jobs, newest first (those of earlier daemons too)',
      query: s.jobsQuerySchema,
      response: z.array(s.jobSchema),
      handler: async ({ query }) => {
        const states = query.state?.split(',').map((x) => x.trim()) ?? [];
        for (const st of states) {
          if (!['queued', 'running', 'done', 'failed'].includes(st))
            throw new UsageError(
              'STATE_INVALID',
              `state: unknown job state ${st} (queued, running, done, failed)`,
            );
        }
        return deps.jobs.list({ state: states as never, limit: query.limit ?? 100 });
      },
    }),
    route({
      method: 'GET',
      path: '/api/v1/jobs/{id}',
      access: 'read-only',
      tag: 'jobs',
      summary: 'one job with its progress, result or error',
      params: s.idParams,
      response: s.jobSchema,
      handler: async ({ params }) => {
        const found = await deps.jobs.get(params.id);
        if (!found) throw new NotFoundError('JOB_NOT_FOUND', `no job ${params.id}`);
        return found;
      },
    }),
    route({
      method: 'GET',
      path: '/api/v1/jobs/{id}/events',
      access: 'read-only',
      tag: 'jobs',
      summary: 'the job’s events as server-sent events: progress, log, then done or failed (data: JSON)',
      params: s.idParams,
      contentType: 'text/event-stream',
      handler: async ({ params, reply, request }) => {
        const found = await deps.jobs.get(params.id);
        if (!found) throw new NotFoundError('JOB_NOT_FOUND', `no job ${params.id}`);
        reply.hijack();
        const res = reply.raw;
        res.writeHead(200, {
          'content-type': 'text/event-stream',
          'cache-control': 'no-store',
          connection: 'keep-alive',
          'x-content-type-options': 'nosniff',
        });
        const send = (type: string, data: unknown) =>
          res.write(`event: ${type}\ndata: ${JSON.stringify(data)}\n\n`);
        const forward = (event: JobEvent) => {
          send(event.type, event.data);
          if (event.type === 'done' || event.type === 'failed') res.end();
        };
        const sub = deps.jobs.subscribe(params.id, forward);
        if (!sub && (found.state === 'running' || found.state === 'queued')) {
          // Another daemon of the catalog runs it: its progress as that daemon writes it to the job's row.
          const stop = deps.jobs.follow(params.id, forward, deps.followPollMs);
          deps.sessions.trackStream(res);
          request.raw.on('close', stop);
          return;
        }
        if (!sub) {
          // A job of an earlier daemon, or one no longer in memory: its end state only.
          send(found.state === 'done' ? 'done' : 'failed', {
            state: found.state,
            error: found.error,
            result: found.result,
          });
          res.end();
          return;
        }
        for (const e of sub.past) send(e.type, e.data);
        if (sub.finished) {
          res.end();
          return;
        }
        deps.sessions.trackStream(res);
        request.raw.on('close', () => sub.unsubscribe());
      },
    }),
    route({
      method: 'POST',
      path: '/api/v1/jobs/{id}/cancel',
      access: 'operator',
      tag: 'jobs',
      summary:
        'asks a running job to stop at its next safe point (it releases what it holds); only on the daemon that runs it',
      params: s.idParams,
      status: 202,
      response: s.jobAcceptedSchema,
      handler: async ({ params }) => {
        const found = await deps.jobs.get(params.id);
        if (!found) throw new NotFoundError('JOB_NOT_FOUND', `no job ${params.id}`);
        if (found.state === 'done' || found.state === 'failed') {
          throw new ConflictError('JOB_FINISHED', `job ${params.id} has already ended (${found.state})`);
        }
        const cancelled = deps.jobs.cancel(params.id);
        if (cancelled) return { job: cancelled };
        const view = await deps.daemons();
        const owner = view.daemons.find((d) => d.instanceId === found.instanceId);
        throw new ConflictError(
          'JOB_NOT_LOCAL',
          owner
            ? `job ${params.id} runs on another daemon: pid ${owner.pid} on ${owner.host}, listening on ${owner.listen}; cancel it there`
            : `job ${params.id} runs on daemon ${found.instanceId ?? '(unknown)'}, which no longer answers; it is marked INTERRUPTED once its lease runs out`,
          {
            details: {
              instanceId: found.instanceId,
              ...(owner ? { host: owner.host, pid: owner.pid, listen: owner.listen } : {}),
            },
          },
        );
      },
    }),
    route({
      method: 'GET',
      path: '/api/v1/daemons',
      access: 'read-only',
      tag: 'daemon',
      summary: 'the daemons serving this catalog, and which one runs the schedules',
      response: s.daemonsSchema,
      handler: async () => deps.daemons(),
    }),
    route({
      method: 'GET',
      path: '/api/v1/events',
      access: 'read-only',
      tag: 'overview',
      summary: 'recent events: jobs and backups started and finished, warnings (newest first)',
      query: s.eventsQuerySchema,
      response: z.array(s.eventSchema),
      handler: async ({ query }) => deps.feed.recent(query.limit ?? 100),
    }),
    route({
      method: 'GET',
      path: '/api/v1/stats/backups',
      access: 'read-only',
      tag: 'overview',
      summary: 'duration and size of backups over time (oldest first), for charts',
      query: s.statsQuerySchema,
      response: z.array(s.statSchema),
      handler: async ({ query }) => {
        const records = await deps.catalog.listBackups({
          ...(query.task ? { task: query.task } : {}),
          limit: query.limit ?? 200,
        });
        const copies = await deps.catalog.copiesOfBackups(records.map((r) => r.id));
        return records.reverse().map((r) => ({
          backupId: r.id,
          task: r.task,
          startedAt: r.startedAt,
          ...(r.finishedAt ? { durationMs: Date.parse(r.finishedAt) - Date.parse(r.startedAt) } : {}),
          state: r.state,
          bytes: includedDiskBytes(r),
          ...addedOf(copies.get(r.id)),
        }));
      },
    }),
    route({
      method: 'GET',
      path: '/api/v1/tokens',
      access: 'admin',
      tag: 'tokens',
      summary: 'API tokens (never the tokens themselves)',
      response: z.array(s.tokenSchema),
      handler: async () => deps.catalog.listTokens(),
    }),
    route({
      method: 'POST',
      path: '/api/v1/tokens',
      access: 'admin',
      tag: 'tokens',
      summary: 'make an API token; the response is the only time it is shown',
      body: s.tokenRequestSchema,
      status: 201,
      response: s.tokenSchema.extend({ token: z.string() }),
      handler: async ({ body }) => createToken(deps.catalog, body),
    }),
    route({
      method: 'DELETE',
      path: '/api/v1/tokens/{id}',
      access: 'admin',
      tag: 'tokens',
      summary: 'revoke an API token',
      params: s.idParams,
      response: z.object({ revoked: s.tokenSchema }),
      handler: async ({ params }) => ({ revoked: await deps.catalog.removeToken(params.id) }),
    }),
  ];
}

/** The configured repository of that name; 404 REPOSITORY_NOT_FOUND (nothing started) otherwise. */
function repositoryConfig(deps: ApiDeps, name: string) {
  const found = deps.config.repositories.find((r) => r.name === name);
  if (!found) {
    const known = deps.config.repositories.map((r) => r.name);
    throw new NotFoundError(
      'REPOSITORY_NOT_FOUND',
      `repository ${name} is not configured (${known.length > 0 ? `configured: ${known.join(', ')}` : 'none is configured'})`,
    );
  }
  return found;
}

/** Each configured repository with the copies the catalog records there (no repository is opened). */
async function repositoryUsage(deps: ApiDeps): Promise<z.input<typeof s.repositorySchema>[]> {
  const out: z.input<typeof s.repositorySchema>[] = [];
  for (const r of deps.config.repositories) {
    const copies = await deps.catalog.listCopies({ repository: r.name });
    out.push({
      name: r.name,
      type: r.type,
      backups: copies.length,
      bytes: copies.reduce((n, c) => n + c.bytesAdded, 0),
      logicalBytes: copies.reduce((n, c) => n + c.bytes, 0),
      ...(copies.length > 0 ? { lastOffloadAt: copies[copies.length - 1]!.offloadedAt } : {}),
    });
  }
  return out;
}

function addedOf(copies: BackupCopy[] | undefined): { bytesAdded?: number } {
  return copies && copies.length > 0 ? { bytesAdded: copies.reduce((n, c) => n + c.bytesAdded, 0) } : {};
}

function notKind(id: string, wanted: string, kind: string): NotFoundError {
  return new NotFoundError(
    'MOUNT_NOT_FOUND',
    `${id} is not a${wanted === 'attach' ? 'n' : ''} ${wanted} (it is a ${kind})`,
  );
}

/** A task body: the configuration's own task schema (what `task create` stores), so both refuse the same. */
function taskBody() {
  return userTaskSchema;
}

export type { Role };
