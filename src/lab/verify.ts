import { open, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { loadConfig } from '../config/load.js';
import { NotFoundError } from '../errors.js';
import { connect } from '../vsphere/index.js';
import { labDiskChunk } from './diskdata.js';
import { readLabState } from './state.js';

export interface VerifiedDisk {
  label: string;
  file: string;
  /** Index of the disk in the spec VM's `disks` (from its `Hard disk N` label). */
  index: number;
  bytes: number;
  ok: boolean;
  /** Offset of the first byte that differs, when not ok. */
  firstDifference?: number;
}

const COMPARE_CHUNK = 4 * 1024 * 1024;

/**
 * Checks that the standard disks of `vm` (default: `specVm`) hold exactly the bytes the lab wrote for
 * `specVm` when it came up: what a restore of a lab VM must give back. Disks are matched by their
 * `Hard disk N` labels (the lab labels disks in spec order); RDM disks are skipped (never restored).
 */
export async function verifyLabVm(dir: string, specVm: string, vm: string = specVm): Promise<VerifiedDisk[]> {
  const state = await readLabState(dir);
  const vc = await connect(loadConfig(state.configFile).vcenter);
  let inventory: Awaited<ReturnType<typeof vc.inventory>>;
  try {
    inventory = await vc.inventory();
  } finally {
    await vc.logout();
  }
  const found = inventory.vms.find((v) => v.name === vm);
  if (!found) throw new NotFoundError('VM_NOT_FOUND', `no VM named ${vm} in the lab`);
  const results: VerifiedDisk[] = [];
  for (const disk of found.disks) {
    if (disk.kind === 'rdm-physical' || disk.kind === 'rdm-virtual') continue;
    const m = /^Hard disk (\d+)$/.exec(disk.label);
    const ds = inventory.datastores.find((d) => d.name === disk.datastore);
    const rel = /^\[[^\]]+\] (.+)$/.exec(disk.file)?.[1];
    if (!m || !ds || !rel) {
      results.push({
        label: disk.label,
        file: disk.file,
        index: -1,
        bytes: 0,
        ok: false,
        firstDifference: 0,
      });
      continue;
    }
    const descriptor = join(ds.url, rel);
    const flat = descriptor.replace(/\.vmdk$/, '-flat.vmdk');
    const data = (await stat(flat).catch(() => undefined)) ? flat : descriptor;
    const index = Number(m[1]) - 1;
    const firstDifference = await firstDifferenceOf(data, specVm, index, disk.capacityBytes);
    results.push({
      label: disk.label,
      file: disk.file,
      index,
      bytes: disk.capacityBytes,
      ok: firstDifference === undefined,
      ...(firstDifference === undefined ? {} : { firstDifference }),
    });
  }
  return results;
}

async function firstDifferenceOf(
  path: string,
  vm: string,
  index: number,
  size: number,
): Promise<number | undefined> {
  const fh = await open(path, 'r');
  try {
    if ((await fh.stat()).size !== size) return 0;
    const buf = Buffer.alloc(COMPARE_CHUNK);
    for (let offset = 0; offset < size; offset += COMPARE_CHUNK) {
      const length = Math.min(COMPARE_CHUNK, size - offset);
      const { bytesRead } = await fh.read(buf, 0, length, offset);
      const expected = labDiskChunk(vm, index, offset, length);
      if (bytesRead !== length || !buf.subarray(0, length).equals(expected)) {
        for (let i = 0; i < length; i++) if (buf[i] !== expected[i]) return offset + i;
        return offset + bytesRead;
      }
    }
    return undefined;
  } finally {
    await fh.close();
  }
}
