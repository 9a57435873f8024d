import { createHash } from 'node:crypto';
import pg from 'pg';
import PgBoss from 'pg-boss';
import { SnapkeeperError, UsageError } from '../errors.js';
import type { Secret } from '../util/secret.js';
import { checkQueueName, DEFAULT_LEASE_MS, DEFAULT_RETRY_DELAY_MS, DEFAULT_RETRY_LIMIT } from './memory.js';
import type { JobError, JobInfo, JobQueue, JobRef, JobSpec, JobState, LeasedJob } from './types.js';

export interface PgBossQueueOptions {
  /** `postgres://user@host:port/database` (a password in it is refused: give `password`). */
  url: string;
  password?: Secret;
  /** pg-boss's schema (default `snapkeeper_jobs`). */
  schema?: string;
  /** How often this process expires jobs past their lease (pg-boss maintenance; default 5 s, at least 1). */
  maintenanceSeconds?: number;
  /** Connections of this process (default 10). */
  connections?: number;
}

const STATE: Record<string, JobState> = {
  created: 'queued',
  retry: 'retry',
  active: 'running',
  completed: 'completed',
  cancelled: 'cancelled',
  failed: 'failed',
};

/** The URL taken apart: pg would let an (absent) password in a URL override the `password` option. */
export function connectionOf(url: string, password?: Secret, max = 10): pg.PoolConfig {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw new UsageError('JOB_QUEUE_URL', 'the job queue URL is not a URL (postgres://user@host:port/db)');
  }
  if (u.protocol !== 'postgres:' && u.protocol !== 'postgresql:') {
    throw new UsageError(
      'JOB_QUEUE_URL',
      `the job queue URL must start with postgres:// (not ${u.protocol}//)`,
    );
  }
  if (u.password !== '') {
    throw new UsageError(
      'JOB_QUEUE_URL',
      'the job queue URL holds a password: remove it and use passwordFile or passwordEnv',
    );
  }
  const database = decodeURIComponent(u.pathname.replace(/^\//, ''));
  return {
    host: decodeURIComponent(u.hostname),
    port: u.port ? Number(u.port) : 5432,
    ...(u.username ? { user: decodeURIComponent(u.username) } : {}),
    ...(database ? { database } : {}),
    ...(password ? { password: password.reveal() } : {}),
    max,
    application_name: 'snapkeeper',
  };
}

/** The job id a de-duplication key stands for (a UUID made from queue and key). */
function keyId(queue: string, key: string): string {
  const h = createHash('sha256').update(`${queue}\n${key}`).digest('hex');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-8${h.slice(13, 16)}-a${h.slice(17, 20)}-${h.slice(20, 32)}`;
}

function jsonError(output: unknown): JobError | undefined {
  const o = output as { error?: JobError; value?: { message?: string } } | null | undefined;
  if (o?.error && typeof o.error.code === 'string') return o.error;
  if (o?.value?.message) return { code: 'JOB_LEASE_EXPIRED', message: o.value.message };
  return undefined;
}

/** A message about a failed connection that names the server, never a password. */
function connectionError(err: unknown, url: string): SnapkeeperError {
  const u = new URL(url);
  const code = (err as { code?: string }).code;
  const what =
    code === '28P01'
      ? 'the password was refused'
      : code === 'ECONNREFUSED'
        ? 'nothing listens there'
        : err instanceof Error
          ? err.message
          : String(err);
  return new SnapkeeperError(
    'JOB_QUEUE_UNREACHABLE',
    `cannot reach the job queue at postgres://${u.username ? `${u.username}@` : ''}${u.host}${u.pathname}: ${what}`,
  );
}

/**
 * The job queue on PostgreSQL, through pg-boss 10 (its own schema, `snapkeeper_jobs` by default, in the
 * catalog's database or the one `url` names). pg-boss gives enqueue (`send`), take (`fetch`, `FOR UPDATE SKIP
 * LOCKED`), complete, fail with retry and backoff, cancel, and the maintenance that fails jobs past their
 * lease (so they are retried by another worker). What pg-boss 10 lacks is done here with plain SQL on its
 * tables (the version is pinned): lease renewal (`expire_in` pushed forward), progress (the running job's
 * `output`), giving a job back, status of a set of jobs, and slots (advisory locks held on a connection of
 * their own: a dead worker's connection closes and frees them).
 */
export class PgBossJobQueue implements JobQueue {
  readonly kind = 'postgres';
  private readonly pool: pg.Pool;
  private readonly boss: PgBoss;
  private readonly schema: string;
  private readonly queues = new Set<string>();
  private started: Promise<void> | undefined;
  private readonly leases = new Map<string, number>();
  /** Connections holding slots: closed with the queue (the server frees their locks). */
  private readonly slotClients = new Set<pg.PoolClient>();

