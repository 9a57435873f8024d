import { randomBytes } from 'node:crypto';
import { mkdir } from 'node:fs/promises';
import { resolve } from 'node:path';
import { errorMessage, SnapkeeperError, UsageError } from '../errors.js';
import { pathExists, writeFileDurable } from '../util/fs.js';
import { createLabArray } from './array.js';
import { writeLabConfig } from './config-file.js';
import { type LabParts, removeLab } from './down.js';
import { fillLabDisks } from './fill-disks.js';
import { type LabPaths, labPaths } from './lab-dir.js';
import {
  createMotoBucket,
  MOTO_ACCESS_KEY,
  MOTO_REGION,
  MOTO_SECRET_KEY,
  motoAvailable,
  motoPython,
  startMoto,
} from './moto.js';
import { postgresAvailable, startPostgres } from './postgres.js';
import { checkLabUp } from './preflight.js';
import {
  initLabRepositories,
  LAB_S3_BUCKET,
  type LabS3,
  labRepositories,
  labRepositoryConfig,
  writeLabPassphrase,
  writeLabS3Credentials,
} from './repositories.js';
import { resolveSpec } from './resolved-spec.js';
import { type SimulatorReady, simulatorBinary, startSimulator } from './simulator.js';
import { datastoreNames, type LabSpec, loadLabSpec } from './spec.js';
import { type LabPostgres, type LabState, type LabVm, writeLabState } from './state.js';
import { LAB_USER } from './vcenter.js';
import { renameToRealNames } from './vm-names.js';

export interface LabUpOptions {
  specFile: string;
  dir: string;
  /** Put the array on a loop-mounted btrfs image of this size (needs root and btrfs-progs). */
  btrfsImageBytes?: number;
  /** Per SOAP method delays in ms, e.g. `{ CreateSnapshot_Task: 500 }`. */
  delays?: Record<string, number>;
  /** Serve HTTPS with a fresh self-signed certificate pinned by thumbprint (default true). */
  tls?: boolean;
  sessionIdleTimeoutSeconds?: number;
  /** Called with a short description of each step. */
  onProgress?: (step: string) => void;
  env?: NodeJS.ProcessEnv;
  /** Also start a moto S3 server and configure repository `lab-s3` on a bucket of it (needs Python's moto). */
  s3?: boolean;
  /**
   * Keep the catalog on a PostgreSQL server started for the lab in DIR/postgres (Debian's `postgresql`
   * package) instead of DIR/catalog.db.
   */
  postgres?: boolean;
}

type Progress = (step: string) => void;

/**
 * Starts a lab in `dir`: validates the spec (nothing is created for a bad one), makes the file-system array
 * with one volume per datastore (optionally on a loop-mounted btrfs image), starts the vCenter simulator with
 * the spec's inventory, fills every flat and independent disk with deterministic data and writes
 * DIR/snapkeeper.yaml and DIR/lab.json. Fails with UsageError, changing nothing, if `dir` already holds a lab
 * or any file a lab writes (see checkLabDir). Whatever fails after creation started is undone.
 */
export async function labUp(options: LabUpOptions): Promise<LabState> {
  const progress = options.onProgress ?? (() => {});
  const spec = await loadLabSpec(resolve(options.specFile));
  const dir = resolve(options.dir);
  await checkLabUp(spec, dir, options);
  if (options.s3 === true && !motoAvailable()) {
    throw new UsageError(
      'LAB_S3_UNAVAILABLE',
      `lab up --s3 needs the moto S3 server: ${motoPython()} cannot import moto.server (scripts/setup.sh installs it)`,
    );
  }
  if (options.postgres === true && !postgresAvailable()) {
    throw new UsageError(
      'LAB_POSTGRES_UNAVAILABLE',
      'lab up --postgres needs the PostgreSQL server binaries under /usr/lib/postgresql (Debian package postgresql; scripts/setup.sh installs it)',
    );
  }
  const starting = startingState(dir, !(await pathExists(dir)), options.btrfsImageBytes !== undefined);
  const made: LabParts = {
    pid: undefined,
    image: starting.btrfsImage,
    arrayPath: starting.arrayPath,
    createdDir: starting.createdDir,
  };
  try {
    return await buildLab(spec, starting, made, options, progress);
  } catch (err) {
    progress('undoing');
    await undoLabUp(err, dir, made);
    throw err;
  }
}

/**
 * The lab.json written before anything is made and updated as things are, so that an interrupted `lab up`
 * (Ctrl-C, crash) leaves a lab that `lab down` can remove instead of an orphaned simulator and array.
 */
function startingState(dir: string, createdDir: boolean, onBtrfsImage: boolean): LabState {
  const paths = labPaths(dir);
  return {
    dir,
    pid: 0,
    url: '',
    user: LAB_USER,
    passwordFile: paths.password,
    arrayPath: paths.array,
    ...(onBtrfsImage && { btrfsImage: paths.image }),
    configFile: paths.config,
    createdAt: new Date().toISOString(),
    vmCount: 0,
    createdDir,
    vms: [],
    starting: true,
  };
}

/**
 * Makes the lab step by step. The simulator's pid goes into `made` as soon as it runs, so that the undo of any
 * later failure stops it.
 */
