import { rename, rm } from 'node:fs/promises';
import { type Operation, operationAlive } from '../../catalog/index.js';
import { ConflictError, errorMessage } from '../../errors.js';
import type { Inventory } from '../../model/inventory.js';
import { pathExists } from '../../util/fs.js';
import { asCaller, isGone, type VcenterSession, type VmDevices } from '../../vsphere/index.js';
import type { EngineContext } from '../context.js';
import { ownedLabel, vmSnapshotName } from '../ids.js';
import { releaseVm } from '../release.js';
import { detachAllAndRemoveDatastore, removePlaced } from '../restore-common.js';
import { detachOne, unmountOne } from '../steps/mounts.js';
import type { JournalAction, TypedEntry } from './actions.js';
import { readJournal } from './write.js';

/**
 * The recovery registry: how every journaled action (actions.ts) is recovered after a crash or a failure,
 * and the repair of interrupted operations that dispatches through it. Each action is `undo` (take back what
 * it did), `roll-forward` (finish what it began: the user asked for it) or `none` with the reason. The tables
 * are typed over every action name, so an action without a recovery does not compile.
 */

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
export const BACKUP_ACTIONS = ['vm-snapshot', 'suspend', 'array-snapshot', 'delete-snapshot'] as const;
export type BackupAction = (typeof BACKUP_ACTIONS)[number];
export type JournaledAction = Exclude<JournalAction, BackupAction>;

// ---- backups --------------------------------------------------------------------------------------------

/** One backup's repair in progress: it never stops at a failure (every VM is released that can be). */
interface BackupRun {
  ctx: EngineContext;
  vc: VcenterSession;
  op: Operation;
  report: RecoverReport;
  dryRun: boolean;
  clean: boolean;
  /** The backup finished (complete or partial): its array snapshots are the backup, never deleted. */
  keepsSnapshots: boolean;
}

/** Releases a VM a backup held (snapshot removed, or resumed); a VM that is gone holds nothing of ours. */
async function releaseHeld(
  r: BackupRun,
  e: TypedEntry<'vm-snapshot' | 'suspend'>,
  hold: { snapshot: boolean; resume: boolean },
): Promise<void> {
  const name = e.data.vm ?? e.target;
  const snapshotName = vmSnapshotName(r.op.id, r.ctx.catalog.id);
  try {
    if (r.dryRun) {
      const state = await r.vc.vmState(e.target);
      if (hold.snapshot && state.snapshots.some((s) => s.name === snapshotName)) {
        r.report.removedVmSnapshots.push({ vm: name, snapshot: snapshotName });
      }
      if (hold.resume && state.powerState === 'suspended') r.report.poweredOnVms.push(name);
      return;
    }
    const done = await releaseVm(r.vc, e.target, {
      ...(hold.snapshot ? { snapshotName } : {}),
      resume: hold.resume,
    });
    for (let i = 0; i < done.removedSnapshots; i++) {
      r.report.removedVmSnapshots.push({ vm: name, snapshot: snapshotName });
    }
    if (done.poweredOn) r.report.poweredOnVms.push(name);
  } catch (err) {
    if (isGone(err)) return;
    r.clean = false;
    r.report.errors.push(`${name}: ${errorMessage(err)}`);
  }
}

export const backupRecovery: { [A in BackupAction]: Recovery<BackupRun, A> } = {
  'vm-snapshot': { kind: 'undo', run: (r, e) => releaseHeld(r, e, { snapshot: true, resume: false }) },
  suspend: { kind: 'undo', run: (r, e) => releaseHeld(r, e, { snapshot: false, resume: true }) },
  'array-snapshot': {
    kind: 'undo',
    // Found by label, not by the entry's snapshot id: a crash may come before the id was journaled.
    run: async (r, e) => {
      if (r.keepsSnapshots) return;
      const label = ownedLabel(r.op.id, r.ctx.catalog.id);
      try {
        const array = await r.ctx.array(e.target);
        for (const s of await array.listSnapshots()) {
          if (s.label !== label) continue;
          if (r.report.deletedArraySnapshots.some((d) => d.array === e.target && d.snapshotId === s.id))
            continue;
          if (!r.dryRun) await array.deleteSnapshot(s.id);
          r.report.deletedArraySnapshots.push({ array: e.target, snapshotId: s.id });
        }
      } catch (err) {
        r.clean = false;
        r.report.errors.push(`array ${e.target}: ${errorMessage(err)}`);
      }
    },
  },
  'delete-snapshot': {
    kind: 'none',
    why: "only a failed backup deletes its snapshots; what is left is found by label by array-snapshot's undo",
  },
};

