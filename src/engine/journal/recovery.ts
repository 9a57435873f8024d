import { type Operation, operationAlive } from '../../catalog/index.js';
import { ConflictError, errorMessage } from '../../errors.js';
import type { VcenterSession } from '../../vsphere/index.js';
import type { EngineContext } from '../context.js';
import { recoverBackup } from './backup-recovery.js';
import type { RecoverReport } from './report.js';
import { recoverJournaled } from './undo.js';
import { readJournal } from './write.js';

/**
 * The recovery registry: how every journaled action (actions.ts) is recovered after a crash or a failure,
 * and the repair of interrupted operations that dispatches through it. Each action is `undo` (take back what
 * it did), `roll-forward` (finish what it began: the user asked for it) or `none` with the reason. The tables
 * (backup-recovery.ts for backups, undo.ts for restore, mount and attach) are typed over every action name,
 * so an action without a recovery does not compile.
 */

export { backupRecovery } from './backup-recovery.js';
export {
  BACKUP_ACTIONS,
  emptyReport,
  type ForeignThing,
  type RecoverReport,
  type Recovery,
} from './report.js';
export { journaledRecovery, type UndoOutcome, undoJournal } from './undo.js';

/**
 * Repairs one interrupted operation from its journal; true when nothing of it is left. A journal that does
 * not read back as written (a damaged catalog) is not acted on at all: a guess could destroy a backup.
 */
async function repairOne(
  ctx: EngineContext,
  vc: VcenterSession,
  op: Operation,
  report: RecoverReport,
): Promise<boolean> {
  // A prune's only side effects are in its repository, which guards them with its own lock.
  if (op.kind === 'delete' || op.kind === 'expire' || op.kind === 'recover' || op.kind === 'prune')
    return true;
  if (
    op.kind !== 'backup' &&
    op.kind !== 'restore' &&
    op.kind !== 'mount' &&
    op.kind !== 'attach' &&
    op.kind !== 'offload'
  ) {
    report.errors.push(`operation ${op.id}: no recovery for operations of kind ${op.kind}`);
    return false;
  }
  const { entries, problems } = readJournal(await ctx.catalog.journalEntries(op.id));
  if (problems.length > 0) {
    report.errors.push(...problems.map((p) => `${op.kind} ${op.id}: ${p}; left for a manual repair`));
    return false;
  }
  if (op.kind === 'backup') return recoverBackup(ctx, vc, op, entries, report);
  const outcome = await recoverJournaled(ctx, vc, entries, report.dryRun);
  report.actions.push(...outcome.actions.map((a) => `${op.kind} ${op.id}: ${a}`));
  report.errors.push(...outcome.errors.map((a) => `${op.kind} ${op.id}: ${a}`));
  return outcome.clean;
}

/**
 * Repairs interrupted operations: those whose process is gone (their lease ran out) and, unless
 * `onlyDead`, those an earlier recover closed without finishing their repair. An operation whose repair
 * fails is closed all the same (no lock outlives its holder) and stays listed for the next recover.
 * Operations of live processes are never touched.
 */
export async function repairOperations(
  ctx: EngineContext,
  report: RecoverReport,
  options: { onlyDead: boolean },
): Promise<void> {
  const { catalog } = ctx;
  const now = await ctx.catalogNow();
  const unfinished = await catalog.unfinishedOperations();
  const dead = unfinished.filter((op) => !operationAlive(op, now));
  for (const op of unfinished) {
    if (operationAlive(op, now) && op.pid !== process.pid)
      report.running.push({ id: op.id, kind: op.kind, pid: op.pid });
  }
  // Closed by an earlier recover whose repair was incomplete: retried by every full recover until clean.
  const unrepaired = options.onlyDead
    ? []
    : (await catalog.listOperations({ state: ['failed'], recovered: false })).reverse();
  if (options.onlyDead && dead.length === 0) return;
  ctx.events.phase('recover');

  const vc = await ctx.vcenter();
  for (const op of [...dead, ...unrepaired]) {
    let clean = false;
    try {
      clean = await repairOne(ctx, vc, op, report);
    } catch (err) {
      // One operation's failure must not stop the repair of the others: it is retried by the next recover.
      clean = false;
      report.errors.push(`${op.kind} ${op.id}: ${errorMessage(err)}`);
    }
    try {
      // Closed whatever the repair achieved (finishOperation also frees its locks): a lock must never
      // outlive its holder. An incomplete repair stays listed as failed and unrecovered for the next recover.
      if (!report.dryRun) await closeRecovered(ctx, op, clean);
    } catch (err) {
      clean = false;
      report.errors.push(`${op.kind} ${op.id}: ${errorMessage(err)}`);
    }
    (clean ? report.operations : report.stillOpen).push({ id: op.id, kind: op.kind });
  }
}

/** Closes a dead operation (a concurrent recover may have closed it first) and marks it repaired when it is. */
async function closeRecovered(ctx: EngineContext, op: Operation, clean: boolean): Promise<void> {
  if (op.state === 'running') {
    try {
      await ctx.catalog.finishOperation(op.id, 'failed');
    } catch (err) {
      if (!(err instanceof ConflictError && err.code === 'OPERATION_FINISHED')) throw err;
    }
  }
  if (clean) await ctx.catalog.markRecovered(op.id);
}

/** Whether any unfinished operation has outlived its lease (what `repairOperations` would repair). */
export async function anyDeadOperation(ctx: EngineContext): Promise<boolean> {
  const now = await ctx.catalogNow();
  return (await ctx.catalog.unfinishedOperations()).some((o) => !operationAlive(o, now));
}
