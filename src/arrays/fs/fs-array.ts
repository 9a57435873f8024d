import { lstat, mkdir, open, readdir, readFile, realpath, rm } from 'node:fs/promises';
import { dirname, isAbsolute, join, relative, resolve, sep } from 'node:path';
import { addAbortSignal, Readable } from 'node:stream';
import { ConflictError, errorMessage, NotFoundError, SnapkeeperError, UsageError } from '../../errors.js';
import { durableTempPath, pathExists, writeJsonDurable } from '../../util/fs.js';
import {
  byName,
  checkGroup,
  fileComponents,
  noCompleteSnapshot,
  noSuchEntry,
  readRange,
  relativeComponents,
  targetExists,
  targetOutsideVolumes,
  volumeNotInSnapshot,
} from '../checks.js';
import type {
  ArrayClone,
  ArrayFileEntry,
  ArraySnapshot,
  ArrayVolume,
  ByteRange,
  ExportLocation,
  PointInTime,
  ReadFileOptions,
  RestoreFileOptions,
  SnapshotOptions,
  StorageArray,
} from '../types.js';
import { type FsDriverChoice, selectDriver } from './detect.js';
import type { FsDriver } from './drivers/driver.js';
import { changedByExtents, readExtents } from './extents.js';
import { isId, makeId, parseId } from './ids.js';
import { layout, readManifest } from './layout.js';
import { removeTree } from './tree.js';

export interface FsArrayConfig {
  name: string;
  /** Root of the array (holds array.json, pool/, snapshots/, clones/). */
  path: string;
  driver: FsDriverChoice;
}

/** A clone as listed by the fs array: `complete` is false for one a crash left half made (delete it). */
export interface FsArrayClone extends ArrayClone {
  complete: boolean;
}

interface SnapshotMeta {
  id: string;
  label: string;
  createdAt: string;
  volumes: string[];
  pointInTime: PointInTime;
  driver: string;
}

interface CloneMeta {
  id: string;
  label: string;
  snapshotId: string;
  createdAt: string;
  volumes: string[];
}

/**
 * Opens the file-system array at `config.path` (see layout.ts) with the configured driver. Throws UsageError
 * when there is no array there or the driver cannot work on its file system.
 */
export async function openFsArray(config: FsArrayConfig): Promise<FsArray> {
  const root = resolve(config.path);
  await readManifest(root);
  await mkdir(layout.snapshots(root), { recursive: true });
  await mkdir(layout.clones(root), { recursive: true });
  const driver = await selectDriver(config.name, root, config.driver);
  return new FsArray(config.name, root, driver);
}

/**
 * Read `target.length` bytes (fewer at the end of the range) at `position` of the file into `target`; resolves
 * the bytes read. Carried as `readAt` by the stream `readFile` returns (see src/arrays/README.md).
 */
export type ReadAt = (target: Uint8Array, position: number) => Promise<number>;

/** Snapshot files whose resolved path `readFile` remembers (see `openSnapshotFile`). */
const RESOLVED_FILES_KEPT = 1024;

/**
 * The `fs` storage array. Crash order: a snapshot's (or clone's) metadata file is written, durably, only
 * once its directory is complete, and is deleted before its directory; a directory without metadata is
 * listed as incomplete and is only ever deleted.
 */
export class FsArray implements StorageArray {
  readonly driver: string;
  readonly atomicGroups: boolean;
  readonly instantClone: boolean;
  /** Present for drivers whose snapshots share extents with each other (btrfs, reflink): see extents.ts. */
  readonly changedRanges?: StorageArray['changedRanges'];
  /** Real paths of snapshot files `readFile` opened, by snapshot, volume and relative path. */
  private readonly resolvedFiles = new Map<string, string>();

  constructor(
    readonly name: string,
    /** Absolute root directory of the array. */
    readonly root: string,
    private readonly impl: FsDriver,
  ) {
    this.driver = impl.name;
    this.atomicGroups = impl.pointInTime === 'atomic';
    this.instantClone = impl.instantClone;
    if (impl.instantClone) this.changedRanges = (...args) => this.changedRangesByExtents(...args);
  }

  /** Volumes of the manifest, read afresh each time (the lab may add volumes to an open array). */
  async listVolumes(): Promise<ArrayVolume[]> {
    const manifest = await readManifest(this.root);
    return manifest.volumes.map((v) => ({
      name: v.name,
      path: layout.volume(this.root, v.name),
      lun: v.lun,
    }));
  }

