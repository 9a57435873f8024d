import type { JournalAction, TypedEntry } from './actions.js';

// What the recovery of interrupted operations reports, and the shape of the registry's entries.

/** What `recover` did (or, dry, would do); filled by this repair and by the sweeps of recover.ts. */
export interface RecoverReport {
  dryRun: boolean;
  /** Interrupted operations that were (or would be) closed and repaired. */
  operations: { id: string; kind: string }[];
  /**
   * Interrupted operations that could not be repaired completely: closed all the same (no lock outlives its
   * holder) and repaired again by every later recover until clean.
   */
  stillOpen: { id: string; kind: string }[];
  /** Operations still running in a live process: left alone. */
  running: { id: string; kind: string; pid: number }[];
  removedVmSnapshots: { vm: string; snapshot: string }[];
  poweredOnVms: string[];
  deletedArraySnapshots: { array: string; snapshotId: string }[];
  failedBackups: string[];
  /** Complete or partial backups whose array snapshot is gone: marked (or, dry, to be marked) `lost`. */
  lostBackups: { id: string; missing: { array: string; snapshotId: string }[] }[];
  /**
   * Things that look like snapkeeper's but are not provably this catalog's (another catalog's, an earlier
   * release's, or of an operation this catalog's journal does not have): left alone, never deleted.
   */
  foreign: ForeignThing[];
  /** What the recovery of other operation kinds (restore, mount, attach) did, one line each. */
  actions: string[];
  errors: string[];
}

export interface ForeignThing {
  kind: 'vm-snapshot' | 'array-snapshot' | 'clone' | 'datastore';
  /** The VM or array it is on. */
  where: string;
  name: string;
  why: string;
}

export function emptyReport(dryRun: boolean): RecoverReport {
  return {
    dryRun,
    operations: [],
    stillOpen: [],
    running: [],
    removedVmSnapshots: [],
    poweredOnVms: [],
    deletedArraySnapshots: [],
    failedBackups: [],
    lostBackups: [],
    foreign: [],
    actions: [],
    errors: [],
  };
}

/** How one action is recovered, given what the recovery of its operation kind hands every step. */
export type Recovery<Run, A extends JournalAction> =
  | { kind: 'undo'; run: (r: Run, e: TypedEntry<A>) => Promise<void> }
  | { kind: 'roll-forward'; run: (r: Run, e: TypedEntry<A>, all: TypedEntry[]) => Promise<void> }
  | { kind: 'none'; why: string };

/** The actions of backups; every other action belongs to restore, mount and attach. */
export const BACKUP_ACTIONS = [
  'vm-snapshot',
  'suspend',
  'array-snapshot',
  'delete-snapshot',
  'hook.run',
] as const;
export type BackupAction = (typeof BACKUP_ACTIONS)[number];
export type JournaledAction = Exclude<JournalAction, BackupAction>;

/** Runs one entry's recovery from `table` (an action of another kind of operation: nothing to do). */
export async function dispatch<Run>(
  table: { [A in JournalAction]?: Recovery<Run, A> },
  run: Run,
  e: TypedEntry,
  all: TypedEntry[],
): Promise<void> {
  const recovery = table[e.action] as Recovery<Run, typeof e.action> | undefined;
  if (recovery === undefined || recovery.kind === 'none') return;
  await recovery.run(run, e as never, all);
}
