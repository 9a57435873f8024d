import { removeLabArray } from './array.js';
import { removeLabFiles } from './lab-dir.js';
import { stopMotoProcess } from './moto.js';
import { stopPostgres } from './postgres.js';
import { stopSimulatorProcess } from './process.js';
import type { LabS3 } from './repositories.js';
import { readLabState } from './state.js';

/** What a lab (or a `lab up` so far) has made in its DIR, all that removing it needs. */
export interface LabParts {
  /** The simulator's pid, once it runs. */
  pid: number | undefined;
  /** The loop-mounted btrfs image holding the array, when there is one. */
  image: string | undefined;
  arrayPath: string;
  createdDir: boolean;
  /** The moto server of `lab up --s3`, once it runs. */
  s3?: LabS3 | undefined;
  /** The PostgreSQL cluster of `lab up --postgres`, once it was started. */
  postgresDir?: string | undefined;
}

/**
 * Stops the lab in `dir` and removes everything it made there (simulator, moto server, array, image, files,
 * the catalog, the local repository, DIR itself if `lab up` created it). lab.json goes last, so a failed `lab down` can simply be run again. A directory
 * without a lab is a UsageError.
 */
export async function labDown(dir: string): Promise<void> {
  const state = await readLabState(dir);
  await removeLab(state.dir, {
    pid: state.pid > 0 ? state.pid : undefined,
    image: state.btrfsImage,
    arrayPath: state.arrayPath,
    createdDir: state.createdDir,
    s3: state.s3,
    postgresDir: state.postgres?.dataDir,
  });
}

/**
 * Removes a lab, or what an interrupted or failed `lab up` made of one: the simulator and the moto server
 * first (the bucket lives in moto's memory and goes with it), lab.json last.
 */
export async function removeLab(dir: string, parts: LabParts): Promise<void> {
  if (parts.pid !== undefined) await stopSimulatorProcess(parts.pid, dir);
  if (parts.s3 !== undefined) await stopMotoProcess(parts.s3.pid, parts.s3.port);
  if (parts.postgresDir !== undefined) await stopPostgres(parts.postgresDir);
  await removeLabArray(parts.arrayPath, parts.image);
  await removeLabFiles(dir, { createdDir: parts.createdDir });
}
