import { randomBytes } from 'node:crypto';
import type { DaemonStore, JobRow, JobState } from '../catalog/index.js';
import type { EngineContext, EngineEvents } from '../engine/index.js';
import { errorMessage, SnapkeeperError } from '../errors.js';
import type { Logger } from './log.js';

export type JobKind = 'backup' | 'restore' | 'mount' | 'unmount' | 'attach' | 'detach' | 'offload';

/** A job as the API shows it (`GET /api/v1/jobs/{id}`). */
export interface Job {
  id: string;
  kind: string;
  subject: string;
  state: JobState;
  startedAt: string;
  finishedAt?: string;
  progress?: JobProgress;
  result?: unknown;
  error?: { code: string; message: string };
  backupId?: string;
  /** The daemon that runs (or ran) it: its instance id, as `GET /api/v1/daemons` lists it. */
  instanceId?: string;
}

/** The subject of a task's backup job: how a task's run is found among the jobs of every daemon. */
export function taskSubject(task: string): string {
  return `task ${task}`;
}

/**
 * Items done of all reported, and for a byte-counted step (offload) its bytes with the rate (bytes per second
 * since its phase began) and the estimated seconds left.
 */
export type JobProgress = {
  phase: string;
  done: number;
  total: number;
  bytesDone?: number;
  bytesTotal?: number;
  rate?: number;
  eta?: number;
};

/** One event of a job's stream (SSE `event:` and `data:`). */
export interface JobEvent {
  type: 'progress' | 'log' | 'done' | 'failed';
  data: unknown;
}

/** What a job's work returns: a result, and an error when the job failed although the call returned. */
export interface JobOutcome {
  result: unknown;
  backupId?: string;
  error?: { code: string; message: string };
}

export interface JobRunnerOptions {
  store: DaemonStore;
  instanceId: string;
  log: Logger;
  /** A fresh engine context whose events go to the job (closed by the runner after the job). */
  context: (events: EngineEvents) => EngineContext;
  /** Called once per finished job (metrics, webhooks, the event feed). */
  onFinished?: (job: Job) => void;
  onStarted?: (job: Job) => void;
  /**
   * Write a running job's progress to its catalog row at most this often (the last one always lands), so
   * that the other daemons of a shared catalog can show it. Default: only at start and end (one daemon).
   */
  progressSaveMs?: number;
}

interface LiveJob {
  job: Job;
  task?: string;
  events: JobEvent[];
  listeners: Set<(event: JobEvent) => void>;
  abort: AbortController;
  done: Promise<void>;
  items: Map<string, string>;
  /** When the current phase began (a byte-counted step's rate is measured from there). */
  phaseSince: number;
  /** Catalog writes of the row, one after the other (a late progress write never follows the final one). */
  writes: Promise<void>;
  lastWrite: number;
  pendingWrite?: NodeJS.Timeout;
  /** A progress write is under way; `dirty`: progress changed meanwhile. */
  writing?: boolean;
  dirty?: boolean;
}

/** Events kept per job for a stream opened late (the rest is in the job's result). */
const MAX_EVENTS = 500;
/** Finished jobs kept in memory (older ones are read from the catalog). */
const MAX_FINISHED = 200;

/** Item statuses the engine reports when an item is finished (for progress.done). */
const FINISHED_STATUS = /^(done|released|complete|ok|restored|skipped|failed|mounted|attached|deleted)/i;

function newJobId(now: Date): string {
  return `job-${now
    .toISOString()
    .replace(/[-:]/g, '')
    .replace(/\.\d+Z$/, 'Z')}-${randomBytes(3).toString('hex')}`;
}

function toApi(row: JobRow): Job {
  const { progress, ...rest } = row;
  return { ...rest, ...(progress ? { progress: progress as Job['progress'] & object } : {}) };
}

function ended(state: JobState): boolean {
  return state === 'done' || state === 'failed';
}

/**
 * Runs engine entry points in this process as jobs: each gets its own EngineContext whose events become the
 * job's progress and its event stream, an AbortSignal (SIGTERM aborts: the engine still releases what it
 * holds), and a row in the catalog written when it starts and when it ends, so a daemon that died shows its
 * jobs as failed (`failOrphanedJobs`, by the next daemon that notices).
 */
export class JobRunner {
  readonly #opts: JobRunnerOptions;
  readonly #live = new Map<string, LiveJob>();

  constructor(options: JobRunnerOptions) {
    this.#opts = options;
  }

  /** Starts the work and returns the job, already `running` (and recorded). */
  async start(
    kind: JobKind,
    subject: string,
    work: (ctx: EngineContext, signal: AbortSignal) => Promise<JobOutcome>,
    options: { task?: string } = {},
  ): Promise<Job> {
    const now = new Date();
    const job: Job = {
      id: newJobId(now),
      kind,
      subject,
      state: 'running',
      startedAt: now.toISOString(),
      instanceId: this.#opts.instanceId,
    };
    await this.#save(job);
    const live: LiveJob = {
      job,
      ...(options.task !== undefined ? { task: options.task } : {}),
      events: [],
      listeners: new Set(),
      abort: new AbortController(),
      done: Promise.resolve(),
      items: new Map(),
      phaseSince: Date.now(),
      writes: Promise.resolve(),
      lastWrite: Date.now(),
    };
    this.#live.set(job.id, live);
    this.#opts.log.info('job started', { job: job.id, kind, subject });
    this.#opts.onStarted?.(job);
    live.done = this.#run(live, work);
    return { ...job };
  }

