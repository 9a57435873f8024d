import type { Consistency, DiskRecord } from '../model/backup.js';
import type { DiskKind, VirtualDisk } from '../model/inventory.js';
import type { BackupMode } from '../model/modes.js';
import { usesVmSnapshot } from './modes.js';

/** True for raw device mappings, physical or virtual compatibility. */
export function isRdmKind(kind: DiskKind): boolean {
  return kind === 'rdm-physical' || kind === 'rdm-virtual';
}

/** True when any disk is an RDM: the input of the SPEC section 2 RDM rule. */
export function hasRdm(disks: readonly VirtualDisk[]): boolean {
  return disks.some((d) => isRdmKind(d.kind));
}

/**
 * SPEC section 2: what the backup holds of each disk, in input order.
 * - RDM disks are excluded (`included: false`): their LUN is not on a datastore, so no array snapshot of the
 *   consistency group holds it. The note says so and names the LUN.
 * - Independent disks are included, but VM snapshots do not cover them: when the VM's consistency comes from
 *   a VM snapshot (SNAPSHOT_* on a running VM) they are only crash consistent, and the note says why.
 *   Otherwise they share the VM's consistency (crash in ASIS; powered off or suspended, nothing writes to
 *   them); the note still marks them independent.
 * - Other (flat) disks are included with the VM's consistency.
 */
export function classifyDisks(
  disks: readonly VirtualDisk[],
  effectiveMode: BackupMode,
  vmConsistency: Consistency,
): DiskRecord[] {
  const vmSnapshotTaken =
    usesVmSnapshot(effectiveMode) && (vmConsistency === 'running-state' || vmConsistency === 'file-system');
  return disks.map((disk) => {
    const base = baseRecord(disk);
    if (isRdmKind(disk.kind)) {
      const compat = disk.kind === 'rdm-physical' ? 'physical' : 'virtual';
      const lun = disk.lun === undefined ? 'its LUN' : `LUN ${disk.lun}`;
      return {
        ...base,
        included: false,
        exclusion: 'rdm',
        note: `raw device mapping (${compat} compatibility): ${lun} is not on a datastore and is not backed up`,
      };
    }
    if (disk.kind === 'independent') {
      if (vmSnapshotTaken) {
        return {
          ...base,
          included: true,
          consistency: 'crash',
          note: 'independent disk: not covered by the VM snapshot, captured crash consistent by the array snapshot',
        };
      }
      const why =
        vmConsistency === 'crash'
          ? 'crash consistent like the rest of the VM'
          : 'the VM was not running, so it is as consistent as the VM';
      return {
        ...base,
        included: true,
        consistency: vmConsistency,
        note: `independent disk: not covered by VM snapshots; ${why}`,
      };
    }
    return { ...base, included: true, consistency: vmConsistency };
  });
}

/** Copies the disk's identity; optional fields only when present so the JSON record has no undefined keys. */
function baseRecord(disk: VirtualDisk): Omit<DiskRecord, 'included'> {
  const record: Omit<DiskRecord, 'included'> = {
    key: disk.key,
    label: disk.label,
    kind: disk.kind,
    capacityBytes: disk.capacityBytes,
    file: disk.file,
    datastore: disk.datastore,
    diskMode: disk.diskMode,
  };
  if (disk.lun !== undefined) record.lun = disk.lun;
  if (disk.controllerKey !== undefined) record.controllerKey = disk.controllerKey;
  if (disk.unitNumber !== undefined) record.unitNumber = disk.unitNumber;
  return record;
}
