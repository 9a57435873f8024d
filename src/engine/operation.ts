import { AsyncLocalStorage } from 'node:async_hooks';
import {
  HEARTBEAT_INTERVAL_MS,
  type LockManager,
  type LockRequest,
  type OperationJournal,
  type OperationKind,
} from '../catalog/index.js';
import { errorMessage, SnapkeeperError } from '../errors.js';
import type { BackupRecord } from '../model/backup.js';
import type { EngineContext } from './context.js';
import { newOperationId } from './ids.js';
import {
  anyDeadOperation,
  emptyReport,
  journaledRecovery,
  repairOperations,
  undoJournal,
} from './journal/recovery.js';
import type { JournaledAction } from './journal/report.js';
import { readJournal } from './journal/write.js';
import { assertSnapshotsPresent } from './snapshot-presence.js';

/**
 * The operation runner: begin, locks, lease, finish; and for journaled operations (restore, mount, attach)
 * the repair of dead operations first and the undo of its own journal when it fails. It stands on the
 * recovery registry (journal/recovery.ts) and below every entry point.
 */

export interface OperationSpec {
  id: string;
  kind: OperationKind;
  /** What it works on (a task name, a backup id): shown when it holds what someone else wants. */
  subject?: string;
  /** Taken all or none right after it begins; `backup:<id>` shared to read a backup, exclusive to delete it. */
  locks: LockRequest[];
}

/**
 * One running operation of this process: begun in the journal, holding its locks, renewing its lease. The
 * heartbeat timer is unref'd (it never keeps the process alive) and stops when the operation ends or is
 * abandoned; a process that dies stops it too, and the lease (or, on this host, the dead pid) tells recover.
 */
export class RunningOperation {
  #timer: NodeJS.Timeout | undefined;

  private constructor(
    readonly id: string,
    readonly kind: OperationKind,
    private readonly catalog: OperationJournal & LockManager,
  ) {}

  /**
   * Begins the operation and takes its locks; when they are refused (LockedError RESOURCE_LOCKED naming the
   * holder) the operation is closed as failed with nothing to repair, and the error is rethrown.
   */
  static async begin(
    catalog: OperationJournal & LockManager,
    spec: OperationSpec,
  ): Promise<RunningOperation> {
    await catalog.beginOperation({
      id: spec.id,
      kind: spec.kind,
      ...(spec.subject !== undefined ? { subject: spec.subject } : {}),
    });
    try {
      await catalog.acquireLocks(spec.id, spec.locks);
    } catch (err) {
      await catalog.finishOperation(spec.id, 'failed', { repaired: true });
      throw err;
    }
    const op = new RunningOperation(spec.id, spec.kind, catalog);
    op.#timer = setInterval(() => op.#renew(), HEARTBEAT_INTERVAL_MS);
    op.#timer.unref();
    return op;
  }

  #renew(): void {
    this.catalog.heartbeat(this.id).catch(() => {
      // A busy catalog misses one renewal; the lease allows for many before anyone counts the run dead.
    });
  }

  /**
   * Ends the operation (its locks are freed with it). `repaired`: a failed operation that left nothing to
   * undo, which recover therefore never needs to revisit.
   */
  async finish(state: 'done' | 'failed', options: { repaired?: boolean } = {}): Promise<void> {
    this.#stop();
    await this.catalog.finishOperation(this.id, state, options);
  }

  /**
   * Stops renewing the lease but leaves the operation open, with its journal and locks, for recover: what
   * a run does when it could not undo its own side effects.
   */
  abandon(): void {
    this.#stop();
  }

  #stop(): void {
    if (this.#timer !== undefined) clearInterval(this.#timer);
    this.#timer = undefined;
  }
}

/**
 * Runs `body` as one operation: begin, locks, heartbeat, then done, or failed when it throws (and the error
 * is rethrown). For operations whose failure leaves nothing for recover; one that may must use
 * `RunningOperation` and `abandon()` it.
 */
export async function withOperation<T>(
  catalog: OperationJournal & LockManager,
  spec: OperationSpec,
  body: (op: RunningOperation) => Promise<T>,
): Promise<T> {
  const op = await RunningOperation.begin(catalog, spec);
  let value: T;
  try {
    value = await body(op);
  } catch (err) {
    await op.finish('failed', { repaired: true });
    throw err;
  }
  await op.finish('done');
  return value;
}

/** Set while an entry point runs its checks again after the repair in `runOperation` changed things. */
const revalidation = new AsyncLocalStorage<'first' | 'again'>();

