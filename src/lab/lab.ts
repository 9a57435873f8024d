import { createHash, randomBytes } from 'node:crypto';
import { mkdir, readdir, readFile, rm, rmdir, statfs } from 'node:fs/promises';
import { request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { dirname, join, resolve } from 'node:path';
import { stringify } from 'yaml';
import { initFsArray, layout, removeTree } from '../arrays/index.js';
import { Catalog } from '../catalog/index.js';
import { parseConfig } from '../config/load.js';
import { safeName } from '../config/schema.js';
import { errorMessage, SnapkeeperError, UsageError } from '../errors.js';
import { durableTempPath, pathExists, writeFileDurable } from '../util/fs.js';
import { Secret } from '../util/secret.js';
import { connect, el } from '../vsphere/index.js';
import { fillLabDisk } from './diskdata.js';
import { canMountLoopBtrfs, isMountPoint, mountLoopBtrfs, unmountLoopBtrfs } from './loop-btrfs.js';
import { type SimulatorDisk, type SimulatorReady, simulatorBinary, startSimulator } from './simulator.js';
import { datastoreNames, homeDatastore, type LabSpec, loadLabSpec } from './spec.js';
import { VIM25_METHODS } from './vim25-methods.js';

/** The user the lab's vCenter accepts (with the random password in DIR/vcenter.password). */
export const LAB_USER = 'administrator@vsphere.local';

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
} as const;

// The catalog is written by snapkeeper runs against the lab, not by the lab, but it only describes snapshots
// on the lab's array: it goes with the lab.
const CATALOG_FILES = ['catalog.db', 'catalog.db-wal', 'catalog.db-shm', 'catalog.db-journal'];

/** The simulator's temporary ready file (lab/simulator/main.go writeJSONAtomic). */
const READY_TMP = `.${labFiles.ready}.tmp`;

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
  ...CATALOG_FILES,
];

export interface LabVm {
  name: string;
  /** The VM's id in the simulator (its managed object reference value). */
  id: string;
  disks: SimulatorDisk[];
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
  /**
   * True while `lab up` is still working, or when it was interrupted: `lab down` can then still remove
   * what it made. Absent once the lab is complete.
   */
  starting?: boolean;
}

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
}

export interface LabStatus {
  dir: string;
  /** The lab is complete, its simulator process alive and answering SOAP. */
  running: boolean;
  /** `lab up` has not finished (or was interrupted): `lab down` removes what it made. */
  starting: boolean;
  pid: number;
  processAlive: boolean;
  answering: boolean;
  url: string;
  configFile: string;
  createdAt: string;
  vmCount: number;
}

/**
 * The known name nearest to `name`, for "did you mean" hints: the shortest one it begins (most typos leave out
 * `_Task`), else the closest by edit distance; both case-insensitive.
 */
export function closestName(name: string, known: Iterable<string>): string {
  const lower = name.toLowerCase();
  const names = [...known];
  const extended = names
    .filter((candidate) => candidate.toLowerCase().startsWith(lower))
    .sort((a, b) => a.length - b.length)[0];
  if (extended !== undefined) return extended;
  let best = '';
  let bestDistance = Number.POSITIVE_INFINITY;
  for (const candidate of names) {
    const d = editDistance(lower, candidate.toLowerCase());
    if (d < bestDistance) {
      best = candidate;
      bestDistance = d;
    }
  }
  return best;
}

function editDistance(a: string, b: string): number {
  let previous = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const current = [i];
    for (let j = 1; j <= b.length; j++) {
      current[j] = Math.min(
        previous[j]! + 1,
        current[j - 1]! + 1,
        previous[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1),
      );
    }
    previous = current;
  }
  return previous[b.length]!;
}

const MIB = 1024 * 1024;
const mib = (bytes: number) => `${Math.ceil(bytes / MIB)} MiB`;

