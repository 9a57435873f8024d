import { hostname } from 'node:os';
import { ConflictError } from '../../errors.js';
import { journalEntryNotFound, lockConflict, operationNotFound } from '../errors.js';
import { type JournalRow, type OperationRow, parseOf, toJournalEntry, toOperation } from '../rows.js';
import type {
  JournalEntry,
  JournalStep,
  LockHolder,
  LockManager,
  LockMode,
  LockRequest,
  Operation,
  OperationFilter,
  OperationJournal,
  OperationKind,
} from '../types.js';
import { checkOperationKind, lockRequests, toInstant } from '../validate.js';
import type { PostgresDatabase, Queryable } from './database.js';

const OP_COLUMNS =
  'o.id, o.kind, o.subject, o.pid, o.host, o.state, o.started_at, o.finished_at, o.heartbeat_at, o.recovered_at';

/** Every lock acquisition of the catalog runs under this transaction-level advisory lock (one at a time). */
const LOCKS_LOCK = 0x736b_6c6b; // 'sklk'

async function findOperation(q: Queryable, id: string, forUpdate = false): Promise<Operation | undefined> {
  const row = (
    await q.query<OperationRow>(
      `SELECT ${OP_COLUMNS} FROM operations o WHERE o.id = $1${forUpdate ? ' FOR UPDATE' : ''}`,
      [id],
    )
  ).rows[0];
  return row ? toOperation(row) : undefined;
}

async function getOperation(q: Queryable, id: string, forUpdate = false): Promise<Operation> {
  const op = await findOperation(q, id, forUpdate);
  if (!op) throw operationNotFound(id);
  return op;
}

/**
 * Operations, their write-ahead journal and their locks. Lock acquisition is serialised by a
 * transaction-level advisory lock (whatever machine asks), the operation's row is locked (FOR UPDATE) while it
 * is checked and changed, and every time is the server's.
 */
export class PostgresOperationJournal implements OperationJournal, LockManager {
  constructor(readonly db: PostgresDatabase) {}

  async beginOperation(op: {
    id: string;
    kind: OperationKind;
    subject?: string;
    pid?: number;
  }): Promise<void> {
    checkOperationKind(op.kind);
    await this.db.write(async (q) => {
      const now = await this.db.stamp(q);
      const inserted = await q.query(
        `INSERT INTO operations (id, kind, subject, pid, host, state, started_at, heartbeat_at)
         VALUES ($1, $2, $3, $4, $5, 'running', $6, $6) ON CONFLICT (id) DO NOTHING`,
        [op.id, op.kind, op.subject ?? null, op.pid ?? process.pid, hostname(), now],
      );
      if (inserted.rowCount === 0) {
        throw new ConflictError('OPERATION_EXISTS', `operation ${op.id} already exists in the catalog`);
      }
    });
  }

  async finishOperation(
    id: string,
    state: 'done' | 'failed',
    options: { repaired?: boolean } = {},
  ): Promise<void> {
    await this.db.write(async (q) => {
      const op = await getOperation(q, id, true);
      if (op.state !== 'running') {
        throw new ConflictError('OPERATION_FINISHED', `operation ${id} has already finished (${op.state})`);
      }
      const now = await this.db.stamp(q);
      await q.query('UPDATE operations SET state = $1, finished_at = $2, recovered_at = $3 WHERE id = $4', [
        state,
        now,
        state === 'failed' && options.repaired === true ? now : null,
        id,
      ]);
      await q.query('DELETE FROM locks WHERE operation_id = $1', [id]);
    });
  }

  async getOperation(id: string): Promise<Operation> {
    return getOperation(this.db, id);
  }

  async findOperation(id: string): Promise<Operation | undefined> {
    return findOperation(this.db, id);
  }

  async unfinishedOperations(): Promise<Operation[]> {
    const rows = await this.db.all<OperationRow>(
      `SELECT ${OP_COLUMNS} FROM operations o WHERE o.state = 'running' ORDER BY o.started_at, o.seq`,
    );
    return rows.map(toOperation);
  }

  async listOperations(filter: OperationFilter = {}): Promise<Operation[]> {
    const where: string[] = [];
    const params: unknown[] = [];
    if (filter.state !== undefined && filter.state.length > 0) {
      params.push(filter.state);
      where.push(`o.state = ANY($${params.length}::text[])`);
    }
    if (filter.kind !== undefined && filter.kind.length > 0) {
      params.push(filter.kind);
      where.push(`o.kind = ANY($${params.length}::text[])`);
    }
    if (filter.recovered !== undefined) {
      where.push(filter.recovered ? 'o.recovered_at IS NOT NULL' : 'o.recovered_at IS NULL');
    }
    // As on SQLite, a negative limit is no limit.
    params.push(filter.limit === undefined || filter.limit < 0 ? null : filter.limit);
    const rows = await this.db.all<OperationRow>(
      `SELECT ${OP_COLUMNS} FROM operations o ${where.length > 0 ? `WHERE ${where.join(' AND ')}` : ''}
       ORDER BY o.started_at DESC, o.seq DESC LIMIT $${params.length}`,
      params,
    );
    return rows.map(toOperation);
  }

  async heartbeat(id: string): Promise<void> {
    const changed = await this.db.write(async (q) => {
      const now = await this.db.stamp(q);
      return (await q.query('UPDATE operations SET heartbeat_at = $1 WHERE id = $2', [now, id])).rowCount;
    });
    if (changed === 0) throw operationNotFound(id);
  }

