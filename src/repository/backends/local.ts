import { randomBytes } from 'node:crypto';
import { close as closeCb, constants, type Dirent, open as openCb, read as readCb } from 'node:fs';
import { link, lstat, mkdir, open, opendir, readFile, stat, unlink } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { ConflictError, NotFoundError } from '../../errors.js';
import { StorageError } from '../errors.js';
import {
  type BackendCapabilities,
  type BackendObject,
  type BackendSaveOptions,
  type ObjectData,
  piecesOf,
  type RepositoryBackend,
} from '../types.js';

/** Names of files being written: never a key (keys may not have a segment starting with a dot). */
const TEMP_PREFIX = '.tmp-';
/** Writes go out in slices so that an abort stops a large write soon. */
const WRITE_SLICE = 8 * 1024 * 1024;

const openFd = promisify(openCb);
const closeFd = promisify(closeCb);
const readFd = promisify(readCb);

/** Files kept open for ranged loads (a restore reads a pack in many ranges: open, read, close each costs 3x). */
const OPEN_FILES = 16;

/**
 * Read-only descriptors of recently read files, least recently used closed first. A descriptor in use is
 * closed only once its last read is done. Objects are immutable (content-named packs): a descriptor never
 * sees other bytes than a fresh open would; `forget` drops a file being removed.
 */
class OpenFiles {
  private readonly files = new Map<string, { fd: Promise<number>; users: number; evicted: boolean }>();

  async read(path: string, buf: Buffer, offset: number): Promise<number> {
    let e = this.files.get(path);
    if (e === undefined) {
      e = { fd: openFd(path, 'r'), users: 0, evicted: false };
      this.files.set(path, e);
      e.fd.catch(() => this.files.get(path) === e && this.files.delete(path));
      if (this.files.size > OPEN_FILES) this.evict(this.files.keys().next().value!);
    } else {
      this.files.delete(path); // most recently used last
      this.files.set(path, e);
    }
    e.users++;
    try {
      const fd = await e.fd;
      let done = 0;
      while (done < buf.length) {
        const { bytesRead } = await readFd(fd, buf, done, buf.length - done, offset + done);
        if (bytesRead === 0) break;
        done += bytesRead;
      }
      return done;
    } finally {
      if (--e.users === 0 && e.evicted) this.close(e);
    }
  }

  forget(path: string): void {
    if (this.files.has(path)) this.evict(path);
  }

  private evict(path: string): void {
    const e = this.files.get(path)!;
    this.files.delete(path);
    e.evicted = true;
    if (e.users === 0) this.close(e);
  }

  private close(e: { fd: Promise<number> }): void {
    e.fd.then(closeFd).catch(() => undefined);
  }
}

export interface LocalBackendOptions {
  /** The repository's directory (made, with its parents, by the first save). */
  path: string;
  /**
   * fsync each object and its directory before `save` resolves (default true). Tests and benchmarks on
   * throw-away file systems may turn it off; a repository that must survive a power cut may not.
   */
  fsync?: boolean;
}

/**
 * A repository in a directory: key `packs/ab/abcd` is the file `<path>/packs/ab/abcd`.
 *
 * `save` writes a temp file (`.tmp-<random>`) in the key's directory, fsyncs it, then `link()`s it to the
 * key's name and unlinks the temp name. link() fails with EEXIST when the name exists, so two writers racing
 * on one key never overwrite each other: exactly one wins, the other gets `OBJECT_EXISTS` (rename() would
 * silently replace). Then the directory is fsynced (and those of directories it had to create), so the name
 * survives a crash. A reader sees the whole object or nothing. A crash leaves at most a temp file, which
 * `list` never shows and `removeTemporaries` deletes.
 *
 * Keys are `/`-separated segments, each non-empty, not starting with `.` (so no `..`, no temp names), without
 * NUL or `\`; anything else is refused (`OBJECT_KEY_INVALID`), so no key reaches outside the directory.
 */
export class LocalBackend implements RepositoryBackend {
  readonly description: string;
  readonly capabilities: BackendCapabilities = { conditionalWrite: true, objectLock: false };
  readonly root: string;
  private readonly fsync: boolean;
  private readonly openFiles = new OpenFiles();