  async snapshotGroup(volumes: string[], options: SnapshotOptions): Promise<ArraySnapshot> {
    const id = makeId(options.label);
    await this.checkVolumes(volumes);
    options.signal?.throwIfAborted();
    const dir = layout.snapshot(this.root, id);
    const meta: SnapshotMeta = {
      id,
      label: options.label,
      createdAt: new Date().toISOString(),
      volumes: [...volumes],
      pointInTime: this.impl.pointInTime,
      driver: this.impl.name,
    };
    try {
      await this.impl.snapshot(layout.pool(this.root), dir, meta.volumes, options);
      options.signal?.throwIfAborted();
      await writeJsonDurable(layout.snapshotMeta(this.root, id), meta);
    } catch (err) {
      await this.removeEntry(layout.snapshotMeta(this.root, id), dir).catch(() => {});
      throw this.failure('ARRAY_SNAPSHOT_FAILED', `snapshot of ${volumes.join(', ')}`, err, options.signal);
    }
    return { ...meta, complete: true };
  }

  async listSnapshots(): Promise<ArraySnapshot[]> {
    const entries = await this.entries(layout.snapshots(this.root));
    const out: ArraySnapshot[] = [];
    for (const [id, hasDir] of entries) {
      const meta = await readMeta(layout.snapshotMeta(this.root, id), isSnapshotMeta);
      if (meta && hasDir && meta.id === id) {
        out.push({ ...meta, complete: true });
        continue;
      }
      const parsed = parseId(id)!;
      out.push({
        id,
        label: parsed.label,
        createdAt: meta?.createdAt ?? parsed.createdAt,
        volumes: meta?.volumes ?? (hasDir ? await subdirs(layout.snapshot(this.root, id)) : []),
        pointInTime: meta?.pointInTime ?? this.impl.pointInTime,
        driver: meta?.driver ?? this.impl.name,
        complete: false,
      });
    }
    return out.sort(byCreation);
  }

  async deleteSnapshot(id: string): Promise<void> {
    if (!isId(id)) return;
    for (const key of this.resolvedFiles.keys()) {
      if (key.startsWith(`${id}\0`)) this.resolvedFiles.delete(key);
    }
    try {
      await this.removeEntry(layout.snapshotMeta(this.root, id), layout.snapshot(this.root, id));
    } catch (err) {
      throw this.failure('ARRAY_DELETE_FAILED', `deleting snapshot ${id}`, err);
    }
  }

  async snapshotVolumePath(id: string, volume: string): Promise<string> {
    const snap = await this.completeSnapshot(id);
    if (!snap.volumes.includes(volume)) throw volumeNotInSnapshot(this.name, id, volume);
    return join(layout.snapshot(this.root, id), volume);
  }

  async cloneSnapshot(id: string, options: SnapshotOptions): Promise<ArrayClone> {
    const cloneId = makeId(options.label);
    const snap = await this.completeSnapshot(id);
    options.signal?.throwIfAborted();
    const dir = layout.clone(this.root, cloneId);
    const meta: CloneMeta = {
      id: cloneId,
      label: options.label,
      snapshotId: id,
      createdAt: new Date().toISOString(),
      volumes: [...snap.volumes],
    };
    try {
      await this.impl.clone(layout.snapshot(this.root, id), dir, meta.volumes, options);
      options.signal?.throwIfAborted();
      await writeJsonDurable(layout.cloneMeta(this.root, cloneId), meta);
    } catch (err) {
      await this.removeEntry(layout.cloneMeta(this.root, cloneId), dir).catch(() => {});
      throw this.failure('ARRAY_CLONE_FAILED', `clone of snapshot ${id}`, err, options.signal);
    }
    return this.withExports(meta, dir);
  }

  private withExports(meta: CloneMeta, path: string): ArrayClone {
    return {
      ...meta,
      path,
      volumeExports: Object.fromEntries(meta.volumes.map((v) => [v, join(path, v)])),
    };
  }

