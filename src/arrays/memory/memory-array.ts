import { posix } from 'node:path';
import { Readable } from 'node:stream';
import { setImmediate as nextTurn } from 'node:timers/promises';
import { ConflictError, NotFoundError, SnapkeeperError, UsageError } from '../../errors.js';
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
  unknownVolume,
  volumeNotInSnapshot,
} from '../checks.js';
import { makeId } from '../fs/ids.js';
import type {
  ArrayClone,
  ArrayFileEntry,
  ArraySnapshot,
  ArrayVolume,
  ByteRange,
  ExportLocation,
  ReadFileOptions,
  RestoreFileOptions,
  SnapshotOptions,
  StorageArray,
} from '../types.js';
import { lookup, MemDir, MemFile, type MemNode } from './files.js';

export interface MemoryArrayOptions {
  /** Array name; also the second component of its export paths (`/memory/<name>/<volume>`). */
  name: string;
  volumes: { name: string; lun: string }[];
  /** Default true: a group is captured at one point in time. False captures volume after volume. */
  atomicGroups?: boolean;
  /** Default true: clones and restores share data. False behaves like a copying array (progress, abort). */
  instantClone?: boolean;
}

interface Snapshot {
  meta: ArraySnapshot;
  trees: Map<string, MemDir>;
}

interface Clone {
  meta: ArrayClone;
  trees: Map<string, MemDir>;
}

const NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,79}$/;
/** Progress (and abort checks) of a copying memory array come every so many bytes. */
const PROGRESS_STEP = 1024 * 1024;
const CLONES = '.clones';
const SNAPSHOTS = '.snapshots';

/**
 * A complete StorageArray in memory, for engine tests that must run in milliseconds: it passes the same
 * conformance suite as the fs array. Its exports are virtual absolute paths: live volumes at
 * `/memory/<array>/<volume>`, clone volumes at `/memory/<array>/.clones/<clone id>/<volume>`. Tests (and a
 * fake vCenter) reach the files behind those paths through the host methods below (`writeFile`,
 * `readVolumeFile`, `writePath`, `movePath` ...), which are also what an engine test gives the engine as the
 * files behind its datastores, and can make any method fail once with `failNext`.
 */
export class MemoryArray implements StorageArray {
  readonly name: string;
  readonly driver = 'memory';
  readonly atomicGroups: boolean;
  readonly instantClone: boolean;
  private readonly volumes: Map<string, { lun: string; tree: MemDir }>;
  private readonly snapshots = new Map<string, Snapshot>();
  private readonly clones = new Map<string, Clone>();
  private readonly faults = new Map<keyof StorageArray, Error[]>();

  constructor(options: MemoryArrayOptions) {
    for (const n of [options.name, ...options.volumes.map((v) => v.name)]) {
      if (!NAME.test(n)) {
        throw new UsageError('ARRAY_INVALID', `invalid memory array or volume name ${JSON.stringify(n)}`);
      }
    }
    this.name = options.name;
    this.atomicGroups = options.atomicGroups ?? true;
    this.instantClone = options.instantClone ?? true;
    this.volumes = new Map(options.volumes.map((v) => [v.name, { lun: v.lun, tree: new MemDir() }]));
    if (this.volumes.size !== options.volumes.length) {
      throw new UsageError('ARRAY_INVALID', `memory array "${this.name}": a volume is named twice`);
    }
  }

  /** Makes the next call of `method` reject with `error` (once); calls queue up in order. */
  failNext(method: keyof StorageArray, error?: Error): void {
    const queue = this.faults.get(method) ?? [];
    queue.push(
      error ??
        new SnapkeeperError('ARRAY_FAULT_INJECTED', `array "${this.name}": injected failure of ${method}`),
    );
    this.faults.set(method, queue);
  }

  private injected(method: keyof StorageArray): void {
    const err = this.faults.get(method)?.shift();
    if (err) throw err;
  }

  async listVolumes(): Promise<ArrayVolume[]> {
    this.injected('listVolumes');
    return [...this.volumes].map(([name, v]) => ({ name, path: this.exportPath(name), lun: v.lun }));
  }

