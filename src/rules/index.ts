/** The pure domain rules: no I/O, no clock, no project imports beyond model and config types. */

export {
  type ConcurrencyLimits,
  greedySchedule,
  idealMakespan,
  type Job,
  makespanLowerBound,
  type Priority,
  type Schedule,
} from './concurrency.js';
export { type ConsistencyGroup, consistencyGroup, type ExcludedDisk } from './consistency-group.js';
export {
  type ArrayVolumes,
  type DatastoreLocation,
  type DatastoreMapping,
  type DatastorePath,
  datastorePathToRelative,
  formatDatastorePath,
  mapDatastoresToVolumes,
  normalizePath,
  type VolumeRef,
} from './datastores.js';
export {
  applyDiskExclusions,
  describeUnmatchedDiskExclusions,
  type UnmatchedDiskExclusion,
  unmatchedDiskExclusions,
} from './disk-exclusions.js';
export { classifyDisks, hasRdm, isRdmKind } from './disks.js';
export { RuleError } from './errors.js';
export {
  decideMode,
  MODE_CHANGED_RDM,
  type ModeDecision,
  type ModeInput,
  type PrepareAction,
  type ReleaseAction,
  resolveRequestedMode,
  usesVmSnapshot,
} from './modes.js';
export {
  decideQuiesce,
  QUIESCE_FAILED,
  QUIESCE_FAULT_TYPES,
  type QuiesceDecision,
  type QuiesceInput,
} from './quiesce.js';
export {
  type Expiry,
  expiredBackups,
  type RetentionCandidate,
  type RetentionPolicy,
} from './retention.js';
export {
  MISSED_COUNT_CAP,
  nextRunAfter,
  type ScheduleDecision,
  type ScheduleInput,
  scheduleDecision,
} from './schedule.js';
export {
  describeSelection,
  describeUnmatched,
  matchesPattern,
  matchGlob,
  type SelectionCriterion,
  selectVms,
  type UnmatchedCriterion,
  unmatchedCriteria,
  vmMatches,
} from './selection.js';
