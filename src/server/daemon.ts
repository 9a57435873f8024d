import { randomUUID } from 'node:crypto';
import { existsSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { hostname } from 'node:os';
import { fileURLToPath } from 'node:url';
import {
  type CatalogHandle,
  HEARTBEAT_INTERVAL_MS,
  LEASE_MS,
  type Leadership,
  openCatalog,
  pidAlive,
} from '../catalog/index.js';
import type { Config } from '../config/load.js';
import { parseListen } from '../config/server.js';
import { configuredParts, EngineContext, type EngineEvents, recover, silentEvents } from '../engine/index.js';
import { ConflictError, errorMessage, UsageError } from '../errors.js';
import type { BackupRecord } from '../model/backup.js';
import { EventFeed } from './feed.js';
import { buildHttp } from './http.js';
import { type Job, JobRunner } from './jobs.js';
import { jsonLogger, type Logger } from './log.js';
import { type GaugeFamily, Metrics } from './metrics.js';
import { openApiDocument } from './openapi.js';
import { type ApiDeps, apiRoutes, backupBrief, startBackupJob } from './routes.js';
import { Scheduler } from './scheduler.js';
import { Sessions } from './sessions.js';
import { loadWebhooks, Webhooks } from './webhooks.js';

export interface DaemonOptions {
  config: Config;
  /** `HOST:PORT`, overriding server.listen. */
  listen?: string;
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
 * Removes the rows of daemons of this host whose process is gone (SIGKILLed, crashed): their jobs are
 * orphaned and their leadership is free at once, not only when their heartbeat runs out.
 */
async function reapDeadLocalMembers(catalog: CatalogHandle, log: Logger): Promise<void> {
  for (const m of await catalog.liveMembers(LEASE_MS)) {
    if (m.host === hostname() && m.pid !== process.pid && !pidAlive(m.pid)) {
      await catalog.removeMember(m.instanceId);
      log.warn('daemon of this host gone without stopping: its row removed', {
        instance: m.instanceId,
        pid: m.pid,
      });
    }
  }
}

/** On a SQLite catalog (one machine) one daemon at a time: a second one is refused, naming the first. */
async function refuseSecondDaemon(catalog: CatalogHandle, instanceId: string): Promise<void> {
  const other = (await catalog.liveMembers(LEASE_MS)).find((m) => m.instanceId !== instanceId);
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
 * changed), takes the catalog's daemon lease (a second daemon is refused, naming the first), marks the jobs
 * of a daemon that died as failed, runs `recover` as the CLI does, then serves the API and runs the
 * schedules.
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
  const instanceId = randomUUID();
  const memberOf = (where: string) => ({ instanceId, host: hostname(), pid: process.pid, listen: where });
  let listening = listenText;
  let leadership: Leadership = { term: 0, mine: false };
  let heartbeat: NodeJS.Timeout | undefined;
  try {
    await reapDeadLocalMembers(catalog, log);
    await refuseSecondDaemon(catalog, instanceId);
    await catalog.heartbeatMember(memberOf(listenText));
  } catch (err) {
    await catalog.close();
    throw err;
  }
  const beat = async () => {
    await catalog.heartbeatMember(memberOf(listening));
    const was = leadership.mine;
    leadership = await catalog.claimLeadership(instanceId, LEASE_MS);
    if (leadership.mine !== was) {
      log.info(leadership.mine ? 'schedules: leader' : 'schedules: not leader', { term: leadership.term });
    }
  };
  try {
    await beat();
    heartbeat = setInterval(() => {
      beat().catch((err) => log.error('daemon heartbeat failed', { reason: errorMessage(err) }));
    }, HEARTBEAT_INTERVAL_MS);
    heartbeat.unref();

    const interrupted = await catalog.failOrphanedJobs(LEASE_MS, {
      code: 'INTERRUPTED',
      message: 'the daemon stopped before this job finished; what it left was repaired by recover',
    });
    if (interrupted > 0) log.warn('jobs of a stopped daemon marked failed', { count: interrupted });

    const engine = (events: EngineEvents = silentEvents) =>
      new EngineContext({
        config,
        ...configuredParts(config),
        // On PostgreSQL every job shares the daemon's pool (an opened catalog, left open by the job's close).
        ...(catalog.dialect === 'postgres' ? { catalog, ownsCatalog: false } : {}),
        events,
      });
    await startupRecover(engine(), log);

    const feed = new EventFeed();
    const jobs: JobRunner = new JobRunner({
      store: catalog,
      instanceId,
      log,
      context: engine,
      onStarted: (job) =>
        feed.add({ type: 'job.started', message: `${job.kind} ${job.subject} started`, jobId: job.id }),
      onFinished: (job) => finished(job, { metrics, feed, webhooks }),
    });
    const scheduler = new Scheduler({
      config,
      catalog,
      log,
      leader: () => (leadership.mine ? { instanceId, term: leadership.term } : undefined),
      taskRunning: (task) => jobs.taskRunning(task),
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
    const deps: ApiDeps = {
      config,
      catalog,
      jobs,
      scheduler,
      metrics,
      feed,
      sessions,
      engine: () => engine(),
      gauges: () => gauges(config, catalog),
      openapi: () => document,
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
    log.info('listening', { url, instance: instanceId, pid: process.pid });
    scheduler.start();

    let stopping: Promise<void> | undefined;
    return {
      url,
      instanceId,
      stop: () => {
        stopping ??= (async () => {
          log.info('stopping: no new requests, running jobs release what they hold');
          await scheduler.stop();
          sessions.endStreams();
          await app.close();
          jobs.abortAll();
          await jobs.idle();
          await webhooks.stop();
          clearInterval(heartbeat);
          await catalog.removeMember(instanceId).catch(() => undefined);
          await catalog.close();
          log.info('stopped');
        })();
        return stopping;
      },
    };
  } catch (err) {
    clearInterval(heartbeat);
    await catalog.removeMember(instanceId).catch(() => undefined);
    await catalog.close();
    throw err;
  }
}

/** What `recover` repairs at start, in the log; a failure (vCenter down) is logged and the daemon goes on. */
async function startupRecover(ctx: EngineContext, log: Logger): Promise<void> {
  try {
    const report = await recover(ctx, { dryRun: false });
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