  async snapshotGroup(volumes: string[], options: SnapshotOptions): Promise<ArraySnapshot> {
    this.injected('snapshotGroup');
    const id = makeId(options.label);
    checkGroup(this.name, volumes, new Set(this.volumes.keys()));
    options.signal?.throwIfAborted();
    const trees = new Map<string, MemDir>();
    for (const v of volumes) {
      // Between volumes a writer may run: what a sequential array cannot rule out.
      if (!this.atomicGroups && trees.size > 0) await nextTurn();
      trees.set(v, this.volumes.get(v)!.tree.share());
    }
    await this.pretendToCopy(trees, options);
    const meta: ArraySnapshot = {
      id,
      label: options.label,
      createdAt: new Date().toISOString(),
      volumes: [...volumes],
      pointInTime: this.atomicGroups ? 'atomic' : 'sequential',
      driver: this.driver,
      complete: true,
    };
    this.snapshots.set(id, { meta, trees });
    return { ...meta, volumes: [...meta.volumes] };
  }

  async listSnapshots(): Promise<ArraySnapshot[]> {
    this.injected('listSnapshots');
    return [...this.snapshots.values()].map((s) => ({ ...s.meta, volumes: [...s.meta.volumes] }));
  }

  async deleteSnapshot(id: string): Promise<void> {
    this.injected('deleteSnapshot');
    this.snapshots.delete(id);
  }

  /** A virtual path: nothing on the host is there (see `readPath`). */
  async snapshotVolumePath(id: string, volume: string): Promise<string> {
    this.injected('snapshotVolumePath');
    this.snapshotTree(id, volume);
    return posix.join(this.root(), SNAPSHOTS, id, volume);
  }

  async statFile(snapshotId: string, volume: string, relativePath: string): Promise<{ size: number }> {
    this.injected('statFile');
    return { size: this.snapshotFile(snapshotId, volume, relativePath).size };
  }

  async listFiles(snapshotId: string, volume: string, relativeDir: string): Promise<ArrayFileEntry[]> {
    this.injected('listFiles');
    const parts = relativeComponents(relativeDir, volume);
    const dir = lookup(this.snapshotTree(snapshotId, volume), parts);
    if (dir?.kind !== 'directory') throw noSuchEntry(this.name, 'directory', relativeDir, volume, snapshotId);
    return listing(dir);
  }

  async readFile(
    snapshotId: string,
    volume: string,
    relativePath: string,
    options: ReadFileOptions = {},
  ): Promise<Readable> {
    this.injected('readFile');
    const file = this.snapshotFile(snapshotId, volume, relativePath);
    const range = readRange(options, file.size);
    // A snapshot's file never changes (writers copy a shared file first), so reading lazily is safe.
    function* chunks(): Generator<Buffer> {
      for (let at = range.offset; at < range.offset + range.length; at += PROGRESS_STEP) {
        yield file.read(at, Math.min(PROGRESS_STEP, range.offset + range.length - at));
      }
    }
    return Readable.from(chunks(), { objectMode: false, signal: options.signal });
  }

  async changedRanges(
    baseSnapshotId: string,
    snapshotId: string,
    volume: string,
    relativePath: string,
    options: { signal?: AbortSignal } = {},
  ): Promise<ByteRange[] | undefined> {
    this.injected('changedRanges');
    options.signal?.throwIfAborted();
    const file = this.snapshotFile(snapshotId, volume, relativePath);
    const base = lookup(this.snapshotTree(baseSnapshotId, volume), fileComponents(relativePath, volume));
    return base?.kind === 'file' ? file.changedSince(base) : undefined;
  }

  async cloneSnapshot(id: string, options: SnapshotOptions): Promise<ArrayClone> {
    this.injected('cloneSnapshot');
    const cloneId = makeId(options.label);
    const snap = this.completeSnapshot(id);
    options.signal?.throwIfAborted();
    const trees = new Map([...snap.trees].map(([v, tree]) => [v, tree.share()]));
    await this.pretendToCopy(trees, options);
    const meta: ArrayClone = {
      id: cloneId,
      label: options.label,
      snapshotId: id,
      createdAt: new Date().toISOString(),
      path: posix.join(this.root(), CLONES, cloneId),
      volumes: [...snap.meta.volumes],
      volumeExports: Object.fromEntries(snap.meta.volumes.map((v) => [v, this.exportPath(v, cloneId)])),
    };
    this.clones.set(cloneId, { meta, trees });
    return structuredClone(meta);
  }

