import { NotFoundError, UsageError } from '../errors.js';
import type { BackupRecord, DiskRecord, VmRecord, Warning } from '../model/backup.js';
import type { EngineContext } from './context.js';
import { checkedOperation, runOperation } from './operation.js';
import {
  checkName,
  checkNoDeltaDisks,
  datastorePlaces,
  excludedDiskWarnings,
  isRdm,
  isTaskExcluded,
  vmOfBackup,
} from './restore-common.js';
import { restoreIntoVm } from './restore-disks.js';
import { restoreFiles } from './restore-files.js';
import type { Prepared, RestoreRequest, RestoreResult } from './restore-plan.js';
import { type RestoreSource, restoreSource } from './restore-source.js';
import { restoreWholeVm } from './restore-vm.js';

export type { RestoredDisk, RestoreRequest, RestoreResult } from './restore-plan.js';

/**
 * Restore from a backup's array snapshot or from a repository it was offloaded to (SPEC 3, 4): a whole VM as
 * a new VM or to its original place, chosen disks into an existing VM, or disk files onto a datastore.
 *
 * By default the data comes straight out of the array snapshot with StorageArray.restoreFile: a clone on
 * btrfs and reflink (instant, whatever the size), a copy with progress on the copy driver. With `source:
 * 'repository'` it is copied back from a repository, every chunk verified before it is written
 * (restore-source.ts); everything else is the same code. The VM is re-created with
 * CreateVM_Task from the configuration captured at backup time (vCenter here does not read a .vmx on
 * registration, SPEC 7), with its restored standard disks; RDM disks are never restored (warning
 * RDM_NOT_RESTORED per disk).
 *
 * VM snapshot modes, for a VM without user VM snapshots: the backup took a VM snapshot just before the
 * array snapshot, so inside the array snapshot the base disks (the files the backup record names, captured
 * before that snapshot) are frozen at the VM-snapshot instant and every later write went to the delta
 * files. Restoring the base disks, never the deltas, gives exactly the state of that VM snapshot: the
 * restored VM is "reverted to it, with the snapshot removed" (SPEC 3).
 *
 * That only holds when the VM had no snapshots of its own. With user VM snapshots, the file the record names
 * is itself a delta (`name-00000N.vmdk`) whose descriptor points (parentFileNameHint) at parent disks that
 * would not be restored: such a restore is refused before any change (DELTA_DISK_NOT_SUPPORTED, exit 3,
 * checkNoDeltaDisks), naming the VM and its delta disks.
 *
 * The modes live in restore-vm.ts, restore-disks.ts and restore-files.ts; this entry module checks the
 * request and runs the chosen mode inside one operation.
 *
 * Every side effect is journaled first (see restore-common.ts); a failure undoes what was done, a crash is
 * undone by `recover` (undo.ts). Everything the user can get wrong is checked before the first change; the
 * repair of interrupted operations (recover) runs only then, inside runOperation, and never for a dry run.
 * While a restore runs, its operation holds the lock `backup:<id>`, so the backup cannot be deleted or
 * expired under it.
 */

export function runRestore(ctx: EngineContext, request: RestoreRequest): Promise<RestoreResult> {
  return checkedOperation(() => restoreOnce(ctx, request));
}

async function restoreOnce(ctx: EngineContext, request: RestoreRequest): Promise<RestoreResult> {
  checkRequestShape(request);
  // The catalog (or the repository) is checked before vCenter is contacted: a typo in an id changes nothing.
  const { backup, source } = await restoreSource(ctx, request);
  try {
    return await restoreFrom(ctx, request, backup, source);
  } finally {
    await source.close();
  }
}

async function restoreFrom(
  ctx: EngineContext,
  request: RestoreRequest,
  backup: BackupRecord,
  source: RestoreSource,
): Promise<RestoreResult> {
  const vm = vmOfBackup(backup, request.vm);
  if (request.original && !request.confirmed && !request.dryRun) {
    throw new UsageError(
      'CONFIRMATION_REQUIRED',
      `restoring ${vm.name} to its original place powers off and replaces the live VM: confirm with --force`,
    );
  }

  ctx.events.phase('connect');
  const vc = await ctx.vcenter();
  const inventory = await vc.inventory();
  const places = await datastorePlaces(ctx, inventory);
  const { disks, warnings } = chosenDisks(backup, vm, request);
  const p: Prepared = {
    run: (locks, body) => inOperation(p, 'restore', locks, body),
    ctx,
    vc,
    backup,
    vm,
    inventory,
    places,
    source,
    disks,
    warnings,
    ...(request.signal ? { signal: request.signal } : {}),
  };
  if (request.disks !== undefined) {
    return request.filesOnly ? restoreFiles(p, request) : restoreIntoVm(p, request);
  }
  return restoreWholeVm(p, request);
}