/** The bytes each volume (datastore) needs for the disks the lab fills: flat and independent, not RDMs. */
export function diskBytesByDatastore(spec: LabSpec): Map<string, number> {
  const bytes = new Map<string, number>(datastoreNames(spec).map((name) => [name, 0]));
  for (const vm of spec.datacenters.flatMap((dc) => dc.vms)) {
    for (const disk of vm.disks) {
      if ('rdm' in disk) continue;
      bytes.set(disk.datastore, (bytes.get(disk.datastore) ?? 0) + disk.sizeMB * MIB);
    }
  }
  return bytes;
}

/** The free bytes of the file system `path` would be created on (its nearest existing ancestor). */
async function freeBytesAt(path: string): Promise<{ at: string; free: number }> {
  let at = path;
  while (!(await pathExists(at)) && dirname(at) !== at) at = dirname(at);
  const fs = await statfs(at);
  return { at, free: fs.bavail * fs.bsize };
}

/**
 * Refuses, before anything is written, a lab whose disks cannot fit the array: the btrfs image's size, or
 * else the free space of the file system DIR is on. Disks are filled in full (not sparse), so this is what
 * they will take; without the check the lab would write until a bare ENOSPC.
 */
async function checkDisksFit(spec: LabSpec, dir: string, btrfsImageBytes: number | undefined): Promise<void> {
  const perVolume = [...diskBytesByDatastore(spec)].filter(([, bytes]) => bytes > 0);
  const needed = perVolume.reduce((sum, [, bytes]) => sum + bytes, 0);
  const room =
    btrfsImageBytes !== undefined
      ? { what: `the --btrfs-image size`, bytes: btrfsImageBytes }
      : await freeBytesAt(dir).then(({ at, free }) => ({
          what: `free on the file system of ${at}`,
          bytes: free,
        }));
  if (needed <= room.bytes) return;
  throw new UsageError(
    'LAB_TOO_BIG',
    `the lab's disks need ${mib(needed)} (${perVolume.map(([ds, bytes]) => `${ds} ${mib(bytes)}`).join(', ')}) but the array has ${mib(room.bytes)} (${room.what}); nothing was created`,
    { details: { neededBytes: needed, availableBytes: room.bytes, volumes: Object.fromEntries(perVolume) } },
  );
}

/**
 * Starts a lab in `dir`: validates the spec (nothing is created for a bad one), makes the file-system array
 * with one volume per datastore (optionally on a loop-mounted btrfs image), starts the vCenter simulator with
 * the spec's inventory, fills every flat and independent disk with deterministic data and writes
 * DIR/snapkeeper.yaml and DIR/lab.json. Fails with UsageError, changing nothing, if `dir` already holds a lab
 * or any file a lab writes (see checkLabDir). Whatever fails after creation started is undone.
 */