  async listClones(): Promise<ArrayClone[]> {
    this.injected('listClones');
    return [...this.clones.values()].map((c) => structuredClone(c.meta));
  }

  async deleteClone(id: string): Promise<void> {
    this.injected('deleteClone');
    this.clones.delete(id);
  }

  async restoreFile(
    snapshotId: string,
    volume: string,
    relativePath: string,
    target: string,
    options: RestoreFileOptions = {},
  ): Promise<{ cloned: boolean; bytes: number }> {
    this.injected('restoreFile');
    const file = this.snapshotFile(snapshotId, volume, relativePath);
    const place = this.locate(target);
    if (place?.kind !== 'volume' || place.parts.length === 0) {
      throw targetOutsideVolumes(this.name, target, this.root());
    }
    const dir = place.tree && lookup(place.tree, place.parts.slice(0, -1));
    if (dir?.kind !== 'directory') {
      throw new UsageError(
        'ARRAY_INVALID_PATH',
        `array "${this.name}": the directory of restore target ${target} does not exist`,
      );
    }
    const name = place.parts.at(-1)!;
    if (dir.entries.has(name)) throw targetExists(target);
    if (!this.instantClone) {
      for (let done = 0; done < file.size; ) {
        options.signal?.throwIfAborted();
        done = Math.min(file.size, done + PROGRESS_STEP);
        options.onProgress?.(done, file.size);
        await nextTurn();
      }
    }
    options.signal?.throwIfAborted();
    if (dir.entries.has(name)) throw targetExists(target);
    file.shared = true;
    dir.entries.set(name, file);
    return { cloned: this.instantClone, bytes: file.size };
  }

  async resolveExport(path: string): Promise<ExportLocation | undefined> {
    this.injected('resolveExport');
    const place = this.locate(path);
    if (place === undefined || place.kind === 'snapshot') return undefined;
    return {
      kind: place.kind,
      ...(place.cloneId === undefined ? {} : { cloneId: place.cloneId }),
      volume: place.volume,
      subPath: place.parts.join('/'),
    };
  }

  // Host side: what a host (or a fake vCenter) does to the files behind the exports. Not part of the seam.

  /**
   * Writes `data` into a live volume's file, creating it and its directories: the whole file (replacing it)
   * without `offset`, else in place at `offset` (the file grows as needed, a gap reads as zeros).
   */
  writeFile(volume: string, relativePath: string, data: Uint8Array | string, offset?: number): void {
    this.writePath(this.volumeFilePath(volume, relativePath), data, offset);
  }

  readVolumeFile(volume: string, relativePath: string): Buffer {
    return this.readPath(this.volumeFilePath(volume, relativePath));
  }

  /** Removes a file or a directory tree of a live volume; missing is fine. */
  removeFile(volume: string, relativePath: string): void {
    this.removePath(this.volumeFilePath(volume, relativePath));
  }

  /** `writeFile` by host path: a live volume's or a clone's export path and below. */
  writePath(path: string, data: Uint8Array | string, offset?: number): void {
    const bytes = typeof data === 'string' ? Buffer.from(data) : data;
    const file = this.writableFile(path);
    if (offset === undefined) file.truncate(0);
    file.write(bytes, offset ?? 0);
  }

  /** Sets a file's size (a longer file reads zeros at the end); creates it when missing. */
  truncatePath(path: string, size: number): void {
    this.writableFile(path).truncate(size);
  }

  /** Makes a directory and its parents under a writable export path. */
  mkdirPath(path: string): void {
    const place = this.writablePlace(path);
    this.writableDir(place, place.parts);
  }

  /** The content of a file at a host path (snapshot paths from `snapshotVolumePath` too). ENOENT-like NotFoundError otherwise. */
  readPath(path: string): Buffer {
    const node = this.nodeAt(path);
    if (node?.kind !== 'file')
      throw new NotFoundError('FILE_NOT_FOUND', `array "${this.name}": no file ${path}`);
    return node.read(0, node.size);
  }

