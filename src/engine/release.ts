import { withRetry } from '../util/retry.js';
import { isFault, type VcenterSession } from '../vsphere/index.js';

export interface ReleaseResult {
  removedSnapshots: number;
  poweredOn: boolean;
  /** The VM no longer exists in vCenter: nothing of ours is left on it, so it counts as released. */
  gone: boolean;
}

/**
 * Brings a VM back from a backup's prepare step, idempotently: removes every VM snapshot named
 * `snapshotName` and, with `resume`, powers the VM on if it is suspended. Each attempt re-reads the VM's
 * state, so it is safe after a crash, after a call that half-succeeded before its connection dropped, and
 * when run twice. Retried with backoff: a VM left suspended is worse than a slow release. A VM that is gone
 * (ManagedObjectNotFound) is not retried: it is released.
 */
export async function releaseVm(
  vc: VcenterSession,
  vmId: string,
  options: { snapshotName?: string; resume: boolean },
): Promise<ReleaseResult> {
  const done: ReleaseResult = { removedSnapshots: 0, poweredOn: false, gone: false };
  try {
    await withRetry(
      async () => {
        const state = await vc.vmState(vmId);
        if (options.snapshotName !== undefined) {
          for (const snapshot of state.snapshots.filter((s) => s.name === options.snapshotName)) {
            try {
              await vc.removeVmSnapshot(snapshot.id);
              done.removedSnapshots++;
            } catch (err) {
              // Removed meanwhile by someone else: gone is what we want. Not "the VM is gone".
              if (!isFault(err, 'ManagedObjectNotFound')) throw err;
            }
          }
        }
        if (options.resume && state.powerState === 'suspended') {
          await vc.powerOnVm(vmId);
          done.poweredOn = true;
        }
      },
      { attempts: 4, baseMs: 250, retryIf: (err) => !isFault(err, 'ManagedObjectNotFound') },
    );
  } catch (err) {
    if (!isFault(err, 'ManagedObjectNotFound')) throw err;
    done.gone = true;
  }
  return done;
}
