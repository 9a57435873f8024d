/**
 * Retry with exponential backoff and full jitter (each wait is uniform in [0, min(cap, base * 2^n))), for
 * backends whose peer fails transiently (S3's 503 SlowDown, a 500, a reset connection, a timeout). The wait
 * honours abort: an abort during a wait rejects at once with the signal's reason, and no further attempt is
 * made. Only the attempts are bounded, not the time: a caller that wants a deadline passes a signal.
 */

export interface RetryPolicy {
  /** Attempts in all, the first included (>= 1). */
  attempts: number;
  /** Cap of the first wait, in ms; doubles per retry. */
  baseMs: number;
  /** Cap of any wait, in ms. */
  maxMs: number;
}

export const DEFAULT_RETRY: RetryPolicy = { attempts: 8, baseMs: 200, maxMs: 15_000 };

export interface RetryOptions extends RetryPolicy {
  signal?: AbortSignal | undefined;
  /** Whether this failure may pass with another attempt. */
  retryable(err: unknown): boolean;
  /** Called before each wait (attempt is the one that failed, 1-based). */
  onRetry?: (info: { attempt: number; delayMs: number; error: unknown }) => void;
  /** [0, 1): tests pass a fixed one. */
  random?: () => number;
}

/** What `withRetry` throws when every attempt failed or a failure was not retryable. */
export class RetryExhausted extends Error {
  constructor(
    readonly attempts: number,
    readonly last: unknown,
    readonly gaveUp: boolean,
  ) {
    super(last instanceof Error ? last.message : String(last), { cause: last });
    this.name = 'RetryExhausted';
  }
}

/** Full-jitter wait before retry number `retry` (1 for the first retry). */
export function backoffDelay(policy: RetryPolicy, retry: number, random: () => number = Math.random): number {
  const cap = Math.min(policy.maxMs, policy.baseMs * 2 ** (retry - 1));
  return Math.floor(random() * cap);
}

/** Resolves after `ms`, or rejects with the signal's reason as soon as it aborts. */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal?.reason);
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

/**
 * Runs `fn` until it succeeds, a failure is not retryable, or the attempts are spent (RetryExhausted, with
 * the last error as cause). An abort rejects with the signal's reason, never RetryExhausted.
 */
export async function withRetry<T>(fn: (attempt: number) => Promise<T>, options: RetryOptions): Promise<T> {
  const { signal } = options;
  for (let attempt = 1; ; attempt++) {
    signal?.throwIfAborted();
    try {
      return await fn(attempt);
    } catch (err) {
      if (signal?.aborted) throw signal.reason;
      const again = options.retryable(err);
      if (!again || attempt >= options.attempts) throw new RetryExhausted(attempt, err, again);
      const delayMs = backoffDelay(options, attempt, options.random);
      options.onRetry?.({ attempt, delayMs, error: err });
      await sleep(delayMs, signal);
    }
  }
}
