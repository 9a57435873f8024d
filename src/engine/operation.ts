import {
  HEARTBEAT_INTERVAL_MS,
  type LockManager,
  type LockRequest,
  type OperationJournal,
  type OperationKind,
} from '../catalog/index.js';

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
