import { ConflictError, NotFoundError, UsageError } from '../errors.js';
import { contentName, ZERO_CHUNK } from './crypto.js';
import { RepositoryError } from './errors.js';
import {
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

/** Largest single ranged load a restore makes (consecutive chunks of one pack). */
const GROUP_BYTES = 8 << 20;
/** Sealed bytes a restore has asked for and not yet written. */
const RESTORE_AHEAD_BYTES = 32 << 20;
/** Prune rewrites a pack whose needed blobs take less than this share of it. */
const REWRITE_BELOW = 0.5;

interface RestoreGroup {
  first: number;
  count: number;
  pack: string | undefined;
  bytes: number;
  blobs: ChunkLocation[];
  /** For each blob: the chunk's index in the file, and its plaintext length. */
  chunkIndex: number[];
  rawLengths: number[];
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
  const { keys, keyName } = await unlock(backend, config, passphrase, options.signal);
  return new OpenRepository(backend, config, keys, keyName, options.workers);
}

async function listKeys(backend: RepositoryBackend, prefix: string, signal?: AbortSignal) {
  const out = new Map<string, number>();
  for await (const o of backend.list(prefix, { signal })) out.set(o.key, o.size);
  return out;
}

class OpenRepository implements Repository {
  readonly id: string;
  private poolInstance: WorkerPool | undefined;
  /** Index files read so far (restore reuses them; writers and prune read all afresh). */
  private cached = new ChunkIndex();
  private readonly cachedNames = new Set<string>();

  constructor(
    readonly backend: RepositoryBackend,
    readonly config: RepositoryConfig,
    private readonly keys: MasterKeys,
    private keyName: string,
    private readonly workers: number | undefined,
  ) {
    this.id = config.id;
  }

  private get pool(): WorkerPool {
    this.poolInstance ??= new WorkerPool(this.keys, this.config.compression.level, this.workers);
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
    const docs = new Map<string, IndexDocument>();
    // Loaded several at once (object storage answers slowly, in parallel), added in name order.
    await forEachLimited(
      keys.filter((k) => !skip.has(k)),
      8,
      async (key) => {
        let data: Buffer;
        try {
          data = await this.backend.load(key, { signal });
        } catch (err) {
          if (err instanceof NotFoundError) return; // removed by a prune meanwhile
          throw err;
        }
        const doc = contentName(data) === packIdOf(key) ? openIndex(this.keys.encKey, data) : undefined;
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
    const lock = await acquireLock(this.backend, 'shared', { signal: options.signal });
    try {
      const { index } = await this.readIndexes(options.signal);
      // Packs no index names (a writer killed before its index, or one running now) are described by their
      // own headers: this writer reuses their chunks and names the packs in its own index.
      const adopted: PackEntry[] = [];
      for (const [key, size] of await listKeys(this.backend, 'packs/', options.signal)) {
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
        pool: this.pool,
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
    return contentName(data) === id ? openManifest(this.keys.encKey, id, data) : undefined;
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
    const groups = this.restoreGroups(file);
    // Groups in flight: up to RESTORE_AHEAD_BYTES of sealed data (small groups: many at once, so the round
    // trips to the backend and the workers overlap), at least one.
    const results: Promise<Buffer | undefined>[] = [];
    let next = 0;
    let written = 0;
    let ahead = 0;
    const start = () => {
      while (
        next < groups.length &&
        (next === written || (ahead < RESTORE_AHEAD_BYTES && next - written < 256))
      ) {
        ahead += groups[next]!.bytes;
        const p = this.readGroup(file, groups[next]!, signal);
        p.catch(() => undefined); // awaited in order below
        results.push(p);
        next++;
      }
    };
    let done = 0;
    start();
    while (written < groups.length) {
      signal?.throwIfAborted();
      const g = groups[written]!;
      const data = await results[written]!;
      results[written] = Promise.resolve(undefined); // let the bytes go
      ahead -= g.bytes;
      if (data !== undefined) {
        // One write per run of consecutive chunks of the group (zero chunks between them stay unwritten).
        let off = 0;
        let k = 0;
        while (k < g.blobs.length) {
          let j = k;
          let len = g.rawLengths[k]!;
          while (j + 1 < g.blobs.length && g.chunkIndex[j + 1] === g.chunkIndex[j]! + 1) {
            j++;
            len += g.rawLengths[j]!;
          }
          await sink.write(g.chunkIndex[k]! * cs, data.subarray(off, off + len));
          off += len;
          k = j + 1;
        }
      }
      for (let i = g.first; i < g.first + g.count; i++) done += chunkLength(file.size, cs, i);
      written++;
      options.onProgress?.(done, file.size);
      start();
    }
    // Zero chunks are not written (the sink stays sparse); the last byte makes the size right.
    if (file.size > 0 && file.chunks[file.chunks.length - 1] === ZERO_CHUNK) {
      await sink.write(file.size - 1, Buffer.alloc(1));
    }
  }

  /**
   * Cuts a file's chunks in groups read with one ranged load each: chunks in file order whose blobs lie end to
   * end in the same pack (as one writer stored them), up to GROUP_BYTES; zero chunks between them join the
   * group (they take no room in the pack). An unindexed chunk is a group of its own.
   */
  private restoreGroups(file: StoredFile): RestoreGroup[] {
    const cs = file.chunkSize;
    const groups: RestoreGroup[] = [];
    let g: RestoreGroup | undefined;
    for (let i = 0; i < file.chunks.length; i++) {
      const id = file.chunks[i]!;
      if (id === ZERO_CHUNK) {
        if (g === undefined || g.pack === undefined) {
          g = { first: i, count: 0, pack: undefined, bytes: 0, blobs: [], chunkIndex: [], rawLengths: [] };
          groups.push(g);
        }
        g.count++;
        continue;
      }
      const loc = this.cached.get(id);
      const last = g?.blobs.at(-1);
      if (
        g !== undefined &&
        loc !== undefined &&
        last !== undefined &&
        g.pack === loc.pack &&
        last.offset + last.length === loc.offset &&
        g.bytes + loc.length <= GROUP_BYTES
      ) {
        g.count = i - g.first + 1;
        g.blobs.push(loc);
        g.chunkIndex.push(i);
        g.rawLengths.push(chunkLength(file.size, cs, i));
        g.bytes += loc.length;
        continue;
      }
      g = {
        first: i,
        count: 1,
        pack: loc?.pack,
        bytes: loc?.length ?? 0,
        blobs: loc ? [loc] : [],
        chunkIndex: [i],
        rawLengths: [chunkLength(file.size, cs, i)],
      };
      groups.push(g);
      if (loc === undefined) g = undefined; // a missing chunk stands alone
    }
    return groups;
  }

  /** A group's plaintext, every chunk verified (undefined for a zero chunk); CHUNK_MISSING / CHUNK_CORRUPT. */
  private async readGroup(
    file: StoredFile,
    g: RestoreGroup,
    signal?: AbortSignal,
  ): Promise<Buffer | undefined> {
    const cs = file.chunkSize;
    const id = file.chunks[g.chunkIndex[0] ?? g.first]!;
    if (g.chunkIndex.length === 0) return undefined; // zero chunks only
    if (g.pack === undefined) {
      throw new RepositoryError(
        'CHUNK_MISSING',
        `chunk ${id} of ${file.path} (at byte ${g.chunkIndex[0]! * cs}) is in no index of ${this.backend.description}`,
        { details: { chunk: id, file: file.path } },
      );
    }
    const key = packKey(g.pack);
    const base = g.blobs[0]!.offset;
    let data: Buffer;
    try {
      data = await this.backend.load(key, { offset: base, length: g.bytes, signal });
    } catch (err) {
      if (err instanceof NotFoundError) {
        throw new RepositoryError(
          'CHUNK_MISSING',
          `chunk ${id} of ${file.path}: its pack ${key} is missing`,
          {
            cause: err,
            details: { chunk: id, pack: g.pack, file: file.path },
          },
        );
      }
      throw err;
    }
    const corrupt = (k: number, reason: string) => {
      const chunk = g.blobs[k]!.id;
      return new RepositoryError('CHUNK_CORRUPT', `chunk ${chunk} of ${file.path} in pack ${key} ${reason}`, {
        details: { chunk, pack: g.pack, file: file.path },
      });
    };
    const cut = g.blobs.findIndex((b) => b.offset - base + b.length > data.length);
    if (cut >= 0) throw corrupt(cut, `is cut short (the pack ends ${data.length + base} bytes in)`);
    const { plain, failures } = await this.pool.open(
      data,
      g.blobs.map((b, k) => ({
        id: b.id,
        offset: b.offset - base,
        length: b.length,
        rawLength: g.rawLengths[k],
      })),
    );
    if (failures.length > 0) throw corrupt(failures[0]!.index, failures[0]!.reason);
    return plain;
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
        const named = contentName(data) === pack.id;
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
        const id = contentName(pack);
        try {
          await this.backend.save(packKey(id), pack, { signal });
        } catch (err) {
          if (!(err instanceof ConflictError)) throw err;
        }
        keep.push({ id, size: pack.length, created, blobs: builder.entries });
        bytesWritten += pack.length;
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
        newName = `index/${await saveContentNamed(this.backend, 'index/', sealIndex(this.keys.encKey, doc), signal)}`;
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