export async function labUp(options: LabUpOptions): Promise<LabState> {
  const progress = options.onProgress ?? (() => {});
  const specFile = resolve(options.specFile);
  const spec = await loadLabSpec(specFile);
  const dir = resolve(options.dir);
  await checkLabDir(dir);
  if (options.btrfsImageBytes !== undefined) {
    if (!Number.isSafeInteger(options.btrfsImageBytes) || options.btrfsImageBytes < 128 * 1024 * 1024) {
      throw new UsageError('LAB_INVALID', 'the btrfs image must be at least 128 MiB');
    }
    const can = await canMountLoopBtrfs();
    if (!can.ok) throw new UsageError('LAB_INVALID', `cannot make a btrfs image: ${can.reason}`);
  }
  for (const [method, ms] of Object.entries(options.delays ?? {})) {
    if (!/^[A-Za-z][A-Za-z0-9_]*$/.test(method) || !Number.isSafeInteger(ms) || ms < 0) {
      throw new UsageError('LAB_INVALID', `invalid delay ${method}=${ms} (expected Method=milliseconds)`);
    }
    // The simulator silently ignores a delay for a method it never sees: a typo would make a test pass
    // without the delay it relies on.
    if (!VIM25_METHODS.has(method)) {
      throw new UsageError(
        'LAB_INVALID',
        `unknown SOAP method ${method} in --delay (did you mean ${closestName(method, VIM25_METHODS)}?)`,
      );
    }
  }
  await checkDisksFit(spec, dir, options.btrfsImageBytes);

  const createdDir = !(await pathExists(dir));
  const arrayPath = join(dir, labFiles.array);
  const image = options.btrfsImageBytes !== undefined ? join(dir, labFiles.image) : undefined;
  let pid: number | undefined;
  const passwordFile = join(dir, labFiles.password);
  const configFile = join(dir, labFiles.config);
  const stateFile = join(dir, labFiles.state);
  // Written first and updated as things are made, so that an interrupted `lab up` (Ctrl-C, crash) leaves a
  // lab that `lab down` can remove instead of an orphaned simulator and array.
  const partial: LabState = {
    dir,
    pid: 0,
    url: '',
    user: LAB_USER,
    passwordFile,
    arrayPath,
    ...(image !== undefined && { btrfsImage: image }),
    configFile,
    createdAt: new Date().toISOString(),
    vmCount: 0,
    createdDir,
    vms: [],
    starting: true,
  };
  const saveState = (state: LabState) => writeFileDurable(stateFile, `${JSON.stringify(state, null, 2)}\n`);
  try {
    await mkdir(dir, { recursive: true });
    await saveState(partial);
    if (image !== undefined) {
      progress('creating the btrfs image');
      await mountLoopBtrfs(image, arrayPath, options.btrfsImageBytes!);
    }
    progress('creating the file-system array');
    const manifest = await initFsArray(arrayPath, datastoreNames(spec));
    const resolved = resolveSpec(spec, arrayPath, new Map(manifest.volumes.map((v) => [v.name, v.lun])));
    const specOut = join(dir, labFiles.resolvedSpec);
    await writeFileDurable(specOut, `${JSON.stringify(resolved, null, 2)}\n`);
    await writeFileDurable(passwordFile, `${randomBytes(18).toString('base64url')}\n`, 0o600);

    progress('building the simulator');
    const binary = await simulatorBinary(options.env);
    progress('starting the simulator');
    const { ready } = await startSimulator({
      binary,
      specFile: specOut,
      readyFile: join(dir, labFiles.ready),
      logFile: join(dir, labFiles.log),
      user: LAB_USER,
      passwordFile,
      tls: options.tls ?? true,
      delays: options.delays,
      sessionIdleTimeoutSeconds: options.sessionIdleTimeoutSeconds,
    });
    pid = ready.pid;
    await saveState({ ...partial, pid, url: ready.url });
    const realNames = new Map([...simulatorVmNames(spec)].map(([real, standIn]) => [standIn, real]));
    const vms = await renameVms(ready, passwordFile, realNames);

    const disks = vms.flatMap((vm) =>
      vm.disks
        .filter((d) => d.kind === 'flat' || d.kind === 'independent')
        .map((d) => ({ vm: vm.name, disk: d })),
    );
    let done = 0;
    await forEachLimit(disks, 4, async ({ vm, disk }) => {
      await fillLabDisk(disk.path, vm, disk.index, disk.sizeMB * 1024 * 1024);
      done++;
      progress(`filling disks ${done}/${disks.length}`);
    });

    const yaml = labConfigYaml(ready.url, ready.thumbprint);
    parseConfig(yaml, configFile, {}); // a lab whose configuration does not load is a bug here, not later
    await writeFileDurable(configFile, yaml);
    // The lab's catalog is made with it: no other command creates one (a mistyped path must not).
    Catalog.create(join(dir, labFiles.catalog)).close();

    const state: LabState = {
      dir,
      pid: ready.pid,
      url: ready.url,
      user: LAB_USER,
      passwordFile,
      ...(ready.thumbprint !== undefined && { thumbprint: ready.thumbprint }),
      arrayPath,
      ...(image !== undefined && { btrfsImage: image }),
      configFile,
      createdAt: new Date().toISOString(),
      vmCount: vms.length,
      createdDir,
      vms,
    };
    await saveState(state);
    return state;
  } catch (err) {
    progress('undoing');
    try {
      await teardown(dir, { pid, image, arrayPath, createdDir });
    } catch (undoErr) {
      throw new SnapkeeperError(
        'LAB_UP_FAILED',
        `${errorMessage(err)} (and undoing failed: ${errorMessage(undoErr)})`,
        {
          cause: err,
        },
      );
    }
    throw err;
  }
}

