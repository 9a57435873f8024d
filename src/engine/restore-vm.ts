import { basename, join } from 'node:path';
import { ConflictError, NotFoundError } from '../errors.js';
import type { DiskRecord, VmRecord } from '../model/backup.js';
import type { Folder, Host, Inventory, Vm } from '../model/inventory.js';
import type { CapturedDevice, CreateVmSpec } from '../vsphere/index.js';
import type { SwapPair } from './journal/actions.js';
import { journal } from './journal/write.js';
import { checkFreeSpace, type DatastorePlace, opSuffix, step, targetPlace } from './restore-common.js';
import {
  byDir,
  checkHostSees,
  type DiskPlan,
  findHost,
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
 * A whole VM restored as a new VM (`--as`) or to its original place (`--original`: the live VM is powered
 * off and unregistered, its directories swapped with the restored ones, the VM created again).
 */

/** Where and as what a whole VM is restored: everything checked before the first change. */
interface WholeVmTarget {
  original: boolean;
  name: string;
  /** The live VM a restore to the original place replaces, if it still exists. */
  live: Vm | undefined;
  host: Host;
  folder: Folder;
  home: DatastorePlace;
  plans: DiskPlan[];
  /** The restored disks by directory (the home directory included, possibly without disks). */
  dirs: Map<string, { plan: DiskPlan; stem: string }[]>;
}

export async function restoreWholeVm(p: Prepared, request: RestoreRequest): Promise<RestoreResult> {
  const t = await wholeVmTarget(p, request);
  const { vm } = p;
  const locks = [`vmname:${vm.datacenter}/${t.name}`, ...(t.live ? [`vm:${t.live.id}`] : [])];
  if (request.dryRun) {
    return planned(p, t.original ? 'original' : 'new', t.dirs, {
      name: t.name,
      id: t.live?.id ?? '',
      host: t.host.name,
      folder: t.folder.path,
      poweredOn: request.powerOn === true,
    });
  }
  return p.run(locks, async (opId) => {
    const { disks, pairs } = await placeWholeVmDisks(p, t, opId);
    await p.ctx.crashPoint('restore-files-placed');
    if (t.original && t.live) await unregisterLive(p, t.live, opId);
    if (t.original) {
      await step(p.ctx, opId, { action: 'dirs.swap', target: t.name, data: { pairs } }, async () => {
        for (const pair of pairs) {
          if (await p.ctx.files.exists(pair.dir)) await p.ctx.files.move(pair.dir, pair.aside);
          await p.ctx.files.move(pair.staged, pair.dir);
        }
      });
    }
    p.ctx.events.phase('create the VM');
    const createSpec = vmSpec(p, t, disks);
    const vmId = await step(
      p.ctx,
      opId,
      { action: 'vm.create', target: t.name, data: { name: t.name, vmxFile: createSpec.vmxFile } },
      () => p.vc.createVm(createSpec),
      (id) => ({ vmId: id }),
    );
    await p.ctx.crashPoint('restore-vm-created');
    if (request.powerOn) {
      await step(p.ctx, opId, { action: 'vm.power-on', target: vmId }, () => p.vc.powerOnVm(vmId));
    }
    await journal(p.ctx.catalog, opId, { action: 'commit', target: t.name });
    // The replaced VM's old files go only now that its replacement exists.
    for (const pair of pairs) await p.ctx.files.remove(pair.aside);
    return {
      ...result(p, opId, t.original ? 'original' : 'new', disks),
      targetVm: {
        name: t.name,
        id: vmId,
        host: t.host.name,
        folder: t.folder.path,
        poweredOn: request.powerOn === true,
      },
    };
  });
}

/** Checks the name, host, folder, datastores and free space of a whole-VM restore; changes nothing. */
async function wholeVmTarget(p: Prepared, request: RestoreRequest): Promise<WholeVmTarget> {
  const { vm, inventory, places } = p;
  const original = request.original === true;
  const name = original ? vm.name : request.as!;
  const live = original
    ? (inventory.vms.find((v) => v.id === vm.id && v.instanceUuid === vm.instanceUuid) ??
      inventory.vms.find((v) => v.name === vm.name && v.datacenter === vm.datacenter))
    : undefined;
  if (!original && inventory.vms.some((v) => v.name === name)) {
    throw new ConflictError('VM_EXISTS', `a VM named ${name} already exists; choose another name with --as`);
  }
  const { host, folder } = hostAndFolder(p, request);
  const plans: DiskPlan[] = p.disks.map((disk) => ({
    disk,
    index: vm.disks.indexOf(disk),
    place: targetPlace(places, inventory, request.datastore ?? disk.datastore),
  }));
  const home = targetPlace(places, inventory, request.datastore ?? vm.homeDatastore);
  checkHostSees(host.name, [home, ...plans.map((pl) => pl.place)]);
  checkFreeSpace(spaceNeeds(plans));
  const dirs = byDir(
    plans,
    (pl) => join(pl.place.path, name),
    (pl) => `${name}_${pl.index}`,
  );
  const homeDir = join(home.path, name);
  if (!dirs.has(homeDir)) dirs.set(homeDir, []);
  if (!original) {
    for (const dir of dirs.keys()) {
      if (await p.ctx.files.exists(dir)) {
        throw new ConflictError('TARGET_EXISTS', `${dir} already exists: a VM named ${name} had files there`);
      }
    }
  }
  return { original, name, live, host, folder, home, plans, dirs };
}

/** The host and VM folder to restore to: as asked, else as in the backup, else the datacenter's first / root. */
function hostAndFolder(p: Prepared, request: RestoreRequest): { host: Host; folder: Folder } {
  const { vm, inventory } = p;
  const hostName = request.host ?? vm.host;
  const host =
    findHost(inventory, hostName, vm.datacenter) ??
    (request.host === undefined ? inventory.hosts.find((h) => h.datacenter === vm.datacenter) : undefined);
  if (!host) throw new NotFoundError('HOST_NOT_FOUND', `no host ${hostName} in datacenter ${vm.datacenter}`);
  const folderPath = request.folder ?? vm.folder;
  const folder =
    inventory.folders.find((f) => f.path === folderPath && f.datacenter === vm.datacenter) ??
    (request.folder === undefined
      ? inventory.folders.find((f) => f.path === '' && f.datacenter === vm.datacenter)
      : undefined);
  if (!folder)
    throw new NotFoundError('FOLDER_NOT_FOUND', `no VM folder ${folderPath} in datacenter ${vm.datacenter}`);
  return { host, folder };
}

/**
 * Places the restored disks of every directory. To the original place the files are staged beside the live
 * VM's directory, which stays untouched until the live VM is unregistered; the pairs say what to swap.
 */
async function placeWholeVmDisks(
  p: Prepared,
  t: WholeVmTarget,
  opId: string,
): Promise<{ disks: RestoredDisk[]; pairs: SwapPair[] }> {
  p.ctx.events.phase('restore disks');
  const suffix = opSuffix(opId);
  const restored = new Map<DiskRecord, RestoredDisk>();
  const pairs: SwapPair[] = [];
  const places = [t.home, ...t.plans.map((x) => x.place)];
  for (const [dir, items] of t.dirs) {
    const target = t.original ? `${dir}.snapkeeper-${suffix}` : dir;
    const out = await placeDisks(p, opId, target, items, true);
    const datastore = places.find((pl) => join(pl.path, t.name) === dir)!.datastore.name;
    items.forEach((it, i) => {
      const r = out[i]!;
      if (t.original) {
        r.path = join(dir, basename(r.path));
        r.target = `[${datastore}] ${t.name}/${basename(r.path)}`;
      }
      restored.set(it.plan.disk, r);
    });
    if (t.original) {
      pairs.push({
        dir,
        staged: target,
        aside: `${dir}.snapkeeper-old-${suffix}`,
        hadDir: await p.ctx.files.exists(dir),
      });
    }
  }
  return { disks: t.plans.map((pl) => restored.get(pl.disk)!), pairs };
}

/** Powers the live VM off and unregisters it, each step journaled with what its undo needs. */
async function unregisterLive(p: Prepared, live: Vm, opId: string): Promise<void> {
  p.ctx.events.phase('replace the live VM');
  const wasOn = live.powerState === 'poweredOn';
  await step(p.ctx, opId, { action: 'vm.power-off', target: live.id, data: { wasOn } }, async () => {
    // Already off (a retry after a crash, or a VM that was never on) is what this step wants.
    if ((await p.vc.vmDevices(live.id)).powerState !== 'poweredOff') await p.vc.powerOffVm(live.id);
  });
  await step(
    p.ctx,
    opId,
    { action: 'vm.unregister', target: live.id, data: { wasOn, spec: liveSpec(live, p.inventory) } },
    () => p.vc.unregisterVm(live.id),
  );
  await p.ctx.crashPoint('restore-unregistered');
}

/** The restored VM's configuration: as captured at backup time, with the restored disks. */
function vmSpec(p: Prepared, t: WholeVmTarget, disks: RestoredDisk[]): CreateVmSpec {
  const { vm } = p;
  return {
    name: t.name,
    folderId: t.folder.id,
    hostId: t.host.id,
    vmxFile: `[${t.home.datastore.name}] ${t.name}/${t.name}.vmx`,
    numCpu: vm.hardware?.numCpu ?? 1,
    memoryMB: vm.hardware?.memoryMB ?? 256,
    guestId: vm.hardware?.guestId || 'otherGuest64',
    ...(t.original && vm.instanceUuid ? { instanceUuid: vm.instanceUuid } : {}),
    devices: deviceList(vm),
    keepMacAddresses: t.original,
    disks: t.plans.map((pl, i) => ({
      file: disks[i]!.target,
      capacityBytes: pl.disk.capacityBytes,
      diskMode: pl.disk.diskMode,
      controllerKey: pl.disk.controllerKey ?? defaultControllerKey(vm),
      unitNumber: pl.disk.unitNumber ?? i,
      label: pl.disk.label,
    })),
  };
}

/** Captured controllers and NICs; a record without hardware gets one paravirtual SCSI controller. */
function deviceList(vm: VmRecord): CapturedDevice[] {
  const devices = (vm.hardware?.devices ?? []) as CapturedDevice[];
  if (devices.some((d) => d.kind === 'controller' && !/IDE/.test(d.type))) return devices;
  return [...devices, { kind: 'controller', type: 'ParaVirtualSCSIController', key: 1000, busNumber: 0 }];
}

function defaultControllerKey(vm: VmRecord): number {
  const c = deviceList(vm).find((d) => d.kind === 'controller' && !/IDE/.test(d.type));
  return c?.key ?? 1000;
}

/** The live VM's configuration, journaled before it is unregistered so that an undo can register it again. */
function liveSpec(live: Vm, inventory: Inventory): CreateVmSpec {
  const folder =
    inventory.folders.find((f) => f.path === live.folder && f.datacenter === live.datacenter) ??
    inventory.folders.find((f) => f.path === '' && f.datacenter === live.datacenter)!;
  const host = findHost(inventory, live.host, live.datacenter)!;
  return {
    name: live.name,
    folderId: folder.id,
    hostId: host.id,
    vmxFile: live.vmxFile,
    numCpu: live.hardware?.numCpu ?? 1,
    memoryMB: live.hardware?.memoryMB ?? 256,
    guestId: live.hardware?.guestId || 'otherGuest64',
    ...(live.instanceUuid ? { instanceUuid: live.instanceUuid } : {}),
    devices: (live.hardware?.devices ?? []) as CapturedDevice[],
    keepMacAddresses: true,
    disks: live.disks
      .filter((d) => d.kind === 'flat' || d.kind === 'independent')
      .map((d, i) => ({
        file: d.file,
        capacityBytes: d.capacityBytes,
        diskMode: d.diskMode,
        controllerKey: d.controllerKey ?? 1000,
        unitNumber: d.unitNumber ?? i,
        label: d.label,
      })),
  };
}
