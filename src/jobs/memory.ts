import { randomUUID } from 'node:crypto';
import { UsageError } from '../errors.js';
import type { JobError, JobInfo, JobQueue, JobRef, JobSpec, JobState, LeasedJob } from './types.js';

interface Job {
  id: string;
  queue: string;
  key?: string;
  payload: unknown;
  state: JobState;
  attempts: number;
  retryLimit: number;
  retryDelayMs: number;
  retryBackoff: boolean;
  leaseMs: number;
  readyAt: number;
  createdAt: number;
  startedAt?: number;
  leaseUntil?: number;
  completedAt?: number;
  output?: unknown;
  error?: JobError;
  progress?: unknown;
  /** Bumped at every take: a stale holder's calls are refused. */
  seq: number;
}

export const DEFAULT_LEASE_MS = 60_000;
export const DEFAULT_RETRY_LIMIT = 2;
export const DEFAULT_RETRY_DELAY_MS = 1000;

export function checkQueueName(name: string): void {
  if (!/^[A-Za-z0-9_.-]{1,100}$/.test(name)) {
    throw new UsageError(
      'JOB_QUEUE_NAME',
      `job queue name ${JSON.stringify(name)} must be 1-100 letters, digits, "_", "-" or "."`,
    );
  }
}

/** The delay before attempt `attempts + 1` after a failure. */
export function retryDelay(spec: { retryDelayMs: number; retryBackoff: boolean }, attempts: number): number {
  return spec.retryBackoff ? spec.retryDelayMs * 2 ** Math.max(0, attempts - 1) : spec.retryDelayMs;
}

/**
 * The in-process job queue: the single-machine default. Jobs live in this process's memory (they die with
 * it, as the operation that enqueued them does: its journal is what `recover` repairs). Leases are checked
 * on every `take` and `status`: a running job past its lease is failed, and retried like any failure.
 */
export class InProcessJobQueue implements JobQueue {
  readonly kind = 'in-process';
  private readonly jobs = new Map<string, Job>();
  private readonly byKey = new Map<string, string>();
  private readonly slots = new Map<string, number>();
  private waiters = new Set<() => void>();
  private closed = false;

  constructor(private readonly now: () => number = Date.now) {}

  private wake(): void {
    const w = this.waiters;
    this.waiters = new Set();
    for (const f of w) f();
  }

  async enqueue(spec: JobSpec): Promise<string> {
    this.open();
    checkQueueName(spec.queue);
    if (spec.key !== undefined) {
      const known = this.byKey.get(`${spec.queue}\n${spec.key}`);
      if (known !== undefined && this.jobs.has(known)) return known;
    }
    const id = randomUUID();
    const now = this.now();
    this.jobs.set(id, {
      id,
      queue: spec.queue,
      ...(spec.key !== undefined ? { key: spec.key } : {}),
      payload: structuredClone(spec.payload),
      state: 'queued',
      attempts: 0,
      retryLimit: spec.retryLimit ?? DEFAULT_RETRY_LIMIT,
      retryDelayMs: spec.retryDelayMs ?? DEFAULT_RETRY_DELAY_MS,
      retryBackoff: spec.retryBackoff ?? false,
      leaseMs: Math.max(1000, spec.leaseMs ?? DEFAULT_LEASE_MS),
      readyAt: now,
      createdAt: now,
      seq: 0,
    });
    if (spec.key !== undefined) this.byKey.set(`${spec.queue}\n${spec.key}`, id);
    this.wake();
    return id;
  }

  /** Fails running jobs past their lease (their worker is gone), as pg-boss's maintenance does. */
  private expire(): void {
    const now = this.now();
    for (const j of this.jobs.values()) {
      if (j.state === 'running' && (j.leaseUntil ?? 0) < now) {
        this.failJob(j, { code: 'JOB_LEASE_EXPIRED', message: 'the worker did not renew its lease' });
      }
    }
  }

  private failJob(j: Job, error: JobError): void {
    j.error = error;
    delete j.leaseUntil;
    delete j.progress;
    if (j.attempts <= j.retryLimit) {
      j.state = 'retry';
      j.readyAt = this.now() + retryDelay(j, j.attempts);
    } else {
      j.state = 'failed';
      j.completedAt = this.now();
    }
    this.wake();
  }

