import { AsyncLocalStorage } from 'node:async_hooks';
import { type JournalEntry, type LockRequest, operationAlive } from '../catalog/index.js';
import { errorMessage, SnapkeeperError } from '../errors.js';
import type { Inventory } from '../model/inventory.js';
import { isGone } from '../vsphere/index.js';
import type { CreateVmSpec, DiskAttachment, VcenterSession, VmDevices } from '../vsphere/session.js';
import type { EngineContext } from './context.js';
import { RunningOperation } from './operation.js';
import { recover } from './recover.js';
import { detachAllAndRemoveDatastore, newOperationId, removePlaced } from './restore-common.js';

/** What undoing (or finalizing) one restore, mount or attach operation did. */
export interface UndoOutcome {
  /** True when nothing of the operation is left half made. */
  clean: boolean;
  actions: string[];
  errors: string[];
}

export interface SwapPair {
  /** The VM directory on a datastore (what the restored VM uses). */
  dir: string;
  /** Where the replaced VM's directory was moved. */
  aside: string;
  /** Where the restored files were staged. */
  staged: string;
  /** Whether `dir` existed before (the live VM's directory). */
  hadDir: boolean;
}

/** One undo in progress: what every step's undo needs, and where it reports. */
interface UndoRun {
  ctx: EngineContext;
  vc: VcenterSession;
  out: UndoOutcome;
  /** Records `what` and does it (unless a dry run); a failure makes the outcome unclean. */
  act(what: string, fn: () => Promise<unknown>): Promise<void>;
  fail(what: string, err: unknown): void;
  /** The inventory, read once and again after a step that changed the VMs. */
  inventory(): Promise<Inventory>;
  inventoryChanged(): void;
}

