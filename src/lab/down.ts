import { removeLabArray } from './array.js';
import { removeLabFiles } from './lab-dir.js';
import { stopSimulatorProcess } from './process.js';
import { readLabState } from './state.js';

/** What a lab (or a `lab up` so far) has made in its DIR, all that removing it needs. */
export interface LabParts {
  /** The simulator's pid, once it runs. */
  pid: number | undefined;
  /** The loop-mounted btrfs image holding the array, when there is one. */
  image: string | undefined;
  arrayPath: string;
  createdDir: boolean;
}

/**
 * Stops the lab in `dir` and removes everything it made there (array, image, files, the catalog, DIR itself
 * if `lab up` created it). lab.json goes last, so a failed `lab down` can simply be run again. A directory
 * without a lab is a UsageError.
 */
export async function labDown(dir: string): Promise<void> {
  const state = await readLabState(dir);
  await removeLab(state.dir, {
    pid: state.pid > 0 ? state.pid : undefined,
    image: state.btrfsImage,
    arrayPath: state.arrayPath,
    createdDir: state.createdDir,
  });
}

/** Removes a lab, or what an interrupted or failed `lab up` made of one: the simulator first, lab.json last. */
export async function removeLab(dir: string, parts: LabParts): Promise<void> {
  if (parts.pid !== undefined) await stopSimulatorProcess(parts.pid, dir);
  await removeLabArray(parts.arrayPath, parts.image);
  await removeLabFiles(dir, { createdDir: parts.createdDir });
}
