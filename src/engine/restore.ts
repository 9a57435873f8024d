import { rename, rm } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { ConflictError, NotFoundError, UsageError } from '../errors.js';
import type { BackupRecord, DiskRecord, VmRecord, Warning } from '../model/backup.js';
import type { Datastore, Inventory, Vm } from '../model/inventory.js';
import { pathExists } from '../util/fs.js';
import type { CapturedDevice } from '../vsphere/inventory.js';
import {
  asCaller,
  type CreateVmSpec,
  createVm,
  type DiskAttachment,
  freeScsiSlots,
  powerOff,
  powerOn,
  reconfigureDisks,
  unregisterVm,
  type VsphereCaller,
  vmDevices,
} from '../vsphere/vm-ops.js';
import { crashPoint, type EngineContext } from './context.js';
import {
  backupVm,
  checkFreeSpace,
  checkName,
  checkNoDeltaDisks,
  type DatastorePlace,
  datastorePlaces,
  diskSource,
  ensureDir,
  isRdm,
  opSuffix,
  placeDisk,
  step,
  targetPlace,
} from './restore-common.js';
import { checkedOperation, runOperation, type SwapPair } from './restore-undo.js';

/**
 * Restore from a backup's array snapshot (SPEC 3): a whole VM as a new VM or to its original place, chosen
 * disks into an existing VM, or disk files onto a datastore.
 *
 * The data comes straight out of the array snapshot with StorageArray.restoreFile: a clone on btrfs and
 * reflink (instant, whatever the size), a copy with progress on the copy driver. The VM is re-created with
 * CreateVM_Task from the configuration captured at backup time (vCenter here does not read a .vmx on
 * registration, SPEC 7), with its restored standard disks; RDM disks are never restored (warning
 * RDM_NOT_RESTORED per disk).
 *
 * VM snapshot modes, for a VM without user VM snapshots: the backup took a VM snapshot just before the
 * array snapshot, so inside the array snapshot the base disks (the files the backup record names, captured
 * before that snapshot) are frozen at the VM-snapshot instant and every later write went to the delta
 * files. Restoring the base disks, never the deltas, gives exactly the state of that VM snapshot: the
 * restored VM is "reverted to it, with the snapshot removed" (SPEC 3).
 *
 * That only holds when the VM had no snapshots of its own. With user VM snapshots, the file the record names
 * is itself a delta (`name-00000N.vmdk`) whose descriptor points (parentFileNameHint) at parent disks that
 * would not be restored: such a restore is refused before any change (DELTA_DISK_NOT_SUPPORTED, exit 3,
 * checkNoDeltaDisks), naming the VM and its delta disks.
 *
 * Every side effect is journaled first (see restore-common.ts); a failure undoes what was done, a crash is
 * undone by `recover` (undo.ts). Everything the user can get wrong is checked before the first change; the
 * repair of interrupted operations (recover) runs only then, inside runOperation, and never for a dry run.
 * While a restore runs, its operation holds the lock `backup:<id>`, so the backup cannot be deleted or
 * expired under it.
 */

export interface RestoreRequest {
  backupId: string;
  /** Name of the VM in the backup. */
  vm: string;
  /** Whole VM as a new VM with this name. */
  as?: string;
  /** Whole VM to its original place, replacing the live VM. Needs `confirmed`. */
  original?: boolean;
  confirmed?: boolean;
  /** Target datastore (default: each disk's original datastore). */
  datastore?: string;
  host?: string;
  /** Folder path below the datacenter's VM folder (`''` = root). */
  folder?: string;
  /** Restore only these disks (labels). */
  disks?: string[];
  /** Into this existing VM. */
  to?: string;
  /** Replace the target VM's disk of the same label instead of adding one. */
  replace?: boolean;
  /** Only place the disk files on `datastore`. */
  filesOnly?: boolean;
  powerOn?: boolean;
  /** Check everything and report what would be restored where; change nothing. */
  dryRun?: boolean;
  signal?: AbortSignal;
}

