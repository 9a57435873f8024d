/**
 * The job queue seam (ARCHITECTURE.md, issue 10): work the engine hands out to workers, in this process or on
 * other machines. Two implementations stand behind it: `InProcessJobQueue` (memory; the single-machine
 * default) and `PgBossJobQueue` (PostgreSQL through pg-boss). One conformance suite (test/jobs/conformance.ts)
 * runs against both.
 *
 * A job goes: queued -> running (taken by one worker, under a lease) -> completed (with its output), or
 * failed (its error; retried after a backoff while attempts are left, else failed for good), or cancelled. A
 * running job whose lease expires (its worker died) is failed by the queue and so retried by another worker.
 * A job's id stays the same across its attempts.
 */

export type JobState = 'queued' | 'running' | 'retry' | 'completed' | 'failed' | 'cancelled';

/** Final states: nothing happens to the job any more. */
export const FINAL_STATES: readonly JobState[] = ['completed', 'failed', 'cancelled'];

export interface JobSpec {
  /** The queue's name (letters, digits, `-`, `_`, `.`). */
  queue: string;
  /** Plain JSON data for the worker. */
  payload: unknown;
  /**
   * De-duplication: a second enqueue with the same queue and key while the first job is still known returns
   * the first job's id and adds nothing.
   */
  key?: string;
  /** Attempts after the first (default 2). */
  retryLimit?: number;
  /** Delay before a retry (default 1000 ms), doubled at each further attempt when `retryBackoff`. */
  retryDelayMs?: number;
  retryBackoff?: boolean;
  /** How long a worker may hold the job without renewing its lease (default 60 s; at least 1 s). */
  leaseMs?: number;
}

/** A job a worker took: it owns it until it completes, fails or gives it back, or its lease expires. */
export interface LeasedJob {
  id: string;
  queue: string;
  payload: unknown;
  /** 1 for the first attempt. */
  attempt: number;
  leaseMs: number;
  /** When the job could first be taken (enqueued, or its retry's delay over). */
  readyAt: Date;
  /** When this worker took it. */
  startedAt: Date;
}

export interface JobError {
  code: string;
  message: string;
}

/** What the queue knows of a job. */
export interface JobInfo {
  id: string;
  queue: string;
  state: JobState;
  /** Attempts started so far. */
  attempts: number;
  payload: unknown;
  /** Set once completed. */
  output?: unknown;
  /** The last attempt's error (failed or retry). */
  error?: JobError;
  /** The running attempt's last progress report. */
  progress?: unknown;
  createdAt: Date;
  startedAt?: Date;
  completedAt?: Date;
}

/** A job to act on: its queue and id (the pair `take` returns). */
export interface JobRef {
  queue: string;
  id: string;
  /** The attempt acted for (a `LeasedJob` has it): a call for an attempt that lost its lease is refused. */
  attempt?: number;
}

export interface JobQueue {
  /** `in-process` or `postgres`: for messages. */
  readonly kind: string;
  /** Adds a job; its id. With `key`, an existing job of the same queue and key is returned instead. */
  enqueue(spec: JobSpec): Promise<string>;
  /** Takes up to `max` (default 1) ready jobs of `queue`, oldest first, each under a lease. */
  take(queue: string, max?: number): Promise<LeasedJob[]>;
  /** Extends the lease of a running job by its `leaseMs` from now; false when the job is no longer ours. */
  renew(job: JobRef): Promise<boolean>;
  /** Records a running job's progress (plain JSON; the last report is kept). */
  progress(job: JobRef, data: unknown): Promise<void>;
  /** A running job is done: its output (plain JSON). False when it was no longer running (lost lease). */
  complete(job: JobRef, output: unknown): Promise<boolean>;
  /** A running job failed: retried after its backoff while attempts are left, else failed for good. */
  fail(job: JobRef, error: JobError): Promise<void>;
  /** Gives a running job back untouched (a worker stopping): it is ready again at once, no attempt counted. */
  release(job: JobRef): Promise<void>;
  /** Cancels a job that is not final (a running one's worker finds out when it renews). */
  cancel(job: JobRef): Promise<void>;
  /** What the queue knows of these jobs (unknown ids are left out). */
  status(jobs: JobRef[]): Promise<JobInfo[]>;
  /**
   * Resolves after `ms`, or earlier when something may have changed (an in-process queue wakes at once;
   * a remote one just waits), or when `signal` aborts. Never rejects.
   */
  wait(ms: number, signal?: AbortSignal): Promise<void>;
  /**
   * Up to `cap` holders at once of slot group `name` (across every worker of this queue): a held slot, or
   * undefined when all are taken. A slot is freed by `release()` or when its holder dies.
   */
  trySlot(name: string, cap: number): Promise<{ release(): Promise<void> } | undefined>;
  close(): Promise<void>;
}
