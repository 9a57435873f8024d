import { randomBytes } from 'node:crypto';
import { constants } from 'node:fs';
import { copyFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { UsageError } from '../../errors.js';
import { hasCommand } from '../../util/exec.js';
import { btrfsDriver } from './drivers/btrfs.js';
import { copyDriver } from './drivers/copy.js';
import type { FsDriver } from './drivers/driver.js';
import { reflinkDriver } from './drivers/reflink.js';
import { isBtrfs, layout } from './layout.js';
import { isSubvolume } from './tree.js';

export type FsDriverName = 'btrfs' | 'reflink' | 'copy';
export type FsDriverChoice = FsDriverName | 'auto';

/** Whether a driver can work on the array at `root`, and if not, why (for the user). */
export interface DriverSupport {
  ok: boolean;
  reason: string;
}

/** btrfs needs the pool to be a btrfs subvolume and the `btrfs` program. */
export async function btrfsSupport(root: string): Promise<DriverSupport> {
  const pool = layout.pool(root);
  if (!(await isBtrfs(pool))) return { ok: false, reason: `${pool} is not on a btrfs file system` };
  if (!(await isSubvolume(pool))) {
    return {
      ok: false,
      reason: `${pool} is a plain directory, not a btrfs subvolume (array made before btrfs?)`,
    };
  }
  if (!(await hasCommand('btrfs')))
    return { ok: false, reason: 'the btrfs program (btrfs-progs) is not on PATH' };
  return { ok: true, reason: '' };
}

/**
 * reflink needs FICLONE from the pool into the snapshot directory, the direction snapshots take: a probe
 * file is cloned there and removed again.
 */
export async function reflinkSupport(root: string): Promise<DriverSupport> {
  const tag = randomBytes(4).toString('hex');
  const src = join(layout.pool(root), `.snapkeeper-reflink-probe-${tag}`);
  const dest = join(layout.snapshots(root), `.snapkeeper-reflink-probe-${tag}`);
  try {
    await writeFile(src, randomBytes(4096), { flag: 'wx' });
    await copyFile(src, dest, constants.COPYFILE_EXCL | constants.COPYFILE_FICLONE_FORCE);
    return { ok: true, reason: '' };
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? String(err);
    return { ok: false, reason: `the file system cannot clone files (FICLONE failed: ${code})` };
  } finally {
    await rm(src, { force: true });
    await rm(dest, { force: true });
  }
}

const drivers: Record<FsDriverName, FsDriver> = {
  btrfs: btrfsDriver,
  reflink: reflinkDriver,
  copy: copyDriver,
};

/**
 * The driver for the array `name` at `root`. `auto` takes the strongest that works: btrfs, then reflink,
 * then copy. An explicit driver the file system cannot do is a UsageError naming array, driver and why.
 */
export async function selectDriver(name: string, root: string, choice: FsDriverChoice): Promise<FsDriver> {
  if (choice === 'copy') return copyDriver;
  if (choice === 'auto') {
    if ((await btrfsSupport(root)).ok) return btrfsDriver;
    if ((await reflinkSupport(root)).ok) return reflinkDriver;
    return copyDriver;
  }
  const support = choice === 'btrfs' ? await btrfsSupport(root) : await reflinkSupport(root);
  if (!support.ok) {
    throw new UsageError(
      'ARRAY_DRIVER_UNSUPPORTED',
      `array "${name}": driver ${choice} cannot work at ${root}: ${support.reason}`,
      {
        details: { array: name, driver: choice, reason: support.reason },
      },
    );
  }
  return drivers[choice];
}
