import type { EngineContext } from './context.js';
import { emptyReport, type RecoverReport, repairOperations } from './journal/recovery.js';
import { markLostBackups, sweepMounts, sweepSnapshots } from './sweeps.js';

export type { ForeignThing, RecoverReport } from './journal/recovery.js';

export interface RecoverOptions {
  /** Only repair operations whose process is gone (what a new run does before it starts); skip the sweeps. */
  onlyDeadOperations?: boolean;
  /** Report what would be done, change nothing. */
  dryRun?: boolean;
}

/**
 * Repairs whatever interrupted runs left behind, from their journals: removes snapkeeper VM snapshots,
 * powers on VMs that snapkeeper suspended, deletes array snapshots labelled with a backup id that no backup
 * owns, marks interrupted backups failed and closes their operations (which frees their locks). An operation
 * whose repair fails stays open (`stillOpen`) for the next recover; the others are repaired all the same.
 * Operations of live processes are never touched. Idempotent: running it twice is harmless.
 */
export async function recover(ctx: EngineContext, options: RecoverOptions = {}): Promise<RecoverReport> {
  const report = emptyReport(options.dryRun === true);
  await repairOperations(ctx, report, { onlyDead: options.onlyDeadOperations === true });
  if (!options.onlyDeadOperations) {
    await sweepSnapshots(ctx, report);
    await sweepMounts(ctx, report);
    await markLostBackups(ctx, report);
  }
  return report;
}