/** Undoes what a backup's journal says it did: VMs released first, then its array snapshots unless it finished. */
async function recoverBackup(
  ctx: EngineContext,
  vc: VcenterSession,
  op: Operation,
  entries: TypedEntry[],
  report: RecoverReport,
): Promise<boolean> {
  const { catalog } = ctx;
  const backup = await catalog.findBackup(op.id);
  const run: BackupRun = {
    ctx,
    vc,
    op,
    report,
    dryRun: report.dryRun,
    clean: true,
    keepsSnapshots: backup !== undefined && (backup.state === 'complete' || backup.state === 'partial'),
  };
  // VMs first: a suspended VM or a VM snapshot hurts production, a stray array snapshot only costs space.
  const holdsVm = (e: TypedEntry) => e.action === 'vm-snapshot' || e.action === 'suspend';
  for (const e of [...entries.filter(holdsVm), ...entries.filter((x) => !holdsVm(x))]) {
    await dispatch(backupRecovery, run, e, entries);
  }
  if (backup && backup.state === 'running') {
    report.failedBackups.push(backup.id);
    if (!report.dryRun) {
      backup.state = 'failed';
      backup.error = 'interrupted: the process ended before the backup finished; repaired by recover';
      backup.finishedAt ??= ctx.now().toISOString();
      backup.snapshots = [];
      await catalog.updateBackup(backup);
    }
  }
  return run.clean;
}

// ---- restore, mount, attach -----------------------------------------------------------------------------

/** What undoing (or finalizing) one restore, mount or attach operation did. */
export interface UndoOutcome {
  /** True when nothing of the operation is left half made. */
  clean: boolean;
  actions: string[];
  errors: string[];
}

/** One undo in progress: what every step's undo needs, and where it reports. */
interface UndoRun {
  ctx: EngineContext;
  vc: VcenterSession;
  out: UndoOutcome;
  dryRun: boolean;
  /** Records `what` and does it (unless a dry run); a failure makes the outcome unclean. */
  act(what: string, fn: () => Promise<unknown>): Promise<void>;
  fail(what: string, err: unknown): void;
  /** The inventory, read once and again after a step that changed the VMs. */
  inventory(): Promise<Inventory>;
  inventoryChanged(): void;
}

/** Detaches the disk files a step added and re-attaches the disks it removed (a VM that is gone: nothing). */
async function undoDiskChanges(u: UndoRun, e: TypedEntry<'vm.attach' | 'vm.reconfigure'>): Promise<void> {
  const files = (e.action === 'vm.attach' ? e.data.files : e.data.added) ?? [];
  const removed = (e.action === 'vm.reconfigure' ? e.data.removed : undefined) ?? [];
  let devices: VmDevices;
  try {
    devices = await u.vc.vmDevices(e.target);
  } catch (err) {
    if (!isGone(err)) u.fail(`VM ${e.target}`, err);
    return;
  }
  if (devices.disks.some((x) => files.includes(x.file))) {
    await u.act(`detach ${files.join(', ')} from VM ${devices.name}`, () =>
      u.vc.detachDiskFiles(e.target, files),
    );
  }
  // A slot is freed by the detach above; re-adding into a slot still taken would fail, so not after a failure.
  if (!u.out.clean) return;
  const missing = removed.filter((r) => !devices.disks.some((x) => x.file === r.file));
  if (missing.length > 0) {
    await u.act(`re-attach ${missing.map((m) => m.file).join(', ')} to VM ${devices.name}`, () =>
      u.vc.reconfigureDisks(e.target, { add: missing }),
    );
  }
}

/** Finishes letting go of a mount or attach whose record is still there (the user asked to let it go). */
async function finishRelease(
  u: UndoRun,
  id: string,
  what: string,
  release: (record: Awaited<ReturnType<EngineContext['catalog']['listMounts']>>[number]) => Promise<unknown>,
): Promise<void> {
  const record = (await u.ctx.catalog.listMounts()).find((m) => m.id === id);
  if (record) await u.act(`${what} ${id}`, () => release(record));
}

