import { join } from 'node:path';
import { UsageError } from '../errors.js';
import type { BackupRecord, DiskRecord, VmRecord, Warning } from '../model/backup.js';
import type { Datastore, Inventory } from '../model/inventory.js';
import type { VcenterSession } from '../vsphere/index.js';
import type { EngineContext } from './context.js';
import { type DatastorePlace, ensureDir, placeDisk, step } from './restore-common.js';
import type { RestoreSource, RestoreSourceKind } from './restore-source.js';

/**
 * What the restore modes (restore-vm.ts, restore-disks.ts, restore-files.ts) share: the request and result
 * types, the checked request they start from, and placing planned disks out of the array snapshot.
 */

export interface RestoreRequest {
  /** The backup id (from a repository: its backup id or its manifest id, as `repo backups` lists them). */
  backupId: string;
  /** Where the backup's files are read (default `array`: its array snapshot; `repository`: an offloaded copy). */
  source?: RestoreSourceKind;
  /** With `source: 'repository'`: the repository (may be left out when only one configured repository holds it). */
  repository?: string;
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
  /** Replace disks of a powered-on VM (`replace`): its guest loses the disk under it. */
  force?: boolean;
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
  /** Where the files were read: the array snapshot or a repository (then named). */
  source: RestoreSourceKind;
  repository?: string;
  /** The VM created (whole-VM restore) or changed (disk restore). */
  targetVm?: { name: string; id: string; host: string; folder: string; poweredOn: boolean };
  disks: RestoredDisk[];
  /** True when every disk was cloned (no data copied). */
  cloned: boolean;
  bytes: number;
  warnings: Warning[];
}

/** A checked restore request: what every mode starts from. */
export interface Prepared {
  ctx: EngineContext;
  vc: VcenterSession;
  backup: BackupRecord;
  vm: VmRecord;
  inventory: Inventory;
  places: Map<string, DatastorePlace>;
  /** Where the backup's files are read: every mode places disks from it the same way. */
  source: RestoreSource;
  disks: DiskRecord[];
  warnings: Warning[];
  /** Aborts copying (Ctrl-C); what was placed is undone like any failure. */
  signal?: AbortSignal;
  /** Runs the journaled body as one `restore` operation holding `locks` (and the backup: restore.ts). */
  run<T>(locks: string[], body: (opId: string) => Promise<T>): Promise<T>;
}

export interface DiskPlan {
  disk: DiskRecord;
  index: number;
  place: DatastorePlace;
}

/** Places every planned disk of one directory; journaled as one `files.place` step. */
export async function placeDisks(
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
      await ensureDir(ctx.files, dir);
      const out: RestoredDisk[] = [];
      for (const { plan, stem } of items) {
        const src = await p.source.disk(plan.disk, p.places);
        const cloning = await p.source.instantClone(plan.disk, p.places);
        ctx.events.item(plan.disk.label, cloning ? 'cloning' : 'copying');
        const placed = await placeDisk(src, ctx.files, dir, stem, {
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

export function relativeToPlace(place: DatastorePlace, path: string): string {
  return path.slice(place.path.length).replace(/^\/+/, '');
}

export function spaceNeeds(plans: DiskPlan[]): Map<Datastore, number> {
  const needs = new Map<Datastore, number>();
  for (const pl of plans)
    needs.set(pl.place.datastore, (needs.get(pl.place.datastore) ?? 0) + pl.disk.capacityBytes);
  return needs;
}

export function checkHostSees(hostName: string, places: DatastorePlace[]): void {
  for (const pl of places) {
    if (!pl.datastore.hosts.includes(hostName)) {
      throw new UsageError(
        'HOST_CANNOT_SEE_DATASTORE',
        `host ${hostName} does not mount datastore ${pl.datastore.name}`,
      );
    }
  }
}

export function result(
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
    source: p.source.kind,
    ...(p.source.repository !== undefined ? { repository: p.source.repository } : {}),
    disks,
    cloned: disks.length > 0 && disks.every((d) => d.cloned),
    bytes: disks.reduce((a, d) => a + d.bytes, 0),
    warnings: p.warnings,
  };
}

/**
 * A dry run's answer: the disks as they would be placed (`cloned` is what the source would do), once the
 * data is known to be there (the backup's array snapshots: SNAPSHOT_MISSING otherwise; a repository's
 * manifest holding every disk).
 */
export async function planned(
  p: Prepared,
  mode: RestoreResult['mode'],
  dirs: Map<string, { plan: DiskPlan; stem: string }[]>,
  targetVm?: RestoreResult['targetVm'],
): Promise<RestoreResult> {
  const disks: RestoredDisk[] = [];
  for (const [dir, items] of dirs) {
    for (const { plan, stem } of items) {
      const path = join(dir, `${stem}.vmdk`);
      disks.push({
        label: plan.disk.label,
        source: plan.disk.file,
        target: `[${plan.place.datastore.name}] ${relativeToPlace(plan.place, path)}`,
        path,
        cloned: await p.source.instantClone(plan.disk, p.places),
        bytes: plan.disk.capacityBytes,
        capacityBytes: plan.disk.capacityBytes,
      });
    }
  }
  await p.source.assertPresent(
    [...dirs.values()].flatMap((items) => items.map((i) => i.plan.disk)),
    p.places,
  );
  return { ...result(p, '', mode, disks), dryRun: true, ...(targetVm ? { targetVm } : {}) };
}

/** Groups disk plans by the directory they go to. */
export function byDir(plans: DiskPlan[], dirOf: (pl: DiskPlan) => string, stemOf: (pl: DiskPlan) => string) {
  const dirs = new Map<string, { plan: DiskPlan; stem: string }[]>();
  for (const pl of plans) {
    const dir = dirOf(pl);
    dirs.set(dir, [...(dirs.get(dir) ?? []), { plan: pl, stem: stemOf(pl) }]);
  }
  return dirs;
}

export function findHost(inventory: Inventory, name: string, datacenter: string) {
  return inventory.hosts.find((h) => h.name === name && (datacenter === '' || h.datacenter === datacenter));
}
