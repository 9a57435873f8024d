/** The repository layer's public surface (src/repository/README.md). */
export { MemoryBackend, type MemoryBackendOp } from './backends/memory.js';
export { REPOSITORY_EXIT, RepositoryError, StorageError } from './errors.js';
export type * from './types.js';
