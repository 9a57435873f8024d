import { join } from 'node:path';
import type { Mount } from '../catalog/index.js';
import { ConflictError, NotFoundError, SnapkeeperError, UsageError } from '../errors.js';
import type { BackupRecord } from '../model/backup.js';
import type { Host, Inventory } from '../model/inventory.js';
import type { VcenterSession } from '../vsphere/index.js';
import type { EngineContext } from './context.js';
import { ownedLabel } from './ids.js';
import {
  catalogBackup,
  type DatastorePlace,
  datastorePlaces,
  mountedDatastorePrefix,
  step,
} from './restore-common.js';
import { attachDataOf, type MountData, mountDataOf, unmountOne } from './steps/mounts.js';

export type { MountData, MountedDatastore } from './steps/mounts.js';

import { journal } from './journal/write.js';
import { checkedOperation, runOperation } from './operation.js';
import { assertSnapshotsPresent } from './snapshot-presence.js';

/**
 * Mount (SPEC 3): a backup's array snapshot exposed as datastore(s) on a chosen host. The snapshot itself is
 * never written: each array snapshot is cloned (instant on btrfs and reflink) and the clone's volume
 * directories are mounted with CreateLocalDatastore, named `snapkeeper-<backup id>-<datastore>` (no VMFS
 * resignature in the simulator, SPEC 7). Mounts are recorded in the catalog, which pins the backup: it
 * cannot be deleted or expired while mounted; while the mount is being made, the operation's lock
 * `backup:<id>` pins it. `unmount` removes the datastores and deletes the clones.
 */

export interface MountResult extends MountData {
  /** Empty for a dry run. */
  mountId: string;
  backupId: string;
  /** A dry run: the datastores that would be mounted (no id, clone or path yet), nothing changed. */
  dryRun: boolean;
}

export function mountedDatastoreName(backupId: string, datastore: string): string {
  return `${mountedDatastorePrefix(backupId)}${datastore}`;
}

/** The `datastore` mount of a backup, if it is mounted. */
export async function datastoreMountOf(ctx: EngineContext, backupId: string): Promise<Mount | undefined> {
  return (await ctx.catalog.mountsOf(backupId)).find((m) => m.kind === 'datastore');
}

/** Checks made before any change: nothing of that name is mounted already. */
export function checkMountable(backup: BackupRecord, inventory: Inventory): void {
  for (const s of backup.snapshots) {
    for (const ds of Object.keys(s.datastores)) {
      const name = mountedDatastoreName(backup.id, ds);
      if (inventory.datastores.some((d) => d.name === name)) {
        throw new ConflictError('DATASTORE_EXISTS', `a datastore named ${name} already exists in vCenter`);
      }
    }
  }
}

/**
 * What a mount of `backup` on `host` would make, for dry runs: the datastores by name and source, without
 * the ids, clones and paths only a real mount has.
 */
export function plannedMount(backup: BackupRecord, host: Host): MountData {
  const datastores = backup.snapshots.flatMap((s) =>
    Object.entries(s.datastores)
      .filter(([, volumes]) => volumes.length === 1)
      .map(([source]) => ({
        name: mountedDatastoreName(backup.id, source),
        id: '',
        source,
        path: '',
        array: s.array,
        cloneId: '',
      })),
  );
  return { host: host.name, hostId: host.id, datastores, clones: [] };
}

/**
 * The journaled steps of a mount inside operation `opId`: clone each array snapshot, mount each of its
 * datastores on `host`, record the mount as `mountId`. Used by `mount` and by `attach` when it mounts.
 */
export async function mountSteps(
  ctx: EngineContext,
  vc: VcenterSession,
  opId: string,
  mountId: string,
  backup: BackupRecord,
  host: Host,
  places: Map<string, DatastorePlace>,
): Promise<MountData> {
  const data: MountData = { host: host.name, hostId: host.id, datastores: [], clones: [] };
  ctx.events.phase('mount');
  for (const s of backup.snapshots) {
    const array = await ctx.array(s.array);
    ctx.events.item(`array ${s.array}`, 'cloning the snapshot');
    const clone = await step(
      ctx,
      opId,
      {
        action: 'array.clone',
        target: s.array,
        data: { array: s.array, snapshotId: s.snapshotId, label: ownedLabel(opId, ctx.catalog.id) },
      },
      () => array.cloneSnapshot(s.snapshotId, { label: ownedLabel(opId, ctx.catalog.id) }),
      (c) => ({ cloneId: c.id }),
    );
    data.clones.push({ array: s.array, cloneId: clone.id });
    await ctx.crashPoint('mount-cloned');
    for (const [source, volumes] of Object.entries(s.datastores)) {
      if (volumes.length !== 1) continue; // a datastore over several volumes cannot be one directory
      const subPath = places.get(source)?.subPath ?? '';
      const volumeExport = clone.volumeExports[volumes[0]!];
      if (volumeExport === undefined) {
        throw new SnapkeeperError(
          'CLONE_VOLUME_MISSING',
          `clone ${clone.id} of array ${s.array} does not export volume ${volumes[0]}`,
        );
      }
      const path = subPath === '' ? volumeExport : join(volumeExport, subPath);
      const name = mountedDatastoreName(backup.id, source);
      ctx.events.item(name, `mounting on ${host.name}`);
      const id = await step(
        ctx,
        opId,
        { action: 'datastore.create', target: name, data: { hostId: host.id, name, path } },
        () => vc.createDatastore(host.id, name, path),
        (dsId) => ({ datastoreId: dsId }),
      );
      data.datastores.push({ name, id, source, path, array: s.array, cloneId: clone.id });
      await ctx.crashPoint('mount-datastore-created');
    }
  }
  await step(ctx, opId, { action: 'mount.record', target: backup.id, data: { mountId } }, async () =>
    ctx.catalog.addMount({ id: mountId, backupId: backup.id, kind: 'datastore', data: { ...data } }),
  );
  return data;
}

