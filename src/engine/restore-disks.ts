import { join } from 'node:path';
import { NotFoundError, UsageError } from '../errors.js';
import type { DiskRecord } from '../model/backup.js';
import { type DiskAttachment, freeScsiSlots, type VmDevices } from '../vsphere/index.js';
import { journal } from './journal/write.js';
import { checkFreeSpace, opSuffix, step, targetPlace } from './restore-common.js';
import {
  byDir,
  checkHostSees,
  type DiskPlan,
  type Prepared,
  placeDisks,
  planned,
  type RestoredDisk,
  type RestoreRequest,
  type RestoreResult,
  result,
  spaceNeeds,
} from './restore-plan.js';

/**
 * Chosen disks restored into an existing VM (`--disk ... --to VM`): added on free SCSI slots, or with
 * `--replace` in place of the VM's disks of the same labels (whose files are kept).
 */

/** Where each disk goes: the slot of the disk it replaces, or a free SCSI slot. */
type Slot = { controllerKey: number; unitNumber: number };

export async function restoreIntoVm(p: Prepared, request: RestoreRequest): Promise<RestoreResult> {
  const { ctx, vm, inventory, places } = p;
  const target = inventory.vms.find((v) => v.name === request.to);
  if (!target) throw new NotFoundError('VM_NOT_FOUND', `no VM ${request.to} in vCenter`);
  const plans: DiskPlan[] = p.disks.map((disk) => ({
    disk,
    index: vm.disks.indexOf(disk),
    place: targetPlace(places, inventory, request.datastore ?? disk.datastore),
  }));
  checkHostSees(
    target.host,
    plans.map((pl) => pl.place),
  );
  checkFreeSpace(spaceNeeds(plans));
  const devices = await p.vc.vmDevices(target.id);
  const replaced = request.replace ? replacedDisks(target.name, devices, plans, request) : undefined;
  const slots = replaced ? plans.map((pl) => replaced.get(pl.disk)!) : freeScsiSlots(devices, plans.length);
  const stemOf = (pl: DiskPlan, suffix: string) => `${vm.name}_${pl.index}-restored-${suffix}`;
  const dirOf = (pl: DiskPlan) => join(pl.place.path, target.name);
  const targetVm = {
    name: target.name,
    id: target.id,
    host: target.host,
    folder: target.folder,
    poweredOn: devices.powerState === 'poweredOn',
  };
  if (request.dryRun) {
    return planned(
      p,
      'disks',
      byDir(plans, dirOf, (pl) => stemOf(pl, 'XXXXXX')),
      targetVm,
    );
  }

  return p.run([`vm:${target.id}`], async (opId) => {
    ctx.events.phase('restore disks');
    const suffix = opSuffix(opId);
    const dirs = byDir(plans, dirOf, (pl) => stemOf(pl, suffix));
    const restored = new Map<DiskRecord, RestoredDisk>();
    for (const [dir, items] of dirs) {
      const out = await placeDisks(p, opId, dir, items, !(await p.ctx.files.exists(dir)));
      for (const [i, it] of items.entries()) restored.set(it.plan.disk, out[i]!);
    }
    await ctx.crashPoint('restore-files-placed');
    const disks = plans.map((pl) => restored.get(pl.disk)!);
    await attachRestored(p, opId, target.id, plans, disks, slots, replaced);
    await journal(ctx.catalog, opId, { action: 'commit', target: target.id });
    return { ...result(p, opId, 'disks', disks), targetVm };
  });
}

/**
 * The VM's disks that `--replace` replaces, by the backed-up disk of the same label. Refused (exit 3, before
 * any change) when the VM lacks one, or when it runs and the caller did not force it.
 */
function replacedDisks(
  vmName: string,
  devices: VmDevices,
  plans: DiskPlan[],
  request: RestoreRequest,
): Map<DiskRecord, DiskAttachment & { key: number }> {
  if (devices.powerState === 'poweredOn' && !request.force && !request.dryRun) {
    throw new UsageError(
      'CONFIRMATION_REQUIRED',
      `VM ${vmName} is powered on: replacing its disks pulls them from under the running guest; power off the VM or pass --force`,
      { details: { vm: vmName, powerState: devices.powerState } },
    );
  }
  const replaced = new Map<DiskRecord, DiskAttachment & { key: number }>();
  for (const pl of plans) {
    const old = devices.disks.find((d) => d.label === pl.disk.label);
    if (!old) {
      throw new NotFoundError(
        'DISK_NOT_IN_VM',
        `VM ${vmName} has no disk ${pl.disk.label} to replace (it has ${devices.disks.map((d) => d.label).join(', ')})`,
      );
    }
    replaced.set(pl.disk, old);
  }
  return replaced;
}

/**
 * Gives the VM the restored disks, in place of the replaced ones if any. Two journaled steps, not one
 * reconfiguration: the replaced disks free their slots first, and whatever fails or dies after that, the
 * undo (newest first) detaches what was added and re-adds the originals.
 */
async function attachRestored(
  p: Prepared,
  opId: string,
  vmId: string,
  plans: DiskPlan[],
  disks: RestoredDisk[],
  slots: Slot[],
  replaced: Map<DiskRecord, DiskAttachment & { key: number }> | undefined,
): Promise<void> {
  const add: DiskAttachment[] = plans.map((pl, i) => {
    const old = replaced?.get(pl.disk);
    return {
      file: disks[i]!.target,
      capacityBytes: pl.disk.capacityBytes,
      diskMode: old?.diskMode ?? pl.disk.diskMode,
      controllerKey: slots[i]!.controllerKey,
      unitNumber: slots[i]!.unitNumber,
      ...(old ? { label: old.label ?? pl.disk.label } : {}),
    };
  });
  const removed = [...(replaced?.values() ?? [])];
  p.ctx.events.phase('reconfigure the VM');
  if (removed.length > 0) {
    await step(p.ctx, opId, { action: 'vm.reconfigure', target: vmId, data: { added: [], removed } }, () =>
      p.vc.reconfigureDisks(vmId, { remove: removed }),
    );
    await p.ctx.crashPoint('restore-disks-removed');
  }
  await step(
    p.ctx,
    opId,
    { action: 'vm.reconfigure', target: vmId, data: { added: add.map((a) => a.file), removed: [] } },
    () => p.vc.reconfigureDisks(vmId, { add }),
  );
  await p.ctx.crashPoint('restore-vm-reconfigured');
  plans.forEach((pl, i) => {
    const old = replaced?.get(pl.disk);
    if (old) disks[i]!.replaced = old.file;
  });
}
