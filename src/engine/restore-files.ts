import { join } from 'node:path';
import { ConflictError, UsageError } from '../errors.js';
import { journal } from './journal/write.js';
import { checkFreeSpace, targetPlace } from './restore-common.js';
import {
  byDir,
  type DiskPlan,
  type Prepared,
  placeDisks,
  planned,
  type RestoreRequest,
  type RestoreResult,
  result,
  spaceNeeds,
} from './restore-plan.js';

/** Disk files only (`--disk ... --files-only --datastore DS`): placed in a new directory, no VM touched. */

export async function restoreFiles(p: Prepared, request: RestoreRequest): Promise<RestoreResult> {
  const { ctx, vm, inventory, places, backup } = p;
  if (request.datastore === undefined) {
    throw new UsageError('RESTORE_MODE', '--files-only needs --datastore DS');
  }
  const place = targetPlace(places, inventory, request.datastore);
  const plans: DiskPlan[] = p.disks.map((disk) => ({ disk, index: vm.disks.indexOf(disk), place }));
  checkFreeSpace(spaceNeeds(plans));
  const dir = join(place.path, `${vm.name}-restore-${backup.id}`);
  if (await ctx.files.exists(dir)) throw new ConflictError('TARGET_EXISTS', `${dir} already exists`);
  const stemOf = (pl: DiskPlan) => `${vm.name}_${pl.index}`;
  if (request.dryRun)
    return planned(
      p,
      'files',
      byDir(plans, () => dir, stemOf),
    );
  return p.run([`dir:${dir}`], async (opId) => {
    ctx.events.phase('restore disk files');
    const items = plans.map((pl) => ({ plan: pl, stem: stemOf(pl) }));
    const disks = items.length > 0 ? await placeDisks(p, opId, dir, items, true) : [];
    await ctx.crashPoint('restore-files-placed');
    await journal(ctx.catalog, opId, { action: 'commit', target: dir });
    return result(p, opId, 'files', disks);
  });
}
