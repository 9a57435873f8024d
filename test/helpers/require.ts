import type { TestContext } from 'node:test';

/**
 * Skips a test that needs something this machine lacks (root, btrfs, a binary), with a reason.
 * Under SNAPKEEPER_REQUIRE_ALL=1 (CI) a missing capability fails the test instead: CI must run everything.
 * Returns true when the test may go on.
 */
export function requireCapability(t: TestContext, available: boolean, reason: string): boolean {
  if (available) return true;
  if (process.env.SNAPKEEPER_REQUIRE_ALL === '1') {
    throw new Error(`required capability missing (SNAPKEEPER_REQUIRE_ALL=1): ${reason}`);
  }
  t.skip(reason);
  return false;
}

export const isRoot = typeof process.getuid === 'function' && process.getuid() === 0;