export const journaledRecovery: { [A in JournaledAction]: Recovery<UndoRun, A> } = {
  'mount.record': {
    kind: 'undo',
    run: async (u, e) => {
      const id = e.data.mountId;
      if ((await u.ctx.catalog.listMounts()).some((m) => m.id === id)) {
        await u.act(`remove mount record ${id}`, async () => u.ctx.catalog.removeMount(id));
      }
    },
  },
  'vm.attach': { kind: 'undo', run: undoDiskChanges },
  'vm.reconfigure': { kind: 'undo', run: undoDiskChanges },
  'datastore.create': {
    kind: 'undo',
    run: async (u, e) => {
      const name = e.data.name;
      const ds = (await u.inventory()).datastores.find((x) => x.name === name);
      if (!ds) return;
      // asCaller: the datastore steps of restore-common.ts still take the low-level caller.
      await u.act(`remove datastore ${name}`, async () =>
        detachAllAndRemoveDatastore(asCaller(u.vc), await u.inventory(), ds, e.data.hostId),
      );
    },
  },
  'array.clone': {
    kind: 'undo',
    run: async (u, e) => {
      const arrayName = e.data.array;
      try {
        const array = await u.ctx.array(arrayName);
        for (const c of await array.listClones()) {
          if (c.id === e.data.cloneId || c.label === e.data.label) {
            await u.act(`delete clone ${arrayName}/${c.id}`, () => array.deleteClone(c.id));
          }
        }
      } catch (err) {
        u.fail(`array ${arrayName}`, err);
      }
    },
  },
  'vm.create': {
    kind: 'undo',
    run: async (u, e) => {
      const vm = (await u.inventory()).vms.find(
        (v) => (e.data.vmId !== undefined && v.id === e.data.vmId) || v.vmxFile === e.data.vmxFile,
      );
      if (vm) await u.act(`destroy the half-restored VM ${vm.name} (${vm.id})`, () => u.vc.destroyVm(vm.id));
      u.inventoryChanged();
    },
  },
  'dirs.swap': {
    kind: 'undo',
    run: async (u, e) => {
      for (const p of e.data.pairs ?? []) {
        if (await pathExists(p.aside)) {
          await u.act(`put ${p.dir} back`, async () => {
            await rm(p.dir, { recursive: true, force: true });
            await rename(p.aside, p.dir);
          });
        } else if (!p.hadDir && !(await pathExists(p.staged)) && (await pathExists(p.dir))) {
          await u.act(`remove restored directory ${p.dir}`, () =>
            rm(p.dir, { recursive: true, force: true }),
          );
        }
      }
    },
  },
  'vm.unregister': {
    kind: 'undo',
    run: async (u, e) => {
      const spec = e.data.spec;
      if ((await u.inventory()).vms.some((v) => v.vmxFile === spec.vmxFile)) return;
      await u.act(`register the replaced VM ${spec.name} again`, async () => {
        const id = await u.vc.registerVm(spec);
        if (e.data.wasOn === true) await u.vc.powerOnVm(id);
      });
      u.inventoryChanged();
    },
  },
  'vm.power-off': {
    kind: 'undo',
    run: async (u, e) => {
      if (e.data.wasOn !== true) return;
      try {
        const dev = await u.vc.vmDevices(e.target);
        if (dev.powerState !== 'poweredOn')
          await u.act(`power VM ${dev.name} on again`, () => u.vc.powerOnVm(e.target));
      } catch (err) {
        if (!isGone(err)) u.fail(`VM ${e.target}`, err);
      }
    },
  },
  'vm.power-on': {
    kind: 'none',
    why: 'the VM it powered on is the restored one, which the undo of vm.create destroys',
  },
  'files.place': {
    kind: 'undo',
    run: (u, e) => u.act(`delete restored files in ${e.data.dir}`, () => removePlaced(e.data)),
  },
  commit: {
    kind: 'roll-forward',
    // After a commit only the replaced VM's old directories are left to delete.
    run: async (u, _e, all) => {
      for (const e of all) {
        if (e.action !== 'dirs.swap') continue;
        for (const p of e.data.pairs ?? []) {
          if (await pathExists(p.aside)) {
            await u.act(`delete the replaced files ${p.aside}`, () =>
              rm(p.aside, { recursive: true, force: true }),
            );
          }
        }
      }
    },
  },
  'unmount.begin': {
    kind: 'roll-forward',
    run: (u, e) =>
      finishRelease(u, e.data.mountId, 'finish unmounting', (m) => unmountOne(u.ctx, asCaller(u.vc), m)),
  },
  'detach.begin': {
    kind: 'roll-forward',
    run: (u, e) =>
      finishRelease(u, e.data.attachId, 'finish detaching', (m) => detachOne(u.ctx, asCaller(u.vc), m)),
  },
};