export interface RestoredDisk {
  label: string;
  /** Datastore path in the backup. */
  source: string;
  /** Datastore path of the restored descriptor. */
  target: string;
  /** Absolute path of the restored descriptor on the array volume. */
  path: string;
  cloned: boolean;
  bytes: number;
  capacityBytes: number;
  /** With --replace: the file of the disk the restored one replaced (kept, not deleted). */
  replaced?: string;
}

export interface RestoreResult {
  /** Empty for a dry run. */
  operationId: string;
  dryRun: boolean;
  backupId: string;
  vm: string;
  mode: 'new' | 'original' | 'disks' | 'files';
  /** The VM created (whole-VM restore) or changed (disk restore). */
  targetVm?: { name: string; id: string; host: string; folder: string; poweredOn: boolean };
  disks: RestoredDisk[];
  /** True when every disk was cloned (no data copied). */
  cloned: boolean;
  bytes: number;
  warnings: Warning[];
}

interface Prepared {
  ctx: EngineContext;
  vc: VsphereCaller;
  backup: BackupRecord;
  vm: VmRecord;
  inventory: Inventory;
  places: Map<string, DatastorePlace>;
  disks: DiskRecord[];
  warnings: Warning[];
  /** Aborts copying (Ctrl-C); what was placed is undone like any failure. */
  signal?: AbortSignal;
}

export function runRestore(ctx: EngineContext, request: RestoreRequest): Promise<RestoreResult> {
  return checkedOperation(() => restoreOnce(ctx, request));
}

async function restoreOnce(ctx: EngineContext, request: RestoreRequest): Promise<RestoreResult> {
  const modes = [request.as !== undefined, request.original === true, request.disks !== undefined];
  if (modes.filter(Boolean).length !== 1) {
    throw new UsageError(
      'RESTORE_MODE',
      'restore needs exactly one of --as NAME, --original, --disk LABEL...',
    );
  }
  if (request.disks !== undefined && (request.to === undefined) === (request.filesOnly !== true)) {
    throw new UsageError('RESTORE_MODE', '--disk needs exactly one of --to VM and --files-only');
  }
  if (
    request.original &&
    (request.datastore !== undefined || request.host !== undefined || request.folder !== undefined)
  ) {
    throw new UsageError('RESTORE_MODE', '--original restores to the original datastores, host and folder');
  }
  if (request.as !== undefined) checkName('VM name', request.as);
  if (request.to !== undefined) checkName('VM name', request.to);
  for (const d of request.disks ?? []) if (d === '') throw new UsageError('RESTORE_MODE', 'empty disk label');
  // The catalog is checked before vCenter is contacted: a typo in an id changes nothing and costs nothing.
  const { backup, vm } = backupVm(ctx, request.backupId, request.vm);
  if (request.original && !request.confirmed && !request.dryRun) {
    throw new UsageError(
      'CONFIRMATION_REQUIRED',
      `restoring ${vm.name} to its original place powers off and replaces the live VM: confirm with --force`,
    );
  }

  ctx.events.phase('connect');
  const session = await ctx.vcenter();
  const vc = asCaller(session);
  const inventory = await session.inventory();
  const places = await datastorePlaces(ctx, inventory);

  const warnings: Warning[] = [];
  let disks = vm.disks;
  if (request.disks !== undefined) {
    const unknown = request.disks.filter((l) => !vm.disks.some((d) => d.label === l));
    if (unknown.length > 0) {
      throw new NotFoundError(
        'DISK_NOT_IN_BACKUP',
        `VM ${vm.name} in backup ${backup.id} has no disk ${unknown.join(', ')} (it has ${vm.disks.map((d) => d.label).join(', ')})`,
      );
    }
    disks = vm.disks.filter((d) => request.disks!.includes(d.label));
  }
  for (const d of disks.filter(isRdm)) {
    warnings.push({
      code: 'RDM_NOT_RESTORED',
      message: `${vm.name} / ${d.label}: raw device mapping (${d.kind}) on LUN ${d.lun ?? '?'} is not in the backup and is not restored`,
    });
  }
  disks = disks.filter((d) => !isRdm(d) && d.included);
  checkNoDeltaDisks(vm.name, disks);
  const p: Prepared = {
    ctx,
    vc,
    backup,
    vm,
    inventory,
    places,
    disks,
    warnings,
    ...(request.signal ? { signal: request.signal } : {}),
  };
  if (request.disks !== undefined) {
    return request.filesOnly ? restoreFiles(p, request) : restoreIntoVm(p, request);
  }
  return restoreWholeVm(p, request);
}