/**
 * Refuses (UsageError, nothing changed) a DIR that holds a lab (LAB_EXISTS) or any file a lab writes there
 * (LAB_DIR_NOT_EMPTY): `lab up --dir .` in a working directory must not overwrite, and `lab down` must not
 * delete, a configuration, password or catalog that is not the lab's.
 */
async function checkLabDir(dir: string): Promise<void> {
  for (const name of [labFiles.state, durableTempPath(labFiles.state), labFiles.array, labFiles.image]) {
    if (await pathExists(join(dir, name))) {
      throw new UsageError(
        'LAB_EXISTS',
        `${dir} already holds a lab (found ${name}); run snapkeeper lab down --dir ${dir} first`,
      );
    }
  }
  const found: string[] = [];
  for (const name of OWNED_FILES) if (await pathExists(join(dir, name))) found.push(name);
  if (found.length > 0) {
    throw new UsageError(
      'LAB_DIR_NOT_EMPTY',
      `${dir} already holds ${found.join(', ')}, which a lab would overwrite and lab down would delete; ` +
        'choose another --dir',
      { details: { dir, found } },
    );
  }
}

/** The resolved spec the simulator reads: defaults filled in, each datastore with its volume's path and LUN. */
/**
 * The name the simulator creates each VM under: its own when it is file-safe (the simulator makes it a
 * directory and file names), else a stand-in derived from it, renamed to the real name once the simulator
 * runs (as a VM renamed in vCenter keeps its directory).
 */
export function simulatorVmNames(spec: LabSpec): Map<string, string> {
  const names = spec.datacenters.flatMap((dc) => dc.vms.map((vm) => vm.name));
  const taken = new Set(names);
  const out = new Map<string, string>();
  for (const name of names) {
    if (safeName.safeParse(name).success) {
      out.set(name, name);
      continue;
    }
    let standIn = `vm-${createHash('sha256').update(name).digest('hex').slice(0, 12)}`;
    while (taken.has(standIn)) standIn = `${standIn}x`;
    taken.add(standIn);
    out.set(name, standIn);
  }
  return out;
}

/** Gives the VMs created under a stand-in their real names, through vCenter as a user would rename them. */
async function renameVms(
  ready: SimulatorReady,
  passwordFile: string,
  realNames: Map<string, string>,
): Promise<SimulatorReady['vms']> {
  const renames = ready.vms.filter((vm) => realNames.get(vm.name) !== vm.name);
  if (renames.length === 0) return ready.vms;
  const vc = await connect({
    url: ready.url,
    user: LAB_USER,
    password: new Secret((await readFile(passwordFile, 'utf8')).trim()),
    ...(ready.thumbprint !== undefined ? { thumbprint: ready.thumbprint } : {}),
    insecure: false,
    maxConcurrentRequests: 4,
    timeoutSeconds: 60,
  });
  try {
    for (const vm of renames) {
      await vc.runTask(
        'Rename_Task',
        { type: 'VirtualMachine', value: vm.id },
        el('newName', realNames.get(vm.name)!),
      );
    }
  } finally {
    await vc.logout();
  }
  return ready.vms.map((vm) => ({ ...vm, name: realNames.get(vm.name)! }));
}

