import type { Mount } from '../catalog/index.js';
import { ConflictError, NotFoundError, UsageError } from '../errors.js';
import type { Warning } from '../model/backup.js';
import { datastorePathToRelative } from '../rules/datastores.js';
import {
  asCaller,
  type DiskAttachment,
  detachDiskFiles,
  freeScsiSlots,
  isGone,
  reconfigureDisks,
  type VsphereCaller,
  vmDevices,
} from '../vsphere/vm-ops.js';
import { crashPoint, type EngineContext } from './context.js';
import {
  checkMountable,
  datastoreMountOf,
  type MountData,
  mountedDatastoreName,
  mountSteps,
  unmountOne,
} from './mount.js';
import { backupVm, catalogBackup, checkName, datastorePlaces, isRdm, step } from './restore-common.js';
import { checkedOperation, runOperation } from './restore-undo.js';
import { applyRule } from './rule-errors.js';

/**
 * Attach (SPEC 3): a backup's standard disks made visible to a running VM for file-level recovery, without
 * copying them. The backup is mounted on the target VM's host if it is not yet (mount.ts: a writable array
 * clone, so the backup never changes), and the disks are added to the VM from the mounted datastore on free
 * SCSI slots. RDM disks are never attached. `detach` removes them (the files stay in the clone) and releases
 * the mount when the attach made it.
 */

export interface AttachRequest {
  backupId: string;
  vm: string;
  to: string;
  disks?: string[];
}

export interface AttachedDisk {
  label: string;
  /** Datastore path on the mounted datastore. */
  file: string;
  key: number;
  controllerKey: number;
  unitNumber: number;
}

export interface AttachResult {
  attachId: string;
  backupId: string;
  vm: string;
  targetVm: { name: string; id: string };
  mount: { id: string; created: boolean; datastores: string[] };
  disks: AttachedDisk[];
  warnings: Warning[];
}

/** What an `attach` mount record holds. */
interface AttachData {
  targetVm: string;
  targetVmId: string;
  files: string[];
  mountId: string;
  ownsMount: boolean;
}

export function runAttach(ctx: EngineContext, request: AttachRequest): Promise<AttachResult> {
  return checkedOperation(() => attachOnce(ctx, request));
}

async function attachOnce(ctx: EngineContext, request: AttachRequest): Promise<AttachResult> {
  checkName('VM name', request.to);
  const { backup, vm } = backupVm(ctx, request.backupId, request.vm, 'attach');
  const unknown = (request.disks ?? []).filter((l) => !vm.disks.some((d) => d.label === l));
  if (unknown.length > 0) {
    throw new NotFoundError(
      'DISK_NOT_IN_BACKUP',
      `VM ${vm.name} in backup ${backup.id} has no disk ${unknown.join(', ')}`,
    );
  }
  const chosen = request.disks ? vm.disks.filter((d) => request.disks!.includes(d.label)) : vm.disks;
  const warnings: Warning[] = chosen.filter(isRdm).map((d) => ({
    code: 'RDM_NOT_ATTACHED',
    message: `${vm.name} / ${d.label}: raw device mapping disks are not in the backup and are not attached`,
  }));
  const disks = chosen.filter((d) => !isRdm(d) && d.included);
  if (disks.length === 0)
    throw new UsageError('NOTHING_TO_ATTACH', `no standard disk of ${vm.name} to attach`);

  const session = await ctx.vcenter();
  const vc = asCaller(session);
  const inventory = await session.inventory();
  const target = inventory.vms.find((v) => v.name === request.to);
  if (!target) throw new NotFoundError('VM_NOT_FOUND', `no VM ${request.to} in vCenter`);
  if (target.powerState !== 'poweredOn') {
    throw new UsageError(
      'VM_NOT_RUNNING',
      `VM ${target.name} is ${target.powerState}: attach needs a running VM`,
    );
  }
  const host = inventory.hosts.find((h) => h.name === target.host);
  if (!host) throw new NotFoundError('HOST_NOT_FOUND', `the host of VM ${target.name} is not in vCenter`);
  const existing = datastoreMountOf(ctx, backup.id);
  if (existing && (existing.data as unknown as MountData).hostId !== host.id) {
    throw new ConflictError(
      'MOUNTED_ELSEWHERE',
      `backup ${backup.id} is mounted on ${String(existing.data.host)}, not on ${host.name} where ${target.name} runs; unmount it first`,
    );
  }
  if (!existing) checkMountable(backup, inventory);
  const devices = await vmDevices(vc, target.id);
  const slots = freeScsiSlots(devices, disks.length);
  const places = await datastorePlaces(ctx, inventory);

  return runOperation(
    ctx,
    vc,
    {
      kind: 'attach',
      subject: backup.id,
      locks: [`vm:${target.id}`, `mount:${backup.id}`, { resource: `backup:${backup.id}`, mode: 'shared' }],
    },
    async (opId) => {
      const mountId = existing?.id ?? `${opId}-mount`;
      const mount = existing
        ? (existing.data as unknown as MountData)
        : await mountSteps(ctx, vc, opId, mountId, backup, host, places);
      const add: (DiskAttachment & { label: string })[] = disks.map((d, i) => {
        const rel = applyRule(() => datastorePathToRelative(d.file));
        return {
          label: d.label,
          file: `[${mountedDatastoreName(backup.id, rel.datastore)}] ${rel.path}`,
          capacityBytes: d.capacityBytes,
          diskMode: 'persistent',
          controllerKey: slots[i]!.controllerKey,
          unitNumber: slots[i]!.unitNumber,
        };
      });
      for (const a of add) {
        const ds = a.file.slice(1, a.file.indexOf(']'));
        if (!mount.datastores.some((m) => m.name === ds)) {
          throw new NotFoundError(
            'DISK_NOT_IN_SNAPSHOT',
            `disk ${a.label} is on no mounted datastore (${ds})`,
          );
        }
      }
      ctx.events.phase(`attach to ${target.name}`);
      const files = add.map((a) => a.file);
      const keys = await step(ctx, opId, { action: 'vm.attach', target: target.id, data: { files } }, () =>
        reconfigureDisks(vc, target.id, { add: add.map(({ label: _label, ...a }) => a) }),
      );
      crashPoint('attach-disks-added');
      const data: AttachData = {
        targetVm: target.name,
        targetVmId: target.id,
        files,
        mountId,
        ownsMount: !existing,
      };
      await step(
        ctx,
        opId,
        { action: 'mount.record', target: backup.id, data: { mountId: opId } },
        async () =>
          ctx.catalog.addMount({ id: opId, backupId: backup.id, kind: 'attach', data: { ...data } }),
      );
      ctx.catalog.journal(opId, { action: 'commit', target: target.id });
      return {
        attachId: opId,
        backupId: backup.id,
        vm: vm.name,
        targetVm: { name: target.name, id: target.id },
        mount: { id: mountId, created: !existing, datastores: mount.datastores.map((d) => d.name) },
        disks: add.map((a, i) => ({
          label: a.label,
          file: a.file,
          key: keys[i] ?? 0,
          controllerKey: a.controllerKey,
          unitNumber: a.unitNumber,
        })),
        warnings,
      };
    },
  );
}

