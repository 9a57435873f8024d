import { ConflictError, NotFoundError, UsageError } from '../errors.js';
import { type Hashes, hashes, knownSha256, ZERO_CHUNK } from './crypto.js';
import { RepositoryError } from './errors.js';
import {
  hashAlgorithmsOf,
  type KdfParams,
  type MasterKeys,
  newConfig,
  newMasterKeys,
  type RepositoryConfig,
  readConfig,
  saveContentNamed,
  unlock,
  writeConfig,
  writeKeyFile,
} from './format.js';
import {
  type BlobEntry,
  buildPack,
  ChunkIndex,
  type ChunkLocation,
  type IndexDocument,
  openIndex,
  type PackEntry,
  packIdOf,
  packKey,
  parsePackHeader,
  sealIndex,
} from './index-file.js';
import { acquireLock, isStale, listLocks } from './locks.js';
import { openManifest } from './manifest.js';
import { WorkerPool } from './pool.js';
import type {
  CheckIssue,
  CheckReport,
  Manifest,
  ManifestSummary,
  PruneReport,
  Repository,
  RepositoryBackend,
  RepositoryWriter,
  StoredFile,
  WriteProgress,
} from './types.js';
import { chunkLength, Writer } from './writer.js';

export interface InitOptions {
  /** Fixed chunk size (64 KiB, 256 KiB, 1 MiB or 4 MiB); default 64 KiB (docs/repository-format.md). */
  chunkSize?: number;
  /** Target pack size; default 16 MiB. */
  packSize?: number;
  zstdLevel?: number;
  /** scrypt parameters for key files; default N=2^16, r=8, p=1. N must be 2^15..2^17. */
  kdf?: Partial<KdfParams>;
  /**
   * 2 (the default: keyed BLAKE3 chunk ids, BLAKE3 object names) or 1 (HMAC-SHA256 ids, SHA-256 names), for
   * a repository an older snapkeeper must still open (docs/repository-format.md, "Versions").
   */
  formatVersion?: number;
}

export interface OpenOptions {
  signal?: AbortSignal;
  /** Worker threads for hashing, compression and encryption; default os.availableParallelism(). */
  workers?: number;
}

/** Default age an unreferenced pack must reach before prune deletes it (longer than a lock's stale age). */
/**
 * Runs `fn` over `items`, at most `limit` at once. Rejects with the first failure once the running ones have
 * settled (no call is left running behind the caller's back).
 */
