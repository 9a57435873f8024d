import assert from 'node:assert/strict';
import { readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { openArray } from '../../src/arrays/index.js';
import { type Config, loadConfig } from '../../src/config/load.js';
import type { Inventory } from '../../src/model/inventory.js';
import { connect, type Vcenter } from '../../src/vsphere/index.js';
import { withCatalog } from './catalog.js';

export interface VmSnapshotState {
  powerState: string;
  snapshots: string[];
}

/** Connects to the configuration's vCenter, hands the session to `use` and logs out whatever happens. */
export async function withVcenter<T>(
  vcenter: Config['vcenter'],
  use: (vc: Vcenter) => Promise<T>,
): Promise<T> {
  const vc = await connect(vcenter);
  try {
    return await use(vc);
  } finally {
    await vc.logout();
  }
}

/** Power state and snapshot names of every VM, read fresh from the simulator. */
export async function vmStates(config: Config): Promise<Record<string, VmSnapshotState>> {
  const inv = await withVcenter(config.vcenter, (vc) => vc.inventory());
  const out: Record<string, VmSnapshotState> = {};
  for (const vm of inv.vms) {
    out[vm.name] = { powerState: vm.powerState, snapshots: vm.snapshots.map((s) => s.name).sort() };
  }
  return out;
}

/** Snapshot ids on every configured array. */
export async function arraySnapshots(
  config: Config,
): Promise<{ array: string; id: string; label: string; complete: boolean }[]> {
  const out = [];
  for (const a of config.arrays) {
    const array = await openArray(a);
    for (const s of await array.listSnapshots())
      out.push({ array: a.name, id: s.id, label: s.label, complete: s.complete });
  }
  return out;
}

/**
 * The invariants every run must leave, whatever failed: no VM left suspended that was running before, no
 * snapkeeper VM snapshot, every array snapshot owned by a complete or partial backup, every such backup's
 * snapshots present, and no operation left open.
 */
export async function assertClean(
  configPath: string,
  before: Record<string, VmSnapshotState>,
): Promise<void> {
  const config = loadConfig(configPath);
  const after = await vmStates(config);
  assert.deepEqual(after, before, 'VM power states and snapshot lists are back to what they were');
  const snaps = await arraySnapshots(config);
  await withCatalog(config.catalog.path, async (catalog) => {
    for (const s of snaps) {
      assert.ok(
        (await catalog.ownedSnapshotIds(s.array)).has(s.id),
        `array snapshot ${s.array}/${s.id} is owned by a complete or partial backup`,
      );
      assert.equal(s.complete, true, `array snapshot ${s.id} is complete`);
    }
    for (const b of await catalog.listBackups()) {
      assert.notEqual(b.state, 'running', `backup ${b.id} is not left running`);
      for (const s of b.snapshots) {
        assert.ok(
          snaps.some((x) => x.array === s.array && x.id === s.snapshotId),
          `backup ${b.id} points to an existing snapshot ${s.snapshotId}`,
        );
      }
    }
    assert.deepEqual(
      (await catalog.unfinishedOperations()).map((o) => o.id),
      [],
      'no operation is left open',
    );
  });
}

/** Every file under `dir` (relative paths), for checking what a snapshot contains. */
export async function listFiles(dir: string): Promise<string[]> {
  const out: string[] = [];
  async function walk(d: string, rel: string) {
    for (const e of await readdir(d, { withFileTypes: true })) {
      if (e.isDirectory()) await walk(join(d, e.name), join(rel, e.name));
      else out.push(join(rel, e.name));
    }
  }
  await walk(dir, '');
  return out.sort();
}

/** The whole inventory, fresh from the simulator. */
export function inventoryOf(configPath: string): Promise<Inventory> {
  return withVcenter(loadConfig(configPath).vcenter, (vc) => vc.inventory());
}

/**
 * What an operation must leave alone, by name (ids change when a VM is registered again): VMs (power, host,
 * folder, vmx, datastores, disks) and datastores, for before/after comparisons.
 */
export function inventoryState(inv: Inventory) {
  return {
    vms: inv.vms
      .map((v) => ({
        name: v.name,
        power: v.powerState,
        host: v.host,
        folder: v.folder,
        vmx: v.vmxFile,
        datastores: [...v.datastores].sort(),
        disks: v.disks.map((d) => `${d.label} ${d.kind} ${d.file} ${d.capacityBytes} ${d.diskMode}`).sort(),
      }))
      .sort((a, b) => a.name.localeCompare(b.name)),
    datastores: inv.datastores.map((d) => `${d.name} ${d.url} ${d.hosts.join(',')}`).sort(),
  };
}

/** What vCenter and the array's pool hold, to compare before and after an operation that must leave no trace. */
export interface LabContents {
  inv: ReturnType<typeof inventoryState>;
  files: string[];
}

export async function labContents(lab: {
  configPath: string;
  state: { arrayPath: string };
}): Promise<LabContents> {
  return {
    inv: inventoryState(await inventoryOf(lab.configPath)),
    files: await poolFiles(lab.state.arrayPath),
  };
}

/**
 * Every file below the array's pool (the datastores' contents) with its size; `vmware.log` without, since
 * the simulator appends to it on every power operation and its size is not state.
 */
export async function poolFiles(arrayPath: string): Promise<string[]> {
  const out: string[] = [];
  const walk = async (dir: string, rel: string) => {
    for (const e of await readdir(dir, { withFileTypes: true })) {
      if (e.isDirectory()) await walk(join(dir, e.name), `${rel}${e.name}/`);
      else if (e.name === 'vmware.log') out.push(`${rel}${e.name}`);
      else out.push(`${rel}${e.name} ${(await stat(join(dir, e.name))).size}`);
    }
  };
  await walk(join(arrayPath, 'pool'), '');
  return out.sort();
}
