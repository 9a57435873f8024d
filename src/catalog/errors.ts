import { NotFoundError } from '../errors.js';

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