async function forEachLimited<T>(
  items: readonly T[],
  limit: number,
  fn: (item: T) => Promise<void>,
): Promise<void> {
  let next = 0;
  let failure: { err: unknown } | undefined;
  const lane = async () => {
    while (failure === undefined && next < items.length) {
      const item = items[next++]!;
      try {
        await fn(item);
      } catch (err) {
        failure ??= { err };
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, lane));
  if (failure !== undefined) throw failure.err;
}

/** Largest single ranged load a restore makes (blobs of one pack). */
const RESTORE_READ_BYTES = 20 << 20;
/** Blobs of one pack this close to each other are read in one load (the bytes between are read and dropped). */
const RESTORE_GAP_BYTES = 4 << 20;
/** Sealed bytes a restore has asked for and not yet written. */
const RESTORE_AHEAD_BYTES = 64 << 20;
/** Ranged loads a restore has in flight at most. */
const RESTORE_READS = 6;
/** Prune rewrites a pack whose needed blobs take less than this share of it. */
const REWRITE_BELOW = 0.5;

/**
 * Buffers of RESTORE_READ_BYTES a restore's loads are read into and its plaintexts written from, reused: made
 * afresh for every load, gigabytes of them cost the main thread more in page faults and garbage collection
 * than the writes. Shared memory: a worker reads and writes it in place (a transferred buffer's arrival and
 * detachment cost the main thread garbage collections of its own); two per load in flight.
 */
class RestoreBuffers {
  private readonly free: SharedArrayBuffer[] = [];

  take(): SharedArrayBuffer {
    return this.free.pop() ?? new SharedArrayBuffer(RESTORE_READ_BYTES);
  }

  give(b: SharedArrayBuffer): void {
    this.free.push(b);
  }
}

/** A chunk a restore needs: where it is stored and the chunk indexes of the file it fills. */
interface RestoreBlob {
  loc: ChunkLocation;
  places: number[];
  rawLength: number;
}

/** One ranged load of a restore: `bytes` from `offset` of a pack, holding `blobs`. */
interface RestoreRead {
  pack: string;
  offset: number;
  bytes: number;
  /** The plaintexts' bytes (at most RESTORE_READ_BYTES, so that they fit a buffer of `RestoreBuffers`). */
  rawBytes: number;
  blobs: RestoreBlob[];
  /** The first chunk index it fills (loads are made in this order). */
  first: number;
}

export const DEFAULT_SAFETY_DELAY_MS = 60 * 60_000;

/**
 * Creates a repository on an empty backend: the config object, then one key file. Refused
 * (`REPOSITORY_EXISTS`) where a config object exists. Returns it opened.
 */
export async function initRepository(
  backend: RepositoryBackend,
  passphrase: string,
  options: InitOptions & OpenOptions = {},
): Promise<Repository> {
  const config = newConfig(options);
  if ((await backend.stat('config', { signal: options.signal })) !== undefined) {
    throw new RepositoryError('REPOSITORY_EXISTS', `${backend.description}: a repository exists here`);
  }
  const keys = newMasterKeys();
  // The key file first: a config without a key would be a repository nobody can open. A crash between the two
  // leaves a key file and no config, and init can be run again.
  const keyName = await writeKeyFile(backend, config, keys, passphrase);
  await writeConfig(backend, config);
  return new OpenRepository(backend, config, keys, keyName, options.workers);
}

/**
 * Opens a repository: reads the config (another format or version: `REPOSITORY_FORMAT`), then unlocks a key
 * file with the passphrase (none opens: `REPOSITORY_PASSPHRASE`).
 */
export async function openRepository(
  backend: RepositoryBackend,
  passphrase: string,
  options: OpenOptions = {},
): Promise<Repository> {
  const config = await readConfig(backend, options.signal);
  // The index files are loaded while scrypt derives the key (a few hundred ms of a core): most commands read
  // them next, and their bytes need the key only to be opened.
  const prefetch = prefetchIndexes(backend, options.signal);
  let unlocked: { keys: MasterKeys; keyName: string };
  try {
    unlocked = await unlock(backend, config, passphrase, options.signal);
  } catch (err) {
    await prefetch;
    throw err;
  }
  return new OpenRepository(backend, config, unlocked.keys, unlocked.keyName, options.workers, prefetch);
}

/** Index bytes loaded at most while opening (more is loaded when needed). */
const PREFETCH_INDEX_BYTES = 64 << 20;

/**
 * The bytes of the index files, by key, up to PREFETCH_INDEX_BYTES; never rejects (a failure leaves the file
 * to be loaded when needed, which reports it). Index files are content-named and never change: bytes loaded
 * now are the file's as long as its key is listed.
 */
async function prefetchIndexes(
  backend: RepositoryBackend,
  signal?: AbortSignal,
): Promise<Map<string, Buffer>> {
  const out = new Map<string, Buffer>();
  try {
    const keys: string[] = [];
    let bytes = 0;
    for await (const o of backend.list('index/', { signal })) {
      if (bytes + o.size > PREFETCH_INDEX_BYTES) continue;
      bytes += o.size;
      keys.push(o.key);
    }
    await forEachLimited(keys, 8, async (key) => {
      out.set(key, await backend.load(key, { signal }));
    });
  } catch {
    // Loaded again when needed.
  }
  return out;
}

async function listKeys(backend: RepositoryBackend, prefix: string, signal?: AbortSignal) {
  const out = new Map<string, number>();
  for await (const o of backend.list(prefix, { signal })) out.set(o.key, o.size);
  return out;
}

class OpenRepository implements Repository {
  readonly id: string;
  private poolInstance: WorkerPool | undefined;
  /** Chunk ids and object names by the config's algorithms (format version 1 or 2). */
  private readonly hashes: Hashes;
  /** Index files read so far (restore reuses them; writers and prune read all afresh). */
  private cached = new ChunkIndex();
  private readonly cachedNames = new Set<string>();

  constructor(
    readonly backend: RepositoryBackend,
    readonly config: RepositoryConfig,
    private readonly keys: MasterKeys,
    private keyName: string,
    private readonly workers: number | undefined,
    /** Index bytes loaded while the key was derived: taken by the first `readIndexes`. */
    private prefetched?: Promise<Map<string, Buffer>>,
  ) {
    this.id = config.id;
    this.hashes = hashes(hashAlgorithmsOf(config), keys.macKey);
  }

  private get pool(): WorkerPool {
    this.poolInstance ??= new WorkerPool(
      this.keys,
      this.config.compression.level,
      this.hashes.algorithms,
      this.workers,
    );
    return this.poolInstance;
  }

  /** Reads every index file; corrupt ones are left out (check reports them) and returned by name. */
  private async readIndexes(
    signal?: AbortSignal,
    into = new ChunkIndex(),
    skip = new Set<string>(),
  ): Promise<{ index: ChunkIndex; names: string[]; corrupt: string[] }> {
    const names: string[] = [];
    const corrupt: string[] = [];
    const keys = [...(await listKeys(this.backend, 'index/', signal)).keys()].sort();
    names.push(...keys);
    const prefetched = await this.prefetched;
    this.prefetched = undefined;
    const docs = new Map<string, IndexDocument>();
    // Loaded several at once (object storage answers slowly, in parallel), added in name order.
    await forEachLimited(
      keys.filter((k) => !skip.has(k)),
      8,
      async (key) => {
        let data: Buffer;
        try {
          data = prefetched?.get(key) ?? (await this.backend.load(key, { signal }));
        } catch (err) {
          if (err instanceof NotFoundError) return; // removed by a prune meanwhile
          throw err;
        }
        const doc =
          this.hashes.contentName(data) === packIdOf(key) ? openIndex(this.keys.encKey, data) : undefined;
        if (doc === undefined) corrupt.push(key);
        else docs.set(key, doc);
      },
    );
    for (const key of keys) {
      const doc = docs.get(key);
      if (doc !== undefined) into.add(doc);
    }
    corrupt.sort();
    return { index: into, names, corrupt };
  }

  async writer(options: { signal?: AbortSignal; onProgress?: (p: WriteProgress) => void } = {}) {
    // The workers start first: their threads boot (tens of ms each) while the lock is taken and the indexes
    // are read, instead of after, when the first chunks are waiting for them.
    const pool = this.pool;
    const lock = await acquireLock(this.backend, 'shared', { signal: options.signal });
    try {
      // The packs are listed while the indexes are read and opened (both after the lock is held).
      const listing = listKeys(this.backend, 'packs/', options.signal);
      listing.catch(() => undefined); // awaited below
      const { index } = await this.readIndexes(options.signal);
      // Packs no index names (a writer killed before its index, or one running now) are described by their
      // own headers: this writer reuses their chunks and names the packs in its own index.
      const adopted: PackEntry[] = [];
      for (const [key, size] of await listing) {
        const id = packIdOf(key);
        if (index.pack(id) !== undefined) continue;
        const header = await this.readPackHeader(key, size, options.signal);
        if (header === undefined) continue;
        const entry = { id, size, created: header.created, blobs: header.blobs };
        index.addPack(entry);
        adopted.push(entry);
      }
      const w: RepositoryWriter = new Writer({
        backend: this.backend,
        config: this.config,
        keys: this.keys,
        hashes: this.hashes,
        pool,
        index,
        adopted,
        lock,
        signal: options.signal,
        onProgress: options.onProgress,
      });
      return w;
    } catch (err) {
      await lock.release().catch(() => undefined);
      throw err;
    }
  }

  private async manifestKeys(signal?: AbortSignal): Promise<string[]> {
    return [...(await listKeys(this.backend, 'manifests/', signal)).keys()];
  }

  private async readManifest(key: string, signal?: AbortSignal): Promise<Manifest | undefined> {
    const data = await this.backend.load(key, { signal });
    const id = packIdOf(key);
    return this.hashes.contentName(data) === id ? openManifest(this.keys.encKey, id, data) : undefined;
  }

  async listManifests(options: { signal?: AbortSignal } = {}): Promise<ManifestSummary[]> {
    const out: ManifestSummary[] = [];
    // Several at once: each is a round trip to the backend.
    await forEachLimited(await this.manifestKeys(options.signal), 8, async (key) => {
      let m: Manifest | undefined;
      try {
        m = await this.readManifest(key, options.signal);
      } catch (err) {
        if (err instanceof NotFoundError) return;
        throw err;
      }
      // A corrupt manifest is left out here; check names it.
      if (m === undefined) return;
      const { body: _body, ...summary } = m;
      out.push(summary);
    });
    return out.sort((a, b) => a.startedAt.localeCompare(b.startedAt) || a.id.localeCompare(b.id));
  }

  async loadManifest(idOrBackupId: string): Promise<Manifest> {
    if (/^[0-9a-f]{64}$/.test(idOrBackupId)) {
      const key = `manifests/${idOrBackupId}`;
      if ((await this.backend.stat(key)) !== undefined) {
        const m = await this.readManifest(key);
        if (m === undefined) {
          throw new RepositoryError(
            'MANIFEST_CORRUPT',
            `${this.backend.description}: manifest ${key} is corrupt`,
            {
              details: { object: key },
            },
          );
        }
        return m;
      }
    }
    const found = (await this.listManifests()).filter((s) => s.backupId === idOrBackupId);
    if (found.length > 1) {
      throw new ConflictError(
        'REPOSITORY_BACKUP_AMBIGUOUS',
        `backup ${idOrBackupId} has ${found.length} manifests in ${this.backend.description} ` +
          `(${found.map((f) => f.id).join(', ')}): name one by its manifest id`,
      );
    }
    if (found.length === 0) {
      throw new NotFoundError(
        'REPOSITORY_BACKUP_NOT_FOUND',
        `no manifest or backup ${idOrBackupId} in ${this.backend.description}`,
      );
    }
    return (await this.loadManifest(found[0]!.id)) as Manifest;
  }

  async restoreFile(
    file: StoredFile,
    sink: { write(offset: number, data: Buffer): Promise<void> },
    options: { signal?: AbortSignal; onProgress?: (done: number, total: number) => void } = {},
  ): Promise<void> {
    const { signal } = options;
    const cs = file.chunkSize;
    if (!Number.isSafeInteger(cs) || cs <= 0 || file.chunks.length !== Math.ceil(file.size / cs)) {
      throw new RepositoryError(
        'MANIFEST_CORRUPT',
        `${file.path}: ${file.chunks.length} chunks of ${cs} bytes do not make ${file.size} bytes`,
      );
    }
    if (file.chunks.some((id) => id !== ZERO_CHUNK && !this.cached.has(id))) {
      await this.readIndexes(signal, this.cached, this.cachedNames).then(({ names }) => {
        for (const n of names) this.cachedNames.add(n);
      });
    }
    const { reads, zeroBytes } = this.restoreReads(file);
    const buffers = new RestoreBuffers();
    let done = zeroBytes;
    if (done > 0) options.onProgress?.(done, file.size);
    // Reads in flight: up to RESTORE_AHEAD_BYTES of sealed data (each read's plaintext is written, out of
    // order, as soon as a worker has opened and verified it), at least one, at most RESTORE_READS.
    let ahead = 0;
    let failure: { err: unknown } | undefined;
    const running = new Set<Promise<void>>();
    for (const r of reads) {
      while (
        failure === undefined &&
        running.size > 0 &&
        (running.size >= RESTORE_READS || ahead + r.bytes > RESTORE_AHEAD_BYTES)
      ) {
        await Promise.race(running);
      }
      if (failure !== undefined) break;
      if (signal?.aborted) {
        failure = { err: signal.reason };
        break;
      }
      ahead += r.bytes;
      const p: Promise<void> = this.restoreRead(file, r, sink, buffers, signal)
        .then((bytes) => {
          done += bytes;
          options.onProgress?.(done, file.size);
        })
        .catch((err: unknown) => {
          failure ??= { err };
        })
        .finally(() => {
          ahead -= r.bytes;
          running.delete(p);
        });
      running.add(p);
    }
    // Never leaves a read or a write running behind the caller's back (it removes the file on failure).
    await Promise.all(running);
    if (failure !== undefined) throw failure.err;
    // Zero chunks are not written (the sink stays sparse); the last byte makes the size right.
    if (file.size > 0 && file.chunks[file.chunks.length - 1] === ZERO_CHUNK) {
      await sink.write(file.size - 1, Buffer.alloc(1));
    }
  }

  /**
   * The ranged loads of a restore: every chunk the file needs, once (a chunk the file holds several times is
   * read once and written at each place), grouped by pack; the blobs of one pack lie in one load unless they
   * are more than RESTORE_GAP_BYTES apart or the load would pass RESTORE_READ_BYTES. Loads come in the order
   * of the first place they fill (roughly the file's order). A chunk in no index: CHUNK_MISSING, before
   * anything is written.
   */
  private restoreReads(file: StoredFile): { reads: RestoreRead[]; zeroBytes: number } {
    const cs = file.chunkSize;
    const wanted = new Map<string, { loc: ChunkLocation; places: number[]; rawLength: number }>();
    let zeroBytes = 0;
    for (let i = 0; i < file.chunks.length; i++) {
      const id = file.chunks[i]!;
      if (id === ZERO_CHUNK) {
        zeroBytes += chunkLength(file.size, cs, i);
        continue;
      }
      const w = wanted.get(id);
      if (w !== undefined) {
        w.places.push(i);
        continue;
      }
      const loc = this.cached.get(id);
      if (loc === undefined) {
        throw new RepositoryError(
          'CHUNK_MISSING',
          `chunk ${id} of ${file.path} (at byte ${i * cs}) is in no index of ${this.backend.description}`,
          { details: { chunk: id, file: file.path } },
        );
      }
      wanted.set(id, { loc, places: [i], rawLength: chunkLength(file.size, cs, i) });
    }
    const byPack = new Map<string, RestoreBlob[]>();
    for (const w of wanted.values()) {
      const list = byPack.get(w.loc.pack);
      if (list === undefined) byPack.set(w.loc.pack, [w]);
      else list.push(w);
    }
    const reads: RestoreRead[] = [];
    for (const [pack, blobs] of byPack) {
      blobs.sort((x, y) => x.loc.offset - y.loc.offset);
      let r: RestoreRead | undefined;
      for (const b of blobs) {
        const end = b.loc.offset + b.loc.length;
        if (
          r !== undefined &&
          b.loc.offset - (r.offset + r.bytes) <= RESTORE_GAP_BYTES &&
          end - r.offset <= RESTORE_READ_BYTES &&
          r.rawBytes + b.rawLength <= RESTORE_READ_BYTES
        ) {
          r.blobs.push(b);
          r.bytes = end - r.offset;
          r.rawBytes += b.rawLength;
          r.first = Math.min(r.first, b.places[0]!);
          continue;
        }
        r = {
          pack,
          offset: b.loc.offset,
          bytes: b.loc.length,
          rawBytes: b.rawLength,
          blobs: [b],
          first: b.places[0]!,
        };
        reads.push(r);
      }
    }
    reads.sort((x, y) => x.first - y.first);
    return { reads, zeroBytes };
  }

  /**
   * One ranged load of a restore: loaded, every blob opened and verified on a worker, then each chunk written
   * at its places (consecutive places of consecutive blobs in one write). Nothing of it is written unless
   * every blob verifies. Resolves the bytes written.
   */
  private async restoreRead(
    file: StoredFile,
    r: RestoreRead,
    sink: { write(offset: number, data: Buffer): Promise<void> },
    buffers: RestoreBuffers,
    signal?: AbortSignal,
  ): Promise<number> {
    const cs = file.chunkSize;
    const key = packKey(r.pack);
    const first = r.blobs[0]!;
    let data: Buffer;
    const input = buffers.take();
    const output = buffers.take();
    const release = () => {
      buffers.give(input);
      buffers.give(output);
    };
    try {
      data = await this.backend.load(key, {
        offset: r.offset,
        length: r.bytes,
        signal,
        into: new Uint8Array(input),
      });
    } catch (err) {
      release();
      if (err instanceof NotFoundError) {
        throw new RepositoryError(
          'CHUNK_MISSING',
          `chunk ${first.loc.id} of ${file.path}: its pack ${key} is missing`,
          { cause: err, details: { chunk: first.loc.id, pack: r.pack, file: file.path } },
        );
      }
      throw err;
    }
    const corrupt = (b: RestoreBlob, reason: string) =>
      new RepositoryError('CHUNK_CORRUPT', `chunk ${b.loc.id} of ${file.path} in pack ${key} ${reason}`, {
        details: { chunk: b.loc.id, pack: r.pack, file: file.path },
      });
    const cut = r.blobs.find((b) => b.loc.offset - r.offset + b.loc.length > data.length);
    if (cut !== undefined) {
      release();
      throw corrupt(cut, `is cut short (the pack ends ${data.length + r.offset} bytes in)`);
    }
    const blobs = r.blobs.map((b) => ({
      id: b.loc.id,
      offset: b.loc.offset - r.offset,
      length: b.loc.length,
      rawLength: b.rawLength,
    }));
    // Read into our shared buffer (the local backend), or a buffer of the backend's own (copied in: a
    // backend's buffer is transferred otherwise, which costs more than the copy).
    if (data.buffer !== input || data.byteOffset !== 0) Buffer.from(input).set(data);
    let opened: { plain: Buffer; failures: { index: number; reason: string }[] };
    try {
      opened = await this.pool.openInto(input, data.length, output, blobs);
    } catch (err) {
      release();
      throw err;
    }
    const { plain, failures } = opened;
    if (failures.length > 0) {
      release();
      throw corrupt(r.blobs[failures[0]!.index]!, failures[0]!.reason);
    }
    if (signal?.aborted) {
      release();
      signal.throwIfAborted();
    }
    // Places in file order, each with its plaintext; runs of consecutive chunks whose plaintexts lie end to
    // end make one write.
    const places: { index: number; at: number; length: number }[] = [];
    let at = 0;
    for (const b of r.blobs) {
      for (const index of b.places) places.push({ index, at, length: b.rawLength });
      at += b.rawLength;
    }
    places.sort((x, y) => x.index - y.index);
    const writes: Promise<void>[] = [];
    let bytes = 0;
    for (let k = 0; k < places.length; ) {
      const p = places[k]!;
      let j = k;
      let length = p.length;
      while (
        j + 1 < places.length &&
        places[j + 1]!.index === places[j]!.index + 1 &&
        places[j + 1]!.at === places[j]!.at + places[j]!.length
      ) {
        j++;
        length += places[j]!.length;
      }
      writes.push(sink.write(p.index * cs, plain.subarray(p.at, p.at + length)));
      bytes += length;
      k = j + 1;
    }
    // Every write settles before this read does (the caller may remove the file once a read fails).
    const settled = await Promise.allSettled(writes);
    release();
    const failed = settled.find((s) => s.status === 'rejected');
    if (failed !== undefined) throw (failed as PromiseRejectedResult).reason;
    return bytes;
  }

  async forget(manifestId: string): Promise<void> {
    const key = `manifests/${manifestId}`;
    if (!/^[0-9a-f]{64}$/.test(manifestId) || (await this.backend.stat(key)) === undefined) {
      throw new NotFoundError(
        'REPOSITORY_BACKUP_NOT_FOUND',
        `no manifest ${manifestId} in ${this.backend.description}`,
      );
    }
    await this.backend.remove(key);
  }

  async check(options: { readData?: boolean; signal?: AbortSignal } = {}): Promise<CheckReport> {
    const { signal } = options;
    const issues: CheckIssue[] = [];
    const { index, corrupt } = await this.readIndexes(signal);
    for (const key of corrupt) {
      issues.push({
        code: 'INDEX_CORRUPT',
        object: key,
        message: `index ${key} does not authenticate or parse`,
      });
    }
    const packsStored = await listKeys(this.backend, 'packs/', signal);
    for (const pack of index.packList()) {
      const key = packKey(pack.id);
      const size = packsStored.get(key);
      if (size === undefined) {
        issues.push({
          code: 'PACK_MISSING',
          object: key,
          message: `pack ${key} named by an index is missing`,
        });
      } else if (size !== pack.size) {
        issues.push({
          code: size < pack.size ? 'PACK_TRUNCATED' : 'PACK_SIZE',
          object: key,
          message: `pack ${key} is ${size} bytes, its index says ${pack.size}`,
        });
      }
    }
    let manifests = 0;
    const missing = new Set<string>();
    for (const key of await this.manifestKeys(signal)) {
      signal?.throwIfAborted();
      let m: Manifest | undefined;
      try {
        m = await this.readManifest(key, signal);
      } catch (err) {
        if (err instanceof NotFoundError) continue;
        throw err;
      }
      manifests++;
      if (m === undefined) {
        issues.push({
          code: 'MANIFEST_CORRUPT',
          object: key,
          message: `manifest ${key} does not authenticate or parse`,
        });
        continue;
      }
      for (const vm of m.body.vms) {
        for (const f of vm.files) {
          for (const id of f.chunks) {
            if (id === ZERO_CHUNK || index.has(id) || missing.has(id)) continue;
            missing.add(id);
            issues.push({
              code: 'CHUNK_MISSING',
              object: key,
              message: `chunk ${id} of ${vm.name}/${f.path} (backup ${m.backupId}) is in no index`,
            });
          }
        }
      }
    }
    let bytesRead = 0;
    if (options.readData) {
      // Three packs at once: one loading, others verifying on the workers.
      await forEachLimited(index.packEntries(), 3, async (pack) => {
        const key = packKey(pack.id);
        if (!packsStored.has(key)) return;
        const data = await this.backend.load(key, { signal });
        bytesRead += data.length;
        // Before the bytes go to a worker (transferred: `data` is empty afterwards).
        const named = this.hashes.contentName(data) === pack.id;
        const size = data.length;
        const whole = pack.blobs.filter((b) => b.offset + b.length <= data.length);
        const reasons = new Map<string, string>();
        for (const b of pack.blobs) {
          if (b.offset + b.length > size) reasons.set(b.id, `is cut short (the pack is ${size} bytes)`);
        }
        const { failures } = await this.pool.open(data, whole, true);
        for (const f of failures) reasons.set(whole[f.index]!.id, f.reason);
        let bad = 0;
        for (const [id, reason] of reasons) {
          bad++;
          issues.push({
            code: 'CHUNK_CORRUPT',
            object: key,
            message: `chunk ${id} in pack ${key} ${reason}`,
          });
        }
        if (bad === 0 && !named) {
          issues.push({ code: 'PACK_CORRUPT', object: key, message: `pack ${key} does not match its name` });
        }
      });
    }
    return {
      ok: issues.length === 0,
      manifests,
      packs: index.packCount,
      chunks: index.chunkCount,
      bytesRead,
      issues,
    };
  }

  async prune(
    options: { safetyDelayMs?: number; now?: Date; signal?: AbortSignal } = {},
  ): Promise<PruneReport> {
    const { signal } = options;
    const delay = options.safetyDelayMs ?? DEFAULT_SAFETY_DELAY_MS;
    if (!Number.isFinite(delay) || delay < 0) {
      throw new UsageError('REPOSITORY_OPTIONS', `safety delay ${delay} ms is not a duration`);
    }
    const now = options.now ?? new Date();
    const lock = await acquireLock(this.backend, 'exclusive', { signal });
    try {
      // Locks of dead runs go first (ours is fresh).
      for (const l of await listLocks(this.backend, signal)) {
        if (l.key !== lock.key && (l.lock === undefined || isStale(l.lock, now)))
          await this.backend.remove(l.key);
      }
      const referenced = new Set<string>();
      for (const key of await this.manifestKeys(signal)) {
        const m = await this.readManifest(key, signal).catch((err: unknown) => {
          if (err instanceof NotFoundError) return null;
          throw err;
        });
        if (m === null) continue;
        if (m === undefined) {
          throw new RepositoryError(
            'MANIFEST_CORRUPT',
            `prune refused: manifest ${key} does not open, so what it references is unknown (forget it first)`,
            { details: { object: key } },
          );
        }
        for (const vm of m.body.vms) for (const f of vm.files) for (const id of f.chunks) referenced.add(id);
      }
      const { index, names: indexNames } = await this.readIndexes(signal);
      const indexed = new Map(index.packEntries().map((p) => [p.id, p]));
      const packsStored = await listKeys(this.backend, 'packs/', signal);
      // Every pack present, with its blobs: from the indexes, else from its own header (a writer that died
      // before its index; or an index that was lost).
      const packs: PackEntry[] = [];
      let adopted = 0;
      for (const [key, size] of packsStored) {
        const id = packIdOf(key);
        const entry = indexed.get(id);
        if (entry !== undefined && entry.size === size) {
          packs.push(entry);
          continue;
        }
        const header = await this.readPackHeader(key, size, signal);
        packs.push({
          id,
          size,
          created: header?.created ?? new Date(0).toISOString(),
          blobs: header?.blobs ?? [],
        });
        adopted++;
      }
      // Which copy of each chunk counts: one per chunk, among the packs present (a copy in a second pack, left
      // by two writers storing it at once or by an interrupted rewrite, is not needed).
      const present = new ChunkIndex();
      for (const p of packs) present.addPack(p);
      const keep: PackEntry[] = [];
      const remove: PackEntry[] = [];
      const rewrite: { pack: PackEntry; needed: BlobEntry[] }[] = [];
      let pending = 0;
      for (const p of packs) {
        const old = now.getTime() - Date.parse(p.created) >= delay || !Number.isFinite(Date.parse(p.created));
        const needed = p.blobs.filter((b) => referenced.has(b.id) && present.get(b.id)?.pack === p.id);
        const neededBytes = needed.reduce((n, b) => n + b.length, 0);
        if (needed.length === 0) {
          if (old) remove.push(p);
          else {
            keep.push(p);
            pending++;
          }
        } else if (old && neededBytes < p.size * REWRITE_BELOW) {
          rewrite.push({ pack: p, needed });
        } else {
          keep.push(p);
        }
      }
      // Partly used packs: their needed blobs are copied as they are (sealed, bound to their chunk id, not to a
      // pack) into new packs, saved before the index that names them.
      let bytesWritten = 0;
      let builder: { blobs: Buffer[]; entries: BlobEntry[]; size: number } = {
        blobs: [],
        entries: [],
        size: 0,
      };
      const flush = async () => {
        if (builder.entries.length === 0) return;
        const created = now.toISOString();
        const pack = buildPack(this.keys.encKey, builder.blobs, {
          version: 1,
          created,
          blobs: builder.entries,
        });
        const id = this.hashes.contentName(pack.pieces);
        try {
          await this.backend.save(packKey(id), pack.pieces, { signal, ...knownSha256(this.hashes, id) });
        } catch (err) {
          if (!(err instanceof ConflictError)) throw err;
        }
        keep.push({ id, size: pack.size, created, blobs: builder.entries });
        bytesWritten += pack.size;
        builder = { blobs: [], entries: [], size: 0 };
      };
      for (const { pack, needed } of rewrite) {
        const data = await this.backend.load(packKey(pack.id), { signal });
        for (const b of needed) {
          const blob = data.subarray(b.offset, b.offset + b.length);
          if (blob.length !== b.length) {
            throw new RepositoryError(
              'PACK_CORRUPT',
              `prune: pack ${packKey(pack.id)} is cut short; run check`,
              {
                details: { pack: pack.id },
              },
            );
          }
          builder.entries.push({ id: b.id, offset: builder.size, length: b.length, rawLength: b.rawLength });
          builder.blobs.push(Buffer.from(blob));
          builder.size += b.length;
          if (builder.size >= this.config.packSize) await flush();
        }
        remove.push(pack);
      }
      await flush();
      const droppedFromIndex = [...indexed.keys()].some((id) => !packsStored.has(packKey(id)));
      if (remove.length === 0 && adopted === 0 && !droppedFromIndex && indexNames.length <= 1) {
        return { packsDeleted: 0, packsRewritten: 0, bytesFreed: 0, packsPending: pending };
      }
      // Crash-safe order: the new index (naming every pack kept) first, then the old indexes, then the packs.
      // Killed anywhere, every kept pack is in some index and no index names a deleted pack.
      let newName: string | undefined;
      if (keep.length > 0) {
        const doc: IndexDocument = { version: 1, created: now.toISOString(), packs: keep };
        newName = `index/${await saveContentNamed(this.backend, this.hashes, 'index/', sealIndex(this.keys.encKey, doc), signal)}`;
      }
      for (const name of indexNames) if (name !== newName) await this.backend.remove(name, { signal });
      let bytesFreed = 0;
      for (const p of remove) {
        await this.backend.remove(packKey(p.id), { signal });
        bytesFreed += p.size;
      }
      this.cached = new ChunkIndex();
      this.cachedNames.clear();
      return {
        packsDeleted: remove.length - rewrite.length,
        packsRewritten: rewrite.length,
        bytesFreed: bytesFreed - bytesWritten,
        packsPending: pending,
      };
    } finally {
      await lock.release().catch(() => undefined);
    }
  }

  private async readPackHeader(key: string, size: number, signal?: AbortSignal) {
    try {
      if (size < 4) return undefined;
      const tail = await this.backend.load(key, { offset: size - 4, length: 4, signal });
      const len = tail.readUInt32LE(0);
      if (len > size - 4) return undefined;
      const data = await this.backend.load(key, { offset: size - 4 - len, length: len + 4, signal });
      return parsePackHeader(this.keys.encKey, data);
    } catch (err) {
      if (err instanceof NotFoundError) return undefined;
      throw err;
    }
  }

  async changePassphrase(newPassphrase: string): Promise<void> {
    const name = await writeKeyFile(this.backend, this.config, this.keys, newPassphrase);
    await this.backend.remove(this.keyName);
    this.keyName = name;
  }

  async close(): Promise<void> {
    await this.poolInstance?.close();
    this.poolInstance = undefined;
  }
}
