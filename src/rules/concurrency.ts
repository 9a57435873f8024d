import { RuleError } from './errors.js';

/** One unit of work bound to a host, e.g. preparing one VM. */
export interface Job {
  host: string;
  durationMs: number;
}

/** At most `global` jobs at a time, and at most `perHost` on any one host. */
export interface ConcurrencyLimits {
  global: number;
  perHost: number;
}

/** A priority rule for the list scheduler: which of the startable jobs goes first. */
export type Priority = 'input-order' | 'longest-first' | 'busiest-host-first';

export interface Schedule {
  makespan: number;
  /** Start time of each job, by input index. */
  starts: number[];
}

function validate(jobs: readonly Job[], limits: ConcurrencyLimits): void {
  for (const [name, value] of Object.entries(limits)) {
    if (!Number.isInteger(value) || value < 1) {
      throw new RuleError('BAD_LIMITS', `concurrency limit ${name} must be a positive integer, got ${value}`);
    }
  }
  for (const [i, job] of jobs.entries()) {
    if (!Number.isFinite(job.durationMs) || job.durationMs < 0) {
      throw new RuleError(
        'BAD_JOB',
        `job ${i} (host ${job.host}): duration must be >= 0, got ${job.durationMs}`,
      );
    }
  }
}

/**
 * Greedy list scheduling: whenever a slot is free, start the highest-priority job whose host is below its
 * limit; never leave a slot idle while such a job waits. `longest-first` is the classic LPT rule;
 * `busiest-host-first` prefers the host with the most work left (then the longest job), which matters
 * when one host is the bottleneck. Ties keep input order, so the result is deterministic.
 */
export function greedySchedule(
  jobs: readonly Job[],
  limits: ConcurrencyLimits,
  priority: Priority = 'input-order',
): Schedule {
  validate(jobs, limits);
  const starts = new Array<number>(jobs.length).fill(0);
  // Per host, the waiting jobs (input indexes) in static priority order.
  const queues = new Map<string, number[]>();
  const remaining = new Map<string, number>();
  for (const [i, job] of jobs.entries()) {
    let q = queues.get(job.host);
    if (q === undefined) {
      q = [];
      queues.set(job.host, q);
    }
    q.push(i);
    remaining.set(job.host, (remaining.get(job.host) ?? 0) + job.durationMs);
  }
  if (priority !== 'input-order') {
    for (const q of queues.values()) q.sort((a, b) => duration(jobs, b) - duration(jobs, a) || a - b);
  }
  const heads = new Map<string, number>([...queues.keys()].map((h) => [h, 0]));
  const runningOnHost = new Map<string, number>();
  let running: { end: number; host: string }[] = [];
  let waiting = jobs.length;
  let now = 0;
  let makespan = 0;

  while (waiting > 0 || running.length > 0) {
    while (waiting > 0 && running.length < limits.global) {
      const pick = pickNext(jobs, queues, heads, runningOnHost, remaining, limits.perHost, priority);
      if (pick === undefined) break;
      const job = jobs[pick]!;
      starts[pick] = now;
      const end = now + job.durationMs;
      running.push({ end, host: job.host });
      runningOnHost.set(job.host, (runningOnHost.get(job.host) ?? 0) + 1);
      remaining.set(job.host, (remaining.get(job.host) ?? 0) - job.durationMs);
      makespan = Math.max(makespan, end);
      waiting--;
    }
    if (running.length === 0) break;
    now = Math.min(...running.map((r) => r.end));
    const finished = running.filter((r) => r.end <= now);
    running = running.filter((r) => r.end > now);
    for (const r of finished) runningOnHost.set(r.host, (runningOnHost.get(r.host) ?? 1) - 1);
  }
  return { makespan, starts };
}

function duration(jobs: readonly Job[], i: number): number {
  return jobs[i]?.durationMs ?? 0;
}

/** The input index of the job to start next, or undefined when every host with waiting jobs is full. */
function pickNext(
  jobs: readonly Job[],
  queues: ReadonlyMap<string, number[]>,
  heads: Map<string, number>,
  runningOnHost: ReadonlyMap<string, number>,
  remaining: ReadonlyMap<string, number>,
  perHost: number,
  priority: Priority,
): number | undefined {
  let bestHost: string | undefined;
  let best: number | undefined;
  for (const [host, q] of queues) {
    const head = heads.get(host) ?? 0;
    const candidate = q[head];
    if (candidate === undefined || (runningOnHost.get(host) ?? 0) >= perHost) continue;
    if (best === undefined || better(jobs, candidate, host, best, bestHost!, remaining, priority)) {
      best = candidate;
      bestHost = host;
    }
  }
  if (bestHost !== undefined) heads.set(bestHost, (heads.get(bestHost) ?? 0) + 1);
  return best;
}

function better(
  jobs: readonly Job[],
  a: number,
  hostA: string,
  b: number,
  hostB: string,
  remaining: ReadonlyMap<string, number>,
  priority: Priority,
): boolean {
  if (priority === 'busiest-host-first') {
    const ra = remaining.get(hostA) ?? 0;
    const rb = remaining.get(hostB) ?? 0;
    if (ra !== rb) return ra > rb;
  }
  if (priority !== 'input-order') {
    const da = duration(jobs, a);
    const db = duration(jobs, b);
    if (da !== db) return da > db;
  }
  return a < b;
}

/**
 * A lower bound on any schedule's length: the total work spread over the global slots, the busiest host's
 * work spread over its slots (a host can never run more than min(perHost, global) jobs at once), and the
 * longest job. 0 for no jobs.
 */
export function makespanLowerBound(jobs: readonly Job[], limits: ConcurrencyLimits): number {
  validate(jobs, limits);
  let total = 0;
  let longest = 0;
  const perHostWork = new Map<string, number>();
  for (const job of jobs) {
    total += job.durationMs;
    longest = Math.max(longest, job.durationMs);
    perHostWork.set(job.host, (perHostWork.get(job.host) ?? 0) + job.durationMs);
  }
  const hostSlots = Math.min(limits.perHost, limits.global);
  const busiestHost = Math.max(0, ...perHostWork.values());
  return Math.max(total / limits.global, busiestHost / hostSlots, longest);
}

/**
 * The length of the best of the greedy list schedules (input order, longest first, busiest host first)
 * under the limits: the yardstick the orchestration benchmark divides its measured makespan by. Never
 * below makespanLowerBound; equal to it when a greedy schedule is optimal.
 */
export function idealMakespan(jobs: readonly Job[], limits: ConcurrencyLimits): number {
  const priorities: Priority[] = ['input-order', 'longest-first', 'busiest-host-first'];
  return Math.min(...priorities.map((p) => greedySchedule(jobs, limits, p).makespan));
}