/**
 * Detaches one attach (idempotent): removes its disks from the VM (keeping the files), its record, and the
 * mount it made once no other attach uses that mount.
 */
export async function detachOne(ctx: EngineContext, vc: VsphereCaller, attach: Mount): Promise<boolean> {
  const data = attach.data as unknown as AttachData;
  try {
    await detachDiskFiles(vc, data.targetVmId, data.files ?? []);
  } catch (err) {
    if (!isGone(err)) throw err;
  }
  if (ctx.catalog.listMounts().some((m) => m.id === attach.id)) ctx.catalog.removeMount(attach.id);
  if (!data.ownsMount) return false;
  const others = ctx.catalog
    .listMounts()
    .filter((m) => m.kind === 'attach' && (m.data as unknown as AttachData).mountId === data.mountId);
  const mount = ctx.catalog.listMounts().find((m) => m.id === data.mountId);
  if (others.length > 0 || !mount) return false;
  await unmountOne(ctx, vc, mount);
  return true;
}

export interface DetachResult {
  detached: { attachId: string; backupId: string; targetVm: string; files: string[]; unmounted: boolean }[];
}

export function runDetach(
  ctx: EngineContext,
  request: { to: string; backupId?: string },
): Promise<DetachResult> {
  return checkedOperation(() => detachOnce(ctx, request));
}

async function detachOnce(
  ctx: EngineContext,
  request: { to: string; backupId?: string },
): Promise<DetachResult> {
  checkName('VM name', request.to);
  if (request.backupId !== undefined) catalogBackup(ctx, request.backupId);
  const attaches = ctx.catalog
    .listMounts()
    .filter(
      (m) =>
        m.kind === 'attach' &&
        (m.data as unknown as AttachData).targetVm === request.to &&
        (request.backupId === undefined || m.backupId === request.backupId),
    );
  if (attaches.length === 0) {
    throw new UsageError(
      'NOT_ATTACHED',
      `no disks of ${request.backupId === undefined ? 'any backup' : `backup ${request.backupId}`} are attached to ${request.to}`,
    );
  }
  const vc = asCaller(await ctx.vcenter());
  const vmIds = [...new Set(attaches.map((a) => (a.data as unknown as AttachData).targetVmId))];
  return runOperation(
    ctx,
    vc,
    {
      kind: 'attach',
      subject: attaches[0]!.backupId,
      locks: [
        ...vmIds.map((id) => `vm:${id}`),
        ...new Set(attaches.map((a) => `mount:${a.backupId}`)),
        ...[...new Set(attaches.map((a) => a.backupId))].map((id) => ({
          resource: `backup:${id}`,
          mode: 'shared' as const,
        })),
      ],
    },
    async (opId) => {
      const out: DetachResult = { detached: [] };
      for (const a of attaches) {
        // A roll-forward step: once begun, recover finishes the detach rather than undo it.
        ctx.catalog.journal(opId, { action: 'detach.begin', target: a.backupId, data: { attachId: a.id } });
        ctx.events.phase(`detach ${a.id}`);
        const unmounted = await detachOne(ctx, vc, a);
        const data = a.data as unknown as AttachData;
        out.detached.push({
          attachId: a.id,
          backupId: a.backupId,
          targetVm: data.targetVm,
          files: data.files,
          unmounted,
        });
      }
      ctx.catalog.journal(opId, { action: 'commit', target: request.to });
      return out;
    },
  );
}
