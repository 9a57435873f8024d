import { z } from 'zod';
import type { Mount } from '../../catalog/index.js';
import { SnapkeeperError } from '../../errors.js';
import { isGone, type VcenterSession } from '../../vsphere/index.js';
import type { EngineContext } from '../context.js';
import { detachAllAndRemoveDatastore } from '../restore-common.js';

/**
 * Letting go of a mount or an attach: steps that `unmount` and `detach` run and that recovery finishes
 * (roll forward) when one of them was interrupted. Below both, so recovery never imports an entry point.
 */

const mountedDatastore = z.looseObject({
  /** Name of the mounted datastore (`snapkeeper-<backup>-<source>`). */
  name: z.string(),
  id: z.string(),
  /** The backed-up datastore it shows. */
  source: z.string(),
  path: z.string(),
  array: z.string(),
  cloneId: z.string(),
});
export type MountedDatastore = z.infer<typeof mountedDatastore>;

/** What a `datastore` mount record holds (Mount.data). */
const mountData = z.looseObject({
  host: z.string(),
  hostId: z.string(),
  datastores: z.array(mountedDatastore).default([]),
  clones: z.array(z.looseObject({ array: z.string(), cloneId: z.string() })).default([]),
});
export type MountData = z.infer<typeof mountData>;

/** What an `attach` mount record holds (Mount.data). */
const attachData = z.looseObject({
  targetVm: z.string(),
  targetVmId: z.string(),
  files: z.array(z.string()).default([]),
  /** The mount the disks are on; whether an attach made it is in its id (madeByAttach). */
  mountId: z.string(),
});
export type AttachData = z.infer<typeof attachData>;

/** A mount record's data, checked: the catalog is input, and an unmount acts on what it says. */
export function mountDataOf(mount: Mount): MountData {
  return parseRecord(mountData, mount);
}

export function attachDataOf(attach: Mount): AttachData {
  return parseRecord(attachData, attach);
}

function parseRecord<T>(schema: z.ZodType<T>, record: Mount): T {
  const parsed = schema.safeParse(record.data);
  if (parsed.success) return parsed.data;
  const what = parsed.error.issues.map((i) => `${i.path.join('.') || 'data'}: ${i.message}`).join('; ');
  throw new SnapkeeperError(
    'MOUNT_RECORD_INVALID',
    `${record.kind} record ${record.id} in the catalog: ${what}`,
  );
}

/**
 * Removes a datastore mount: detaches any disk a VM still has on its datastores (a crashed attach), removes
 * the datastores, deletes the clones, then the record. Idempotent: safe to repeat after a crash.
 */
export async function unmountOne(ctx: EngineContext, vc: VcenterSession, mount: Mount): Promise<void> {
  const data = mountDataOf(mount);
  const inventory = await vc.inventory();
  for (const ds of data.datastores ?? []) {
    const live = inventory.datastores.find((d) => d.name === ds.name);
    if (live) await detachAllAndRemoveDatastore(vc, inventory, live, data.hostId);
  }
  for (const c of data.clones ?? []) await (await ctx.array(c.array)).deleteClone(c.cloneId);
  if ((await ctx.catalog.listMounts()).some((m) => m.id === mount.id))
    await ctx.catalog.removeMount(mount.id);
}

function madeByAttach(mountId: string): boolean {
  return mountId.startsWith('attach-') && mountId.endsWith('-mount');
}

/**
 * Detaches one attach (idempotent): removes its disks from the VM (keeping the files), then the mount when an
 * attach made it and no other attach still uses it (datastores removed, clones deleted), and only then its
 * record: a crash anywhere leaves the record, so `recover` finishes the detach. Returns whether it unmounted.
 */
export async function detachOne(ctx: EngineContext, vc: VcenterSession, attach: Mount): Promise<boolean> {
  const data = attachDataOf(attach);
  try {
    await vc.detachDiskFiles(data.targetVmId, data.files ?? []);
  } catch (err) {
    if (!isGone(err)) throw err;
  }
  await ctx.crashPoint('detach-disks-removed');
  const mounts = await ctx.catalog.listMounts();
  const others = mounts.filter(
    (m) => m.kind === 'attach' && m.id !== attach.id && attachDataOf(m).mountId === data.mountId,
  );
  const mount = mounts.find((m) => m.id === data.mountId);
  const release = mount !== undefined && others.length === 0 && madeByAttach(data.mountId);
  if (release) await unmountOne(ctx, vc, mount);
  if (mounts.some((m) => m.id === attach.id)) await ctx.catalog.removeMount(attach.id);
  return release;
}