function resolveSpec(spec: LabSpec, arrayPath: string, luns: Map<string, string>): unknown {
  const simulatorNames = simulatorVmNames(spec);
  return {
    datacenters: spec.datacenters.map((dc) => ({
      ...dc,
      datastores: dc.datastores.map((ds) => ({
        ...ds,
        path: layout.volume(arrayPath, ds.name),
        lun: luns.get(ds.name),
      })),
      // Every default is resolved here, the one place: the simulator refuses a VM without power or home
      // datastore and a flat disk without mode.
      vms: dc.vms.map((vm) => ({
        ...vm, // power: the schema's default is already applied
        name: simulatorNames.get(vm.name),
        datastore: homeDatastore(vm),
        disks: vm.disks.map((d) => ('rdm' in d ? d : { ...d, mode: d.mode ?? 'persistent' })),
      })),
    })),
  };
}

function labConfigYaml(url: string, thumbprint: string | undefined): string {
  // Paths are relative to the file (the loader resolves them so), which keeps the directory self-contained.
  const config = {
    vcenter: {
      url,
      user: LAB_USER,
      passwordFile: labFiles.password,
      ...(thumbprint !== undefined && { thumbprint }),
    },
    arrays: [{ name: 'lab', type: 'fs', path: labFiles.array }],
    catalog: { path: labFiles.catalog },
    defaults: { mode: 'SNAPSHOT_EXCL_MEM' },
    tasks: [{ name: 'lab-all', select: { vms: ['*'] } }],
  };
  return `# Written by snapkeeper lab up for the lab in this directory; removed by snapkeeper lab down.\n${stringify(config)}`;
}