  /** The entries of a directory at a host path, sorted by name; NotFoundError when there is none. */
  listPath(path: string): ArrayFileEntry[] {
    const node = this.nodeAt(path);
    if (node?.kind !== 'directory') {
      throw new NotFoundError('FILE_NOT_FOUND', `array "${this.name}": no directory ${path}`);
    }
    return listing(node);
  }

  /** What is at a host path, if anything. */
  statPath(path: string): { type: 'file' | 'directory'; size: number } | undefined {
    const node = this.nodeAt(path);
    if (node === undefined) return undefined;
    return node.kind === 'file' ? { type: 'file', size: node.size } : { type: 'directory', size: 0 };
  }

  /**
   * Renames a file or directory tree within one export (as `rename(2)`: the target's directory must exist,
   * the target must not; a move across exports is refused, as across file systems).
   */
  movePath(from: string, to: string): void {
    const source = this.writablePlace(from);
    const target = this.writablePlace(to);
    if (source.tree !== target.tree || source.parts.length === 0 || target.parts.length === 0) {
      throw new UsageError('ARRAY_INVALID_PATH', `array "${this.name}": cannot move ${from} to ${to}`);
    }
    const sourceDir = lookup(source.tree, source.parts.slice(0, -1));
    const node = sourceDir?.kind === 'directory' ? sourceDir.entries.get(source.parts.at(-1)!) : undefined;
    if (sourceDir?.kind !== 'directory' || node === undefined) {
      throw new NotFoundError('FILE_NOT_FOUND', `array "${this.name}": no file or directory ${from}`);
    }
    const targetDir = lookup(target.tree, target.parts.slice(0, -1));
    if (targetDir?.kind !== 'directory') {
      throw new NotFoundError('FILE_NOT_FOUND', `array "${this.name}": no directory for ${to}`);
    }
    if (targetDir.entries.has(target.parts.at(-1)!)) {
      throw new ConflictError('TARGET_EXISTS', `array "${this.name}": ${to} already exists`);
    }
    sourceDir.entries.delete(source.parts.at(-1)!);
    targetDir.entries.set(target.parts.at(-1)!, node);
  }

  /** Removes a file or a directory tree (not a volume's root); missing is fine. */
  removePath(path: string): void {
    const place = this.writablePlace(path);
    if (place.parts.length === 0) {
      throw new UsageError(
        'ARRAY_INVALID_PATH',
        `array "${this.name}": cannot remove the volume root ${path}`,
      );
    }
    const dir = lookup(place.tree, place.parts.slice(0, -1));
    if (dir?.kind === 'directory') dir.entries.delete(place.parts.at(-1)!);
  }

  private root(): string {
    return `/memory/${this.name}`;
  }

  private exportPath(volume: string, cloneId?: string): string {
    return cloneId === undefined
      ? posix.join(this.root(), volume)
      : posix.join(this.root(), CLONES, cloneId, volume);
  }

  private volumeFilePath(volume: string, relativePath: string): string {
    if (!this.volumes.has(volume)) throw unknownVolume(this.name, volume);
    return posix.join(this.exportPath(volume), ...fileComponents(relativePath, volume));
  }

  /** Which tree a host path falls in (live volume, clone volume or snapshot volume) and the rest of it. */
  private locate(path: string):
    | {
        kind: 'volume' | 'clone' | 'snapshot';
        cloneId?: string;
        volume: string;
        /** Undefined for a clone that is gone. */
        tree: MemDir | undefined;
        parts: string[];
      }
    | undefined {
    if (typeof path !== 'string' || !path.startsWith('/')) return undefined;
    const parts = posix
      .resolve(path)
      .split('/')
      .filter((p) => p !== '');
    if (parts[0] !== 'memory' || parts[1] !== this.name) return undefined;
    const [first, second, third] = parts.slice(2);
    if (first === CLONES || first === SNAPSHOTS) {
      if (second === undefined || third === undefined) return undefined;
      const tree =
        first === CLONES
          ? this.clones.get(second)?.trees.get(third)
          : this.snapshots.get(second)?.trees.get(third);
      // A clone that is gone still names its volume: resolveExport must recognise it.
      return first === CLONES
        ? { kind: 'clone', cloneId: second, volume: third, tree, parts: parts.slice(5) }
        : tree && { kind: 'snapshot', volume: third, tree, parts: parts.slice(5) };
    }
    const volume = first === undefined ? undefined : this.volumes.get(first);
    if (volume === undefined) return undefined;
    return { kind: 'volume', volume: first!, tree: volume.tree, parts: parts.slice(3) };
  }

