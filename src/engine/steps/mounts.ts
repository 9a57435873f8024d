import type { Mount } from '../../catalog/index.js';
import { detachDiskFiles, isGone, type VsphereCaller } from '../../vsphere/index.js';
import { crashPoint, type EngineContext } from '../context.js';
import { detachAllAndRemoveDatastore } from '../restore-common.js';

/**
 * Letting go of a mount or an attach: steps that `unmount` and `detach` run and that recovery finishes
 * (roll forward) when one of them was interrupted. Below both, so recovery never imports an entry point.
 */

export interface MountedDatastore {
  /** Name of the mounted datastore (`snapkeeper-<backup>-<source>`). */
  name: string;
  id: string;
  /** The backed-up datastore it shows. */
  source: string;
  path: string;
  array: string;
  cloneId: string;
}

/** What a `datastore` mount record holds (Mount.data). */
export interface MountData {
  host: string;
  hostId: string;
  datastores: MountedDatastore[];
  clones: { array: string; cloneId: string }[];
}

/** What an `attach` mount record holds (Mount.data). */
export interface AttachData {
  targetVm: string;
  targetVmId: string;
  files: string[];
  /** The mount the disks are on; whether an attach made it is in its id (madeByAttach). */
  mountId: string;
}

/**
 * Removes a datastore mount: detaches any disk a VM still has on its datastores (a crashed attach), removes
 * the datastores, deletes the clones, then the record. Idempotent: safe to repeat after a crash.
 */
export async function unmountOne(ctx: EngineContext, vc: VsphereCaller, mount: Mount): Promise<void> {
  const data = mount.data as unknown as MountData;
  const inventory = await (await ctx.vcenter()).inventory();
  for (const ds of data.datastores ?? []) {
    const live = inventory.datastores.find((d) => d.name === ds.name);
    if (live) await detachAllAndRemoveDatastore(vc, inventory, live, data.hostId);
  }
  for (const c of data.clones ?? []) await (await ctx.array(c.array)).deleteClone(c.cloneId);
  if (ctx.catalog.listMounts().some((m) => m.id === mount.id)) ctx.catalog.removeMount(mount.id);
}

function madeByAttach(mountId: string): boolean {
  return mountId.startsWith('attach-') && mountId.endsWith('-mount');
}

/**
 * Detaches one attach (idempotent): removes its disks from the VM (keeping the files), then the mount when an
 * attach made it and no other attach still uses it (datastores removed, clones deleted), and only then its
 * record: a crash anywhere leaves the record, so `recover` finishes the detach. Returns whether it unmounted.
 */
export async function detachOne(ctx: EngineContext, vc: VsphereCaller, attach: Mount): Promise<boolean> {
  const data = attach.data as unknown as AttachData;
  try {
    await detachDiskFiles(vc, data.targetVmId, data.files ?? []);
  } catch (err) {
    if (!isGone(err)) throw err;
  }
  crashPoint('detach-disks-removed');
  const mounts = ctx.catalog.listMounts();
  const others = mounts.filter(
    (m) =>
      m.kind === 'attach' && m.id !== attach.id && (m.data as unknown as AttachData).mountId === data.mountId,
  );
  const mount = mounts.find((m) => m.id === data.mountId);
  const release = mount !== undefined && others.length === 0 && madeByAttach(data.mountId);
  if (release) await unmountOne(ctx, vc, mount);
  if (mounts.some((m) => m.id === attach.id)) ctx.catalog.removeMount(attach.id);
  return release;
}