async function forEachLimit<T>(items: T[], limit: number, fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const item = items[next++]!;
      await fn(item);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
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

/** Whether the lab's simulator process is alive and its URL answers SOAP. */
export async function labStatus(dir: string): Promise<LabStatus> {
  const state = await readLabState(dir);
  const processAlive = state.pid > 0 && (await isSimulatorProcess(state.pid, state.dir));
  const answering = processAlive && (await answersSoap(state.url, state.thumbprint));
  return {
    dir: state.dir,
    running: processAlive && answering && state.starting !== true,
    starting: state.starting === true,
    pid: state.pid,
    processAlive,
    answering,
    url: state.url,
    configFile: state.configFile,
    createdAt: state.createdAt,
    vmCount: state.vmCount,
  };
}

/**
 * Stops the lab in `dir` and removes everything it made there (array, image, files, the catalog, DIR itself
 * if `lab up` created it). lab.json goes last, so a failed `lab down` can simply be run again. A directory
 * without a lab is a UsageError.
 */
export async function labDown(dir: string): Promise<void> {
  const state = await readLabState(dir);
  await teardown(state.dir, {
    pid: state.pid > 0 ? state.pid : undefined,
    image: state.btrfsImage,
    arrayPath: state.arrayPath,
    createdDir: state.createdDir,
  });
}

async function teardown(
  dir: string,
  parts: { pid: number | undefined; image: string | undefined; arrayPath: string; createdDir: boolean },
): Promise<void> {
  if (parts.pid !== undefined) await stopProcess(parts.pid, dir);
  if (parts.image !== undefined) await unmountLoopBtrfs(parts.image, parts.arrayPath);
  else if (await isMountPoint(parts.arrayPath)) {
    throw new SnapkeeperError(
      'LAB_DOWN_FAILED',
      `${parts.arrayPath} is a mount point the lab did not make; not removing it`,
    );
  }
  await removeArray(parts.arrayPath);
  for (const f of OWNED_FILES) await rm(join(dir, f), { force: true });
  for (const f of [labFiles.state, durableTempPath(labFiles.state)]) await rm(join(dir, f), { force: true });
  if (parts.createdDir) {
    try {
      await rmdir(dir);
    } catch {
      // something else lives there now: leave it
    }
  }
}

/**
 * Removes the lab's array whatever its driver made: the arrays' own removeTree deletes btrfs subvolumes
 * (read-only snapshots included, which `rm -r` cannot remove) as such and plain trees after making them
 * writable.
 */
async function removeArray(root: string): Promise<void> {
  if (!(await pathExists(root))) return;
  for (const parent of [layout.snapshots(root), layout.clones(root)]) {
    const names = await readdir(parent).catch(() => [] as string[]);
    for (const name of names) await removeTree(join(parent, name));
  }
  await removeTree(layout.pool(root));
  await rm(root, { recursive: true, force: true });
}

async function processState(pid: number): Promise<'alive' | 'dead' | 'unknown'> {
  try {
    const st = await readFile(`/proc/${pid}/stat`, 'utf8');
    // A zombie has exited; its parent just has not reaped it yet.
    return /^\d+ \(.*\) Z/.test(st) ? 'dead' : 'alive';
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return 'dead';
    return 'unknown';
  }
}

/** True when `pid` is alive and (where /proc tells) is the simulator of the lab in `dir`, not a reused pid. */
async function isSimulatorProcess(pid: number, dir: string): Promise<boolean> {
  const state = await processState(pid);
  if (state === 'dead') return false;
  try {
    const cmdline = await readFile(`/proc/${pid}/cmdline`, 'utf8');
    return cmdline.split('\0').includes(join(dir, labFiles.ready));
  } catch {
    try {
      process.kill(pid, 0);
      return true;
    } catch {
      return false;
    }
  }
}

async function stopProcess(pid: number, dir: string): Promise<void> {
  if (!(await isSimulatorProcess(pid, dir))) return;
  const waitGone = async (ms: number) => {
    const deadline = Date.now() + ms;
    while (Date.now() < deadline) {
      if ((await processState(pid)) === 'dead') return true;
      // The simulator is not our child in a later CLI run, so there is no exit event to wait for.
      await new Promise((r) => setTimeout(r, 25));
    }
    return false;
  };
  try {
    process.kill(pid, 'SIGTERM');
  } catch {
    return;
  }
  if (await waitGone(15_000)) return;
  try {
    process.kill(pid, 'SIGKILL');
  } catch {
    return;
  }
  if (!(await waitGone(5_000))) {
    throw new SnapkeeperError('LAB_DOWN_FAILED', `the simulator (pid ${pid}) did not stop`);
  }
}

const SERVICE_CONTENT_REQUEST =
  '<?xml version="1.0" encoding="UTF-8"?><soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/">' +
  '<soapenv:Body><RetrieveServiceContent xmlns="urn:vim25"><_this type="ServiceInstance">ServiceInstance</_this>' +
  '</RetrieveServiceContent></soapenv:Body></soapenv:Envelope>';

/**
 * Whether `url` answers a RetrieveServiceContent SOAP call within 5 s. Over HTTPS the certificate must match
 * `thumbprint` (SHA-256); the lab's certificate is self-signed, so the fingerprint is what makes it trusted.
 */
export function answersSoap(url: string, thumbprint: string | undefined): Promise<boolean> {
  return new Promise((done) => {
    const u = new URL(url);
    const options = {
      method: 'POST',
      headers: { 'content-type': 'text/xml; charset=utf-8', soapaction: 'urn:vim25/8.0' },
      timeout: 5000,
    };
    const onResponse = (res: import('node:http').IncomingMessage) => {
      if (u.protocol === 'https:') {
        const fp = (res.socket as import('node:tls').TLSSocket).getPeerCertificate().fingerprint256;
        if (thumbprint === undefined || fp?.toUpperCase() !== thumbprint.toUpperCase()) {
          res.resume();
          done(false);
          return;
        }
      }
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () =>
        done(
          res.statusCode === 200 &&
            Buffer.concat(chunks).toString('utf8').includes('RetrieveServiceContentResponse'),
        ),
      );
      res.on('error', () => done(false));
    };
    const req =
      u.protocol === 'https:'
        ? // No agent: a pooled or resumed TLS session may not expose the peer certificate to check.
          httpsRequest(u, { ...options, agent: false, rejectUnauthorized: false }, onResponse)
        : httpRequest(u, options, onResponse);
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', () => done(false));
    req.end(SERVICE_CONTENT_REQUEST);
  });
}
