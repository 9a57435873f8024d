import { setTimeout as delay } from 'node:timers/promises';

/**
 * Calls `fn` up to `attempts` times with exponential backoff between tries. Used where giving up is worse
 * than waiting: releasing a VM (removing its snapshot, powering it on) must not fail on a passing glitch.
 */
export async function withRetry<T>(
  fn: () => Promise<T>,
  options: { attempts: number; baseMs: number; signal?: AbortSignal; retryIf?: (err: unknown) => boolean },
): Promise<T> {
  let lastError: unknown;
  for (let attempt = 1; attempt <= options.attempts; attempt++) {
    try {
      return await fn();
    } catch (err) {
      lastError = err;
      if (attempt === options.attempts || (options.retryIf && !options.retryIf(err))) break;
      await delay(options.baseMs * 2 ** (attempt - 1), undefined, { signal: options.signal });
    }
  }
  throw lastError;
}
