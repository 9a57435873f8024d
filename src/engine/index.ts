/**
 * Public surface of the engine (see README.md): what the CLI, and the daemon after it, call. Entry points
 * with their request and result types, and the context they run in. Nothing below the entry points (the
 * runner, the recovery registry, the steps) is reached from outside.
 */
export { type AttachRequest, type AttachResult, type DetachResult, runAttach, runDetach } from './attach.js';
export { type BackupRequest, runBackup } from './backup.js';
export { configuredParts, EngineContext, type EngineEvents, silentEvents } from './context.js';
export { type MountRequest, type MountResult, runMount, runUnmount, type UnmountResult } from './mount.js';
export {
  type BackupThenOffload,
  type OffloadAfterBackup,
  type OffloadedFile,
  type OffloadedVm,
  type OffloadRequest,
  type OffloadResult,
  runBackupThenOffload,
  runOffload,
} from './offload.js';
export { datastoreVolumeNames } from './placement.js';
export { type ForeignThing, type RecoverOptions, type RecoverReport, recover } from './recover.js';
export {
  applyRepositoryRetention,
  type ForgetResult,
  type PasswdResult,
  type RepoBackup,
  type RepoCheckResult,
  type RepoInitResult,
  type RepoPruneResult,
  type RepositoryRetentionResult,
  repoBackups,
  repoCheck,
  repoForget,
  repoInit,
  repoPasswd,
  repoPrune,
} from './repo.js';
export { type RestoredDisk, type RestoreRequest, type RestoreResult, runRestore } from './restore.js';
export {
  type DeletedBackup,
  deleteBackup,
  type ExpireResult,
  expireAll,
  type SkippedBackup,
} from './retention.js';
export { applyRule } from './rule-errors.js';
export { assertEditable, findTask, listTasks, type TaskEntry, type TaskSource } from './tasks.js';
export { type CopyView, copyViews, includedDiskBytes, inventoryJson } from './views.js';
export {
  type RunningWorker,
  startWorker,
  type WorkerJobEvent,
  type WorkerOptions,
  type WorkerSummary,
} from './worker.js';