function findHost(inventory: Inventory, name: string, datacenter: string) {
  return inventory.hosts.find((h) => h.name === name && (datacenter === '' || h.datacenter === datacenter));
}

/**
 * Runs the journaled body as a `restore` operation (restore-undo.ts runOperation), holding `locks` and
 * `backup:<id>`: the backup cannot be deleted or expired while its files are read.
 */
function inOperation<T>(
  p: Prepared,
  kind: 'restore',
  locks: string[],
  body: (opId: string) => Promise<T>,
): Promise<T> {
  return runOperation(
    p.ctx,
    p.vc,
    {
      kind,
      subject: `${p.backup.id}/${p.vm.name}`,
      locks: [...locks, { resource: `backup:${p.backup.id}`, mode: 'shared' }],
    },
    body,
  );
}

interface DiskPlan {
  disk: DiskRecord;
  index: number;
  place: DatastorePlace;
}

/** Places every planned disk of one directory; journaled as one `files.place` step. */
async function placeDisks(
  p: Prepared,
  opId: string,
  dir: string,
  items: { plan: DiskPlan; stem: string }[],
  createdDir: boolean,
): Promise<RestoredDisk[]> {
  const { ctx } = p;
  return step(
    ctx,
    opId,
    { action: 'files.place', target: dir, data: { dir, createdDir, stems: items.map((i) => i.stem) } },
    async () => {
      await ensureDir(dir);
      const out: RestoredDisk[] = [];
      for (const { plan, stem } of items) {
        const src = diskSource(p.backup, plan.disk, p.places);
        const array = await ctx.array(src.array);
        ctx.events.item(plan.disk.label, array.instantClone ? 'cloning' : 'copying');
        const placed = await placeDisk(array, src, dir, stem, {
          ...(p.signal ? { signal: p.signal } : {}),
          onProgress: (done, total) =>
            ctx.events.item(plan.disk.label, `copying ${Math.floor((100 * done) / Math.max(total, 1))}%`),
        });
        ctx.events.item(plan.disk.label, placed.cloned ? 'cloned' : 'copied');
        out.push({
          label: plan.disk.label,
          source: plan.disk.file,
          target: `[${plan.place.datastore.name}] ${relativeToPlace(plan.place, placed.descriptor)}`,
          path: placed.descriptor,
          cloned: placed.cloned,
          bytes: placed.bytes,
          capacityBytes: plan.disk.capacityBytes,
        });
      }
      return out;
    },
  );
}

function relativeToPlace(place: DatastorePlace, path: string): string {
  return path.slice(place.path.length).replace(/^\/+/, '');
}

function spaceNeeds(plans: DiskPlan[]): Map<Datastore, number> {
  const needs = new Map<Datastore, number>();
  for (const pl of plans)
    needs.set(pl.place.datastore, (needs.get(pl.place.datastore) ?? 0) + pl.disk.capacityBytes);
  return needs;
}

function checkHostSees(hostName: string, places: DatastorePlace[]): void {
  for (const pl of places) {
    if (!pl.datastore.hosts.includes(hostName)) {
      throw new UsageError(
        'HOST_CANNOT_SEE_DATASTORE',
        `host ${hostName} does not mount datastore ${pl.datastore.name}`,
      );
    }
  }
}

