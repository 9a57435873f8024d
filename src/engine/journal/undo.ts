import { errorMessage } from '../../errors.js';
import type { Inventory } from '../../model/inventory.js';
import { isGone, type VcenterSession, type VmDevices } from '../../vsphere/index.js';
import type { EngineContext } from '../context.js';
import { detachAllAndRemoveDatastore, removePlaced } from '../restore-common.js';
import { detachOne, unmountOne } from '../steps/mounts.js';
import { rollForwardOffload } from '../steps/offload-record.js';
import type { TypedEntry } from './actions.js';
import { dispatch, type JournaledAction, type Recovery } from './report.js';

/** The recovery of restore, mount and attach journal actions: undo newest first, or roll forward. */

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
      await u.act(`remove datastore ${name}`, async () =>
        detachAllAndRemoveDatastore(u.vc, await u.inventory(), ds, e.data.hostId),
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
        if (await u.ctx.files.exists(p.aside)) {
          await u.act(`put ${p.dir} back`, async () => {
            await u.ctx.files.remove(p.dir);
            await u.ctx.files.move(p.aside, p.dir);
          });
        } else if (!p.hadDir && !(await u.ctx.files.exists(p.staged)) && (await u.ctx.files.exists(p.dir))) {
          await u.act(`remove restored directory ${p.dir}`, () => u.ctx.files.remove(p.dir));
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
    run: (u, e) => u.act(`delete restored files in ${e.data.dir}`, () => removePlaced(u.ctx.files, e.data)),
  },
  commit: {
    kind: 'roll-forward',
    // After a commit only the replaced VM's old directories are left to delete.
    run: async (u, _e, all) => {
      for (const e of all) {
        if (e.action !== 'dirs.swap') continue;
        for (const p of e.data.pairs ?? []) {
          if (await u.ctx.files.exists(p.aside)) {
            await u.act(`delete the replaced files ${p.aside}`, () => u.ctx.files.remove(p.aside));
          }
        }
      }
    },
  },
  'unmount.begin': {
    kind: 'roll-forward',
    run: (u, e) => finishRelease(u, e.data.mountId, 'finish unmounting', (m) => unmountOne(u.ctx, u.vc, m)),
  },
  'detach.begin': {
    kind: 'roll-forward',
    run: (u, e) => finishRelease(u, e.data.attachId, 'finish detaching', (m) => detachOne(u.ctx, u.vc, m)),
  },
  'repository.offload': {
    kind: 'roll-forward',
    // The repository decides: its manifest for the backup is recorded as the copy; without one there is
    // nothing to undo (stored packs are reused by the next offload, prune collects what nothing references).
    run: async (u, e) => {
      try {
        u.out.actions.push(await rollForwardOffload(u.ctx, e.data, u.dryRun));
      } catch (err) {
        u.fail(`record the copy of backup ${e.data.backupId} in repository ${e.data.repository}`, err);
      }
    },
  },
};

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
export async function recoverJournaled(
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