  constructor(private readonly options: PgBossQueueOptions) {
    this.schema = options.schema ?? 'snapkeeper_jobs';
    if (!/^[a-z_][a-z0-9_]{0,49}$/.test(this.schema)) {
      throw new UsageError(
        'JOB_QUEUE_SCHEMA',
        `job queue schema ${JSON.stringify(this.schema)} is not a plain name`,
      );
    }
    this.pool = new pg.Pool(connectionOf(options.url, options.password, options.connections ?? 10));
    this.pool.on('error', () => {
      // An idle connection dropped by the server: the pool makes a new one on next use.
    });
    this.boss = new PgBoss({
      db: { executeSql: (text: string, values: unknown[]) => this.pool.query(text, values) },
      schema: this.schema,
      supervise: true,
      schedule: false,
      migrate: true,
      maintenanceIntervalSeconds: Math.max(1, options.maintenanceSeconds ?? 5),
    });
    this.boss.on('error', () => {
      // Maintenance errors (a dropped connection) are retried at the next interval.
    });
  }

  /** Connects and creates or migrates pg-boss's schema (several processes at once is fine: pg-boss locks). */
  start(): Promise<void> {
    this.started ??= (async () => {
      try {
        await this.pool.query('select 1');
      } catch (err) {
        throw connectionError(err, this.options.url);
      }
      await this.boss.start();
    })();
    return this.started;
  }

  private async ensureQueue(name: string): Promise<void> {
    checkQueueName(name);
    await this.start();
    if (this.queues.has(name)) return;
    if (!(await this.boss.getQueue(name))) {
      try {
        await this.boss.createQueue(name);
      } catch (err) {
        // Another process made it meanwhile (unique violation, or its partition table).
        if (!(await this.boss.getQueue(name))) throw err;
      }
    }
    this.queues.add(name);
  }

  async enqueue(spec: JobSpec): Promise<string> {
    await this.ensureQueue(spec.queue);
    const leaseMs = Math.max(1000, spec.leaseMs ?? DEFAULT_LEASE_MS);
    const id = spec.key !== undefined ? keyId(spec.queue, spec.key) : undefined;
    // Wrapped: pg-boss hands `data` to pg as is, and pg sends a bare string or number as text, not JSON.
    const sent = await this.boss.send(
      spec.queue,
      { payload: spec.payload ?? null },
      {
        ...(id !== undefined ? { id } : {}),
        retryLimit: spec.retryLimit ?? DEFAULT_RETRY_LIMIT,
        retryDelay: Math.ceil((spec.retryDelayMs ?? DEFAULT_RETRY_DELAY_MS) / 1000),
        retryBackoff: spec.retryBackoff ?? false,
        expireInSeconds: Math.ceil(leaseMs / 1000),
      },
    );
    const got = sent ?? id;
    if (got === undefined || got === null) throw new Error(`job queue ${spec.queue} refused a job`);
    return got;
  }

  async take(queue: string, max = 1): Promise<LeasedJob[]> {
    await this.ensureQueue(queue);
    const rows = (await this.boss.fetch(queue, { batchSize: max, includeMetadata: true })) as unknown as {
      id: string;
      data: unknown;
      expireInSeconds: string | number;
      retryCount: number;
      startAfter: Date;
      startedOn: Date;
    }[];
    return (rows ?? []).map((r) => {
      const leaseMs = Math.round(Number(r.expireInSeconds) * 1000);
      this.leases.set(r.id, leaseMs);
      return {
        id: r.id,
        queue,
        payload: (r.data as { payload?: unknown } | null)?.payload,
        attempt: r.retryCount + 1,
        leaseMs,
        readyAt: new Date(r.startAfter),
        startedAt: new Date(r.startedOn),
      };
    });
  }

  /** `where` of a running job, for the attempt `job` names when it names one ($1 queue, $2 id, $3 attempt). */
  private running(job: JobRef): { where: string; values: unknown[] } {
    return {
      where: `name = $1 and id = $2 and state = 'active' and ($3::int is null or retry_count = $3::int - 1)`,
      values: [job.queue, job.id, job.attempt ?? null],
    };
  }

  async renew(job: JobRef): Promise<boolean> {
    const leaseMs = this.leases.get(job.id) ?? DEFAULT_LEASE_MS;
    const { where, values } = this.running(job);
    const r = await this.pool.query(
      `update ${this.schema}.job set expire_in = (now() - started_on) + make_interval(secs => $4) where ${where}`,
      [...values, leaseMs / 1000],
    );
    return (r.rowCount ?? 0) === 1;
  }

  async progress(job: JobRef, data: unknown): Promise<void> {
    const { where, values } = this.running(job);
    await this.pool.query(`update ${this.schema}.job set output = $4::jsonb where ${where}`, [
      ...values,
      JSON.stringify({ progress: data }),
    ]);
  }