  async #run(live: LiveJob, work: (ctx: EngineContext, signal: AbortSignal) => Promise<JobOutcome>) {
    const { job } = live;
    const progress = (phase?: string) => {
      const total = live.items.size;
      const done = [...live.items.values()].filter((s) => FINISHED_STATUS.test(s)).length;
      const { phase: _p, done: _d, total: _t, ...bytes } = job.progress ?? {};
      job.progress = { ...bytes, phase: phase ?? job.progress?.phase ?? 'starting', done, total };
    };
    const events: EngineEvents = {
      phase: (name) => {
        this.#opts.log.info('job phase', { job: job.id, phase: name });
        live.phaseSince = Date.now();
        progress(name);
        this.#emit(live, { type: 'progress', data: { ...job.progress } });
        this.#saveProgress(live);
      },
      item: (key, status) => {
        live.items.set(key, status);
        progress();
        this.#emit(live, { type: 'progress', data: { ...job.progress, item: key, status } });
        this.#saveProgress(live);
      },
      bytes: (_key, done, total) => {
        const seconds = (Date.now() - live.phaseSince) / 1000;
        const rate = seconds > 0 ? Math.round(done / seconds) : undefined;
        const eta = rate ? Math.max(0, Math.ceil((total - done) / rate)) : undefined;
        job.progress = {
          ...(job.progress ?? { phase: 'starting', done: 0, total: 0 }),
          bytesDone: done,
          bytesTotal: total,
          ...(rate !== undefined ? { rate } : {}),
          ...(eta !== undefined ? { eta } : {}),
        };
        this.#saveProgress(live);
      },
      log: (message) => {
        this.#opts.log.info('job log', { job: job.id, message });
        this.#emit(live, { type: 'log', data: { message } });
      },
    };
    let ctx: EngineContext | undefined;
    try {
      ctx = this.#opts.context(events);
      const outcome = await work(ctx, live.abort.signal);
      job.result = outcome.result;
      if (outcome.backupId !== undefined) job.backupId = outcome.backupId;
      if (outcome.error) {
        job.state = 'failed';
        job.error = outcome.error;
      } else job.state = 'done';
    } catch (err) {
      job.state = 'failed';
      job.error = {
        code: err instanceof SnapkeeperError ? err.code : 'INTERNAL',
        message: err instanceof SnapkeeperError ? err.message : `internal error: ${errorMessage(err)}`,
      };
    } finally {
      await ctx?.close().catch(() => undefined);
    }
    job.finishedAt = new Date().toISOString();
    clearTimeout(live.pendingWrite);
    live.writes = live.writes.then(() => this.#save(job));
    try {
      await live.writes;
    } catch (err) {
      this.#opts.log.error('job not recorded', { job: job.id, reason: errorMessage(err) });
    }
    this.#opts.log[job.state === 'done' ? 'info' : 'warn']('job finished', {
      job: job.id,
      kind: job.kind,
      subject: job.subject,
      state: job.state,
      ...(job.error ? { error: job.error.code } : {}),
    });
    this.#emit(live, {
      type: job.state === 'done' ? 'done' : 'failed',
      data: { state: job.state, ...(job.error ? { error: job.error } : {}), result: job.result },
    });
    live.listeners.clear();
    this.#opts.onFinished?.({ ...job });
    this.#trim();
  }

  #emit(live: LiveJob, event: JobEvent): void {
    live.events.push(event);
    if (live.events.length > MAX_EVENTS) live.events.splice(0, live.events.length - MAX_EVENTS);
    for (const l of live.listeners) l(event);
  }

  #trim(): void {
    const finished = [...this.#live.values()].filter(
      (l) => l.job.state === 'done' || l.job.state === 'failed',
    );
    for (const l of finished.slice(0, Math.max(0, finished.length - MAX_FINISHED)))
      this.#live.delete(l.job.id);
  }

  async #save(job: Job): Promise<void> {
    await this.#opts.store.saveJob({ ...job, instanceId: this.#opts.instanceId });
  }

  /**
   * Writes the running job's row with its progress, at most every `progressSaveMs`: at once when the last
   * write is old enough, else once when it is (the latest progress then). A failed write is logged; the
   * next one carries the progress anyway.
   */
  #saveProgress(live: LiveJob): void {
    const every = this.#opts.progressSaveMs;
    if (every === undefined || ended(live.job.state) || live.pendingWrite !== undefined) return;
    if (live.writing) {
      // A slow catalog: one write at a time, the latest progress written when the current one is done.
      live.dirty = true;
      return;
    }
    const write = () => {
      live.pendingWrite = undefined;
      if (ended(live.job.state)) return;
      live.writing = true;
      const snapshot = { ...live.job };
      live.writes = live.writes
        .then(() => this.#save(snapshot))
        .catch((err) =>
          this.#opts.log.warn('job progress not recorded', { job: live.job.id, reason: errorMessage(err) }),
        )
        .finally(() => {
          live.writing = false;
          live.lastWrite = Date.now();
          if (live.dirty) {
            live.dirty = false;
            this.#saveProgress(live);
          }
        });
    };
    const wait = live.lastWrite + every - Date.now();
    if (wait <= 0) write();
    else {
      live.pendingWrite = setTimeout(write, wait);
      live.pendingWrite.unref();
    }
  }

  /** The job (live from memory, else as recorded in the catalog). */
  async get(id: string): Promise<Job | undefined> {
    const live = this.#live.get(id);
    if (live) return { ...live.job };
    const row = await this.#opts.store.findJob(id);
    return row ? toApi(row) : undefined;
  }

  /** Newest first: this daemon's live jobs and the recorded ones. */
  async list(filter: { state?: JobState[]; limit?: number } = {}): Promise<Job[]> {
    const rows = await this.#opts.store.listJobs(filter);
    return rows.map((r) => {
      const live = this.#live.get(r.id);
      return live ? { ...live.job } : toApi(r);
    });
  }

  running(): Job[] {
    return [...this.#live.values()].filter((l) => l.job.state === 'running').map((l) => ({ ...l.job }));
  }

  /** Whether a backup job of this task is running here (the scheduler does not start it twice). */
  taskRunning(task: string): boolean {
    return [...this.#live.values()].some((l) => l.task === task && l.job.state === 'running');
  }

  /**
   * Whether a backup job of this task is running here or, by its catalog row, on another daemon of the
   * catalog (a leader that took over while its predecessor's run goes on does not start the task again).
   */
  async taskRunningAnywhere(task: string): Promise<boolean> {
    if (this.taskRunning(task)) return true;
    const rows = await this.#opts.store.listJobs({ state: ['queued', 'running'], limit: 1000 });
    return rows.some((r) => r.kind === 'backup' && r.subject === taskSubject(task));
  }

  /** Whether the job runs in this process (its events can be followed live, it can be cancelled here). */
  isLocal(id: string): boolean {
    return this.#live.has(id);
  }

  /**
   * Follows a job another daemon runs, by reading its catalog row every `pollMs`: a `progress` event each
   * time its progress changed, then `done` or `failed` when the row says it ended (a job whose daemon died
   * ends `failed` INTERRUPTED once a daemon notices: `failOrphanedJobs`). Returns the function that stops.
   */
  follow(id: string, listener: (event: JobEvent) => void, pollMs: number): () => void {
    let last = '';
    let busy = false;
    let stopped = false;
    const poll = async () => {
      if (busy || stopped) return;
      busy = true;
      try {
        const row = await this.#opts.store.findJob(id);
        if (stopped || row === undefined) return;
        const progress = JSON.stringify(row.progress ?? null);
        if (row.progress !== undefined && progress !== last) {
          last = progress;
          listener({ type: 'progress', data: row.progress });
        }
        if (ended(row.state)) {
          stop();
          listener({
            type: row.state === 'done' ? 'done' : 'failed',
            data: { state: row.state, ...(row.error ? { error: row.error } : {}), result: row.result },
          });
        }
      } catch (err) {
        this.#opts.log.warn('job row not read', { job: id, reason: errorMessage(err) });
      } finally {
        busy = false;
      }
    };
    const timer = setInterval(() => void poll(), pollMs);
    const stop = () => {
      stopped = true;
      clearInterval(timer);
    };
    void poll();
    return stop;
  }

  /**
   * Asks a job of this daemon to stop (its AbortSignal: it stops at its next safe point and releases what it
   * holds, as on SIGTERM). Undefined when the job does not run here.
   */
  cancel(id: string): Job | undefined {
    const live = this.#live.get(id);
    if (!live) return undefined;
    if (live.job.state === 'running') {
      this.#opts.log.info('job cancel asked', { job: id });
      live.abort.abort();
    }
    return { ...live.job };
  }

  /**
   * Past events of a live job and a subscription to the next ones; `finished` true when the job has ended
   * (the past events then end with `done` or `failed`). Undefined for a job not in memory.
   */
  subscribe(
    id: string,
    listener: (event: JobEvent) => void,
  ): { past: JobEvent[]; finished: boolean; unsubscribe: () => void } | undefined {
    const live = this.#live.get(id);
    if (!live) return undefined;
    const finished = live.job.state === 'done' || live.job.state === 'failed';
    if (!finished) live.listeners.add(listener);
    return { past: [...live.events], finished, unsubscribe: () => live.listeners.delete(listener) };
  }

  /** Aborts every running job (SIGTERM): each stops at its next safe point and releases what it holds. */
  abortAll(): void {
    for (const l of this.#live.values()) if (l.job.state === 'running') l.abort.abort();
  }

  /** Resolves when every job started so far has ended. */
  async idle(): Promise<void> {
    await Promise.allSettled([...this.#live.values()].map((l) => l.done));
  }
}