/** Runs one entry's recovery from `table` (an action of another kind of operation: nothing to do). */
async function dispatch<Run>(
  table: { [A in JournalAction]?: Recovery<Run, A> },
  run: Run,
  e: TypedEntry,
  all: TypedEntry[],
): Promise<void> {
  const recovery = table[e.action] as Recovery<Run, typeof e.action> | undefined;
  if (recovery === undefined || recovery.kind === 'none') return;
  await recovery.run(run, e as never, all);
}

/** An undo (or roll-forward) run that reports into `out`, acting unless `dryRun`. */
function undoRun(ctx: EngineContext, vc: VcenterSession, options: { dryRun: boolean }): UndoRun {
  const out: UndoOutcome = { clean: true, actions: [], errors: [] };
  let inventory: Inventory | undefined;
  const u: UndoRun = {
    ctx,
    vc,
    out,
    dryRun: options.dryRun,
    fail(what, err) {
      out.clean = false;
      out.errors.push(`${what}: ${errorMessage(err)}`);
    },
    async act(what, fn) {
      out.actions.push(`${options.dryRun ? 'would ' : ''}${what}`);
      if (options.dryRun) return;
      try {
        await fn();
      } catch (err) {
        u.fail(what, err);
      }
    },
    async inventory() {
      inventory ??= await vc.inventory();
      return inventory;
    },
    inventoryChanged() {
      inventory = undefined;
    },
  };
  return u;
}

/**
 * Undoes an operation from its journal, newest step first, or finalizes it when it has a `commit` entry
 * (then only the replaced VM's old files are deleted). Idempotent: every step checks what is still there, so
 * it is safe after a crash at any point and when run twice. It stops at the first step it fails to undo
 * (not clean: the operation stays open, the next recover starts again from the newest step): each step
 * stands on the ones before it, e.g. restored files are never deleted while a VM may still have them as a
 * disk. Used by the runner's failure path (operation.ts) and by recover.
 */
export async function undoJournal(
  ctx: EngineContext,
  vc: VcenterSession,
  entries: TypedEntry[],
  options: { dryRun: boolean },
): Promise<UndoOutcome> {
  const u = undoRun(ctx, vc, options);
  const commit = entries.find((e) => e.action === 'commit');
  if (commit) {
    await dispatch(journaledRecovery, u, commit, entries);
    return u.out;
  }
  for (const e of [...entries].reverse()) {
    if (!u.out.clean) break;
    if (journaledRecovery[e.action as JournaledAction]?.kind === 'undo') {
      await dispatch(journaledRecovery, u, e, entries);
    }
  }
  return u.out;
}

/**
 * Recovery of an interrupted restore, mount or attach: an operation that reached `commit` is only finalized;
 * an unmount or detach that began is finished (roll forward: the user asked to let go), every one of them
 * even after a failure; anything else is undone step by step (undoJournal), the same code the operation's
 * own failure path runs.
 */
async function recoverJournaled(
  ctx: EngineContext,
  vc: VcenterSession,
  entries: TypedEntry[],
  dryRun: boolean,
): Promise<UndoOutcome> {
  const forward = entries.filter(
    (e) => e.action !== 'commit' && journaledRecovery[e.action as JournaledAction]?.kind === 'roll-forward',
  );
  if (entries.some((e) => e.action === 'commit') || forward.length === 0) {
    return undoJournal(ctx, vc, entries, { dryRun });
  }
  const u = undoRun(ctx, vc, { dryRun });
  for (const e of forward) await dispatch(journaledRecovery, u, e, entries);
  return u.out;
}