  /** All clones, oldest first; those a crash left half made have `complete: false` and `snapshotId: ''`. */
  async listClones(): Promise<FsArrayClone[]> {
    const entries = await this.entries(layout.clones(this.root));
    const out: FsArrayClone[] = [];
    for (const [id, hasDir] of entries) {
      const path = layout.clone(this.root, id);
      const meta = await readMeta(layout.cloneMeta(this.root, id), isCloneMeta);
      if (meta && hasDir && meta.id === id) {
        out.push({ ...this.withExports(meta, path), complete: true });
        continue;
      }
      const parsed = parseId(id)!;
      const clone: CloneMeta = {
        id,
        label: parsed.label,
        snapshotId: meta?.snapshotId ?? '',
        createdAt: meta?.createdAt ?? parsed.createdAt,
        volumes: meta?.volumes ?? (hasDir ? await subdirs(path) : []),
      };
      out.push({ ...this.withExports(clone, path), complete: false });
    }
    return out.sort(byCreation);
  }

  async deleteClone(id: string): Promise<void> {
    if (!isId(id)) return;
    try {
      await this.removeEntry(layout.cloneMeta(this.root, id), layout.clone(this.root, id));
    } catch (err) {
      throw this.failure('ARRAY_DELETE_FAILED', `deleting clone ${id}`, err);
    }
  }

