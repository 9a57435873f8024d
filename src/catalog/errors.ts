import { LockedError, NotFoundError } from '../errors.js';
import type { LockHolder, LockMode } from './types.js';

/* The catalog's not-found errors, one wording whatever implementation stands behind the role interfaces. */

export function backupNotFound(id: string): NotFoundError {
  return new NotFoundError('BACKUP_NOT_FOUND', `backup ${id} not found in the catalog`, {
    details: { backupId: id },
  });
}

export function operationNotFound(id: string): NotFoundError {
  return new NotFoundError('OPERATION_NOT_FOUND', `operation ${id} not found in the catalog`, {
    details: { operationId: id },
  });
}

export function journalEntryNotFound(id: number): NotFoundError {
  return new NotFoundError('JOURNAL_ENTRY_NOT_FOUND', `journal entry ${id} not found in the catalog`);
}

export function taskNotFound(name: string): NotFoundError {
  return new NotFoundError('TASK_NOT_FOUND', `task ${name} not found in the catalog`, {
    details: { task: name },
  });
}

export function mountNotFound(id: string): NotFoundError {
  return new NotFoundError('MOUNT_NOT_FOUND', `mount ${id} not found in the catalog`, {
    details: { mountId: id },
  });
}

export function copyNotFound(backupId: string, repositoryId: string): NotFoundError {
  return new NotFoundError(
    'COPY_NOT_FOUND',
    `backup ${backupId} has no copy in repository ${repositoryId} in the catalog`,
    { details: { backupId, repositoryId } },
  );
}

export function userNotFound(name: string): NotFoundError {
  return new NotFoundError('USER_NOT_FOUND', `no user named ${name} (see snapkeeper user list)`, {
    details: { user: name },
  });
}

export function tokenNotFound(idOrName: string): NotFoundError {
  return new NotFoundError('TOKEN_NOT_FOUND', `no token with id or name ${idOrName} (see token list)`, {
    details: { token: idOrName },
  });
}

/**
 * The conflicts between the locks `wanted` by `operationId` and their current `holders` (readers share; a writer
 * excludes everyone and is excluded by everyone), as RESOURCE_LOCKED naming the first holder; undefined when
 * there is none. Both dialects decide and word it the same.
 */
export function lockConflict(
  operationId: string,
  wanted: Map<string, LockMode>,
  holders: Map<string, LockHolder[]>,
): LockedError | undefined {
  const conflicts: { resource: string; holder: LockHolder }[] = [];
  for (const [resource, mode] of wanted) {
    for (const holder of holders.get(resource) ?? []) {
      if (holder.operation.id === operationId) continue;
      if (mode === 'exclusive' || holder.mode === 'exclusive') conflicts.push({ resource, holder });
    }
  }
  const first = conflicts[0];
  if (!first) return undefined;
  const h = first.holder.operation;
  const more = conflicts.length > 1 ? ` (and ${conflicts.length - 1} more)` : '';
  return new LockedError(
    'RESOURCE_LOCKED',
    `${first.resource} is ${first.holder.mode === 'shared' ? 'in use' : 'locked'} by ${h.kind} operation ${h.id} (pid ${h.pid} on ${h.host}, started ${h.startedAt})${more}`,
    {
      details: {
        conflicts: conflicts.map((c) => ({
          resource: c.resource,
          operationId: c.holder.operation.id,
          kind: c.holder.operation.kind,
          pid: c.holder.operation.pid,
          host: c.holder.operation.host,
        })),
      },
    },
  );
}