// ---- operations -----------------------------------------------------------------------------------------

/**
 * Repairs one interrupted operation from its journal; true when nothing of it is left. A journal that does
 * not read back as written (a damaged catalog) is not acted on at all: a guess could destroy a backup.
 */
async function repairOne(
  ctx: EngineContext,
  vc: VcenterSession,
  op: Operation,
  report: RecoverReport,
): Promise<boolean> {
  if (op.kind === 'delete' || op.kind === 'expire' || op.kind === 'recover') return true;
  if (op.kind !== 'backup' && op.kind !== 'restore' && op.kind !== 'mount' && op.kind !== 'attach') {
    report.errors.push(`operation ${op.id}: no recovery for operations of kind ${op.kind}`);
    return false;
  }
  const { entries, problems } = readJournal(await ctx.catalog.journalEntries(op.id));
  if (problems.length > 0) {
    report.errors.push(...problems.map((p) => `${op.kind} ${op.id}: ${p}; left for a manual repair`));
    return false;
  }
  if (op.kind === 'backup') return recoverBackup(ctx, vc, op, entries, report);
  const outcome = await recoverJournaled(ctx, vc, entries, report.dryRun);
  report.actions.push(...outcome.actions.map((a) => `${op.kind} ${op.id}: ${a}`));
  report.errors.push(...outcome.errors.map((a) => `${op.kind} ${op.id}: ${a}`));
  return outcome.clean;
}

/**
 * Repairs interrupted operations: those whose process is gone (their lease ran out) and, unless
 * `onlyDead`, those an earlier recover closed without finishing their repair. An operation whose repair
 * fails is closed all the same (no lock outlives its holder) and stays listed for the next recover.
 * Operations of live processes are never touched.
 */
export async function repairOperations(
  ctx: EngineContext,
  report: RecoverReport,
  options: { onlyDead: boolean },
): Promise<void> {
  const { catalog } = ctx;
  const now = ctx.now();
  const unfinished = await catalog.unfinishedOperations();
  const dead = unfinished.filter((op) => !operationAlive(op, now));
  for (const op of unfinished) {
    if (operationAlive(op, now) && op.pid !== process.pid)
      report.running.push({ id: op.id, kind: op.kind, pid: op.pid });
  }
  // Closed by an earlier recover whose repair was incomplete: retried by every full recover until clean.
  const unrepaired = options.onlyDead
    ? []
    : (await catalog.listOperations({ state: ['failed'], recovered: false })).reverse();
  if (options.onlyDead && dead.length === 0) return;
  ctx.events.phase('recover');

  const vc = await ctx.vcenter();
  for (const op of [...dead, ...unrepaired]) {
    let clean = false;
    try {
      clean = await repairOne(ctx, vc, op, report);
    } catch (err) {
      // One operation's failure must not stop the repair of the others: it is retried by the next recover.
      clean = false;
      report.errors.push(`${op.kind} ${op.id}: ${errorMessage(err)}`);
    }
    try {
      // Closed whatever the repair achieved (finishOperation also frees its locks): a lock must never
      // outlive its holder. An incomplete repair stays listed as failed and unrecovered for the next recover.
      if (!report.dryRun) await closeRecovered(ctx, op, clean);
    } catch (err) {
      clean = false;
      report.errors.push(`${op.kind} ${op.id}: ${errorMessage(err)}`);
    }
    (clean ? report.operations : report.stillOpen).push({ id: op.id, kind: op.kind });
  }
}

/** Closes a dead operation (a concurrent recover may have closed it first) and marks it repaired when it is. */
async function closeRecovered(ctx: EngineContext, op: Operation, clean: boolean): Promise<void> {
  if (op.state === 'running') {
    try {
      await ctx.catalog.finishOperation(op.id, 'failed');
    } catch (err) {
      if (!(err instanceof ConflictError && err.code === 'OPERATION_FINISHED')) throw err;
    }
  }
  if (clean) await ctx.catalog.markRecovered(op.id);
}

/** Whether any unfinished operation has outlived its lease (what `repairOperations` would repair). */
export async function anyDeadOperation(ctx: EngineContext): Promise<boolean> {
  return (await ctx.catalog.unfinishedOperations()).some((o) => !operationAlive(o, ctx.now()));
}
