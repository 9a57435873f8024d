import { z } from 'zod';
import type { CreateVmSpec, DiskAttachment } from '../../vsphere/index.js';

/**
 * Every action the engine journals, each once: its stored name and the shape of its data. The names are
 * what catalogs written by earlier releases hold, so they never change (journal.test.ts pins them); the
 * shapes are checked when an entry is read back, because a catalog on disk is input like any other.
 * Fields that earlier releases did not always write are optional. How each action is recovered is in
 * recovery.ts, typed over the same names, so an action without a recovery does not compile.
 */

const vmHold = z.looseObject({ vm: z.string().optional(), name: z.string().optional() });

/** A disk taken off a VM by `vm.reconfigure`: enough to give it back. */
const removedDisk = z.custom<DiskAttachment & { key: number }>(
  (v) =>
    typeof v === 'object' &&
    v !== null &&
    typeof (v as { file?: unknown }).file === 'string' &&
    typeof (v as { key?: unknown }).key === 'number',
  'a removed disk needs its file and key',
);

/** The configuration of a VM that `vm.unregister` took out of the inventory: enough to register it again. */
const vmSpec = z.custom<CreateVmSpec>(
  (v) =>
    typeof v === 'object' &&
    v !== null &&
    typeof (v as { name?: unknown }).name === 'string' &&
    typeof (v as { vmxFile?: unknown }).vmxFile === 'string',
  'a VM specification needs its name and vmxFile',
);

export const swapPair = z.looseObject({
  /** The VM directory on a datastore (what the restored VM uses). */
  dir: z.string(),
  /** Where the replaced VM's directory was moved. */
  aside: z.string(),
  /** Where the restored files were staged. */
  staged: z.string(),
  /** Whether `dir` existed before (the live VM's directory). */
  hadDir: z.boolean(),
});
export type SwapPair = z.infer<typeof swapPair>;

const nothing = z.looseObject({});

export const JOURNAL_SHAPES = {
  // Backups: target is the VM id (holds) or the array name (snapshots).
  'vm-snapshot': vmHold,
  suspend: vmHold,
  'array-snapshot': z.looseObject({
    volumes: z.array(z.string()).optional(),
    label: z.string().optional(),
    snapshotId: z.string().optional(),
  }),
  'delete-snapshot': z.looseObject({ snapshotId: z.string() }),
  // target is the hook's phase; the process fields are written once it runs (recovery kills its group).
  'hook.run': z.looseObject({
    run: z.array(z.string()).optional(),
    pid: z.number().int().positive().optional(),
    pgid: z.number().int().positive().optional(),
    startTicks: z.number().optional(),
  }),
  // Restore, mount, attach: target is what the step changes (a VM id or name, a datastore, a directory).
  'vm.create': z.looseObject({
    name: z.string().optional(),
    vmxFile: z.string(),
    vmId: z.string().optional(),
  }),
  'vm.reconfigure': z.looseObject({
    added: z.array(z.string()).optional(),
    removed: z.array(removedDisk).optional(),
  }),
  'vm.attach': z.looseObject({ files: z.array(z.string()).optional() }),
  'vm.power-off': z.looseObject({ wasOn: z.boolean().optional() }),
  'vm.power-on': nothing,
  'vm.unregister': z.looseObject({ wasOn: z.boolean().optional(), spec: vmSpec }),
  'datastore.create': z.looseObject({
    hostId: z.string(),
    name: z.string(),
    path: z.string().optional(),
    datastoreId: z.string().optional(),
  }),
  'array.clone': z.looseObject({
    array: z.string(),
    snapshotId: z.string().optional(),
    label: z.string().optional(),
    cloneId: z.string().optional(),
  }),
  'dirs.swap': z.looseObject({ pairs: z.array(swapPair).optional() }),
  'files.place': z.looseObject({
    dir: z.string(),
    createdDir: z.boolean().optional(),
    stems: z.array(z.string()).optional(),
  }),
  'mount.record': z.looseObject({ mountId: z.string() }),
  commit: nothing,
  'unmount.begin': z.looseObject({ mountId: z.string() }),
  'detach.begin': z.looseObject({ attachId: z.string() }),
  // Offload (issue 8): target is the repository name. Rolled forward: a manifest the repository holds for
  // the backup is recorded as the backup's copy; otherwise nothing is left to undo (stored packs are reused
  // by the next offload and collected by prune).
  'repository.offload': z.looseObject({
    repository: z.string(),
    repositoryId: z.string(),
    backupId: z.string(),
    manifestId: z.string().optional(),
  }),
} as const;

export type JournalAction = keyof typeof JOURNAL_SHAPES;
/** The data an action is journaled with (its intent) and completed with (its result), as read back. */
export type JournalData<A extends JournalAction> = z.infer<(typeof JOURNAL_SHAPES)[A]>;
/** What an action is journaled with before it runs; result fields (optional in the shape) come later. */
export type JournalIntent<A extends JournalAction> = z.input<(typeof JOURNAL_SHAPES)[A]>;

/** One entry to write: a registered action and its data; the compiler refuses any other name or shape. */
export type JournalWrite = {
  [A in JournalAction]: { action: A; target: string } & (Partial<JournalIntent<A>> extends JournalIntent<A>
    ? { data?: JournalIntent<A> }
    : { data: JournalIntent<A> });
}[JournalAction];

/** One entry read back and checked: its action narrows its data. */
export type TypedEntry<A extends JournalAction = JournalAction> = {
  [K in A]: { id: number; action: K; target: string; data: JournalData<K>; completedAt?: string };
}[A];

export function isJournalAction(name: string): name is JournalAction {
  return Object.hasOwn(JOURNAL_SHAPES, name);
}