/** Thrown by `runOperation` when the checks made before it may be stale; `checkedOperation` runs them again. */
class ChecksStale extends Error {}

/**
 * Runs an entry point (restore, mount, unmount, attach, detach: its checks, then `runOperation`). When the
 * repair `runOperation` does before it begins repaired interrupted operations, what was checked (the
 * inventory, the mounts) may have changed: the entry point runs once more, checks first, on fresh state.
 */
export async function checkedOperation<T>(fn: () => Promise<T>): Promise<T> {
  try {
    return await revalidation.run('first', fn);
  } catch (err) {
    if (!(err instanceof ChecksStale)) throw err;
    return revalidation.run('again', fn);
  }
}

/** A journaled operation of restore, mount or attach, as `runOperation` runs it. */
export interface JournaledSpec {
  kind: 'restore' | 'mount' | 'attach' | 'offload';
  subject: string;
  locks: LockRequest[];
  /**
   * The backup whose data it reads: held shared for the whole operation (delete and expire wait), and its
   * array snapshots must still exist once the hold is taken, or nothing is done.
   */
  reads?: BackupRecord;
}

/**
 * Runs one journaled operation (restore, mount, attach): repairs what dead operations left, begins it,
 * takes its locks (and the hold on the backup it reads, whose snapshots it then checks), runs `body`; on
 * failure undoes what the journal says was done and closes the operation as failed (or leaves it open for
 * `recover` when undoing failed too), then rethrows with what happened.
 *
 * Callers make every check (and return dry runs) before calling it: the repair is the first change, so a
 * dry run or a refused request (exit 3) changes nothing, not even a crashed backup's VMs.
 */
export async function runOperation<T>(
  ctx: EngineContext,
  op: JournaledSpec,
  body: (opId: string) => Promise<T>,
): Promise<T> {
  // What dead operations left is repaired first (only now: nothing before this point changes anything).
  // Whatever the repair touched may be what the caller checked: then its checks run again.
  const dead = await anyDeadOperation(ctx);
  await repairOperations(ctx, emptyReport(false), { onlyDead: true });
  if (dead && revalidation.getStore() === 'first') throw new ChecksStale();
  const opId = newOperationId(op.kind, ctx.now());
  const { reads, ...spec } = op;
  const hold: LockRequest[] = reads ? [{ resource: `backup:${reads.id}`, mode: 'shared' }] : [];
  const running = await RunningOperation.begin(ctx.catalog, {
    id: opId,
    ...spec,
    locks: [...spec.locks, ...hold],
  });
  if (reads) await refuseUnlessPresent(ctx, running, reads);
  try {
    const value = await body(opId);
    await running.finish('done');
    return value;
  } catch (err) {
    ctx.events.phase('undo');
    const undo = await undoOwnJournal(ctx, opId);
    if (undo.clean) await running.finish('failed', { repaired: true });
    else running.abandon();
    const why = undo.clean
      ? 'everything it did was undone'
      : `undoing failed (${undo.errors.join('; ')}); run snapkeeper recover`;
    const code = err instanceof SnapkeeperError ? err.code : `${op.kind.toUpperCase()}_FAILED`;
    throw new SnapkeeperError(code, `${op.kind} failed: ${errorMessage(err)}; ${why}`, {
      cause: err,
      details: { ...(err instanceof SnapkeeperError ? err.details : {}), operation: opId, undo },
    });
  }
}

/**
 * Checked under the hold, so no delete can slip in between: a backup whose snapshot vanished (SNAPSHOT_MISSING,
 * naming it) is refused like a refused lock, the operation closed with nothing done and the error as it is.
 */
async function refuseUnlessPresent(
  ctx: EngineContext,
  running: RunningOperation,
  backup: BackupRecord,
): Promise<void> {
  try {
    await assertSnapshotsPresent(ctx, backup);
  } catch (err) {
    await running.finish('failed', { repaired: true });
    throw err;
  }
}

/** Undoes what a failed operation of this process journaled; a journal that does not read back is not guessed at. */
async function undoOwnJournal(ctx: EngineContext, opId: string) {
  const { entries, problems } = readJournal(await ctx.catalog.journalEntries(opId));
  if (problems.length > 0) return { clean: false, actions: [], errors: problems };
  // Nothing to undo (an offload journals only roll-forward steps): no need to reach vCenter for it.
  if (!entries.some((e) => journaledRecovery[e.action as JournaledAction]?.kind === 'undo')) {
    return { clean: true, actions: [], errors: [] };
  }
  return undoJournal(ctx, await ctx.vcenter(), entries, { dryRun: false });
}
