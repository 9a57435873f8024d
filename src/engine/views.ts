import type { BackupCopy } from '../catalog/index.js';
import type { BackupRecord } from '../model/backup.js';
import type { Datastore, Inventory, Vm } from '../model/inventory.js';

/*
 * JSON shapes that both entry layers (the CLI's `--json` and the daemon's API) print: built once here so the
 * two cannot drift. Pure functions of engine and catalog data; nothing is read or changed.
 */

/** The inventory document of `inventory --json` (SPEC section 6); the API adds the tree around it. */
export function inventoryJson(inv: Inventory, vms: Vm[], volumes: Map<string, string[]>) {
  return {
    vms: vms.map((vm) => ({
      name: vm.name,
      id: vm.id,
      powerState: vm.powerState,
      ...(vm.tools === undefined ? {} : { tools: vm.tools }),
      datacenter: vm.datacenter,
      host: vm.host,
      ...(vm.cluster === undefined ? {} : { cluster: vm.cluster }),
      folder: vm.folder,
      vmxFile: vm.vmxFile,
      datastores: vm.datastores,
      disks: vm.disks.map((d) => ({
        label: d.label,
        kind: d.kind,
        capacityBytes: d.capacityBytes,
        file: d.file,
        datastore: d.datastore,
        diskMode: d.diskMode,
        ...(d.lun === undefined ? {} : { lun: d.lun }),
      })),
      snapshots: vm.snapshots,
    })),
    datastores: inv.datastores.map((ds: Datastore) => ({
      name: ds.name,
      id: ds.id,
      url: ds.url,
      type: ds.type,
      capacityBytes: ds.capacityBytes,
      freeBytes: ds.freeBytes,
      extents: ds.extents,
      hosts: ds.hosts,
      /** `array/volume` names of the configured arrays holding it; empty when none does. */
      volumes: volumes.get(ds.name) ?? [],
    })),
  };
}

/** One of a backup's copies, as `inquire` and the API show them. */
export type CopyView =
  | { kind: 'array'; present: boolean; snapshots: { array: string; snapshotId: string }[] }
  | {
      kind: 'repository';
      name: string;
      repositoryId: string;
      manifestId: string;
      offloadedAt: string;
      bytes: number;
      bytesAdded: number;
    };

/** A backup's copies: its array snapshot, then its repository copies, oldest first. */
export function copyViews(record: BackupRecord | undefined, copies: BackupCopy[]): CopyView[] {
  const out: CopyView[] = [];
  if (record) {
    out.push({
      kind: 'array',
      present: record.state === 'complete' || record.state === 'partial',
      snapshots: record.snapshots.map((s) => ({ array: s.array, snapshotId: s.snapshotId })),
    });
  } else {
    out.push({ kind: 'array', present: false, snapshots: [] });
  }
  for (const c of copies) {
    out.push({
      kind: 'repository',
      name: c.repository,
      repositoryId: c.repositoryId,
      manifestId: c.manifestId,
      offloadedAt: c.offloadedAt,
      bytes: c.bytes,
      bytesAdded: c.bytesAdded,
    });
  }
  return out;
}

/** Sum of the capacities of a backup's included disks (what its array snapshot covers, logically). */
export function includedDiskBytes(record: BackupRecord): number {
  let n = 0;
  for (const vm of record.vms) for (const d of vm.disks) if (d.included) n += d.capacityBytes;
  return n;
}