function result(
  p: Prepared,
  opId: string,
  mode: RestoreResult['mode'],
  disks: RestoredDisk[],
): RestoreResult {
  return {
    operationId: opId,
    dryRun: false,
    backupId: p.backup.id,
    vm: p.vm.name,
    mode,
    disks,
    cloned: disks.length > 0 && disks.every((d) => d.cloned),
    bytes: disks.reduce((a, d) => a + d.bytes, 0),
    warnings: p.warnings,
  };
}

/** A dry run's answer: the disks as they would be placed (`cloned` is what the array would do). */
async function planned(
  p: Prepared,
  mode: RestoreResult['mode'],
  dirs: Map<string, { plan: DiskPlan; stem: string }[]>,
  targetVm?: RestoreResult['targetVm'],
): Promise<RestoreResult> {
  const disks: RestoredDisk[] = [];
  for (const [dir, items] of dirs) {
    for (const { plan, stem } of items) {
      const array = await p.ctx.array(diskSource(p.backup, plan.disk, p.places).array);
      const path = join(dir, `${stem}.vmdk`);
      disks.push({
        label: plan.disk.label,
        source: plan.disk.file,
        target: `[${plan.place.datastore.name}] ${relativeToPlace(plan.place, path)}`,
        path,
        cloned: array.instantClone,
        bytes: plan.disk.capacityBytes,
        capacityBytes: plan.disk.capacityBytes,
      });
    }
  }
  return { ...result(p, '', mode, disks), dryRun: true, ...(targetVm ? { targetVm } : {}) };
}

/** Groups disk plans by the directory they go to. */
function byDir(plans: DiskPlan[], dirOf: (pl: DiskPlan) => string, stemOf: (pl: DiskPlan) => string) {
  const dirs = new Map<string, { plan: DiskPlan; stem: string }[]>();
  for (const pl of plans) {
    const dir = dirOf(pl);
    dirs.set(dir, [...(dirs.get(dir) ?? []), { plan: pl, stem: stemOf(pl) }]);
  }
  return dirs;
}

