import { createHash } from 'node:crypto';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach } from 'node:test';
import { MemoryArray } from '../../src/arrays/index.js';
import { Catalog } from '../../src/catalog/index.js';
import { parseConfig } from '../../src/config/load.js';
import { runBackup } from '../../src/engine/backup.js';
import { EngineContext } from '../../src/engine/context.js';
import type { ExportFiles } from '../../src/engine/export-files.js';
import { ConflictError } from '../../src/errors.js';
import type { BackupMode } from '../../src/model/modes.js';
import { datastorePathToRelative } from '../../src/rules/datastores.js';
import type { FakeVmSpec } from '../../src/vsphere/fake/spec.js';
import { type FakeSpec, FakeVcenter } from '../../src/vsphere/index.js';

/**
 * An engine on in-memory peers: a FakeVcenter whose datastores are the volumes of one MemoryArray (each
 * datastore a whole volume of the same name, matched by LUN as the lab does), a real SQLite catalog in a
 * temp directory, and the memory array's exports as the files behind the datastores. Every VM's .vmx,
 * disk descriptors and flat extents (deterministic bytes) are written to the array, so backups capture them
 * and restores read them back.
 */
export interface EngineLab {
  ctx: EngineContext;
  vc: FakeVcenter;
  array: MemoryArray;
  catalogPath: string;
  /**
   * Another context on the same peers and catalog file: what another process sees. `crashAt` stops its
   * operations at a crash point; `later` makes its clock that much ahead (a crashed run's lease runs out).
   */
  context(options?: { crashAt?: (point: string) => boolean; laterMs?: number }): EngineContext;
  close(): Promise<void>;
}

export const ARRAY = 'array1';

export function lunOf(datastore: string): string {
  return `naa.6${createHash('sha256').update(datastore).digest('hex').slice(0, 31)}`;
}

/** The bytes a disk holds, the same for the same file name. */
export function diskBytes(file: string, size = 8192): Buffer {
  const out = Buffer.alloc(size);
  const seed = createHash('sha256').update(file).digest();
  for (let i = 0; i < size; i++) out[i] = seed[i % seed.length]! ^ (i & 0xff);
  return out;
}

/** The memory array's exports as the host's files (what a host mounting them would do). */
export function memoryExportFiles(array: MemoryArray): ExportFiles {
  return {
    exists: async (path) => array.statPath(path) !== undefined,
    makeDirectory: async (path) => array.mkdirPath(path),
    async writeNewFile(path, text) {
      if (array.statPath(path) !== undefined) throw new ConflictError('TARGET_EXISTS', `${path} exists`);
      array.writePath(path, text);
    },
    async createNewFile(path) {
      if (array.statPath(path) !== undefined) throw new ConflictError('TARGET_EXISTS', `${path} exists`);
      array.writePath(path, Buffer.alloc(0));
      return {
        write: async (offset, data) => array.writePath(path, data, offset),
        finish: async (size) => array.truncatePath(path, size),
        async abandon() {},
      };
    },
    move: async (from, to) => array.movePath(from, to),
    remove: async (path) => array.removePath(path),
    async list(dir) {
      return array.statPath(dir)?.type === 'directory' ? array.listPath(dir).map((e) => e.name) : [];
    },
  };
}

export interface EngineLabOptions {
  now?: () => Date;
  instantClone?: boolean;
}

/**
 * For a test file, called at its top level: starts engine labs and closes each after its test, so a failed
 * assertion never leaves a lab open under the next test.
 */
export function engineLabPerTest(): (spec: FakeSpec, options?: EngineLabOptions) => Promise<EngineLab> {
  let lab: EngineLab | undefined;
  afterEach(async () => {
    await lab?.close();
    lab = undefined;
  });
  return async (spec, options) => {
    lab = await engineLab(spec, options);
    return lab;
  };
}

/** One host with ds-a and ds-b; web01 runs there with a disk on each, and `others` beside it. */
export function web01Spec(...others: FakeVmSpec[]): FakeSpec {
  return {
    datacenters: [
      {
        name: 'DC1',
        hosts: ['esx01'],
        datastores: [
          { name: 'ds-a', capacityGB: 50 },
          { name: 'ds-b', capacityGB: 20 },
        ],
        vms: [
          {
            name: 'web01',
            host: 'esx01',
            disks: [
              { datastore: 'ds-a', sizeMB: 8 },
              { datastore: 'ds-b', sizeMB: 8 },
            ],
          },
          ...others,
        ],
      },
    ],
  };
}

/** Backs up web01 in `mode` on `l` and checks that the backup completed. */
export async function backUpWeb01(
  l: EngineLab,
  mode: BackupMode,
): Promise<{ l: EngineLab; backupId: string }> {
  const record = await runBackup(l.ctx, { vmPatterns: ['web01'], mode });
  if (record.state !== 'complete') throw new Error(`the backup of web01 ended ${record.state}`);
  return { l, backupId: record.id };
}