/** How each journaled step is undone. Steps without an entry (vm.power-on, commit, ...) need nothing. */
const stepUndos: Record<string, (u: UndoRun, e: JournalEntry) => Promise<void>> = {
  'mount.record': async (u, e) => {
    const id = String(e.data.mountId);
    if ((await u.ctx.catalog.listMounts()).some((m) => m.id === id)) {
      await u.act(`remove mount record ${id}`, async () => u.ctx.catalog.removeMount(id));
    }
  },
  'vm.attach': undoDiskChanges,
  'vm.reconfigure': undoDiskChanges,
  'datastore.create': async (u, e) => {
    const name = String(e.data.name);
    const ds = (await u.inventory()).datastores.find((x) => x.name === name);
    if (!ds) return;
    const hostId = String(e.data.hostId);
    await u.act(`remove datastore ${name}`, async () =>
      detachAllAndRemoveDatastore(u.vc, await u.inventory(), ds, hostId),
    );
  },
  'array.clone': async (u, e) => {
    const arrayName = String(e.data.array);
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
  'vm.create': async (u, e) => {
    const vmxFile = String(e.data.vmxFile);
    const vm = (await u.inventory()).vms.find(
      (v) => (e.data.vmId !== undefined && v.id === e.data.vmId) || v.vmxFile === vmxFile,
    );
    if (vm) await u.act(`destroy the half-restored VM ${vm.name} (${vm.id})`, () => u.vc.destroyVm(vm.id));
    u.inventoryChanged();
  },
  'dirs.swap': async (u, e) => {
    for (const p of (e.data.pairs as SwapPair[] | undefined) ?? []) {
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
  'vm.unregister': async (u, e) => {
    const spec = e.data.spec as CreateVmSpec;
    if ((await u.inventory()).vms.some((v) => v.vmxFile === spec.vmxFile)) return;
    await u.act(`register the replaced VM ${spec.name} again`, async () => {
      const id = await u.vc.registerVm(spec);
      if (e.data.wasOn === true) await u.vc.powerOnVm(id);
    });
    u.inventoryChanged();
  },
  'vm.power-off': async (u, e) => {
    if (e.data.wasOn !== true) return;
    try {
      const dev = await u.vc.vmDevices(e.target);
      if (dev.powerState !== 'poweredOn')
        await u.act(`power VM ${dev.name} on again`, () => u.vc.powerOnVm(e.target));
    } catch (err) {
      if (!isGone(err)) u.fail(`VM ${e.target}`, err);
    }
  },
  'files.place': (u, e) =>
    u.act(`delete restored files in ${String(e.data.dir)}`, () => removePlaced(u.ctx.files, e.data)),
};

/** Detaches the disk files a step added and re-attaches the disks it removed (a VM that is gone: nothing). */
async function undoDiskChanges(u: UndoRun, e: JournalEntry): Promise<void> {
  const files = ((e.data.files ?? e.data.added) as string[] | undefined) ?? [];
  const removed = (e.data.removed as (DiskAttachment & { key: number })[] | undefined) ?? [];
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

/** After a `commit` only the replaced VM's old directories are left to delete. */
async function finalizeCommitted(u: UndoRun, entries: JournalEntry[]): Promise<void> {
  for (const e of entries.filter((x) => x.action === 'dirs.swap')) {
    for (const p of (e.data.pairs as SwapPair[] | undefined) ?? []) {
      if (await u.ctx.files.exists(p.aside)) {
        await u.act(`delete the replaced files ${p.aside}`, () => u.ctx.files.remove(p.aside));
      }
    }
  }
}

/**
 * Undoes an operation from its journal, newest step first, or finalizes it when it has a `commit` entry
 * (then only the replaced VM's old files are deleted). Idempotent: every step checks what is still there, so
 * it is safe after a crash at any point and when run twice. It stops at the first step it fails to undo
 * (not clean: the operation stays open, the next recover starts again from the newest step): each step
 * stands on the ones before it, e.g. restored files are never deleted while a VM may still have them as a
 * disk. Used by the operation's own failure path and by `recover` (undo.ts).
 */
export async function undoJournal(
  ctx: EngineContext,
  vc: VcenterSession,
  entries: JournalEntry[],
  options: { dryRun: boolean },
): Promise<UndoOutcome> {
  const out: UndoOutcome = { clean: true, actions: [], errors: [] };
  let inventory: Inventory | undefined;
  const u: UndoRun = {
    ctx,
    vc,
    out,
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
  if (entries.some((e) => e.action === 'commit')) {
    await finalizeCommitted(u, entries);
    return out;
  }
  for (const e of [...entries].reverse()) {
    if (!out.clean) break;
    if (Object.hasOwn(stepUndos, e.action)) await stepUndos[e.action]!(u, e);
  }
  return out;
}

/** Set while an entry point runs its checks again after the recovery in `runOperation` changed things. */
const revalidation = new AsyncLocalStorage<'first' | 'again'>();

/** Thrown by `runOperation` when the checks made before it may be stale; `checkedOperation` runs them again. */
class ChecksStale extends Error {}

/**
 * Runs an entry point (restore, mount, unmount, attach, detach: its checks, then `runOperation`). When the
 * recovery `runOperation` does before it begins repaired interrupted operations, what was checked (the
 * inventory, the mounts) may have changed: the entry point runs once more, checks first, on fresh state.
 */
export async function checkedOperation<T>(fn: () => Promise<T>): Promise<T> {
  try {
    return await revalidation.run('first', fn);
  } catch (err) {
    if (!(err instanceof ChecksStale)) throw err;
    return revalidation.run('again', fn);
  }
}

/**
 * Runs one journaled operation (restore, mount, attach): repairs what dead operations left (recover, only
 * dead operations), begins it, takes its locks, runs `body`; on failure undoes what the journal says was
 * done and closes the operation as failed (or leaves it open for `recover` when undoing failed too), then
 * rethrows with what happened.
 *
 * Callers make every check (and return dry runs) before calling it: the recovery is the first change, so a
 * dry run or a refused request (exit 3) changes nothing, not even a crashed backup's VMs.
 */
export async function runOperation<T>(
  ctx: EngineContext,
  vc: VcenterSession,
  op: { kind: 'restore' | 'mount' | 'attach'; subject: string; locks: LockRequest[] },
  body: (opId: string) => Promise<T>,
): Promise<T> {
  // What dead operations left is repaired first (only now: nothing before this point changes anything).
  // Whatever the repair touched may be what the caller checked: then its checks run again.
  const dead = (await ctx.catalog.unfinishedOperations()).some((o) => !operationAlive(o, ctx.now()));
  await recover(ctx, { onlyDeadOperations: true });
  if (dead && revalidation.getStore() === 'first') throw new ChecksStale();
  const opId = newOperationId(op.kind, ctx.now());
  const running = await RunningOperation.begin(ctx.catalog, { id: opId, ...op });
  try {
    const value = await body(opId);
    await running.finish('done');
    return value;
  } catch (err) {
    ctx.events.phase('undo');
    const undo = await undoJournal(ctx, vc, await ctx.catalog.journalEntries(opId), { dryRun: false });
    if (undo.clean) await running.finish('failed', { repaired: true });
    else running.abandon();
    const why = undo.clean
      ? 'everything it did was undone'
      : `undoing failed (${undo.errors.join('; ')}); run snapkeeper recover`;
    const code = err instanceof SnapkeeperError ? err.code : `${op.kind.toUpperCase()}_FAILED`;
    throw new SnapkeeperError(code, `${op.kind} failed: ${errorMessage(err)}; ${why}`, {
      cause: err,
      details: { ...(err instanceof SnapkeeperError ? err.details : {}), operation: opId, undo },
    });
  }
}
