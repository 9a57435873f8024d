/** The repository layer's public surface (src/repository/README.md). */
export { LocalBackend, type LocalBackendOptions } from './backends/local.js';
export { MemoryBackend, type MemoryBackendOp } from './backends/memory.js';
export { DEFAULT_RETRY, type RetryPolicy } from './backends/retry.js';
export {
  isRetryableS3Error,
  quietSdkVersionWarning,
  resolveS3Credentials,
  S3Backend,
  type S3BackendOptions,
  type S3CredentialSource,
  type S3Credentials,
} from './backends/s3.js';
export { REPOSITORY_EXIT, RepositoryError, StorageError } from './errors.js';
export {
  CHUNK_SIZES,
  DEFAULT_CHUNK_SIZE,
  DEFAULT_KDF,
  DEFAULT_PACK_SIZE,
  FORMAT_NAME,
  FORMAT_VERSION,
  type KdfParams,
} from './format.js';
export { STALE_MS as LOCK_STALE_MS } from './locks.js';
export {
  DEFAULT_SAFETY_DELAY_MS,
  type InitOptions,
  initRepository,
  type OpenOptions,
  openRepository,
} from './repository.js';
export type * from './types.js';