export async function engineLab(spec: FakeSpec, options: EngineLabOptions = {}): Promise<EngineLab> {
  // The catalog is a real SQLite file; on tmpfs its fsyncs cost nothing, which keeps these tests at
  // milliseconds even when the disk is busy. Durability is the catalog tests' subject, not these.
  const dir = mkdtempSync(join(existsSync('/dev/shm') ? '/dev/shm' : tmpdir(), 'snapkeeper-engine-'));
  const datastores = spec.datacenters.flatMap((dc) => dc.datastores ?? []).map((d) => d.name);
  const array = new MemoryArray({
    name: ARRAY,
    volumes: datastores.map((name) => ({ name, lun: lunOf(name) })),
    ...(options.instantClone === false ? { instantClone: false } : {}),
  });
  const volumes = new Map((await array.listVolumes()).map((v) => [v.name, v]));
  const vc = FakeVcenter.fromLabSpec(spec, {
    datastores: Object.fromEntries(
      datastores.map((name) => [name, { url: volumes.get(name)!.path, lun: lunOf(name) }]),
    ),
    hostFiles: {
      exists: (path) => array.statPath(path) !== undefined,
      write: (path, text) => array.writePath(path, text),
      remove: (path) => array.removePath(path),
    },
  });
  for (const vm of (await vc.inventory()).vms) {
    const vmx = datastorePathToRelative(vm.vmxFile);
    array.writeFile(vmx.datastore, vmx.path, `displayName = "${vm.name}"\n`);
    for (const disk of vm.disks) {
      if (disk.kind === 'rdm-physical' || disk.kind === 'rdm-virtual') continue;
      const { datastore, path } = datastorePathToRelative(disk.file);
      const flat = path.replace(/\.vmdk$/, '-flat.vmdk');
      const flatName = flat.slice(flat.lastIndexOf('/') + 1);
      array.writeFile(datastore, path, `# Disk DescriptorFile\nversion=1\nRW 16 VMFS "${flatName}"\n`);
      array.writeFile(datastore, flat, diskBytes(disk.file));
    }
  }
  const catalogPath = join(dir, 'catalog.db');
  const config = parseConfig(
    `
vcenter: { url: https://vcenter.invalid/sdk, user: u, passwordEnv: SNAPKEEPER_TEST_PASSWORD }
arrays: [{ name: ${ARRAY}, type: fs, path: ${dir}/unused-array }]
catalog: { path: ${catalogPath} }
defaults: { retention: { versions: 50, days: 365 } }
`,
    join(dir, 'snapkeeper.yaml'),
    { SNAPKEEPER_TEST_PASSWORD: 'x' },
  );
  await Catalog.create(catalogPath).close();
  const contexts: EngineContext[] = [];
  const open = (extra: { crashAt?: (point: string) => boolean; laterMs?: number } = {}) => {
    const clock = options.now ?? (() => new Date());
    const ctx = new EngineContext({
      config,
      catalog: () => Catalog.open(catalogPath),
      vcenter: vc,
      arrays: new Map([[ARRAY, array]]),
      files: memoryExportFiles(array),
      now: () => new Date(clock().getTime() + (extra.laterMs ?? 0)),
      ...(extra.crashAt ? { crashAt: extra.crashAt } : {}),
    });
    contexts.push(ctx);
    return ctx;
  };
  const ctx = open();
  return {
    ctx,
    vc,
    array,
    catalogPath,
    context: open,
    async close() {
      // Logging the shared fake out would end it for the other contexts: only the catalogs are closed.
      for (const c of contexts) await c.catalog.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** A run that stops for good at `point` (as if its process died there); resolves once it has. */
export async function crashedAt(
  l: EngineLab,
  point: string,
  run: (ctx: EngineContext) => Promise<unknown>,
): Promise<void> {
  let reached!: () => void;
  const stopped = new Promise<void>((resolve) => {
    reached = resolve;
  });
  const ctx = l.context({
    crashAt: (p) => {
      if (p !== point) return false;
      reached();
      return true;
    },
  });
  // A run that fails before the point would leave `stopped` pending forever: make that the test's failure.
  run(ctx).then(
    () => reached(),
    () => reached(),
  );
  await stopped;
  const open = await l.ctx.catalog.unfinishedOperations();
  if (open.length === 0) throw new Error(`the run ended without reaching crash point ${point}`);
}

/** Two minutes later, in another process: the crashed run's lease has run out. */
export const LATER = { laterMs: 120_000 };

/** Every file below a host path of the memory array, recursively, with sizes. */
function filesBelow(array: MemoryArray, path: string): string[] {
  const out: string[] = [];
  for (const e of array.listPath(path)) {
    const full = `${path}/${e.name}`;
    if (e.type === 'directory') out.push(`${full}/`, ...filesBelow(array, full));
    else out.push(`${full} ${e.size}`);
  }
  return out;
}

/**
 * What the peers and the catalog hold, by name (ids of re-registered VMs change): VMs with their power
 * state, .vmx and disks (slot, label, file); datastores; every file of every volume; clones; array snapshots; mounts and open
 * operations. Equal before and after an operation that failed means its undo left nothing behind.
 */
export async function world(l: EngineLab): Promise<unknown> {
  const inventory = await l.vc.inventory();
  return {
    vms: inventory.vms
      .map((v) => ({
        name: v.name,
        power: v.powerState,
        vmx: v.vmxFile,
        // By slot, not by device key: a disk given back gets a new key, as in vCenter, in its old slot.
        disks: v.disks.map((d) => `${d.controllerKey}:${d.unitNumber} ${d.label} ${d.file}`).sort(),
      }))
      .sort((a, b) => a.name.localeCompare(b.name)),
    datastores: inventory.datastores.map((d) => d.name).sort(),
    files: (await l.array.listVolumes()).flatMap((v) => filesBelow(l.array, v.path)),
    clones: (await l.array.listClones()).map((c) => c.id),
    snapshots: (await l.array.listSnapshots()).map((s) => s.id),
    mounts: (await l.ctx.catalog.listMounts()).map((m) => m.id),
    open: (await l.ctx.catalog.unfinishedOperations()).map((o) => o.id),
  };
}
