import type { Mount } from '../catalog/index.js';
import { ConflictError, NotFoundError, UsageError } from '../errors.js';
import type { BackupRecord, DiskRecord, VmRecord, Warning } from '../model/backup.js';
import type { Host, Vm } from '../model/inventory.js';
import { datastorePathToRelative } from '../rules/index.js';
import { type DiskAttachment, freeScsiSlots, type VcenterSession } from '../vsphere/index.js';
import type { EngineContext } from './context.js';
import { journal } from './journal/write.js';
import { checkMountable, datastoreMountOf, mountedDatastoreName, mountSteps, plannedMount } from './mount.js';
import { checkedOperation, runOperation } from './operation.js';
import {
  backupVm,
  catalogBackup,
  checkName,
  type DatastorePlace,
  datastorePlaces,
  excludedDiskWarnings,
  isRdm,
  step,
} from './restore-common.js';
import { applyRule } from './rule-errors.js';
import { assertSnapshotsPresent } from './snapshot-presence.js';
import { type AttachData, attachDataOf, detachOne, type MountData, mountDataOf } from './steps/mounts.js';

/**
 * Attach (SPEC 3): a backup's standard disks made visible to a running VM for file-level recovery, without
 * copying them. The backup is mounted on the target VM's host if it is not yet (mount.ts: a writable array
 * clone, so the backup never changes), and the disks are added to the VM from the mounted datastore on free
 * SCSI slots. RDM disks are never attached. A backup is attached at most once to a VM (ALREADY_ATTACHED,
 * exit 3). `detach` removes the disks (the files stay in the clone) and then the mount when an attach made it
 * and no other attach uses it, so nothing of an attach remains; a mount the user made with `mount` stays.
 */

export interface AttachRequest {
  backupId: string;
  vm: string;
  to: string;
  disks?: string[];
  /** Check everything (the backup's array snapshots exist too) and report what would be attached where. */
  dryRun?: boolean;
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
  /** Empty for a dry run. */
  attachId: string;
  /** A dry run: the disks as they would be attached (no device key yet), nothing changed. */
  dryRun: boolean;
  backupId: string;
  vm: string;
  targetVm: { name: string; id: string };
  mount: { id: string; created: boolean; datastores: string[] };
  disks: AttachedDisk[];
  warnings: Warning[];
}

export function runAttach(ctx: EngineContext, request: AttachRequest): Promise<AttachResult> {
  return checkedOperation(() => attachOnce(ctx, request));
}

/** An attach checked before any change: what is attached to which VM, and the mount it uses or makes. */
interface AttachPlan {
  vc: VcenterSession;
  backup: BackupRecord;
  vm: VmRecord;
  disks: DiskRecord[];
  warnings: Warning[];
  target: Vm;
  host: Host;
  /** The backup's datastore mount when it is mounted already (then it is used, not made). */
  existing: Mount | undefined;
  slots: { controllerKey: number; unitNumber: number }[];
  places: Map<string, DatastorePlace>;
}

async function attachOnce(ctx: EngineContext, request: AttachRequest): Promise<AttachResult> {
  const plan = await attachPlan(ctx, request);
  const { backup, target } = plan;
  if (request.dryRun) {
    await assertSnapshotsPresent(ctx, backup);
    const mount = plan.existing ? mountDataOf(plan.existing) : plannedMount(backup, plan.host);
    return attachResult(plan, '', plan.existing?.id ?? '', mount, []);
  }
  return runOperation(
    ctx,
    { kind: 'attach', subject: backup.id, locks: [`vm:${target.id}`, `mount:${backup.id}`], reads: backup },
    (opId) => attachSteps(ctx, plan, opId),
  );
}

/** Every check of an attach, in order, before anything changes (exit 3 for what the user can fix). */
async function attachPlan(ctx: EngineContext, request: AttachRequest): Promise<AttachPlan> {
  checkName('VM name', request.to);
  // The catalog is checked before vCenter is contacted: a typo in an id changes nothing and costs nothing.
  const { backup, vm } = await backupVm(ctx, request.backupId, request.vm, 'attach');
  const { disks, warnings } = chosenDisks(backup, vm, request.disks);
  const vc = await ctx.vcenter();
  const inventory = await vc.inventory();
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
  const twice = (await ctx.catalog.mountsOf(backup.id)).find(
    (m) => m.kind === 'attach' && attachDataOf(m).targetVmId === target.id,
  );
  if (twice) {
    throw new ConflictError(
      'ALREADY_ATTACHED',
      `disks of backup ${backup.id} are already attached to ${target.name} (attach ${twice.id}); detach them first: snapkeeper detach --to ${target.name} --backup ${backup.id}`,
      { details: { attachId: twice.id, backupId: backup.id, vm: target.name } },
    );
  }
  const existing = await datastoreMountOf(ctx, backup.id);
  const existingData = existing ? mountDataOf(existing) : undefined;
  if (existingData && existingData.hostId !== host.id) {
    throw new ConflictError(
      'MOUNTED_ELSEWHERE',
      `backup ${backup.id} is mounted on ${existingData.host}, not on ${host.name} where ${target.name} runs; unmount it first`,
    );
  }
  if (!existing) checkMountable(backup, inventory);
  const slots = freeScsiSlots(await vc.vmDevices(target.id), disks.length);
  const places = await datastorePlaces(ctx, inventory);
  return { vc, backup, vm, disks, warnings, target, host, existing, slots, places };
}