  async complete(job: JobRef, output: unknown): Promise<boolean> {
    this.leases.delete(job.id);
    // pg-boss's complete with the attempt checked: a worker that lost its lease cannot complete the job.
    const { where, values } = this.running(job);
    const r = await this.pool.query(
      `update ${this.schema}.job set completed_on = now(), state = 'completed', output = $4::jsonb where ${where}`,
      [...values, JSON.stringify({ output })],
    );
    return (r.rowCount ?? 0) === 1;
  }

  async fail(job: JobRef, error: JobError): Promise<void> {
    this.leases.delete(job.id);
    if (job.attempt !== undefined) {
      const { where, values } = this.running(job);
      const r = await this.pool.query(`select 1 from ${this.schema}.job where ${where}`, values);
      if ((r.rowCount ?? 0) === 0) return;
    }
    await this.boss.fail(job.queue, job.id, { error: { code: error.code, message: error.message } });
  }

  async release(job: JobRef): Promise<void> {
    this.leases.delete(job.id);
    const { where, values } = this.running(job);
    // started_on null: the next take does not count an attempt (pg-boss counts one when it is set).
    await this.pool.query(
      `update ${this.schema}.job set state = 'created', started_on = null, start_after = now(), output = null
       where ${where}`,
      values,
    );
  }

  async cancel(job: JobRef): Promise<void> {
    await this.ensureQueue(job.queue);
    await this.boss.cancel(job.queue, job.id);
  }

  async status(jobs: JobRef[]): Promise<JobInfo[]> {
    if (jobs.length === 0) return [];
    await this.start();
    const cols =
      'id::text, name, state::text, retry_count, data, output, created_on, started_on, completed_on';
    const r = await this.pool.query(
      `select ${cols} from ${this.schema}.job where id = any($1::uuid[])
       union all select ${cols} from ${this.schema}.archive where id = any($1::uuid[])`,
      [jobs.map((j) => j.id)],
    );
    const wanted = new Set(jobs.map((j) => `${j.queue}\n${j.id}`));
    const seen = new Set<string>();
    const out: JobInfo[] = [];
    for (const row of r.rows as {
      id: string;
      name: string;
      state: string;
      retry_count: number;
      data: unknown;
      output: unknown;
      created_on: Date;
      started_on: Date | null;
      completed_on: Date | null;
    }[]) {
      const k = `${row.name}\n${row.id}`;
      if (!wanted.has(k) || seen.has(k)) continue;
      seen.add(k);
      const state = STATE[row.state] ?? 'failed';
      const started = row.started_on !== null;
      const output = row.output as { output?: unknown; progress?: unknown } | null;
      const error = state === 'retry' || state === 'failed' ? jsonError(row.output) : undefined;
      out.push({
        id: row.id,
        queue: row.name,
        state,
        attempts: row.retry_count + (started ? 1 : 0),
        payload: (row.data as { payload?: unknown } | null)?.payload,
        ...(state === 'completed' && output ? { output: output.output } : {}),
        ...(state === 'running' && output?.progress !== undefined ? { progress: output.progress } : {}),
        ...(error ? { error } : {}),
        createdAt: row.created_on,
        ...(row.started_on ? { startedAt: row.started_on } : {}),
        ...(row.completed_on ? { completedAt: row.completed_on } : {}),
      });
    }
    return out;
  }

  wait(ms: number, signal?: AbortSignal): Promise<void> {
    return new Promise((resolve) => {
      if (signal?.aborted) {
        resolve();
        return;
      }
      const done = () => {
        clearTimeout(timer);
        signal?.removeEventListener('abort', done);
        resolve();
      };
      const timer = setTimeout(done, ms);
      signal?.addEventListener('abort', done, { once: true });
    });
  }

  async trySlot(name: string, cap: number): Promise<{ release(): Promise<void> } | undefined> {
    await this.start();
    const group = createHash('sha256').update(`snapkeeper slot ${name}`).digest().readInt32BE(0);
    const client = await this.pool.connect();
    try {
      for (let slot = 0; slot < cap; slot++) {
        const r = await client.query('select pg_try_advisory_lock($1::int, $2::int) as ok', [group, slot]);
        if (r.rows[0]?.ok === true) {
          let released = false;
          this.slotClients.add(client);
          return {
            release: async () => {
              if (released) return;
              released = true;
              if (!this.slotClients.delete(client)) return;
              try {
                await client.query('select pg_advisory_unlock($1::int, $2::int)', [group, slot]);
                client.release();
              } catch (err) {
                // The connection is broken: dropping it frees the lock on the server.
                client.release(err as Error);
              }
            },
          };
        }
      }
    } catch (err) {
      client.release(err as Error);
      throw err;
    }
    client.release();
    return undefined;
  }

  async close(): Promise<void> {
    if (this.started !== undefined) {
      await this.started.catch(() => undefined);
      await this.boss.stop({ graceful: false, wait: true, close: false }).catch(() => undefined);
    }
    for (const c of this.slotClients) c.release(true);
    this.slotClients.clear();
    await this.pool.end().catch(() => undefined);
  }
}
