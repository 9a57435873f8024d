import { UsageError } from '../errors.js';
import { RuleError } from '../rules/index.js';

/** Runs a pure rule; a RuleError (bad configuration or input) becomes a UsageError with the same code. */
export function applyRule<T>(fn: () => T): T {
  try {
    return fn();
  } catch (err) {
    if (err instanceof RuleError) throw new UsageError(err.code, err.message, { cause: err });
    throw err;
  }
}