  async restoreFile(
    snapshotId: string,
    volume: string,
    relativePath: string,
    target: string,
    options: RestoreFileOptions = {},
  ): Promise<{ cloned: boolean; bytes: number }> {
    if (!isAbsolute(target)) {
      throw new UsageError(
        'ARRAY_INVALID_PATH',
        `restore target must be an absolute path, got ${JSON.stringify(target)}`,
      );
    }
    const srcReal = await this.snapshotEntry(snapshotId, volume, relativePath, 'file');
    await this.checkTarget(target);
    if (await pathExists(target)) throw targetExists(target);
    try {
      return await this.impl.restoreFile(srcReal, target, options);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'EEXIST') {
        throw targetExists(target, err);
      }
      throw this.failure(
        'ARRAY_RESTORE_FAILED',
        `restore of ${relativePath} from snapshot ${snapshotId} to ${target}`,
        err,
        options.signal,
      );
    }
  }

  async statFile(snapshotId: string, volume: string, relativePath: string): Promise<{ size: number }> {
    const path = await this.snapshotEntry(snapshotId, volume, relativePath, 'file');
    return { size: (await lstat(path)).size };
  }

  async listFiles(snapshotId: string, volume: string, relativeDir: string): Promise<ArrayFileEntry[]> {
    const dir = await this.snapshotEntry(snapshotId, volume, relativeDir, 'directory');
    const out: ArrayFileEntry[] = [];
    for (const e of await readdir(dir, { withFileTypes: true })) {
      if (e.isDirectory()) out.push({ name: e.name, type: 'directory', size: 0 });
      else if (e.isFile())
        out.push({ name: e.name, type: 'file', size: (await lstat(join(dir, e.name))).size });
    }
    return out.sort(byName);
  }

  async readFile(
    snapshotId: string,
    volume: string,
    relativePath: string,
    options: ReadFileOptions = {},
  ): Promise<Readable> {
    // Opened before returning, so a file that cannot be read rejects here rather than in the stream.
    const fh = await this.openSnapshotFile(snapshotId, volume, relativePath);
    let range: ByteRange;
    try {
      range = readRange(options, (await fh.stat()).size);
    } catch (err) {
      await fh.close();
      throw err;
    }
    let stream: Readable;
    if (range.length === 0) {
      await fh.close();
      stream = Readable.from([]);
    } else {
      // 1 MiB reads: offload streams whole disks, and 64 KiB (the default) costs 16 times the reads.
      stream = fh.createReadStream({
        start: range.offset,
        end: range.offset + range.length - 1,
        highWaterMark: 1024 * 1024,
      });
      // Positional reads into the caller's memory, instead of consuming the stream (see ReadAt in
      // src/arrays/README.md): the repository writer reads whole disks straight into its batch buffers, with
      // no fresh buffer per read to fault in and collect, and no copy. Only within the range; the stream's
      // `destroy` still closes the file.
      const first = range.offset;
      const last = range.offset + range.length;
      const readAt: ReadAt = async (target, position) => {
        if (position < first || position > last) {
          throw new UsageError('ARRAY_INVALID_RANGE', `read at ${position} is outside ${first}..${last}`);
        }
        const length = Math.min(target.length, last - position);
        if (length === 0) return 0;
        return (await fh.read(target, 0, length, position)).bytesRead;
      };
      Object.assign(stream, { readAt });
    }
    return options.signal ? addAbortSignal(options.signal, stream) : stream;
  }

  /**
   * A regular file of a complete snapshot, opened for reading. Its resolved path is remembered (a snapshot
   * never changes once complete): an incremental offload reads a file in hundreds of ranges, and resolving
   * it afresh (the snapshot's metadata, two realpaths, an lstat: about 1.3 ms) cost more than the reads. A
   * remembered path that no longer opens (the snapshot was deleted, by another process too) is resolved
   * again, which raises the usual NotFoundError.
   */
  private async openSnapshotFile(snapshotId: string, volume: string, relativePath: string) {
    const key = `${snapshotId}\0${volume}\0${relativePath}`;
    const known = this.resolvedFiles.get(key);
    if (known !== undefined) {
      try {
        return await open(known, 'r');
      } catch {
        this.resolvedFiles.delete(key);
      }
    }
    const path = await this.snapshotEntry(snapshotId, volume, relativePath, 'file');
    const fh = await open(path, 'r');
    if (this.resolvedFiles.size >= RESOLVED_FILES_KEPT) this.resolvedFiles.clear();
    this.resolvedFiles.set(key, path);
    return fh;
  }

  /**
   * Compares the file's extent maps in the two snapshots (see extents.ts). Undefined when the file is not a
   * regular file of the base, or when the extents cannot be read.
   */
  private async changedRangesByExtents(
    baseSnapshotId: string,
    snapshotId: string,
    volume: string,
    relativePath: string,
    options: { signal?: AbortSignal } = {},
  ): Promise<ByteRange[] | undefined> {
    const nextPath = await this.snapshotEntry(snapshotId, volume, relativePath, 'file');
    const basePath = await this.snapshotEntry(baseSnapshotId, volume, relativePath, 'file').catch((err) => {
      if (err instanceof NotFoundError && err.code === 'FILE_NOT_FOUND') return undefined;
      throw err;
    });
    if (basePath === undefined) return undefined;
    const [baseSize, nextSize] = await Promise.all(
      [basePath, nextPath].map(async (p) => (await lstat(p)).size),
    );
    const base = await readExtents(basePath, options.signal);
    const next = base && (await readExtents(nextPath, options.signal));
    if (!base || !next) return undefined;
    return changedByExtents(base, baseSize!, next, nextSize!);
  }

  async resolveExport(path: string): Promise<ExportLocation | undefined> {
    if (!isAbsolute(path)) return undefined;
    const abs = resolve(path);
    const volumes = new Set((await readManifest(this.root)).volumes.map((v) => v.name));
    const below = (dir: string) => {
      const rel = relative(dir, abs);
      return rel === '' || rel === '..' || rel.startsWith(`..${sep}`) || isAbsolute(rel)
        ? undefined
        : rel.split(sep);
    };
    const inPool = below(layout.pool(this.root));
    if (inPool && volumes.has(inPool[0]!)) {
      return { kind: 'volume', volume: inPool[0]!, subPath: inPool.slice(1).join('/') };
    }
    const inClones = below(layout.clones(this.root));
    if (inClones && inClones.length >= 2 && isId(inClones[0]!)) {
      return {
        kind: 'clone',
        cloneId: inClones[0]!,
        volume: inClones[1]!,
        subPath: inClones.slice(2).join('/'),
      };
    }
    return undefined;
  }

  /**
   * The real path of a regular file (or a directory) of a complete snapshot. Every component is resolved,
   * not just the last: a symbolic link to a directory inside the snapshot must not lead out of it. The
   * last component must be the thing itself, not a link to it.
   */
  private async snapshotEntry(
    snapshotId: string,
    volume: string,
    relativePath: string,
    kind: 'file' | 'directory',
  ): Promise<string> {
    const parts =
      kind === 'file' ? fileComponents(relativePath, volume) : relativeComponents(relativePath, volume);
    const base = await this.snapshotVolumePath(snapshotId, volume);
    const path = join(base, ...parts);
    const [baseReal, real] = await Promise.all([realpath(base), realpath(path).catch(() => undefined)]);
    if (real !== undefined && real !== baseReal && !real.startsWith(`${baseReal}${sep}`)) {
      throw new UsageError(
        'ARRAY_INVALID_PATH',
        `array "${this.name}": ${JSON.stringify(relativePath)} leads out of volume ${volume} of snapshot ${snapshotId}`,
      );
    }
    const s = real === undefined ? undefined : await lstat(path).catch(() => undefined);
    if (real === undefined || !(kind === 'file' ? s?.isFile() : s?.isDirectory())) {
      throw noSuchEntry(this.name, kind, relativePath, volume, snapshotId);
    }
    return real;
  }

  /** A restore target must be in the array's pool, its directory resolved (links included). */
  private async checkTarget(target: string): Promise<void> {
    const pool = await realpath(layout.pool(this.root));
    const dir = await realpath(dirname(target)).catch(() => undefined);
    if (dir === undefined || !dir.startsWith(`${pool}${sep}`)) {
      throw targetOutsideVolumes(this.name, target, layout.pool(this.root));
    }
  }

  private async checkVolumes(volumes: string[]): Promise<void> {
    checkGroup(this.name, volumes, new Set((await this.listVolumes()).map((v) => v.name)));
  }

  private async completeSnapshot(id: string): Promise<ArraySnapshot> {
    const meta = isId(id) ? await readMeta(layout.snapshotMeta(this.root, id), isSnapshotMeta) : undefined;
    if (!meta || meta.id !== id || !(await pathExists(layout.snapshot(this.root, id)))) {
      throw noCompleteSnapshot(this.name, id);
    }
    return { ...meta, complete: true };
  }

  /** Ids found in a snapshots/ or clones/ directory, with whether their directory exists. */
  private async entries(dir: string): Promise<Map<string, boolean>> {
    const found = new Map<string, boolean>();
    let names: import('node:fs').Dirent[];
    try {
      names = await readdir(dir, { withFileTypes: true });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return found;
      throw err;
    }
    for (const e of names) {
      if (e.isDirectory() && isId(e.name)) found.set(e.name, true);
    }
    // Metadata (or its temporary file, after a crash) without a directory is listed too, so it gets deleted.
    for (const e of names) {
      const id = e.name.replace(/\.json(\.tmp)?$/, '');
      if (id !== e.name && isId(id) && !found.has(id)) found.set(id, false);
    }
    return found;
  }

  /** Metadata first: an interruption leaves a directory without metadata, which is incomplete, so deleted again. */
  private async removeEntry(metaPath: string, dir: string): Promise<void> {
    await rm(metaPath, { force: true });
    await rm(durableTempPath(metaPath), { force: true });
    await removeTree(dir);
  }

  /**
   * A cancellation rejects with the signal's reason, whatever the interrupted step threw (a killed `btrfs`
   * is an EXEC_FAILED). Errors about the request (usage, not found, conflict) pass as they are; anything
   * else, a failed program included, gets `code` and names the array.
   */
  private failure(code: string, what: string, err: unknown, signal?: AbortSignal): unknown {
    if (signal?.aborted) return signal.reason;
    if (err instanceof UsageError || err instanceof NotFoundError || err instanceof ConflictError) return err;
    return new SnapkeeperError(
      code,
      `array "${this.name}" (${this.impl.name}): ${what} failed: ${errorMessage(err)}`,
      {
        cause: err,
      },
    );
  }
}