  constructor(options: LocalBackendOptions) {
    this.root = resolve(options.path);
    this.description = `local ${this.root}`;
    this.fsync = options.fsync ?? true;
  }

  /** The file of `key`; StorageError `OBJECT_KEY_INVALID` for a key that is not a safe relative path. */
  pathOf(key: string): string {
    const segments = key.split('/');
    const bad = segments.find((s) => s === '' || s.startsWith('.') || s.includes('\0') || s.includes('\\'));
    if (key === '' || bad !== undefined) {
      throw new StorageError(
        'OBJECT_KEY_INVALID',
        `${this.description}: invalid object key ${JSON.stringify(key)} (empty segment, leading dot, NUL or backslash)`,
        { details: { key } },
      );
    }
    return join(this.root, ...segments);
  }

  async save(key: string, data: ObjectData, options: BackendSaveOptions = {}): Promise<void> {
    const { signal } = options;
    const file = this.pathOf(key);
    if (options.retainUntil !== undefined) {
      throw new StorageError(
        'OBJECT_LOCK_UNSUPPORTED',
        `${this.description}: a directory cannot hold ${key} under retention`,
        { details: { key } },
      );
    }
    signal?.throwIfAborted();
    const dir = dirname(file);
    const temp = join(dir, `${TEMP_PREFIX}${randomBytes(8).toString('hex')}`);
    let tempMade = false;
    try {
      const created = await mkdir(dir, { recursive: true });
      const handle = await open(temp, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL, 0o644);
      tempMade = true;
      try {
        // The pieces as they are (no join), each in slices so that an abort is seen within a slice.
        for (const piece of piecesOf(data)) {
          for (let at = 0; at < piece.length; at += WRITE_SLICE) {
            signal?.throwIfAborted();
            const slice = piece.subarray(at, Math.min(piece.length, at + WRITE_SLICE));
            let written = 0;
            while (written < slice.length) {
              const r = await handle.write(slice, written, slice.length - written);
              written += r.bytesWritten;
            }
          }
        }
        if (this.fsync) await handle.sync();
      } finally {
        await handle.close();
      }
      signal?.throwIfAborted();
      try {
        await link(temp, file);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'EEXIST') {
          throw new ConflictError('OBJECT_EXISTS', `${this.description}: object ${key} exists`, {
            details: { key },
          });
        }
        throw err;
      }
      await unlink(temp);
      tempMade = false;
      if (this.fsync) {
        await syncDir(dir);
        // A directory made for this key is a new name in its parent: sync up to the first one made.
        if (created !== undefined) {
          for (let d = dir; d !== dirname(created) && d.startsWith(this.root); d = dirname(d)) {
            await syncDir(dirname(d));
          }
        }
      }
    } catch (err) {
      if (tempMade) await unlink(temp).catch(() => {});
      if (signal?.aborted) throw signal.reason;
      throw this.storageError('save', key, err);
    }
  }

  async load(
    key: string,
    options: { offset?: number; length?: number; signal?: AbortSignal; into?: Uint8Array } = {},
  ): Promise<Buffer> {
    const file = this.pathOf(key);
    options.signal?.throwIfAborted();
    try {
      if (options.offset === undefined && options.length === undefined) {
        return await readFile(file, options.signal ? { signal: options.signal } : {});
      }
      // A range past the end is cut short (the caller checks lengths): no stat, one read on a kept descriptor.
      const offset = options.offset ?? 0;
      const length = options.length ?? Math.max(0, (await stat(file)).size - offset);
      const into = options.into;
      const buf =
        into !== undefined && into.length >= length
          ? Buffer.from(into.buffer, into.byteOffset, length)
          : Buffer.allocUnsafeSlow(length);
      options.signal?.throwIfAborted();
      const done = await this.openFiles.read(file, buf, offset);
      return done === buf.length ? buf : buf.subarray(0, done);
    } catch (err) {
      if (options.signal?.aborted) throw options.signal.reason;
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ENOENT' || code === 'ENOTDIR' || code === 'EISDIR') {
        throw new NotFoundError('OBJECT_NOT_FOUND', `${this.description}: no object ${key}`, {
          details: { key },
        });
      }
      throw this.storageError('load', key, err);
    }
  }

  async stat(key: string, options: { signal?: AbortSignal } = {}): Promise<BackendObject | undefined> {
    const file = this.pathOf(key);
    options.signal?.throwIfAborted();
    try {
      const st = await stat(file);
      return st.isFile() ? { key, size: st.size } : undefined;
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ENOENT' || code === 'ENOTDIR') return undefined;
      throw this.storageError('stat', key, err);
    }
  }

  async *list(prefix: string, options: { signal?: AbortSignal } = {}): AsyncIterable<BackendObject> {
    // The directory that holds every key with this prefix: up to the prefix's last `/`.
    const cut = prefix.lastIndexOf('/');
    const base = cut < 0 ? '' : prefix.slice(0, cut);
    if (base !== '') this.pathOf(base);
    yield* this.walk(base, prefix, options.signal);
  }

  private async *walk(dirKey: string, prefix: string, signal?: AbortSignal): AsyncGenerator<BackendObject> {
    const dir = dirKey === '' ? this.root : join(this.root, ...dirKey.split('/'));
    let entries: AsyncIterable<Dirent>;
    try {
      entries = await opendir(dir, { bufferSize: 256 });
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ENOENT' || code === 'ENOTDIR') return;
      throw this.storageError('list', prefix, err);
    }
    for await (const e of entries) {
      signal?.throwIfAborted();
      if (e.name.startsWith('.')) continue;
      const key = dirKey === '' ? e.name : `${dirKey}/${e.name}`;
      if (e.isDirectory()) {
        // Descend only where keys with the prefix can be.
        if (key.startsWith(prefix) || prefix.startsWith(`${key}/`)) yield* this.walk(key, prefix, signal);
        continue;
      }
      if (!e.isFile() || !key.startsWith(prefix)) continue;
      try {
        const st = await lstat(join(dir, e.name));
        yield { key, size: st.size };
      } catch (err) {
        // Removed while listing: as on S3, it may or may not appear.
        if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw this.storageError('list', prefix, err);
      }
    }
  }

  async remove(key: string, options: { signal?: AbortSignal } = {}): Promise<void> {
    const file = this.pathOf(key);
    options.signal?.throwIfAborted();
    this.openFiles.forget(file);
    try {
      await unlink(file);
      if (this.fsync) await syncDir(dirname(file));
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ENOENT' || code === 'ENOTDIR') return;
      throw this.storageError('remove', key, err);
    }
  }

  /**
   * Deletes temp files that writers left (killed mid-save) older than `olderThanMs` (default one hour: a
   * younger one may belong to a save in progress). Returns how many. For prune.
   */
  async removeTemporaries(options: { olderThanMs?: number; now?: Date } = {}): Promise<number> {
    const limit = (options.now ?? new Date()).getTime() - (options.olderThanMs ?? 3_600_000);
    let removed = 0;
    const visit = async (dir: string): Promise<void> => {
      let dh: AsyncIterable<Dirent>;
      try {
        dh = await opendir(dir);
      } catch {
        return;
      }
      for await (const e of dh) {
        const p = join(dir, e.name);
        if (e.isDirectory()) await visit(p);
        else if (e.isFile() && e.name.startsWith(TEMP_PREFIX)) {
          const st = await lstat(p).catch(() => undefined);
          if (
            st &&
            st.mtimeMs < limit &&
            (await unlink(p).then(
              () => true,
              () => false,
            ))
          )
            removed++;
        }
      }
    };
    await visit(this.root);
    return removed;
  }

  private storageError(op: string, key: string, err: unknown): Error {
    if (err instanceof ConflictError || err instanceof NotFoundError || err instanceof StorageError)
      return err;
    const e = err as NodeJS.ErrnoException;
    if (e.code === 'ENOSPC' || e.code === 'EDQUOT') {
      return new StorageError(
        'STORAGE_FULL',
        `${this.description}: no space left to ${op} ${key} (the file system of ${this.root} is full; nothing was stored under that key)`,
        { cause: err, details: { key, repository: this.root } },
      );
    }
    return new StorageError(
      'STORAGE_FAILED',
      `${this.description}: cannot ${op} ${key}: ${e.code ?? ''}${e.code ? ' ' : ''}${e.message}`,
      { cause: err, details: { key, repository: this.root } },
    );
  }
}

async function syncDir(dir: string): Promise<void> {
  const h = await open(dir, 'r');
  try {
    await h.sync();
  } finally {
    await h.close();
  }
}
