import { rm, rmdir } from 'node:fs/promises';
import { join } from 'node:path';
import { UsageError } from '../errors.js';
import { durableTempPath, pathExists } from '../util/fs.js';

/** Files and directories of a lab, relative to its DIR. Everything `lab down` removes is listed here. */
export const labFiles = {
  state: 'lab.json',
  config: 'snapkeeper.yaml',
  password: 'vcenter.password',
  resolvedSpec: 'lab-spec.json',
  ready: 'simulator.ready.json',
  log: 'simulator.log',
  array: 'array',
  image: 'array.img',
  catalog: 'catalog.db',
  /** The local repository `lab` (a directory) and the passphrase of the lab's repositories (0600). */
  repository: 'repository',
  repositoryPassphrase: 'repository.passphrase',
  /** With `lab up --s3`: the moto server's access keys for repository `lab-s3` (0600) and its output. */
  s3Credentials: 's3.credentials',
  motoLog: 'moto.log',
  /** With `lab up --postgres`: the PostgreSQL cluster holding the catalog, and its user's password (0600). */
  postgres: 'postgres',
  postgresPassword: 'postgres.password',
} as const;

export type LabPaths = Record<keyof typeof labFiles, string>;

/** The paths of a lab's files in `dir` (an absolute directory), keyed as `labFiles`. */
export function labPaths(dir: string): LabPaths {
  return Object.fromEntries(
    Object.entries(labFiles).map(([key, name]) => [key, join(dir, name)]),
  ) as LabPaths;
}

// The catalog is written by snapkeeper runs against the lab, not by the lab, but it only describes snapshots
// on the lab's array: it goes with the lab.
const CATALOG_FILES = ['catalog.db', 'catalog.db-wal', 'catalog.db-shm', 'catalog.db-journal'];

/** The simulator's temporary ready file (lab/simulator/main.go writeJSONAtomic). */
const READY_TMP = `.${labFiles.ready}.tmp`;

/** lab.json and its temporary file: whichever exists, a lab (complete or not) lives in DIR. */
const STATE_FILES = [labFiles.state, durableTempPath(labFiles.state)];

/**
 * Files of DIR that `lab down` (and an undone `lab up`) deletes, besides the array, the image and lab.json.
 * `lab up` refuses a DIR holding any of them, so that it never takes over, and later deletes, a user's file.
 */
const OWNED_FILES = [
  labFiles.config,
  durableTempPath(labFiles.config),
  labFiles.password,
  durableTempPath(labFiles.password),
  labFiles.resolvedSpec,
  durableTempPath(labFiles.resolvedSpec),
  labFiles.ready,
  READY_TMP,
  labFiles.log,
  labFiles.repositoryPassphrase,
  durableTempPath(labFiles.repositoryPassphrase),
  labFiles.s3Credentials,
  durableTempPath(labFiles.s3Credentials),
  labFiles.motoLog,
  labFiles.postgresPassword,
  ...CATALOG_FILES,
];

/**
 * Refuses (UsageError, nothing changed) a DIR that holds a lab (LAB_EXISTS) or any file a lab writes there
 * (LAB_DIR_NOT_EMPTY): `lab up --dir .` in a working directory must not overwrite, and `lab down` must not
 * delete, a configuration, password or catalog that is not the lab's.
 */
export async function checkLabDir(dir: string): Promise<void> {
  for (const name of [...STATE_FILES, labFiles.array, labFiles.image]) {
    if (await pathExists(join(dir, name))) {
      throw new UsageError(
        'LAB_EXISTS',
        `${dir} already holds a lab (found ${name}); run snapkeeper lab down --dir ${dir} first`,
      );
    }
  }
  const found: string[] = [];
  for (const name of [...OWNED_FILES, labFiles.repository, labFiles.postgres])
    if (await pathExists(join(dir, name))) found.push(name);
  if (found.length > 0) {
    throw new UsageError(
      'LAB_DIR_NOT_EMPTY',
      `${dir} already holds ${found.join(', ')}, which a lab would overwrite and lab down would delete; ` +
        'choose another --dir',
      { details: { dir, found } },
    );
  }
}

/**
 * Deletes the lab's files from DIR (not the array), lab.json last so that an interrupted removal leaves a
 * lab that `lab down` can still find, and DIR itself when `lab up` created it and nothing else lives there.
 */
export async function removeLabFiles(dir: string, options: { createdDir: boolean }): Promise<void> {
  // The repository holds only copies of this lab's backups: it goes with the lab, before lab.json.
  await rm(join(dir, labFiles.repository), { recursive: true, force: true });
  // The PostgreSQL cluster of `lab up --postgres` (stopped before: removeLab) holds only the lab's catalog.
  await rm(join(dir, labFiles.postgres), { recursive: true, force: true });
  for (const name of [...OWNED_FILES, ...STATE_FILES]) await rm(join(dir, name), { force: true });
  if (options.createdDir) {
    try {
      await rmdir(dir);
    } catch {
      // something else lives there now: leave it
    }
  }
}
