import { ExitCode, SnapkeeperError, type SnapkeeperErrorOptions } from '../errors.js';

/**
 * Errors of the repository layer. `RepositoryError` carries a code whose exit class is fixed by the table
 * below: what the user gave wrong (a passphrase, a repository of another format) is exit 3, nothing changed;
 * what the repository holds wrong (corrupt or missing data) or a lock held by another run is exit 2.
 */
export const REPOSITORY_EXIT: Record<string, ExitCode> = {
  /** The config object names another format or version, or is not a repository config at all. */
  REPOSITORY_FORMAT: ExitCode.usage,
  /** No key file opens with the passphrase given. */
  REPOSITORY_PASSPHRASE: ExitCode.usage,
  /** `init` on a backend that already holds a repository. */
  REPOSITORY_EXISTS: ExitCode.usage,
  /** There is no config object: not a repository (or not initialised). */
  REPOSITORY_NOT_FOUND: ExitCode.usage,
  /** Another run holds a lock that conflicts (prune's exclusive lock, or a writer while pruning). */
  REPOSITORY_LOCKED: ExitCode.failed,
  /** A chunk a manifest names is in no index, or its pack is gone. */
  CHUNK_MISSING: ExitCode.failed,
  /** A chunk failed authentication or its id does not match its plaintext. */
  CHUNK_CORRUPT: ExitCode.failed,
  /** An index, manifest, key file or pack header failed authentication or does not parse. */
  INDEX_CORRUPT: ExitCode.failed,
  MANIFEST_CORRUPT: ExitCode.failed,
  KEY_CORRUPT: ExitCode.failed,
  PACK_CORRUPT: ExitCode.failed,
};

export class RepositoryError extends SnapkeeperError {
  override readonly exitCode: ExitCode;

  constructor(code: string, message: string, options: SnapkeeperErrorOptions = {}) {
    super(code, message, options);
    this.exitCode = REPOSITORY_EXIT[code] ?? ExitCode.failed;
  }
}

/**
 * A backend could not do what was asked (disk full, permission refused, a retention lock, a server that keeps
 * failing). Names the object key and the backend, never a credential. Exit 2.
 */
export class StorageError extends SnapkeeperError {
  override readonly exitCode = ExitCode.failed;
}
