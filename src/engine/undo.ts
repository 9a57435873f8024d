import type { JournalEntry, Operation, OperationKind } from '../catalog/index.js';
import type { VcenterSession } from '../vsphere/session.js';
import type { EngineContext } from './context.js';
import type { RecoverReport } from './recover.js';

/** What recovering one interrupted operation gets: its journal, the report to fill, and whether to act. */
export interface RecoveryStep {
  ctx: EngineContext;
  vc: VcenterSession;
  op: Operation;
  entries: JournalEntry[];
  report: RecoverReport;
  dryRun: boolean;
}

/**
 * Undoes (or finishes) an interrupted operation of one kind from its journal. Returns true when nothing of
 * it is left, so the operation can be closed; false keeps it open for the next recover. Must be idempotent.
 */
export type OperationRecovery = (step: RecoveryStep) => Promise<boolean>;

/** Recovery per operation kind other than backup (which recover.ts handles itself). */
export const operationRecovery: Partial<Record<OperationKind, OperationRecovery>> = {};

/** Sweeps run by a full `recover` after the journals: leftovers no journal names (clones, mounted datastores). */
export const extraSweeps: ((ctx: EngineContext, report: RecoverReport) => Promise<void>)[] = [];