export interface MountRequest {
  backupId: string;
  /** Host to mount on (default: the host of the backup's first VM). */
  host?: string;
  /** Check everything (the backup's array snapshots exist too) and report what would be mounted. */
  dryRun?: boolean;
}

export function runMount(ctx: EngineContext, request: MountRequest): Promise<MountResult> {
  return checkedOperation(() => mountOnce(ctx, request));
}

async function mountOnce(ctx: EngineContext, request: MountRequest): Promise<MountResult> {
  const backup = await catalogBackup(ctx, request.backupId, 'mount');
  if (await datastoreMountOf(ctx, backup.id)) {
    throw new ConflictError('BACKUP_MOUNTED', `backup ${backup.id} is already mounted; unmount it first`);
  }
  const vc = await ctx.vcenter();
  const inventory = await vc.inventory();
  const hostName = request.host ?? backup.vms[0]?.host ?? '';
  const host = inventory.hosts.find((h) => h.name === hostName);
  if (!host) throw new NotFoundError('HOST_NOT_FOUND', `no host ${hostName} in vCenter`);
  checkMountable(backup, inventory);
  if (request.dryRun) {
    await assertSnapshotsPresent(ctx, backup);
    return { mountId: '', backupId: backup.id, dryRun: true, ...plannedMount(backup, host) };
  }
  const places = await datastorePlaces(ctx, inventory);
  return runOperation(
    ctx,
    { kind: 'mount', subject: backup.id, locks: [`mount:${backup.id}`], reads: backup },
    async (opId) => {
      const data = await mountSteps(ctx, vc, opId, opId, backup, host, places);
      await journal(ctx.catalog, opId, { action: 'commit', target: backup.id });
      return { mountId: opId, backupId: backup.id, dryRun: false, ...data };
    },
  );
}

export interface UnmountResult {
  backupId: string;
  unmounted: { mountId: string; datastores: string[]; clones: number }[];
}

export function runUnmount(ctx: EngineContext, request: { backupId: string }): Promise<UnmountResult> {
  return checkedOperation(() => unmountOnce(ctx, request));
}

async function unmountOnce(ctx: EngineContext, request: { backupId: string }): Promise<UnmountResult> {
  await catalogBackup(ctx, request.backupId);
  const mounts = await ctx.catalog.mountsOf(request.backupId);
  const datastoreMounts = mounts.filter((m) => m.kind === 'datastore');
  if (datastoreMounts.length === 0) {
    throw new UsageError('NOT_MOUNTED', `backup ${request.backupId} is not mounted`);
  }
  const attached = mounts.filter((m) => m.kind === 'attach');
  if (attached.length > 0) {
    throw new ConflictError(
      'MOUNT_IN_USE',
      `disks of backup ${request.backupId} are attached to ${attached.map((a) => attachDataOf(a).targetVm).join(', ')}; detach them first`,
    );
  }
  const vc = await ctx.vcenter();
  return runOperation(
    ctx,
    {
      kind: 'mount',
      subject: request.backupId,
      locks: [`mount:${request.backupId}`, { resource: `backup:${request.backupId}`, mode: 'shared' }],
    },
    async (opId) => {
      const out: UnmountResult = { backupId: request.backupId, unmounted: [] };
      for (const m of datastoreMounts) {
        // Journaled as a roll-forward step: once begun, recover finishes the unmount rather than undo it.
        await journal(ctx.catalog, opId, {
          action: 'unmount.begin',
          target: request.backupId,
          data: { mountId: m.id },
        });
        ctx.events.phase(`unmount ${m.id}`);
        await unmountOne(ctx, vc, m);
        await ctx.crashPoint('unmount-done');
        const data = mountDataOf(m);
        out.unmounted.push({
          mountId: m.id,
          datastores: data.datastores.map((d) => d.name),
          clones: data.clones.length,
        });
      }
      await journal(ctx.catalog, opId, { action: 'commit', target: request.backupId });
      return out;
    },
  );
}
