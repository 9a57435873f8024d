import { AsyncLocalStorage } from 'node:async_hooks';
import { rename, rm } from 'node:fs/promises';
import { type JournalEntry, type LockRequest, operationAlive } from '../catalog/index.js';
import { errorMessage, SnapkeeperError } from '../errors.js';
import type { Inventory } from '../model/inventory.js';
import { pathExists } from '../util/fs.js';
import { fetchInventory } from '../vsphere/inventory.js';
import {
  type CreateVmSpec,
  type DiskAttachment,
  destroyVm,
  detachDiskFiles,
  isGone,
  powerOn,
  reconfigureDisks,
  registerVm,
  type VsphereCaller,
  vmDevices,
} from '../vsphere/vm-ops.js';
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

/**
 * Undoes an operation from its journal, newest step first, or finalizes it when it has a `commit` entry
 * (then only the replaced VM's old files are deleted). Idempotent: every step checks what is still there, so
 * it is safe after a crash at any point and when run twice. Used by the operation's own failure path and by
 * `recover` (undo.ts).
 */
export async function undoJournal(
  ctx: EngineContext,
  vc: VsphereCaller,
  entries: JournalEntry[],
  options: { dryRun: boolean },
): Promise<UndoOutcome> {
  const out: UndoOutcome = { clean: true, actions: [], errors: [] };
  const act = async (what: string, fn: () => Promise<unknown>) => {
    out.actions.push(`${options.dryRun ? 'would ' : ''}${what}`);
    if (options.dryRun) return;
    try {
      await fn();
    } catch (err) {
      out.clean = false;
      out.errors.push(`${what}: ${errorMessage(err)}`);
    }
  };
  let inventory: Inventory | undefined;
  const inv = async () => {
    inventory ??= await fetchInventory(vc);
    return inventory;
  };

  if (entries.some((e) => e.action === 'commit')) {
    for (const e of entries.filter((x) => x.action === 'dirs.swap')) {
      for (const p of (e.data.pairs as SwapPair[] | undefined) ?? []) {
        if (await pathExists(p.aside))
          await act(`delete the replaced files ${p.aside}`, () =>
            rm(p.aside, { recursive: true, force: true }),
          );
      }
    }
    return out;
  }

  for (const e of [...entries].reverse()) {
    const d = e.data;
    switch (e.action) {
      case 'mount.record': {
        const id = String(d.mountId);
        if (ctx.catalog.listMounts().some((m) => m.id === id)) {
          await act(`remove mount record ${id}`, async () => ctx.catalog.removeMount(id));
        }
        break;
      }
      case 'vm.attach':
      case 'vm.reconfigure': {
        const files = ((d.files ?? d.added) as string[] | undefined) ?? [];
        const removed = (d.removed as (DiskAttachment & { key: number })[] | undefined) ?? [];
        let devices: Awaited<ReturnType<typeof vmDevices>> | undefined;
        try {
          devices = await vmDevices(vc, e.target);
        } catch (err) {
          if (isGone(err)) break;
          out.clean = false;
          out.errors.push(`VM ${e.target}: ${errorMessage(err)}`);
          break;
        }
        if (devices.disks.some((x) => files.includes(x.file))) {
          await act(`detach ${files.join(', ')} from VM ${devices.name}`, () =>
            detachDiskFiles(vc, e.target, files),
          );
        }
        const missing = removed.filter((r) => !devices.disks.some((x) => x.file === r.file));
        if (missing.length > 0) {
          await act(`re-attach ${missing.map((m) => m.file).join(', ')} to VM ${devices.name}`, () =>
            reconfigureDisks(vc, e.target, { add: missing }),
          );
        }
        break;
      }
      case 'datastore.create': {
        const name = String(d.name);
        const ds = (await inv()).datastores.find((x) => x.name === name);
        if (ds) {
          const hostId = String(d.hostId);
          await act(`remove datastore ${name}`, async () =>
            detachAllAndRemoveDatastore(vc, await inv(), ds, hostId),
          );
        }
        break;
      }
      case 'array.clone': {
        const arrayName = String(d.array);
        try {
          const array = await ctx.array(arrayName);
          for (const c of await array.listClones()) {
            if (c.id === d.cloneId || c.label === d.label) {
              await act(`delete clone ${arrayName}/${c.id}`, () => array.deleteClone(c.id));
            }
          }
        } catch (err) {
          out.clean = false;
          out.errors.push(`array ${arrayName}: ${errorMessage(err)}`);
        }
        break;
      }
      case 'vm.create': {
        const vmxFile = String(d.vmxFile);
        const vm = (await inv()).vms.find(
          (v) => (d.vmId !== undefined && v.id === d.vmId) || v.vmxFile === vmxFile,
        );
        if (vm) await act(`destroy the half-restored VM ${vm.name} (${vm.id})`, () => destroyVm(vc, vm.id));
        inventory = undefined;
        break;
      }
      case 'dirs.swap': {
        for (const p of (d.pairs as SwapPair[] | undefined) ?? []) {
          if (await pathExists(p.aside)) {
            await act(`put ${p.dir} back`, async () => {
              await rm(p.dir, { recursive: true, force: true });
              await rename(p.aside, p.dir);
            });
          } else if (!p.hadDir && !(await pathExists(p.staged)) && (await pathExists(p.dir))) {
            await act(`remove restored directory ${p.dir}`, () =>
              rm(p.dir, { recursive: true, force: true }),
            );
          }
        }
        break;
      }
      case 'vm.unregister': {
        const spec = d.spec as CreateVmSpec;
        const present = (await inv()).vms.some((v) => v.vmxFile === spec.vmxFile);
        if (!present) {
          await act(`register the replaced VM ${spec.name} again`, async () => {
            const id = await registerVm(vc, spec);
            if (d.wasOn === true) await powerOn(vc, id);
          });
          inventory = undefined;
        }
        break;
      }
      case 'vm.power-off': {
        if (d.wasOn !== true) break;
        try {
          const dev = await vmDevices(vc, e.target);
          if (dev.powerState !== 'poweredOn')
            await act(`power VM ${dev.name} on again`, () => powerOn(vc, e.target));
        } catch (err) {
          if (!isGone(err)) {
            out.clean = false;
            out.errors.push(`VM ${e.target}: ${errorMessage(err)}`);
          }
        }
        break;
      }
      case 'files.place': {
        await act(`delete restored files in ${String(d.dir)}`, () => removePlaced(d));
        break;
      }
      default:
        break;
    }
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
  vc: VsphereCaller,
  op: { kind: 'restore' | 'mount' | 'attach'; subject: string; locks: LockRequest[] },
  body: (opId: string) => Promise<T>,
): Promise<T> {
  // What dead operations left is repaired first (only now: nothing before this point changes anything).
  // Whatever the repair touched may be what the caller checked: then its checks run again.
  const dead = ctx.catalog.unfinishedOperations().some((o) => !operationAlive(o, ctx.now()));
  await recover(ctx, { onlyDeadOperations: true });
  if (dead && revalidation.getStore() === 'first') throw new ChecksStale();
  const opId = newOperationId(op.kind, ctx.now());
  const running = RunningOperation.begin(ctx.catalog, { id: opId, ...op });
  try {
    const value = await body(opId);
    running.finish('done');
    return value;
  } catch (err) {
    ctx.events.phase('undo');
    const undo = await undoJournal(ctx, vc, ctx.catalog.journalEntries(opId), { dryRun: false });
    if (undo.clean) running.finish('failed', { repaired: true });
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
