import { readFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { UsageError } from '../errors.js';
import { writeFileDurable } from '../util/fs.js';
import { labFiles } from './lab-dir.js';
import type { LabRepository, LabS3 } from './repositories.js';
import type { SimulatorDisk } from './simulator.js';

export interface LabVm {
  name: string;
  /** The VM's id in the simulator (its managed object reference value). */
  id: string;
  disks: SimulatorDisk[];
}

/** The lab's PostgreSQL server (`lab up --postgres`): detached, stopped by `lab down`. */
export interface LabPostgres {
  /** The cluster folder (DIR/postgres). */
  dataDir: string;
  port: number;
  /** `postgres://snapkeeper@127.0.0.1:PORT/snapkeeper`: no password. */
  url: string;
  passwordFile: string;
}

/** DIR/lab.json: everything needed to use, inspect and tear down a running lab. Paths are absolute. */
export interface LabState {
  dir: string;
  pid: number;
  url: string;
  user: string;
  passwordFile: string;
  /** SHA-256 fingerprint of the simulator's certificate; absent over plain HTTP. */
  thumbprint?: string;
  arrayPath: string;
  /** The loop-mounted btrfs image holding the array, when made with `btrfsImageBytes`. */
  btrfsImage?: string;
  configFile: string;
  createdAt: string;
  vmCount: number;
  /** Whether `lab up` created DIR itself (then `lab down` removes it when empty). */
  createdDir: boolean;
  vms: LabVm[];
  /** The repositories `lab up` configured in DIR/snapkeeper.yaml and initialised (absent in older labs). */
  repositories?: LabRepository[];
  /** With `lab up --s3`: the moto server behind repository `lab-s3`, recorded as soon as it runs. */
  s3?: LabS3;
  /** With `lab up --postgres`: the PostgreSQL server holding the catalog, recorded as soon as it runs. */
  postgres?: LabPostgres;
  /**
   * True while `lab up` is still working, or when it was interrupted: `lab down` can then still remove
   * what it made. Absent once the lab is complete.
   */
  starting?: boolean;
}

/** Reads DIR/lab.json; a missing one is a UsageError (no lab there). */
export async function readLabState(dir: string): Promise<LabState> {
  const file = join(resolve(dir), labFiles.state);
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch {
    throw new UsageError('LAB_NOT_FOUND', `no lab in ${resolve(dir)} (missing ${labFiles.state})`);
  }
  try {
    return JSON.parse(text) as LabState;
  } catch {
    throw new UsageError('LAB_NOT_FOUND', `${file} is not valid JSON`);
  }
}

/** Writes `state` to its DIR/lab.json, durably: `lab down` relies on it after a crash. */
export async function writeLabState(state: LabState): Promise<void> {
  await writeFileDurable(join(state.dir, labFiles.state), `${JSON.stringify(state, null, 2)}\n`);
}
