import { randomUUID } from 'node:crypto';
import { existsSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { hostname } from 'node:os';
import { fileURLToPath } from 'node:url';
import type { z } from 'zod';
import { type CatalogHandle, openCatalog, pidAlive } from '../catalog/index.js';
import type { Config } from '../config/load.js';
import { parseListen } from '../config/server.js';
import {
  configuredParts,
  EngineContext,
  type EngineEvents,
  type RunningWorker,
  recover,
  silentEvents,
  startWorker,
  type WorkerJobEvent,
} from '../engine/index.js';
import { ConflictError, errorMessage, UsageError } from '../errors.js';
import type { BackupRecord } from '../model/backup.js';
import { EventFeed } from './feed.js';
import { buildHttp } from './http.js';
import { type Job, JobRunner } from './jobs.js';
import { heartbeatInterval, ScheduleLeadership } from './leadership.js';
import { jsonLogger, type Logger } from './log.js';
import { type GaugeFamily, Metrics } from './metrics.js';
import { openApiDocument } from './openapi.js';
import { type ApiDeps, apiRoutes, backupBrief, startBackupJob } from './routes.js';
import { Scheduler } from './scheduler.js';
import type { daemonsSchema } from './schemas.js';
import { Sessions } from './sessions.js';
import { loadWebhooks, Webhooks } from './webhooks.js';

export interface DaemonOptions {
  config: Config;
  /** `HOST:PORT`, overriding server.listen. */
  listen?: string;
  /** Run a local offload worker (`serve --worker [N]`), overriding server.worker. */
  worker?: { concurrency?: number };
  log?: Logger;
}

export interface Daemon {
  /** `http(s)://host:port` it answers on. */
  url: string;
  instanceId: string;
  /** Stops accepting, aborts running jobs and waits for them to release what they hold, frees the lease. */
  stop(): Promise<void>;
}

/** web/dist of this installation (dist/src/server/daemon.js -> web/dist). */
export const DEFAULT_WEB_ROOT = fileURLToPath(new URL('../../../web/dist', import.meta.url));

/**
 * Whether several daemons may serve this catalog: a catalog on a database server (PostgreSQL), which
 * daemons on several machines reach. A SQLite file belongs to one machine, and one daemon serves it.
 */
export function sharedCatalog(catalog: Pick<CatalogHandle, 'dialect'>): boolean {
  return catalog.dialect === 'postgres';
}

/** The error a job of a daemon that died gets (`failOrphanedJobs`). */
const INTERRUPTED = {
  code: 'INTERRUPTED',
  message: 'the daemon running this job stopped before it finished; what it left is repaired by recover',
};

/**
 * Removes the rows of daemons of this host whose process is gone (SIGKILLed, crashed): their jobs are
 * orphaned and their leadership is free at once, not only when their heartbeat runs out. Returns how many.
 */
async function reapDeadLocalMembers(catalog: CatalogHandle, leaseMs: number, log: Logger): Promise<number> {
  let reaped = 0;
  for (const m of await catalog.liveMembers(leaseMs)) {
    if (m.host === hostname() && m.pid !== process.pid && !pidAlive(m.pid)) {
      await catalog.removeMember(m.instanceId);
      reaped += 1;
      log.warn('daemon of this host gone without stopping: its row removed', {
        instance: m.instanceId,
        pid: m.pid,
      });
    }
  }
  return reaped;
}

/** On a SQLite catalog (one machine) one daemon at a time: a second one is refused, naming the first. */
async function refuseSecondDaemon(
  catalog: CatalogHandle,
  instanceId: string,
  leaseMs: number,
): Promise<void> {
  const other = (await catalog.liveMembers(leaseMs)).find((m) => m.instanceId !== instanceId);
  if (other) {
    throw new ConflictError(
      'DAEMON_RUNNING',
      `another snapkeeper daemon serves this catalog: pid ${other.pid} on ${other.host}, listening on ${other.listen} (since ${other.startedAt}); stop it first`,
      { details: { host: other.host, pid: other.pid, listen: other.listen, startedAt: other.startedAt } },
    );
  }
}

function checkTls(tls: { cert: string; key: string } | undefined): void {
  if (!tls) return;
  for (const [what, file] of [
    ['server.tls.cert', tls.cert],
    ['server.tls.key', tls.key],
  ] as const) {
    if (!existsSync(file)) throw new UsageError('TLS_INVALID', `${what}: ${file} does not exist`);
  }
}

/**
 * Starts `snapkeeper serve`: checks its inputs (listen address, TLS files, webhook secrets: exit 3, nothing
 * changed), joins the catalog's daemons (on a SQLite catalog a second daemon is refused, naming the first;
 * on a shared catalog, PostgreSQL, several serve it), marks the jobs of a daemon that died as failed, runs
 * `recover` as the CLI does, then serves the API and runs the schedules while it leads them.
 */
export async function startDaemon(options: DaemonOptions): Promise<Daemon> {
  const { config } = options;
  const server = config.server;
  const listenText = options.listen ?? server.listen;
  const listen = parseListen(listenText);
  checkTls(server.tls);
  const log = options.log ?? jsonLogger(server.logFile ? { file: server.logFile } : {});
  const metrics = new Metrics();
  const webhooks = new Webhooks(loadWebhooks(server.webhooks), log, metrics);
  const catalog = await openCatalog(config.catalog);
  const shared = sharedCatalog(catalog);
  const leaseMs = server.leaseSeconds * 1000;
  const instanceId = randomUUID();
  const memberOf = (where: string) => ({ instanceId, host: hostname(), pid: process.pid, listen: where });
  let listening = listenText;
  let heartbeat: NodeJS.Timeout | undefined;
  /** The heartbeat under way, if any: a stop waits for it before removing the row (it would write it again). */
  let beating: Promise<void> | undefined;
  let worker: { running: RunningWorker; ctx: EngineContext } | undefined;
  const leadership = new ScheduleLeadership({
    catalog,
    instanceId,
    leaseMs,
    log,
    onChange: (leader) => metrics.leadershipChanges.inc({ to: leader ? 'leader' : 'standby' }),
  });
  try {
    await reapDeadLocalMembers(catalog, leaseMs, log);
    if (!shared) await refuseSecondDaemon(catalog, instanceId, leaseMs);
    // Before the daemon joins: a worker the configuration cannot run (no queue, no repository) is exit 3
    // with nothing changed.
    const wanted = options.worker ?? server.worker;
    if (wanted !== undefined) worker = await startLocalWorker(config, wanted, log, metrics);
    await catalog.heartbeatMember(memberOf(listenText));
  } catch (err) {
    await stopLocalWorker(worker, log);
    await catalog.close();
    throw err;
  }
  const engine = (events: EngineEvents = silentEvents) =>
    new EngineContext({
      config,
      ...configuredParts(config),
      // On PostgreSQL every job shares the daemon's pool (an opened catalog, left open by the job's close).
      ...(catalog.dialect === 'postgres' ? { catalog, ownsCatalog: false } : {}),
      events,
    });
  // What a daemon that died left (VM snapshots, suspended VMs, locks) is repaired by the daemon that notices,
  // as a new backup run would: only operations whose process is gone, never another daemon's live ones.
  let repairing: Promise<void> | undefined;
  const repairDead = () => {
    repairing ??= deadRecover(engine(), log).finally(() => {
      repairing = undefined;
    });
  };
  /**
   * One heartbeat: membership renewed, leadership taken or renewed; on a shared catalog also the daemons of
   * this host that died (row removed at once) and the jobs of every daemon whose lease ran out (marked
   * failed INTERRUPTED, and what they left repaired).
   */
  const beat = async () => {
    await catalog.heartbeatMember(memberOf(listening));
    await leadership.beat();
    if (!shared) return;
    const reaped = await reapDeadLocalMembers(catalog, leaseMs, log);
    const orphaned = await catalog.failOrphanedJobs(leaseMs, INTERRUPTED);
    if (orphaned > 0) log.warn('jobs of a daemon that died marked failed', { count: orphaned });
    if (reaped > 0 || orphaned > 0) repairDead();
  };
  try {
    await beat();
    // One heartbeat at a time: a catalog that answers slowly (a row lock held elsewhere) must not pile up
    // heartbeats, each holding a connection of the pool.
    heartbeat = setInterval(() => {
      if (beating !== undefined) return;
      beating = beat()
        .catch((err) => log.error('daemon heartbeat failed', { reason: errorMessage(err) }))
        .finally(() => {
          beating = undefined;
        });
    }, heartbeatInterval(leaseMs));
    heartbeat.unref();

    const interrupted = await catalog.failOrphanedJobs(leaseMs, INTERRUPTED);
    if (interrupted > 0) log.warn('jobs of a stopped daemon marked failed', { count: interrupted });
    const alone = (await catalog.liveMembers(leaseMs)).every((m) => m.instanceId === instanceId);
    await startupRecover(engine(), log, { onlyDeadOperations: !alone });

    const feed = new EventFeed();
    const jobs: JobRunner = new JobRunner({
      store: catalog,
      instanceId,
      log,
      context: engine,
      onStarted: (job) =>
        feed.add({ type: 'job.started', message: `${job.kind} ${job.subject} started`, jobId: job.id }),
      onFinished: (job) => finished(job, { metrics, feed, webhooks }),
      ...(shared ? { progressSaveMs: PROGRESS_SAVE_MS } : {}),
    });
    const scheduler = new Scheduler({
      config,
      catalog,
      log,
      leader: () => leadership.current(),
      standby: () => leadership.claimIfFree(),
      taskRunning: (task) => (shared ? jobs.taskRunningAnywhere(task) : jobs.taskRunning(task)),
      runTask: async (task) => (await startBackupJob(deps, { task })).id,
      tickMs: server.scheduleTickSeconds * 1000,
    });
    const sessions = new Sessions({
      catalog,
      log,
      tls: server.tls !== undefined,
      sessionHours: server.sessionHours,
      loginRateLimit: server.loginRateLimit,
    });
    const daemons = () => daemonsView(catalog, { instanceId, shared, leaseMs });
    const deps: ApiDeps = {
      config,
      catalog,
      jobs,
      scheduler,
      metrics,
      feed,
      sessions,
      engine: () => engine(),
      gauges: async () => [...(await gauges(config, catalog)), ...leaderGauges(await daemons())],
      openapi: () => document,
      daemons,
      followPollMs: PROGRESS_SAVE_MS,
    };
    const routes = apiRoutes(deps);
    const document = openApiDocument(routes, {
      healthOpen: !server.healthAuth,
      metricsOpen: !server.metricsAuth,
    });
    const app = await buildHttp({
      routes,
      sessions,
      log,
      metrics,
      healthAuth: server.healthAuth,
      metricsAuth: server.metricsAuth,
      ...(server.tls ? { tls: server.tls } : {}),
      webRoot: server.webRoot ?? DEFAULT_WEB_ROOT,
    });
    try {
      await app.listen({ host: listen.host, port: listen.port });
    } catch (err) {
      throw new UsageError('LISTEN_FAILED', `cannot listen on ${listenText}: ${errorMessage(err)}`, {
        cause: err,
      });
    }
    const bound = app.server.address() as AddressInfo;
    const hostText = bound.family === 'IPv6' ? `[${bound.address}]` : bound.address;
    const where = `${hostText}:${bound.port}`;
    listening = where;
    await catalog.heartbeatMember(memberOf(where));
    const url = `${server.tls ? 'https' : 'http'}://${where}`;
    log.info('listening', {
      url,
      instance: instanceId,
      pid: process.pid,
      shared,
      leader: leadership.current() !== undefined,
      leaseSeconds: server.leaseSeconds,
      ...(worker ? { worker: { concurrency: worker.running.concurrency, queue: worker.running.queue } } : {}),
    });
    scheduler.start();

    let stopping: Promise<void> | undefined;
    return {
      url,
      instanceId,
      stop: () => {
        stopping ??= (async () => {
          log.info('stopping: no new requests, running jobs release what they hold');
          await scheduler.stop();
          // At once, not when the lease runs out: another daemon takes the schedules on its next tick.
          await leadership
            .release()
            .catch((err) => log.error('leadership not released', { reason: errorMessage(err) }));
          sessions.endStreams();
          await app.close();
          jobs.abortAll();
          // Heartbeats go on while the jobs drain: their daemon must not look dead to the others meanwhile.
          // The local worker gives its running disk jobs back to the queue (another worker takes them).
          await Promise.all([jobs.idle(), stopLocalWorker(worker, log)]);
          await webhooks.stop();
          clearInterval(heartbeat);
          await beating;
          await repairing;
          await catalog.removeMember(instanceId).catch(() => undefined);
          await catalog.close();
          log.info('stopped');
        })();
        return stopping;
      },
    };
  } catch (err) {
    clearInterval(heartbeat);
    await beating;
    await stopLocalWorker(worker, log);
    await repairing;
    await catalog.removeMember(instanceId).catch(() => undefined);
    await catalog.close();
    throw err;
  }
}

/**
 * How often a running job's progress is written to its catalog row on a shared catalog, and how often a
 * daemon following another daemon's job re-reads it: a job's progress shows a second late elsewhere.
 */
const PROGRESS_SAVE_MS = 1_000;

/** The live daemons of the catalog, each with whether it leads, for `GET /api/v1/daemons` and `/metrics`. */
async function daemonsView(
  catalog: CatalogHandle,
  self: { instanceId: string; shared: boolean; leaseMs: number },
): Promise<z.input<typeof daemonsSchema>> {
  const [members, lead] = [await catalog.liveMembers(self.leaseMs), await catalog.currentLeadership()];
  return {
    shared: self.shared,
    leaseSeconds: self.leaseMs / 1000,
    leadership: {
      ...(lead.holder !== undefined ? { holder: lead.holder } : {}),
      term: lead.term,
      ...(lead.expiresAt !== undefined ? { expiresAt: lead.expiresAt } : {}),
    },
    daemons: members.map((m) => ({
      ...m,
      leader: m.instanceId === lead.holder,
      self: m.instanceId === self.instanceId,
    })),
  };
}

/** `snapkeeper_daemons` and, per live daemon, whether it leads the schedules. */
function leaderGauges(view: z.input<typeof daemonsSchema>): GaugeFamily[] {
  return [
    {
      name: 'snapkeeper_daemons',
      help: 'Live daemons serving this catalog (heartbeat younger than the lease).',
      samples: [{ labels: {}, value: view.daemons.length }],
    },
    {
      name: 'snapkeeper_schedule_leader',
      help: 'Whether each live daemon runs the schedules (1) or stands by (0), by instance.',
      samples: view.daemons.map((d) => ({
        labels: { instance: d.instanceId, host: d.host, listen: d.listen },
        value: d.leader ? 1 : 0,
      })),
    },
    {
      name: 'snapkeeper_schedule_leader_term',
      help: 'The term of the schedules leadership: grows by one each time it changes hands.',
      samples: [{ labels: {}, value: view.leadership.term }],
    },
  ];
}

/**
 * What `recover` repairs at start, in the log; a failure (vCenter down) is logged and the daemon goes on.
 * While other daemons serve the catalog (and run operations), only operations whose process is gone are
 * repaired, as a new backup run does first; the sweeps (orphan snapshots, mounts, lost backups) run when
 * this daemon is the only one, or with `snapkeeper recover`.
 */
async function startupRecover(
  ctx: EngineContext,
  log: Logger,
  options: { onlyDeadOperations: boolean },
): Promise<void> {
  try {
    const report = await recover(ctx, { dryRun: false, onlyDeadOperations: options.onlyDeadOperations });
    log.info('recover at start', {
      operations: report.operations.length,
      removedVmSnapshots: report.removedVmSnapshots.length,
      poweredOnVms: report.poweredOnVms.length,
      deletedArraySnapshots: report.deletedArraySnapshots.length,
      failedBackups: report.failedBackups.length,
      lostBackups: report.lostBackups.length,
      errors: report.errors,
    });
  } catch (err) {
    log.error('recover at start failed; run snapkeeper recover', { reason: errorMessage(err) });
  } finally {
    await ctx.close();
  }
}

/**
 * Starts the daemon's offload worker (`serve --worker`): `startWorker`, the call `snapkeeper worker` makes,
 * with its own engine context (arrays and repositories; no vCenter, no catalog). Each disk job is a log line
 * and counted in `snapkeeper_worker_jobs_total`.
 */
async function startLocalWorker(
  config: Config,
  wanted: { concurrency?: number },
  log: Logger,
  metrics: Metrics,
): Promise<{ running: RunningWorker; ctx: EngineContext }> {
  const ctx = new EngineContext({ config, ...configuredParts(config), events: silentEvents });
  try {
    const running = await startWorker(ctx, {
      ...(wanted.concurrency !== undefined ? { concurrency: wanted.concurrency } : {}),
      onJob: (e: WorkerJobEvent) => {
        metrics.workerJobs.inc({ type: e.type });
        const { type, ...fields } = e;
        log[type === 'failed' || type === 'lost' ? 'warn' : 'info'](`worker job ${type}`, fields);
      },
    });
    log.info('worker started', { concurrency: running.concurrency, queue: running.queue });
    return { running, ctx };
  } catch (err) {
    await ctx.close();
    throw err;
  }
}

async function stopLocalWorker(
  worker: { running: RunningWorker; ctx: EngineContext } | undefined,
  log: Logger,
): Promise<void> {
  if (!worker) return;
  try {
    const summary = await worker.running.stop();
    log.info('worker stopped', { ...summary });
  } catch (err) {
    log.error('worker did not stop cleanly', { reason: errorMessage(err) });
  } finally {
    await worker.ctx.close().catch(() => undefined);
  }
}

/** Repairs the operations of a daemon that died (as a new backup run does first), in the log. */
async function deadRecover(ctx: EngineContext, log: Logger): Promise<void> {
  try {
    const report = await recover(ctx, { dryRun: false, onlyDeadOperations: true });
    log.info('recover after a daemon died', {
      operations: report.operations.length,
      removedVmSnapshots: report.removedVmSnapshots.length,
      poweredOnVms: report.poweredOnVms.length,
      failedBackups: report.failedBackups.length,
      errors: report.errors,
    });
  } catch (err) {
    log.error('recover after a daemon died failed; run snapkeeper recover', { reason: errorMessage(err) });
  } finally {
    await ctx.close();
  }
}

/** What an offload job, or the offload after a backup job, wrote: its repository and new bytes. */
function offloadedBy(job: Job): { repository: string; bytesAdded: number } | undefined {
  const r = job.result as
    | {
        repository?: unknown;
        bytesAdded?: unknown;
        offload?: { result?: { repository?: unknown; bytesAdded?: unknown } };
      }
    | undefined;
  if (!r || typeof r !== 'object') return undefined;
  const o = job.kind === 'offload' ? r : r.offload?.result;
  if (!o || typeof o.repository !== 'string' || typeof o.bytesAdded !== 'number') return undefined;
  return { repository: o.repository, bytesAdded: o.bytesAdded };
}

function finished(job: Job, on: { metrics: Metrics; feed: EventFeed; webhooks: Webhooks }): void {
  on.metrics.jobsFinished.inc({ kind: job.kind, state: job.state });
  const offloaded = offloadedBy(job);
  if (offloaded) on.metrics.bytesOffloaded.inc({ repository: offloaded.repository }, offloaded.bytesAdded);
  const record =
    job.kind === 'backup' && job.result && typeof job.result === 'object' && 'vms' in job.result
      ? (job.result as BackupRecord)
      : undefined;
  const jobPart = {
    job: {
      id: job.id,
      kind: job.kind,
      subject: job.subject,
      state: job.state,
      ...(job.error ? { error: job.error } : {}),
    },
  };
  on.feed.add({
    type: 'job.finished',
    message: `${job.kind} ${job.subject} ${job.state}${job.error ? `: ${job.error.code}` : ''}`,
    jobId: job.id,
    ...(job.backupId ? { backupId: job.backupId } : {}),
  });
  if (!record) {
    if (job.state === 'failed') on.webhooks.notify('failure', jobPart);
    return;
  }
  const seconds =
    (Date.parse(record.finishedAt ?? job.finishedAt ?? record.startedAt) - Date.parse(record.startedAt)) /
    1000;
  on.metrics.backupDuration.observe({ task: record.task }, Math.max(0, seconds));
  for (const vm of record.vms) {
    if (vm.quiesce) on.metrics.quiesceWindow.observe({ task: record.task }, vm.quiesce.ms / 1000);
  }
  on.feed.add({
    type: 'backup.finished',
    message: `backup ${record.id} of ${record.task} ${record.state}`,
    jobId: job.id,
    backupId: record.id,
    task: record.task,
  });
  const warnings = [
    ...record.warnings.map((w) => ({ ...w })),
    ...record.vms.flatMap((vm) => vm.warnings.map((w) => ({ vm: vm.name, ...w }))),
  ];
  for (const w of warnings) {
    on.feed.add({
      type: 'backup.warning',
      message: w.message,
      code: w.code,
      backupId: record.id,
      task: record.task,
    });
  }
  const backup = { ...backupBrief(record), warnings };
  if (job.state === 'failed') on.webhooks.notify('failure', { ...jobPart, backup });
  else if (warnings.length > 0) on.webhooks.notify('warning', { ...jobPart, backup });
}

async function gauges(config: Config, catalog: CatalogHandle): Promise<GaugeFamily[]> {
  const counts = await catalog.backupCounts();
  const lastSuccess = new Map<string, number>();
  for (const c of counts) {
    if (c.lastCompleteAt)
      lastSuccess.set(c.task, Math.max(lastSuccess.get(c.task) ?? 0, Date.parse(c.lastCompleteAt) / 1000));
  }
  const held: { labels: Record<string, string>; value: number }[] = [];
  for (const a of config.arrays)
    held.push({ labels: { array: a.name }, value: (await catalog.ownedSnapshotIds(a.name)).size });
  return [
    {
      name: 'snapkeeper_backups',
      help: 'Backups in the catalog, by task and state.',
      samples: counts.map((c) => ({ labels: { task: c.task, state: c.state }, value: c.count })),
    },
    {
      name: 'snapkeeper_last_success_timestamp_seconds',
      help: 'When the newest complete backup of each task finished (Unix time).',
      samples: [...lastSuccess].map(([task, t]) => ({ labels: { task }, value: t })),
    },
    {
      name: 'snapkeeper_array_snapshots_held',
      help: 'Array snapshots held by restorable backups, by array.',
      samples: held,
    },
  ];
}