/** A metadata file's content, or undefined when it is missing, unreadable or not of the expected shape. */
async function readMeta<T>(path: string, valid: (v: unknown) => v is T): Promise<T | undefined> {
  try {
    const value: unknown = JSON.parse(await readFile(path, 'utf8'));
    return valid(value) ? value : undefined;
  } catch {
    return undefined;
  }
}

function isCommonMeta(v: unknown): v is Record<string, unknown> {
  if (typeof v !== 'object' || v === null) return false;
  const m = v as Record<string, unknown>;
  return (
    typeof m.id === 'string' &&
    typeof m.label === 'string' &&
    typeof m.createdAt === 'string' &&
    Array.isArray(m.volumes) &&
    m.volumes.every((x) => typeof x === 'string')
  );
}

function isSnapshotMeta(v: unknown): v is SnapshotMeta {
  return (
    isCommonMeta(v) &&
    (v.pointInTime === 'atomic' || v.pointInTime === 'sequential') &&
    typeof v.driver === 'string'
  );
}

function isCloneMeta(v: unknown): v is CloneMeta {
  return isCommonMeta(v) && typeof v.snapshotId === 'string';
}

async function subdirs(path: string): Promise<string[]> {
  try {
    return (await readdir(path, { withFileTypes: true }))
      .filter((e) => e.isDirectory())
      .map((e) => e.name)
      .sort();
  } catch {
    return [];
  }
}

function byCreation(a: { createdAt: string; id: string }, b: { createdAt: string; id: string }): number {
  return a.createdAt < b.createdAt
    ? -1
    : a.createdAt > b.createdAt
      ? 1
      : a.id < b.id
        ? -1
        : a.id > b.id
          ? 1
          : 0;
}
