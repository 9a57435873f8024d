import { hostname } from 'node:os';
import { ConflictError } from '../../errors.js';
import { journalEntryNotFound, operationNotFound } from '../errors.js';
import { type JournalRow, type OperationRow, parseOf, toJournalEntry, toOperation } from '../rows.js';
import type {
  JournalEntry,
  JournalStep,
  Operation,
  OperationFilter,
  OperationJournal,
  OperationKind,
} from '../types.js';
import { checkOperationKind, toInstant } from '../validate.js';
import type { SqliteDatabase } from './database.js';

/** Operations and their write-ahead journal. */
export class SqliteOperationJournal implements OperationJournal {
  constructor(readonly db: SqliteDatabase) {}

  async beginOperation(op: {
    id: string;
    kind: OperationKind;
    subject?: string;
    pid?: number;
  }): Promise<void> {
    checkOperationKind(op.kind);
    this.db.write(() => {
      if (findOperation(this.db, op.id)) {
        throw new ConflictError('OPERATION_EXISTS', `operation ${op.id} already exists in the catalog`);
      }
      const now = this.db.stamp();
      this.db.run(
        `INSERT INTO operations (id, kind, subject, pid, host, state, started_at, heartbeat_at)
         VALUES (?, ?, ?, ?, ?, 'running', ?, ?)`,
        op.id,
        op.kind,
        op.subject ?? null,
        op.pid ?? process.pid,
        hostname(),
        now,
        now,
      );
    });
  }

  async finishOperation(
    id: string,
    state: 'done' | 'failed',
    options: { repaired?: boolean } = {},
  ): Promise<void> {
    this.db.write(() => {
      const op = getOperation(this.db, id);
      if (op.state !== 'running') {
        throw new ConflictError('OPERATION_FINISHED', `operation ${id} has already finished (${op.state})`);
      }
      const now = this.db.stamp();
      this.db.run(
        'UPDATE operations SET state = ?, finished_at = ?, recovered_at = ? WHERE id = ?',
        state,
        now,
        state === 'failed' && options.repaired === true ? now : null,
        id,
      );
      this.db.run('DELETE FROM locks WHERE operation_id = ?', id);
    });
  }

  async getOperation(id: string): Promise<Operation> {
    return getOperation(this.db, id);
  }

  async findOperation(id: string): Promise<Operation | undefined> {
    return findOperation(this.db, id);
  }

  async unfinishedOperations(): Promise<Operation[]> {
    return this.db
      .all<OperationRow>("SELECT * FROM operations WHERE state = 'running' ORDER BY started_at, rowid")
      .map(toOperation);
  }

  async listOperations(filter: OperationFilter = {}): Promise<Operation[]> {
    const where: string[] = [];
    const params: unknown[] = [];
    if (filter.state !== undefined && filter.state.length > 0) {
      where.push('state IN (SELECT value FROM json_each(?))');
      params.push(JSON.stringify(filter.state));
    }
    if (filter.kind !== undefined && filter.kind.length > 0) {
      where.push('kind IN (SELECT value FROM json_each(?))');
      params.push(JSON.stringify(filter.kind));
    }
    if (filter.recovered !== undefined) {
      where.push(filter.recovered ? 'recovered_at IS NOT NULL' : 'recovered_at IS NULL');
    }
    params.push(filter.limit ?? -1);
    return this.db
      .all<OperationRow>(
        `SELECT * FROM operations ${where.length > 0 ? `WHERE ${where.join(' AND ')}` : ''}
         ORDER BY started_at DESC, rowid DESC LIMIT ?`,
        ...params,
      )
      .map(toOperation);
  }

  async heartbeat(id: string): Promise<void> {
    const changed = this.db.write(() =>
      this.db.run('UPDATE operations SET heartbeat_at = ? WHERE id = ?', this.db.stamp(), id),
    );
    if (changed === 0) throw operationNotFound(id);
  }

  async journal(operationId: string, entry: JournalStep): Promise<number> {
    const [id] = await this.journalSteps(operationId, [entry]);
    return id!;
  }

  async journalSteps(operationId: string, entries: JournalStep[]): Promise<number[]> {
    return this.db.write(() => {
      if (!this.db.get('SELECT 1 FROM operations WHERE id = ?', operationId)) {
        throw operationNotFound(operationId);
      }
      const now = this.db.stamp();
      return entries.map((entry) =>
        this.db.insert(
          'INSERT INTO journal (operation_id, action, target, data, created_at) VALUES (?, ?, ?, ?, ?)',
          operationId,
          entry.action,
          entry.target,
          JSON.stringify(entry.data ?? {}),
          now,
        ),
      );
    });
  }

  async completeJournal(entryId: number, data?: Record<string, unknown>): Promise<void> {
    this.db.write(() => {
      const row = this.db.get<JournalRow>('SELECT * FROM journal WHERE id = ?', entryId);
      if (!row) throw journalEntryNotFound(entryId);
      const merged = {
        ...this.db.parse<Record<string, unknown>>(row.data, `journal entry ${entryId}`),
        ...data,
      };
      this.db.run(
        'UPDATE journal SET data = ?, completed_at = coalesce(completed_at, ?) WHERE id = ?',
        JSON.stringify(merged),
        this.db.stamp(),
        entryId,
      );
    });
  }

  async journalEntries(operationId: string): Promise<JournalEntry[]> {
    return this.db
      .all<JournalRow>('SELECT * FROM journal WHERE operation_id = ? ORDER BY id', operationId)
      .map((r) => toJournalEntry(parseOf(this.db), r));
  }

  async markRecovered(operationId: string): Promise<void> {
    this.db.write(() => {
      const op = getOperation(this.db, operationId);
      if (op.state === 'running') {
        throw new ConflictError(
          'OPERATION_RUNNING',
          `operation ${operationId} is still running: finish it as failed before marking it recovered`,
        );
      }
      this.db.run('UPDATE operations SET recovered_at = ? WHERE id = ?', this.db.stamp(), operationId);
    });
  }

  async pruneOperations(before: string): Promise<number> {
    const cutoff = toInstant(before, 'before');
    return this.db.write(() =>
      this.db.run(
        `DELETE FROM operations WHERE finished_at < ?
         AND (state = 'done' OR (state = 'failed' AND recovered_at IS NOT NULL))`,
        cutoff,
      ),
    );
  }
}

/** Synchronous, for checks inside write transactions (the journal's and the lock manager's). */
export function findOperation(db: SqliteDatabase, id: string): Operation | undefined {
  const row = db.get<OperationRow>('SELECT * FROM operations WHERE id = ?', id);
  return row ? toOperation(row) : undefined;
}

/** NotFoundError OPERATION_NOT_FOUND. */
export function getOperation(db: SqliteDatabase, id: string): Operation {
  const op = findOperation(db, id);
  if (!op) throw operationNotFound(id);
  return op;
}