  async journal(operationId: string, entry: JournalStep): Promise<number> {
    const [id] = await this.journalSteps(operationId, [entry]);
    return id!;
  }

  async journalSteps(operationId: string, entries: JournalStep[]): Promise<number[]> {
    return this.db.write(async (q) => {
      // FOR SHARE: the operation cannot be pruned (deleted) while its entries are written.
      const op = await q.query('SELECT 1 FROM operations WHERE id = $1 FOR SHARE', [operationId]);
      if (op.rowCount === 0) throw operationNotFound(operationId);
      const now = await this.db.stamp(q);
      const ids: number[] = [];
      for (const entry of entries) {
        const row = (
          await q.query<{ id: number }>(
            `INSERT INTO journal (operation_id, action, target, data, created_at) VALUES ($1, $2, $3, $4, $5)
             RETURNING id`,
            [operationId, entry.action, entry.target, JSON.stringify(entry.data ?? {}), now],
          )
        ).rows[0]!;
        ids.push(row.id);
      }
      return ids;
    });
  }

  async completeJournal(entryId: number, data?: Record<string, unknown>): Promise<void> {
    await this.db.write(async (q) => {
      const row = (await q.query<JournalRow>('SELECT * FROM journal WHERE id = $1 FOR UPDATE', [entryId]))
        .rows[0];
      if (!row) throw journalEntryNotFound(entryId);
      const merged = {
        ...this.db.parse<Record<string, unknown>>(row.data, `journal entry ${entryId}`),
        ...data,
      };
      await q.query('UPDATE journal SET data = $1, completed_at = coalesce(completed_at, $2) WHERE id = $3', [
        JSON.stringify(merged),
        await this.db.stamp(q),
        entryId,
      ]);
    });
  }

  async journalEntries(operationId: string): Promise<JournalEntry[]> {
    const rows = await this.db.all<JournalRow>('SELECT * FROM journal WHERE operation_id = $1 ORDER BY id', [
      operationId,
    ]);
    return rows.map((r) => toJournalEntry(parseOf(this.db), r));
  }

  async markRecovered(operationId: string): Promise<void> {
    await this.db.write(async (q) => {
      const op = await getOperation(q, operationId, true);
      if (op.state === 'running') {
        throw new ConflictError(
          'OPERATION_RUNNING',
          `operation ${operationId} is still running: finish it as failed before marking it recovered`,
        );
      }
      await q.query('UPDATE operations SET recovered_at = $1 WHERE id = $2', [
        await this.db.stamp(q),
        operationId,
      ]);
    });
  }

  async pruneOperations(before: string): Promise<number> {
    const cutoff = toInstant(before, 'before');
    return this.db.run(
      `DELETE FROM operations WHERE finished_at < $1
       AND (state = 'done' OR (state = 'failed' AND recovered_at IS NOT NULL))`,
      [cutoff],
    );
  }

  async acquireLocks(operationId: string, requests: LockRequest[]): Promise<void> {
    const wanted = lockRequests(requests);
    await this.db.write(async (q) => {
      // One acquisition at a time across every connection and machine: check-then-insert is atomic.
      await q.query('SELECT pg_advisory_xact_lock($1)', [LOCKS_LOCK]);
      const op = await getOperation(q, operationId, true);
      if (op.state !== 'running') {
        throw new ConflictError(
          'OPERATION_FINISHED',
          `operation ${operationId} has finished (${op.state}) and cannot take locks`,
        );
      }
      const held = new Map<string, LockHolder[]>();
      for (const resource of wanted.keys()) held.set(resource, await holders(q, resource));
      const conflict = lockConflict(operationId, wanted, held);
      if (conflict) throw conflict;
      const now = await this.db.stamp(q);
      for (const [resource, mode] of wanted) {
        await q.query(
          `DELETE FROM locks WHERE resource = $1 AND operation_id IN (SELECT id FROM operations WHERE state != 'running')`,
          [resource],
        );
        await q.query(
          `INSERT INTO locks (resource, operation_id, mode, acquired_at) VALUES ($1, $2, $3, $4)
           ON CONFLICT (resource, operation_id) DO UPDATE SET mode = 'exclusive' WHERE excluded.mode = 'exclusive'`,
          [resource, operationId, mode, now],
        );
      }
    });
  }

  async lockHolders(resource: string): Promise<LockHolder[]> {
    return holders(this.db, resource);
  }

  async releaseLocks(operationId: string): Promise<void> {
    await this.db.run('DELETE FROM locks WHERE operation_id = $1', [operationId]);
  }

  async locksOf(operationId: string): Promise<string[]> {
    const rows = await this.db.all<{ resource: string }>(
      'SELECT resource FROM locks WHERE operation_id = $1 ORDER BY resource',
      [operationId],
    );
    return rows.map((r) => r.resource);
  }
}

async function holders(q: Queryable, resource: string): Promise<LockHolder[]> {
  const rows = (
    await q.query<OperationRow & { lock_mode: LockMode }>(
      `SELECT ${OP_COLUMNS}, l.mode AS lock_mode FROM locks l JOIN operations o ON o.id = l.operation_id
       WHERE l.resource = $1 AND o.state = 'running' ORDER BY l.acquired_at, o.id`,
      [resource],
    )
  ).rows;
  return rows.map((r) => ({ mode: r.lock_mode, operation: toOperation(r) }));
}
