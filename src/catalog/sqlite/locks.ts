import { ConflictError } from '../../errors.js';
import { lockConflict } from '../errors.js';
import { type OperationRow, toOperation } from '../rows.js';
import type { LockHolder, LockManager, LockMode, LockRequest } from '../types.js';
import { lockRequests } from '../validate.js';
import type { SqliteDatabase } from './database.js';
import { getOperation } from './operations.js';

/** Shared and exclusive locks of running operations on resource names. */
export class SqliteLockManager implements LockManager {
  constructor(readonly db: SqliteDatabase) {}

  async acquireLocks(operationId: string, requests: LockRequest[]): Promise<void> {
    const wanted = lockRequests(requests);
    this.db.write(() => {
      const op = getOperation(this.db, operationId);
      if (op.state !== 'running') {
        throw new ConflictError(
          'OPERATION_FINISHED',
          `operation ${operationId} has finished (${op.state}) and cannot take locks`,
        );
      }
      const held = new Map([...wanted.keys()].map((resource) => [resource, this.#holders(resource)]));
      const conflict = lockConflict(operationId, wanted, held);
      if (conflict) throw conflict;
      const now = this.db.stamp();
      for (const [resource, mode] of wanted) {
        // Rows of operations that are no longer running are stale: taken over.
        this.db.run(
          `DELETE FROM locks WHERE resource = ? AND operation_id IN (SELECT id FROM operations WHERE state != 'running')`,
          resource,
        );
        // Our own row keeps its first time; a shared lock asked again as exclusive is upgraded.
        this.db.run(
          `INSERT INTO locks (resource, operation_id, mode, acquired_at) VALUES (?, ?, ?, ?)
           ON CONFLICT (resource, operation_id) DO UPDATE SET mode = 'exclusive' WHERE excluded.mode = 'exclusive'`,
          resource,
          operationId,
          mode,
          now,
        );
      }
    });
  }

  async lockHolders(resource: string): Promise<LockHolder[]> {
    return this.#holders(resource);
  }

  async releaseLocks(operationId: string): Promise<void> {
    this.db.write(() => this.db.run('DELETE FROM locks WHERE operation_id = ?', operationId));
  }

  async locksOf(operationId: string): Promise<string[]> {
    return this.db
      .all<{ resource: string }>(
        'SELECT resource FROM locks WHERE operation_id = ? ORDER BY resource',
        operationId,
      )
      .map((r) => r.resource);
  }

  #holders(resource: string): LockHolder[] {
    return this.db
      .all<OperationRow & { lock_mode: LockMode }>(
        `SELECT o.*, l.mode AS lock_mode FROM locks l JOIN operations o ON o.id = l.operation_id
         WHERE l.resource = ? AND o.state = 'running' ORDER BY l.acquired_at, o.id`,
        resource,
      )
      .map((r) => ({ mode: r.lock_mode, operation: toOperation(r) }));
  }
}