async function restoreWholeVm(p: Prepared, request: RestoreRequest): Promise<RestoreResult> {
  const { ctx, vc, vm, inventory, places } = p;
  const original = request.original === true;
  const name = original ? vm.name : request.as!;
  const live = original
    ? (inventory.vms.find((v) => v.id === vm.id && v.instanceUuid === vm.instanceUuid) ??
      inventory.vms.find((v) => v.name === vm.name && v.datacenter === vm.datacenter))
    : undefined;
  if (!original && inventory.vms.some((v) => v.name === name)) {
    throw new ConflictError('VM_EXISTS', `a VM named ${name} already exists; choose another name with --as`);
  }
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
      if (await pathExists(dir)) {
        throw new ConflictError('TARGET_EXISTS', `${dir} already exists: a VM named ${name} had files there`);
      }
    }
  }
  const placeOf = new Map(
    [...dirs.keys()].map((d) => [
      d,
      [home, ...plans.map((x) => x.place)].find((pl) => join(pl.path, name) === d)!,
    ]),
  );

  const spec = (disks: RestoredDisk[]): CreateVmSpec => ({
    name,
    folderId: folder.id,
    hostId: host.id,
    vmxFile: `[${home.datastore.name}] ${name}/${name}.vmx`,
    numCpu: vm.hardware?.numCpu ?? 1,
    memoryMB: vm.hardware?.memoryMB ?? 256,
    guestId: vm.hardware?.guestId || 'otherGuest64',
    ...(original && vm.instanceUuid ? { instanceUuid: vm.instanceUuid } : {}),
    devices: deviceList(vm),
    keepMacAddresses: original,
    disks: plans.map((pl, i) => ({
      file: disks[i]!.target,
      capacityBytes: pl.disk.capacityBytes,
      diskMode: pl.disk.diskMode,
      controllerKey: pl.disk.controllerKey ?? defaultControllerKey(vm),
      unitNumber: pl.disk.unitNumber ?? i,
      label: pl.disk.label,
    })),
  });

  const locks = [`vmname:${vm.datacenter}/${name}`, ...(live ? [`vm:${live.id}`] : [])];
  if (request.dryRun) {
    return planned(p, original ? 'original' : 'new', dirs, {
      name,
      id: live?.id ?? '',
      host: host.name,
      folder: folder.path,
      poweredOn: request.powerOn === true,
    });
  }
  return inOperation(p, 'restore', locks, async (opId) => {
    ctx.events.phase('restore disks');
    const suffix = opSuffix(opId);
    const restored = new Map<DiskRecord, RestoredDisk>();
    const pairs: SwapPair[] = [];
    for (const [dir, items] of dirs) {
      // To the original place the files are staged beside the live VM's directory, which stays untouched
      // until the live VM is unregistered.
      const target = original ? `${dir}.snapkeeper-${suffix}` : dir;
      const out = await placeDisks(p, opId, target, items, true);
      items.forEach((it, i) => {
        const r = out[i]!;
        if (original) {
          r.path = join(dir, basename(r.path));
          r.target = `[${placeOf.get(dir)!.datastore.name}] ${name}/${basename(r.path)}`;
        }
        restored.set(it.plan.disk, r);
      });
      if (original) {
        pairs.push({
          dir,
          staged: target,
          aside: `${dir}.snapkeeper-old-${suffix}`,
          hadDir: await pathExists(dir),
        });
      }
    }
    crashPoint('restore-files-placed');
    const disks = plans.map((pl) => restored.get(pl.disk)!);

    if (original && live) {
      ctx.events.phase('replace the live VM');
      const wasOn = live.powerState === 'poweredOn';
      await step(ctx, opId, { action: 'vm.power-off', target: live.id, data: { wasOn } }, () =>
        powerOff(vc, live.id),
      );
      await step(
        ctx,
        opId,
        { action: 'vm.unregister', target: live.id, data: { wasOn, spec: liveSpec(live, inventory) } },
        () => unregisterVm(vc, live.id),
      );
      crashPoint('restore-unregistered');
    }
    if (original) {
      await step(ctx, opId, { action: 'dirs.swap', target: name, data: { pairs } }, async () => {
        for (const pair of pairs) {
          if (await pathExists(pair.dir)) await rename(pair.dir, pair.aside);
          await rename(pair.staged, pair.dir);
        }
      });
    }

    ctx.events.phase('create the VM');
    const createSpec = spec(disks);
    const vmId = await step(
      ctx,
      opId,
      { action: 'vm.create', target: name, data: { name, vmxFile: createSpec.vmxFile } },
      () => createVm(vc, createSpec),
      (id) => ({ vmId: id }),
    );
    crashPoint('restore-vm-created');
    if (request.powerOn) {
      await step(ctx, opId, { action: 'vm.power-on', target: vmId }, () => powerOn(vc, vmId));
    }
    ctx.catalog.journal(opId, { action: 'commit', target: name });
    // The replaced VM's old files go only now that its replacement exists.
    for (const pair of pairs) await rm(pair.aside, { recursive: true, force: true });
    return {
      ...result(p, opId, original ? 'original' : 'new', disks),
      targetVm: { name, id: vmId, host: host.name, folder: folder.path, poweredOn: request.powerOn === true },
    };
  });
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

