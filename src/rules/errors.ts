/**
 * The rules import nothing of the project but types, so they cannot throw the project's SnapkeeperError.
 * They throw this instead; the engine turns it into a UsageError (bad configuration or input) or an internal
 * failure, keeping `code` and the message.
 */
export class RuleError extends Error {
  constructor(
    /** Stable code, e.g. `BAD_DATASTORE_PATH`; the engine passes it on unchanged. */
    readonly code: string,
    message: string,
  ) {
    super(message);
    this.name = 'RuleError';
  }
}
