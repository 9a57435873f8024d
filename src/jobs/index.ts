/** The job queue seam's public surface (src/jobs/README.md). */
export {
  checkQueueName,
  DEFAULT_LEASE_MS,
  DEFAULT_RETRY_DELAY_MS,
  DEFAULT_RETRY_LIMIT,
  InProcessJobQueue,
} from './memory.js';
export { connectionOf, PgBossJobQueue, type PgBossQueueOptions } from './postgres.js';
export type * from './types.js';
export { FINAL_STATES } from './types.js';
export {
  type JobControl,
  type JobHandler,
  type JobWorkerOptions,
  jobErrorOf,
  type RunningJobWorker,
  type ServedQueue,
  startJobWorker,
  type WorkerEvent,
} from './worker.js';
