/**
 * One error hierarchy for the whole program. Every error carries a stable `code` (shown to users and in
 * `--json` output) and the exit-code class it belongs to. Only the CLI's main prints and exits; everything
 * else throws one of these. Subclasses exist only where callers branch on them.
 */

/** Exit codes of SPEC section 6. */
export const ExitCode = {
  ok: 0,
  warnings: 1,
  failed: 2,
  usage: 3,
} as const;
export type ExitCode = (typeof ExitCode)[keyof typeof ExitCode];

export interface SnapkeeperErrorOptions {
  cause?: unknown;
  /** Structured details for `--json` output. Must never contain secrets. */
  details?: Record<string, unknown>;
}

export class SnapkeeperError extends Error {
  /** Exit code this error maps to when it reaches the CLI. */
  readonly exitCode: ExitCode = ExitCode.failed;
  readonly details: Record<string, unknown> | undefined;

  constructor(
    readonly code: string,
    message: string,
    options: SnapkeeperErrorOptions = {},
  ) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = new.target.name;
    this.details = options.details;
  }
}

/** Bad input from the user: config, CLI arguments, lab spec, API request. Nothing was changed. Exit 3. */
export class UsageError extends SnapkeeperError {
  override readonly exitCode = ExitCode.usage;
}

/** Something named does not exist (backup id, VM, task, snapshot). */
export class NotFoundError extends SnapkeeperError {
  override readonly exitCode = ExitCode.usage;
}

/** Another run holds a lock on a VM, volume or operation. */
export class LockedError extends SnapkeeperError {
  override readonly exitCode = ExitCode.failed;
}

/** Login to vCenter refused (wrong user or password). Treated as bad input: nothing was changed. */
export class AuthenticationError extends SnapkeeperError {
  override readonly exitCode = ExitCode.usage;
}

/** A request that conflicts with existing state (a name that exists, a mounted backup to delete). */
export class ConflictError extends SnapkeeperError {
  override readonly exitCode = ExitCode.usage;
}

export function errorMessage(err: unknown): string {
  if (err instanceof Error) return err.message;
  return String(err);
}

/** The exit code for anything thrown: our errors carry one, anything else is an internal failure. */
export function exitCodeOf(err: unknown): ExitCode {
  return err instanceof SnapkeeperError ? err.exitCode : ExitCode.failed;
}