async function restoreIntoVm(p: Prepared, request: RestoreRequest): Promise<RestoreResult> {
  const { ctx, vc, vm, inventory, places } = p;
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
  const devices = await vmDevices(vc, target.id);
  const replaced = new Map<DiskRecord, DiskAttachment & { key: number }>();
  if (request.replace) {
    for (const pl of plans) {
      const old = devices.disks.find((d) => d.label === pl.disk.label);
      if (!old) {
        throw new NotFoundError(
          'DISK_NOT_IN_VM',
          `VM ${target.name} has no disk ${pl.disk.label} to replace (it has ${devices.disks.map((d) => d.label).join(', ')})`,
        );
      }
      replaced.set(pl.disk, old);
    }
  }
  const slots = request.replace ? [] : freeScsiSlots(devices, plans.length);
  const stemOf = (pl: DiskPlan, suffix: string) => `${vm.name}_${pl.index}-restored-${suffix}`;
  const dirOf = (pl: DiskPlan) => join(pl.place.path, target.name);
  if (request.dryRun) {
    return planned(
      p,
      'disks',
      byDir(plans, dirOf, (pl) => stemOf(pl, 'XXXXXX')),
      {
        name: target.name,
        id: target.id,
        host: target.host,
        folder: target.folder,
        poweredOn: devices.powerState === 'poweredOn',
      },
    );
  }

  return inOperation(p, 'restore', [`vm:${target.id}`], async (opId) => {
    ctx.events.phase('restore disks');
    const suffix = opSuffix(opId);
    const dirs = byDir(plans, dirOf, (pl) => stemOf(pl, suffix));
    const restored = new Map<DiskRecord, RestoredDisk>();
    for (const [dir, items] of dirs) {
      const out = await placeDisks(p, opId, dir, items, !(await pathExists(dir)));
      for (const [i, it] of items.entries()) restored.set(it.plan.disk, out[i]!);
    }
    crashPoint('restore-files-placed');
    const disks = plans.map((pl) => restored.get(pl.disk)!);
    const add: DiskAttachment[] = plans.map((pl, i) => {
      const old = replaced.get(pl.disk);
      const slot = old ?? slots[i]!;
      return {
        file: disks[i]!.target,
        capacityBytes: pl.disk.capacityBytes,
        diskMode: old?.diskMode ?? pl.disk.diskMode,
        controllerKey: slot.controllerKey,
        unitNumber: slot.unitNumber,
        ...(old ? { label: old.label ?? pl.disk.label } : {}),
      };
    });
    const removed = [...replaced.values()];
    ctx.events.phase('reconfigure the VM');
    await step(
      ctx,
      opId,
      { action: 'vm.reconfigure', target: target.id, data: { added: add.map((a) => a.file), removed } },
      () => reconfigureDisks(vc, target.id, { add, remove: removed }),
    );
    crashPoint('restore-vm-reconfigured');
    plans.forEach((pl, i) => {
      const old = replaced.get(pl.disk);
      if (old) disks[i]!.replaced = old.file;
    });
    ctx.catalog.journal(opId, { action: 'commit', target: target.id });
    return {
      ...result(p, opId, 'disks', disks),
      targetVm: {
        name: target.name,
        id: target.id,
        host: target.host,
        folder: target.folder,
        poweredOn: devices.powerState === 'poweredOn',
      },
    };
  });
}

async function restoreFiles(p: Prepared, request: RestoreRequest): Promise<RestoreResult> {
  const { ctx, vm, inventory, places, backup } = p;
  if (request.datastore === undefined) {
    throw new UsageError('RESTORE_MODE', '--files-only needs --datastore DS');
  }
  const place = targetPlace(places, inventory, request.datastore);
  const plans: DiskPlan[] = p.disks.map((disk) => ({ disk, index: vm.disks.indexOf(disk), place }));
  checkFreeSpace(spaceNeeds(plans));
  const dir = join(place.path, `${vm.name}-restore-${backup.id}`);
  if (await pathExists(dir)) throw new ConflictError('TARGET_EXISTS', `${dir} already exists`);
  const stemOf = (pl: DiskPlan) => `${vm.name}_${pl.index}`;
  if (request.dryRun)
    return planned(
      p,
      'files',
      byDir(plans, () => dir, stemOf),
    );
  return inOperation(p, 'restore', [`dir:${dir}`], async (opId) => {
    ctx.events.phase('restore disk files');
    const items = plans.map((pl) => ({ plan: pl, stem: stemOf(pl) }));
    const disks = items.length > 0 ? await placeDisks(p, opId, dir, items, true) : [];
    crashPoint('restore-files-placed');
    ctx.catalog.journal(opId, { action: 'commit', target: dir });
    return result(p, opId, 'files', disks);
  });
}