async function buildLab(
  spec: LabSpec,
  starting: LabState,
  made: LabParts,
  options: LabUpOptions,
  progress: Progress,
): Promise<LabState> {
  const paths = labPaths(starting.dir);
  await mkdir(starting.dir, { recursive: true });
  await writeLabState(starting);
  const image =
    options.btrfsImageBytes !== undefined ? { file: paths.image, bytes: options.btrfsImageBytes } : undefined;
  const luns = await createLabArray({ path: paths.array, image }, datastoreNames(spec), progress);
  const resolved = resolveSpec(spec, paths.array, luns);
  await writeFileDurable(paths.resolvedSpec, `${JSON.stringify(resolved, null, 2)}\n`);
  await writeFileDurable(paths.password, `${randomBytes(18).toString('base64url')}\n`, 0o600);

  const ready = await startLabSimulator(paths, options, progress);
  made.pid = ready.pid;
  await writeLabState({ ...starting, pid: ready.pid, url: ready.url });
  const vms = await renameToRealNames(spec, ready, paths.password);
  await fillLabDisks(vms, progress);
  const passphrase = await writeLabPassphrase(paths);
  const s3 =
    options.s3 === true
      ? await startLabS3(paths, { ...starting, pid: ready.pid, url: ready.url }, made, progress)
      : undefined;
  const repositories = labRepositories(paths, s3);
  const postgres =
    options.postgres === true
      ? await startLabPostgres(
          paths,
          { ...starting, pid: ready.pid, url: ready.url, ...(s3 && { s3 }) },
          made,
          progress,
        )
      : undefined;
  await writeLabConfig(
    starting.dir,
    ready.url,
    ready.thumbprint,
    labRepositoryConfig(repositories, MOTO_REGION),
    postgres && { url: postgres.url, password: postgres.password },
  );
  progress('repo init');
  await initLabRepositories(
    repositories,
    passphrase,
    { accessKeyId: MOTO_ACCESS_KEY, secretAccessKey: MOTO_SECRET_KEY },
    MOTO_REGION,
  );

  const state: LabState = {
    ...completeState(starting, ready, vms),
    repositories,
    ...(s3 && { s3 }),
    ...(postgres && { postgres: postgres.state }),
  };
  await writeLabState(state);
  return state;
}

async function startLabSimulator(
  paths: LabPaths,
  options: LabUpOptions,
  progress: Progress,
): Promise<SimulatorReady> {
  progress('building the simulator');
  const binary = await simulatorBinary(options.env);
  progress('starting the simulator');
  const { ready } = await startSimulator({
    binary,
    specFile: paths.resolvedSpec,
    readyFile: paths.ready,
    logFile: paths.log,
    user: LAB_USER,
    passwordFile: paths.password,
    tls: options.tls ?? true,
    delays: options.delays,
    sessionIdleTimeoutSeconds: options.sessionIdleTimeoutSeconds,
  });
  return ready;
}

/**
 * Starts the lab's moto server (detached: it outlives `lab up`, until `lab down`), records it in lab.json at
 * once (an interrupted `lab up` leaves a server `lab down` stops), makes the bucket and writes the keys.
 */
async function startLabS3(
  paths: LabPaths,
  state: LabState,
  made: LabParts,
  progress: Progress,
): Promise<LabS3> {
  progress('starting the moto S3 server');
  const server = await startMoto({ detached: true, logFile: paths.motoLog });
  const s3: LabS3 = { pid: server.pid, port: server.port, endpoint: server.endpoint, bucket: LAB_S3_BUCKET };
  made.s3 = s3;
  await writeLabState({ ...state, s3 });
  await createMotoBucket(server.endpoint, LAB_S3_BUCKET);
  await writeLabS3Credentials(paths, { accessKeyId: MOTO_ACCESS_KEY, secretAccessKey: MOTO_SECRET_KEY });
  return s3;
}

/**
 * Starts the lab's PostgreSQL server in DIR/postgres (detached: it outlives `lab up`, until `lab down`) and
 * records it in lab.json at once, so that an interrupted `lab up` leaves a server `lab down` stops.
 */
async function startLabPostgres(
  paths: LabPaths,
  state: LabState,
  made: LabParts,
  progress: Progress,
): Promise<{ state: LabPostgres; url: string; password: string }> {
  progress('starting PostgreSQL');
  made.postgresDir = paths.postgres;
  // A lab's catalog need not survive a power cut: fsync off makes it start and run faster.
  const server = await startPostgres({
    dataDir: paths.postgres,
    passwordFile: paths.postgresPassword,
    detached: true,
    unsafeFast: true,
  });
  const pg: LabPostgres = {
    dataDir: server.dataDir,
    port: server.port,
    url: server.url,
    passwordFile: server.passwordFile,
  };
  await writeLabState({ ...state, postgres: pg });
  return { state: pg, url: server.url, password: server.password };
}

/** The lab.json of a complete lab: no longer `starting`. */
function completeState(starting: LabState, ready: SimulatorReady, vms: LabVm[]): LabState {
  return {
    dir: starting.dir,
    pid: ready.pid,
    url: ready.url,
    user: LAB_USER,
    passwordFile: starting.passwordFile,
    ...(ready.thumbprint !== undefined && { thumbprint: ready.thumbprint }),
    arrayPath: starting.arrayPath,
    ...(starting.btrfsImage !== undefined && { btrfsImage: starting.btrfsImage }),
    configFile: starting.configFile,
    createdAt: new Date().toISOString(),
    vmCount: vms.length,
    createdDir: starting.createdDir,
    vms,
  };
}

/** Removes what a failed `lab up` made; if that fails too, the error says both (LAB_UP_FAILED). */
async function undoLabUp(err: unknown, dir: string, made: LabParts): Promise<void> {
  try {
    await removeLab(dir, made);
  } catch (undoErr) {
    throw new SnapkeeperError(
      'LAB_UP_FAILED',
      `${errorMessage(err)} (and undoing failed: ${errorMessage(undoErr)})`,
      { cause: err },
    );
  }
}
