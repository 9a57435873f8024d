import { runLimited } from '../util/scheduler.js';
import { fillLabDisk } from './diskdata.js';
import type { LabVm } from './state.js';

/** Disks filled at once: the writes run on libuv's thread pool, 4 threads by default. */
const CONCURRENT_FILLS = 4;

/**
 * Fills every flat and independent disk of `vms` with its deterministic data (RDMs are LUNs, not files the
 * lab owns). Every fill has ended before this settles, so an undo never removes the array under a running
 * fill; the first failure is then thrown.
 */
export async function fillLabDisks(vms: LabVm[], progress: (step: string) => void): Promise<void> {
  const disks = vms.flatMap((vm) =>
    vm.disks
      .filter((d) => d.kind === 'flat' || d.kind === 'independent')
      .map((d) => ({ vm: vm.name, disk: d })),
  );
  let done = 0;
  const results = await runLimited(
    disks,
    { global: CONCURRENT_FILLS, perKey: CONCURRENT_FILLS },
    () => 'array',
    async ({ vm, disk }) => {
      await fillLabDisk(disk.path, vm, disk.index, disk.sizeMB * 1024 * 1024);
      done++;
      progress(`filling disks ${done}/${disks.length}`);
    },
  );
  const failed = results.find((r) => r.status === 'rejected');
  if (failed !== undefined) throw failed.reason;
}