  async take(queue: string, max = 1): Promise<LeasedJob[]> {
    this.open();
    this.expire();
    const now = this.now();
    const ready = [...this.jobs.values()]
      .filter((j) => j.queue === queue && (j.state === 'queued' || j.state === 'retry') && j.readyAt <= now)
      .sort((a, b) => a.readyAt - b.readyAt)
      .slice(0, max);
    return ready.map((j) => {
      j.state = 'running';
      j.attempts += 1;
      j.seq += 1;
      j.startedAt = now;
      j.leaseUntil = now + j.leaseMs;
      return {
        id: j.id,
        queue: j.queue,
        payload: structuredClone(j.payload),
        attempt: j.attempts,
        leaseMs: j.leaseMs,
        readyAt: new Date(j.readyAt),
        startedAt: new Date(now),
      };
    });
  }

  private running(ref: JobRef): Job | undefined {
    const j = this.jobs.get(ref.id);
    if (!j || j.queue !== ref.queue || j.state !== 'running') return undefined;
    return ref.attempt === undefined || ref.attempt === j.attempts ? j : undefined;
  }

  async renew(ref: JobRef): Promise<boolean> {
    this.expire();
    const j = this.running(ref);
    if (!j) return false;
    j.leaseUntil = this.now() + j.leaseMs;
    return true;
  }

  async progress(ref: JobRef, data: unknown): Promise<void> {
    const j = this.running(ref);
    if (j) {
      j.progress = structuredClone(data);
      this.wake();
    }
  }

  async complete(ref: JobRef, output: unknown): Promise<boolean> {
    const j = this.running(ref);
    if (!j) return false;
    j.state = 'completed';
    j.output = structuredClone(output);
    j.completedAt = this.now();
    delete j.leaseUntil;
    delete j.progress;
    this.wake();
    return true;
  }

  async fail(ref: JobRef, error: JobError): Promise<void> {
    const j = this.running(ref);
    if (j) this.failJob(j, { code: error.code, message: error.message });
  }

  async release(ref: JobRef): Promise<void> {
    const j = this.running(ref);
    if (!j) return;
    j.state = 'queued';
    j.attempts -= 1;
    j.readyAt = this.now();
    delete j.leaseUntil;
    delete j.progress;
    this.wake();
  }

  async cancel(ref: JobRef): Promise<void> {
    const j = this.jobs.get(ref.id);
    if (!j || j.queue !== ref.queue || j.state === 'completed' || j.state === 'failed') return;
    j.state = 'cancelled';
    j.completedAt = this.now();
    delete j.leaseUntil;
    this.wake();
  }

  async status(refs: JobRef[]): Promise<JobInfo[]> {
    this.expire();
    const out: JobInfo[] = [];
    for (const ref of refs) {
      const j = this.jobs.get(ref.id);
      if (!j || j.queue !== ref.queue) continue;
      out.push({
        id: j.id,
        queue: j.queue,
        state: j.state,
        attempts: j.attempts,
        payload: j.payload,
        ...(j.output !== undefined ? { output: j.output } : {}),
        ...(j.error !== undefined ? { error: j.error } : {}),
        ...(j.progress !== undefined ? { progress: j.progress } : {}),
        createdAt: new Date(j.createdAt),
        ...(j.startedAt !== undefined ? { startedAt: new Date(j.startedAt) } : {}),
        ...(j.completedAt !== undefined ? { completedAt: new Date(j.completedAt) } : {}),
      });
    }
    return out;
  }

  wait(ms: number, signal?: AbortSignal): Promise<void> {
    return new Promise((resolve) => {
      if (this.closed || signal?.aborted) {
        resolve();
        return;
      }
      const done = () => {
        clearTimeout(timer);
        this.waiters.delete(done);
        signal?.removeEventListener('abort', done);
        resolve();
      };
      const timer = setTimeout(done, ms);
      this.waiters.add(done);
      signal?.addEventListener('abort', done, { once: true });
    });
  }

  async trySlot(name: string, cap: number): Promise<{ release(): Promise<void> } | undefined> {
    const held = this.slots.get(name) ?? 0;
    if (held >= cap) return undefined;
    this.slots.set(name, held + 1);
    let released = false;
    return {
      release: async () => {
        if (released) return;
        released = true;
        this.slots.set(name, (this.slots.get(name) ?? 1) - 1);
        this.wake();
      },
    };
  }

  /** Forgets final jobs older than `ms` (a long-running process keeps its memory bounded). */
  forget(olderThanMs: number): void {
    const limit = this.now() - olderThanMs;
    for (const j of this.jobs.values()) {
      if (
        (j.state === 'completed' || j.state === 'failed' || j.state === 'cancelled') &&
        (j.completedAt ?? 0) < limit
      ) {
        this.jobs.delete(j.id);
        if (j.key !== undefined) this.byKey.delete(`${j.queue}\n${j.key}`);
      }
    }
  }

  async close(): Promise<void> {
    this.closed = true;
    this.wake();
  }

  private open(): void {
    if (this.closed) throw new Error('this job queue is closed');
  }
}