  private nodeAt(path: string): MemNode | undefined {
    const place = this.locate(path);
    return place?.tree && lookup(place.tree, place.parts);
  }

  private writablePlace(path: string): { tree: MemDir; parts: string[] } {
    const place = this.locate(path);
    if (place?.tree === undefined || place.kind === 'snapshot') {
      throw new UsageError(
        'ARRAY_INVALID_PATH',
        `array "${this.name}": ${path} is not a writable export path`,
      );
    }
    return { tree: place.tree, parts: place.parts };
  }

  private writableDir(place: { tree: MemDir }, parts: string[]): MemDir {
    let dir = place.tree;
    for (const p of parts) {
      const next = dir.entries.get(p) ?? new MemDir();
      if (next.kind !== 'directory') {
        throw new ConflictError(
          'ARRAY_NOT_A_DIRECTORY',
          `array "${this.name}": ${p} is a file, not a directory`,
        );
      }
      dir.entries.set(p, next);
      dir = next;
    }
    return dir;
  }

  /** The file at a writable path, made if missing, and copied first if a snapshot or clone shares it. */
  private writableFile(path: string): MemFile {
    const place = this.writablePlace(path);
    if (place.parts.length === 0) {
      throw new UsageError('ARRAY_INVALID_PATH', `array "${this.name}": ${path} is a volume, not a file`);
    }
    const dir = this.writableDir(place, place.parts.slice(0, -1));
    const name = place.parts.at(-1)!;
    const existing = dir.entries.get(name);
    if (existing?.kind === 'directory') {
      throw new ConflictError('ARRAY_NOT_A_FILE', `array "${this.name}": ${path} is a directory`);
    }
    const file = existing === undefined ? new MemFile() : existing.shared ? existing.copy() : existing;
    dir.entries.set(name, file);
    return file;
  }

  /** What a copying array spends its time on: progress per step, and an abort between steps. */
  private async pretendToCopy(trees: Map<string, MemDir>, options: SnapshotOptions): Promise<void> {
    if (this.instantClone) return;
    let total = 0;
    for (const tree of trees.values()) for (const f of tree.files()) total += f.size;
    let done = 0;
    for (const tree of trees.values()) {
      for (const f of tree.files()) {
        for (let left = f.size; left > 0; left -= PROGRESS_STEP) {
          options.signal?.throwIfAborted();
          done += Math.min(left, PROGRESS_STEP);
          options.onProgress?.(done, total);
          await nextTurn();
        }
      }
    }
    options.signal?.throwIfAborted();
  }

  private completeSnapshot(id: string): Snapshot {
    const snap = this.snapshots.get(id);
    if (!snap) throw noCompleteSnapshot(this.name, id);
    return snap;
  }

  private snapshotTree(id: string, volume: string): MemDir {
    const tree = this.completeSnapshot(id).trees.get(volume);
    if (!tree) throw volumeNotInSnapshot(this.name, id, volume);
    return tree;
  }

  private snapshotFile(id: string, volume: string, relativePath: string): MemFile {
    const parts = fileComponents(relativePath, volume);
    const node = lookup(this.snapshotTree(id, volume), parts);
    if (node?.kind !== 'file') throw noSuchEntry(this.name, 'file', relativePath, volume, id);
    return node;
  }
}

function listing(dir: MemDir): ArrayFileEntry[] {
  return [...dir.entries]
    .map(
      ([name, node]): ArrayFileEntry =>
        node.kind === 'file' ? { name, type: 'file', size: node.size } : { name, type: 'directory', size: 0 },
    )
    .sort(byName);
}