/** The standard disks asked for (default: all); RDM and task-excluded disks are left out with a warning each. */
function chosenDisks(
  backup: BackupRecord,
  vm: VmRecord,
  labels: string[] | undefined,
): { disks: DiskRecord[]; warnings: Warning[] } {
  const unknown = (labels ?? []).filter((l) => !vm.disks.some((d) => d.label === l));
  if (unknown.length > 0) {
    throw new NotFoundError(
      'DISK_NOT_IN_BACKUP',
      `VM ${vm.name} in backup ${backup.id} has no disk ${unknown.join(', ')}`,
    );
  }
  const chosen = labels ? vm.disks.filter((d) => labels.includes(d.label)) : vm.disks;
  const warnings: Warning[] = chosen.filter(isRdm).map((d) => ({
    code: 'RDM_NOT_ATTACHED',
    message: `${vm.name} / ${d.label}: raw device mapping disks are not in the backup and are not attached`,
  }));
  warnings.push(
    ...excludedDiskWarnings(backup.id, vm.name, chosen, false, 'attached', 'DISK_EXCLUDED_NOT_ATTACHED'),
  );
  const disks = chosen.filter((d) => !isRdm(d) && d.included);
  if (disks.length === 0)
    throw new UsageError('NOTHING_TO_ATTACH', `no standard disk of ${vm.name} to attach`);
  return { disks, warnings };
}

/** The journaled steps of an attach: mount the backup unless it is, add its disks, record the attach. */
async function attachSteps(ctx: EngineContext, plan: AttachPlan, opId: string): Promise<AttachResult> {
  const { vc, backup, target, existing } = plan;
  const mountId = existing?.id ?? attachMountId(opId);
  const mount = existing
    ? mountDataOf(existing)
    : await mountSteps(ctx, vc, opId, mountId, backup, plan.host, plan.places);
  const add = diskAttachments(plan, mount);
  ctx.events.phase(`attach to ${target.name}`);
  const files = add.map((a) => a.file);
  const keys = await step(ctx, opId, { action: 'vm.attach', target: target.id, data: { files } }, () =>
    vc.reconfigureDisks(target.id, { add: add.map(({ label: _label, ...a }) => a) }),
  );
  await ctx.crashPoint('attach-disks-added');
  const data: AttachData = {
    targetVm: target.name,
    targetVmId: target.id,
    files,
    mountId,
  };
  await step(ctx, opId, { action: 'mount.record', target: backup.id, data: { mountId: opId } }, async () =>
    ctx.catalog.addMount({ id: opId, backupId: backup.id, kind: 'attach', data: { ...data } }),
  );
  await journal(ctx.catalog, opId, { action: 'commit', target: target.id });
  return attachResult(plan, opId, mountId, mount, keys);
}

/** What an attach did, or (no `attachId`, no device keys) what its dry run would do. */
function attachResult(
  plan: AttachPlan,
  attachId: string,
  mountId: string,
  mount: MountData,
  keys: number[],
): AttachResult {
  return {
    attachId,
    dryRun: attachId === '',
    backupId: plan.backup.id,
    vm: plan.vm.name,
    targetVm: { name: plan.target.name, id: plan.target.id },
    mount: { id: mountId, created: !plan.existing, datastores: mount.datastores.map((d) => d.name) },
    disks: diskAttachments(plan, mount).map((a, i) => ({
      label: a.label,
      file: a.file,
      key: keys[i] ?? 0,
      controllerKey: a.controllerKey,
      unitNumber: a.unitNumber,
    })),
    warnings: plan.warnings,
  };
}

/** Each disk as it is added: its file on the mounted datastore, on the next free slot. */
function diskAttachments(plan: AttachPlan, mount: MountData): (DiskAttachment & { label: string })[] {
  return plan.disks.map((d, i) => {
    const rel = applyRule(() => datastorePathToRelative(d.file));
    const datastore = mountedDatastoreName(plan.backup.id, rel.datastore);
    if (!mount.datastores.some((m) => m.name === datastore)) {
      throw new NotFoundError(
        'DISK_NOT_IN_SNAPSHOT',
        `disk ${d.label} is on no mounted datastore (${datastore})`,
      );
    }
    return {
      label: d.label,
      file: `[${datastore}] ${rel.path}`,
      capacityBytes: d.capacityBytes,
      diskMode: 'persistent',
      controllerKey: plan.slots[i]!.controllerKey,
      unitNumber: plan.slots[i]!.unitNumber,
    };
  });
}

/**
 * The id of the mount an attach makes when the backup is not mounted yet. The id itself says that an attach
 * made it: whichever attach of that mount is detached last releases it, even when that is not the one that
 * made it, while a mount the user made with `mount` (id `mount-...`) outlives every attach.
 */
function attachMountId(attachId: string): string {
  return `${attachId}-mount`;
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
  if (request.backupId !== undefined) await catalogBackup(ctx, request.backupId);
  const attaches = (await ctx.catalog.listMounts()).filter(
    (m) =>
      m.kind === 'attach' &&
      attachDataOf(m).targetVm === request.to &&
      (request.backupId === undefined || m.backupId === request.backupId),
  );
  if (attaches.length === 0) {
    throw new UsageError(
      'NOT_ATTACHED',
      `no disks of ${request.backupId === undefined ? 'any backup' : `backup ${request.backupId}`} are attached to ${request.to}`,
    );
  }
  const vc = await ctx.vcenter();
  const vmIds = [...new Set(attaches.map((a) => attachDataOf(a).targetVmId))];
  return runOperation(
    ctx,
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
        await journal(ctx.catalog, opId, {
          action: 'detach.begin',
          target: a.backupId,
          data: { attachId: a.id },
        });
        ctx.events.phase(`detach ${a.id}`);
        const unmounted = await detachOne(ctx, vc, a);
        const data = attachDataOf(a);
        out.detached.push({
          attachId: a.id,
          backupId: a.backupId,
          targetVm: data.targetVm,
          files: data.files,
          unmounted,
        });
      }
      await journal(ctx.catalog, opId, { action: 'commit', target: request.to });
      return out;
    },
  );
}