/** Refuses (exit 3) requests that name no mode, several modes, or options their mode would ignore. */
function checkRequestShape(request: RestoreRequest): void {
  const modes = [request.as !== undefined, request.original === true, request.disks !== undefined];
  if (modes.filter(Boolean).length !== 1) {
    throw new UsageError(
      'RESTORE_MODE',
      'restore needs exactly one of --as NAME, --original, --disk LABEL...',
    );
  }
  if (request.disks !== undefined && (request.to === undefined) === (request.filesOnly !== true)) {
    throw new UsageError('RESTORE_MODE', '--disk needs exactly one of --to VM and --files-only');
  }
  if (
    request.original &&
    (request.datastore !== undefined || request.host !== undefined || request.folder !== undefined)
  ) {
    throw new UsageError('RESTORE_MODE', '--original restores to the original datastores, host and folder');
  }
  if (request.as !== undefined) checkName('VM name', request.as);
  if (request.to !== undefined) checkName('VM name', request.to);
  for (const d of request.disks ?? []) if (d === '') throw new UsageError('RESTORE_MODE', 'empty disk label');
}

/** The disks to restore (all, or those asked for) without RDMs and task-excluded disks, which get a warning each. */
function chosenDisks(
  backup: BackupRecord,
  vm: VmRecord,
  request: RestoreRequest,
): { disks: DiskRecord[]; warnings: Warning[] } {
  let disks = vm.disks;
  if (request.disks !== undefined) {
    const unknown = request.disks.filter((l) => !vm.disks.some((d) => d.label === l));
    if (unknown.length > 0) {
      throw new NotFoundError(
        'DISK_NOT_IN_BACKUP',
        `VM ${vm.name} in backup ${backup.id} has no disk ${unknown.join(', ')} (it has ${vm.disks.map((d) => d.label).join(', ')})`,
      );
    }
    disks = vm.disks.filter((d) => request.disks!.includes(d.label));
  }
  refuseOriginalWithExcludedDisks(backup, vm, request);
  const excluded = excludedDiskWarnings(
    backup.id,
    vm.name,
    disks,
    request.disks !== undefined,
    'restored',
    'DISK_EXCLUDED_NOT_RESTORED',
  );
  const warnings: Warning[] = disks.filter(isRdm).map((d) => ({
    code: 'RDM_NOT_RESTORED',
    message: `${vm.name} / ${d.label}: raw device mapping (${d.kind}) on LUN ${d.lun ?? '?'} is not in the backup and is not restored`,
  }));
  disks = disks.filter((d) => !isRdm(d) && d.included);
  checkNoDeltaDisks(vm.name, disks);
  return { disks, warnings: [...warnings, ...excluded] };
}

/**
 * A whole-VM restore to the original place replaces the live VM and deletes its old directories: a disk the
 * task excluded lives there too and would be deleted with nothing to bring it back (it is not in the backup).
 * So it is refused (DISK_EXCLUDED_ORIGINAL, exit 3, before any change); a restore as a new VM or of the
 * included disks with --disk leaves the live VM and its excluded disks alone.
 */
function refuseOriginalWithExcludedDisks(backup: BackupRecord, vm: VmRecord, request: RestoreRequest): void {
  if (request.original !== true || request.disks !== undefined) return;
  const excluded = vm.disks.filter(isTaskExcluded);
  if (excluded.length === 0) return;
  throw new UsageError(
    'DISK_EXCLUDED_ORIGINAL',
    `${vm.name} / ${excluded.map((d) => d.label).join(', ')} ${excluded.length === 1 ? 'is' : 'are'} excluded from backup ${backup.id} (${excluded[0]?.note ?? 'excluded by its task'}): restoring ${vm.name} to its original place would delete the live disk with nothing to restore it from; restore it as a new VM (--as) or restore its included disks with --disk`,
  );
}

/**
 * Runs the journaled body as a `restore` operation (operation.ts runOperation), holding `locks` and the
 * backup it reads: the backup cannot be deleted or expired while its files are read, and, read from the
 * array, one whose array snapshot vanished is refused before anything is done (from a repository the array
 * snapshot is not needed).
 */
function inOperation<T>(
  p: Prepared,
  kind: 'restore',
  locks: string[],
  body: (opId: string) => Promise<T>,
): Promise<T> {
  return runOperation(
    p.ctx,
    {
      kind,
      subject: `${p.backup.id}/${p.vm.name}`,
      ...('reads' in p.source.hold
        ? { locks, reads: p.source.hold.reads }
        : { locks: [...locks, ...p.source.hold.locks] }),
    },
    body,
  );
}
