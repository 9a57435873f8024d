import type { Readable } from 'node:stream';
import { ConflictError, UsageError } from '../errors.js';
import { type Hashes, knownSha256, ZERO_CHUNK } from './crypto.js';
import { RepositoryError } from './errors.js';
import type { MasterKeys, RepositoryConfig } from './format.js';
import { CHUNK_SIZES, saveContentNamed } from './format.js';
import {
  type BlobEntry,
  buildPack,
  ChunkIdSet,
  type ChunkIndex,
  type IndexDocument,
  type PackEntry,
  packKey,
  sealIndex,
} from './index-file.js';
import type { HeldLock } from './locks.js';
import { sealManifest, summaryOf } from './manifest.js';
import type { WorkerPool } from './pool.js';
import type {
  FileSource,
  ManifestBody,
  ManifestSummary,
  RepositoryBackend,
  RepositoryWriter,
  StoredFile,
  WriteProgress,
} from './types.js';

/** Packs saved before an index file is written for them: a crash loses at most this many packs' reuse. */
const PACKS_PER_INDEX = 32;
/**
 * Packs being saved at once (each is up to the pack size in memory): several, so that a remote backend's
 * uploads overlap each other and the hashing, compression and sealing of the next packs.
 */
const SAVES_IN_FLIGHT = 4;
/** Bytes handed to a worker at once (whole chunks; at least one): fewer, larger messages cost less. */
const BATCH_BYTES = 4 << 20;
/** Most batches in flight (read, hashing, sealing), whatever the number of workers. */
const READ_AHEAD_BYTES = 64 << 20;
/** Streams of the source opened ahead of the one being read, per lane (runs of changed chunks). */
const OPEN_AHEAD = 4;
/** Lanes reading many small runs at once (each fills batches of its own). */
const READ_LANES = 4;

export interface WriterContext {
  backend: RepositoryBackend;
  config: RepositoryConfig;
  keys: MasterKeys;
  /** The repository's chunk-id and object-name functions (its config's algorithms). */
  hashes: Hashes;
  pool: WorkerPool;
  /** The union of the repository's indexes as the writer started (the writer adds what it stores). */
  index: ChunkIndex;
  /** Packs found without an index (their chunks are in `index`): named in this writer's first index. */
  adopted?: PackEntry[];
  lock: HeldLock;
  signal?: AbortSignal;
  onProgress?: (p: WriteProgress) => void;
}

/** Chunk ids a file may have before the writer picks a larger chunk size for it (a manifest stays small). */
export const MAX_CHUNKS_PER_FILE = 1 << 20;

/**
 * The chunk size of one file: the previous backup's where there is one (so unchanged chunks keep their ids),
 * else the repository's, or the next larger size of CHUNK_SIZES that keeps the file within
 * MAX_CHUNKS_PER_FILE chunks (64 KiB up to 64 GiB, 256 KiB up to 256 GiB, 1 MiB up to 1 TiB, then 4 MiB).
 */
export function chunkSizeFor(size: number, base: number, previous?: StoredFile): number {
  if (previous !== undefined && (CHUNK_SIZES as readonly number[]).includes(previous.chunkSize)) {
    if (
      Math.ceil(size / previous.chunkSize) <= MAX_CHUNKS_PER_FILE ||
      previous.chunkSize === CHUNK_SIZES.at(-1)
    ) {
      return previous.chunkSize;
    }
  }
  const fits = CHUNK_SIZES.filter((s) => s >= base && Math.ceil(size / s) <= MAX_CHUNKS_PER_FILE);
  return fits[0] ?? CHUNK_SIZES.at(-1)!;
}

/** Length of chunk `i` of a file of `size` bytes cut in `chunkSize` pieces. */
export function chunkLength(size: number, chunkSize: number, i: number): number {
  return Math.max(0, Math.min(chunkSize, size - i * chunkSize));
}

/**
 * One offload (types.ts `RepositoryWriter`). Chunks flow: read (bounded read-ahead) -> a worker hashes ->
 * known ids are dropped -> new ones are compressed and sealed by the worker -> appended to the open pack ->
 * a full pack is saved (content-named) -> every PACKS_PER_INDEX packs, and at commit, an index file -> at
 * commit, the manifest, last.
 */
export class Writer implements RepositoryWriter {
  private readonly progress: WriteProgress = { bytesDone: 0, bytesTotal: 0, bytesRead: 0, bytesAdded: 0 };
  /** Chunks this writer stored or is storing (deduplicates within the writer before its index exists). */
  private readonly stored = new ChunkIdSet();
  private openBlobs: Buffer[] = [];
  private openEntries: BlobEntry[] = [];
  private openSize = 0;
  private readonly saving = new Set<Promise<void>>();
  private unindexed: PackEntry[] = [];
  private failure: unknown;
  private finished = false;
  private readonly window: number;
  /** One per batch in flight and one being filled (per file being added at once, up to two files). */
  private readonly buffers: BatchBuffers;

  constructor(private readonly ctx: WriterContext) {
    this.window = Math.max(2, Math.min(ctx.pool.size * 3, Math.floor(READ_AHEAD_BYTES / BATCH_BYTES)));
    this.buffers = new BatchBuffers(BATCH_BYTES, this.window + 2);
    this.unindexed = [...(ctx.adopted ?? [])];
  }

  async addFile(source: FileSource): Promise<StoredFile> {
    this.usable();
    const { size } = source;
    if (!Number.isSafeInteger(size) || size < 0) {
      throw new UsageError('REPOSITORY_SOURCE', `${source.path}: size ${size} is not a byte count`);
    }
    const cs = chunkSizeFor(size, this.ctx.config.chunker.size, source.previous);
    const count = Math.ceil(size / cs);
    const chunks: (string | undefined)[] = new Array(count).fill(undefined);
    this.progress.bytesTotal += size;

    this.reuseUnchanged(source, chunks, cs);
    this.report();

    let inFlight = 0;
    // Lanes waiting for a batch to finish (each checks again when woken).
    const waiting: (() => void)[] = [];
    const errors: unknown[] = [];
    const done = new Set<Promise<void>>();
    const dispatch = async (indices: number[], data: Uint8Array): Promise<void> => {
      try {
        while (inFlight >= this.window) await new Promise<void>((r) => waiting.push(r));
        if (errors.length > 0) throw errors[0];
        this.ctx.signal?.throwIfAborted();
      } catch (err) {
        this.buffers.give(data.buffer as SharedArrayBuffer);
        throw err;
      }
      inFlight++;
      const p = this.storeBatch(data, cs)
        .then((ids) => {
          ids.forEach((id, k) => {
            chunks[indices[k]!] = id;
          });
        })
        .catch((err: unknown) => {
          errors.push(err);
        })
        .finally(() => {
          inFlight--;
          done.delete(p);
          for (const w of waiting.splice(0)) w();
        });
      done.add(p);
    };

    // Many small runs (an incremental's changed chunks) are read in a few lanes at once, each its own share of
    // them in order: a run's open and read are round trips to the source, which one lane would wait on in turn.
    const runs = [...runsOf(chunks)];
    const lanes = runs.length >= 4 * READ_LANES ? READ_LANES : 1;
    const stop = { failed: false };
    const settled = await Promise.allSettled(
      Array.from({ length: lanes }, (_, k) =>
        this.readRuns(
          source,
          runs.slice(Math.floor((k * runs.length) / lanes), Math.floor(((k + 1) * runs.length) / lanes)),
          cs,
          dispatch,
          stop,
        ).catch((err: unknown) => {
          stop.failed = true;
          throw err;
        }),
      ),
    );
    await Promise.all(done);
    const failed = settled.find((r) => r.status === 'rejected');
    if (failed !== undefined) throw (failed as PromiseRejectedResult).reason;
    if (errors.length > 0) throw errors[0];
    return { path: source.path, size, chunkSize: cs, chunks: chunks as string[] };
  }

  /** Where `previous` and `changedRanges` are given: ids of chunks no changed range touches, without reading. */
  private reuseUnchanged(source: FileSource, chunks: (string | undefined)[], cs: number): void {
    const prev = source.previous;
    if (prev === undefined || source.changedRanges === undefined || prev.chunkSize !== cs) return;
    const touched = new Uint8Array(chunks.length);
    for (const r of source.changedRanges) {
      if (
        !Number.isSafeInteger(r.offset) ||
        !Number.isSafeInteger(r.length) ||
        r.offset < 0 ||
        r.length < 0
      ) {
        throw new UsageError(
          'REPOSITORY_SOURCE',
          `${source.path}: changed range ${JSON.stringify(r)} is not valid`,
        );
      }
      if (r.length === 0) continue;
      const lo = Math.floor(r.offset / cs);
      const hi = Math.min(chunks.length - 1, Math.floor((r.offset + r.length - 1) / cs));
      for (let i = lo; i <= hi; i++) touched[i] = 1;
    }
    for (let i = 0; i < chunks.length; i++) {
      const id = prev.chunks[i];
      if (touched[i] || id === undefined) continue;
      const len = chunkLength(source.size, cs, i);
      if (chunkLength(prev.size, cs, i) !== len) continue;
      // A reused id must still be stored (prune may have collected it since): otherwise the chunk is read.
      if (id !== ZERO_CHUNK && !this.ctx.index.has(id) && !this.stored.has(id)) continue;
      chunks[i] = id;
      this.progress.bytesDone += len;
    }
  }

  /**
   * Reads the runs of chunks `[first, last]` and hands their bytes on in batches of whole chunks of about
   * BATCH_BYTES, each in a buffer of `buffers` (given back by storeBatch, or here when not handed on). Small
   * runs (an incremental's changed chunks) share a batch: `dispatch` gets the file's chunk index of each
   * chunk of the batch. Only the file's last chunk may be short, and it ends the last run, so every chunk of
   * a batch but its last is `cs` bytes.
   *
   * A source whose stream reads at positions (the fs array's) is opened twice per lane: for the first run, and
   * once for the span of all the others, which are then read at their positions. Any other source is opened
   * run by run, the next few opened ahead (an open is a round trip to the source, which would otherwise stall
   * the reading of hundreds of small runs).
   */
  private async readRuns(
    source: FileSource,
    runs: [number, number][],
    cs: number,
    dispatch: (indices: number[], data: Uint8Array) => Promise<void>,
    stop: { failed: boolean },
  ): Promise<void> {
    const batchBytes = Math.max(1, Math.floor(BATCH_BYTES / cs)) * cs;
    const { size } = source;
    const startOf = (run: [number, number]) => run[0] * cs;
    const endOf = (run: [number, number]) => Math.min(size, (run[1] + 1) * cs);
    const opened: Promise<Readable>[] = [];
    let nextOpen = 0;
    const openAhead = (most: number) => {
      while (nextOpen < runs.length && opened.length < most) {
        const run = runs[nextOpen++]!;
        const p = source.read(startOf(run), endOf(run) - startOf(run), this.ctx.signal);
        p.catch(() => undefined); // awaited in turn below
        opened.push(p);
      }
    };
    let span: Readable | undefined;
    let cur: { buf: Uint8Array; filled: number; indices: number[] } | undefined;
    const batch = async () => {
      cur ??= { buf: new Uint8Array(await this.buffers.take(), 0, batchBytes), filled: 0, indices: [] };
      return cur;
    };
    const flush = async () => {
      const b = cur;
      cur = undefined;
      if (b === undefined) return;
      this.progress.bytesRead += b.filled;
      await dispatch(b.indices, b.buf.subarray(0, b.filled));
    };
    /** Fills batches with `pos..end` by positional reads straight into them (no buffer per read, no copy). */
    const readAtInto = async (readAt: PositionalSource['readAt'], pos: number, end: number) => {
      while (pos < end) {
        const b = await batch();
        const want = Math.min(b.buf.length - b.filled, end - pos);
        const n = await readAt(b.buf.subarray(b.filled, b.filled + want), pos);
        if (n <= 0) break;
        for (let c = Math.ceil(pos / cs); c * cs < pos + n; c++) b.indices.push(c);
        b.filled += n;
        pos += n;
        if (b.filled === b.buf.length) await flush();
      }
      return pos;
    };
    /** Fills batches with `pos..end` from a stream's pieces, copied: a piece may be memory its source keeps. */
    const streamInto = async (stream: Readable, pos: number, end: number) => {
      for await (const piece of stream as AsyncIterable<Buffer>) {
        let off = 0;
        while (off < piece.length && pos < end) {
          const b = await batch();
          const n = Math.min(piece.length - off, b.buf.length - b.filled, end - pos);
          for (let c = Math.ceil(pos / cs); c * cs < pos + n; c++) b.indices.push(c);
          b.buf.set(piece.subarray(off, off + n), b.filled);
          b.filled += n;
          off += n;
          pos += n;
          if (b.filled === b.buf.length) await flush();
        }
        if (pos >= end) break;
      }
      return pos;
    };
    const short = (pos: number, end: number) =>
      new RepositoryError(
        'SOURCE_SHORT',
        `${source.path}: the source ended at byte ${pos}, expected ${end} (size ${size})`,
      );
    try {
      for (const [k, run] of runs.entries()) {
        if (stop.failed) return; // another lane failed: addFile rejects with its error
        const end = endOf(run);
        const spanAt = (span as Partial<PositionalSource> | undefined)?.readAt;
        if (spanAt !== undefined) {
          const pos = await readAtInto(spanAt, startOf(run), end);
          if (pos < end) throw short(pos, end);
          continue;
        }
        // The first run alone: if its stream reads at positions, no other run is opened on its own.
        openAhead(k === 0 ? 1 : OPEN_AHEAD);
        const stream = await opened.shift()!;
        let pos: number;
        const readAt = (stream as Partial<PositionalSource>).readAt;
        try {
          pos =
            typeof readAt === 'function'
              ? await readAtInto(readAt, startOf(run), end)
              : await streamInto(stream, startOf(run), end);
        } finally {
          stream.destroy();
        }
        if (pos < end) throw short(pos, end);
        if (typeof readAt === 'function' && k + 1 < runs.length && span === undefined) {
          // Positional: the rest of the lane's runs from one open (only the first run was opened alone).
          const from = startOf(runs[k + 1]!);
          span = await source.read(from, endOf(runs.at(-1)!) - from, this.ctx.signal);
        }
      }
      await flush();
    } finally {
      if (cur !== undefined) this.buffers.give(cur.buf.buffer as SharedArrayBuffer);
      span?.destroy();
      for (const p of opened)
        p.then(
          (s) => s.destroy(),
          () => undefined,
        );
    }
  }

  /**
   * Hashes a batch on a worker; stores the chunks neither the repository nor this writer has. Their ids. The
   * batch's buffer goes back to `buffers` once the worker is done with it.
   */
  private async storeBatch(data: Uint8Array, cs: number): Promise<string[]> {
    try {
      return await this.storeShared(data, cs);
    } finally {
      this.buffers.give(data.buffer as SharedArrayBuffer);
    }
  }

  private async storeShared(data: Uint8Array, cs: number): Promise<string[]> {
    const length = data.length;
    const { job, ids } = await this.ctx.pool.hash(data, cs);
    const wanted = ids.map((id) => {
      if (id === ZERO_CHUNK || this.ctx.index.has(id) || this.stored.has(id)) return null;
      this.stored.add(id);
      return id;
    });
    if (wanted.every((id) => id === null)) {
      this.ctx.pool.drop(job);
    } else {
      // Should this fail, the ids stay in `stored` though not stored: the writer is failed, and commit's check
      // would refuse a manifest naming any of them.
      const blobs = await this.ctx.pool.seal(job, wanted);
      for (let k = 0; k < blobs.length; k++) {
        const blob = blobs[k];
        if (blob) await this.append(wanted[k]!, blob, Math.min(cs, length - k * cs));
      }
    }
    this.progress.bytesDone += length;
    this.report();
    return ids;
  }

  private async append(id: string, blob: Buffer, rawLength: number): Promise<void> {
    this.openEntries.push({ id, offset: this.openSize, length: blob.length, rawLength });
    this.openBlobs.push(blob);
    this.openSize += blob.length;
    if (this.openSize >= this.ctx.config.packSize) await this.flushPack();
  }

  /** Saves the open pack (waiting while SAVES_IN_FLIGHT are being saved: back-pressure on the readers). */
  private async flushPack(): Promise<void> {
    if (this.openEntries.length === 0) return;
    const blobs = this.openBlobs;
    const entries = this.openEntries;
    this.openBlobs = [];
    this.openEntries = [];
    this.openSize = 0;
    while (this.saving.size >= SAVES_IN_FLIGHT) await Promise.race(this.saving);
    const created = new Date().toISOString();
    const pack = buildPack(this.ctx.keys.encKey, blobs, { version: 1, created, blobs: entries });
    const id = this.ctx.hashes.contentName(pack.pieces);
    const p = (async () => {
      try {
        await this.ctx.backend.save(packKey(id), pack.pieces, {
          signal: this.ctx.signal,
          ...knownSha256(this.ctx.hashes, id),
        });
      } catch (err) {
        if (!(err instanceof ConflictError)) throw err;
      }
      this.progress.bytesAdded += pack.size;
      this.report();
      this.unindexed.push({ id, size: pack.size, created, blobs: entries });
      if (this.unindexed.length >= PACKS_PER_INDEX) await this.writeIndex();
    })();
    const tracked = p
      .catch((err: unknown) => {
        this.failure ??= err;
      })
      .finally(() => this.saving.delete(tracked));
    this.saving.add(tracked);
  }

  private async writeIndex(): Promise<void> {
    if (this.unindexed.length === 0) return;
    const packs = this.unindexed;
    this.unindexed = [];
    const doc: IndexDocument = { version: 1, created: new Date().toISOString(), packs };
    const data = sealIndex(this.ctx.keys.encKey, doc);
    await saveContentNamed(this.ctx.backend, this.ctx.hashes, 'index/', data, this.ctx.signal);
    this.progress.bytesAdded += data.length;
    this.ctx.index.add(doc);
  }

  async flush(): Promise<void> {
    this.usable();
    try {
      await this.storeOpenData();
    } finally {
      await this.finish();
    }
  }

  /** The open pack saved, every save in flight settled, their index written: all added is now findable. */
  private async storeOpenData(): Promise<void> {
    await this.flushPack();
    await Promise.all(this.saving);
    if (this.failure !== undefined) throw this.failure;
    await this.writeIndex();
  }

  async commit(body: ManifestBody): Promise<ManifestSummary> {
    this.usable();
    try {
      await this.storeOpenData();
      for (const vm of body.vms) {
        for (const f of vm.files) {
          for (const id of f.chunks) {
            if (id !== ZERO_CHUNK && !this.ctx.index.has(id)) {
              throw new RepositoryError(
                'CHUNK_MISSING',
                `manifest of ${body.backupId}: chunk ${id} of ${vm.name}/${f.path} is not stored in the repository`,
                { details: { chunk: id, file: f.path } },
              );
            }
          }
        }
      }
      // Last look before the manifest: had our lock been removed as stale, a prune may have collected packs.
      await this.ctx.lock.verify();
      const offloadedAt = new Date().toISOString();
      const data = sealManifest(this.ctx.keys.encKey, body, offloadedAt);
      const id = await saveContentNamed(
        this.ctx.backend,
        this.ctx.hashes,
        'manifests/',
        data,
        this.ctx.signal,
      );
      this.progress.bytesAdded += data.length;
      this.report();
      return summaryOf(id, body, offloadedAt);
    } finally {
      await this.finish();
    }
  }

  async abort(): Promise<void> {
    if (this.finished) return;
    this.openBlobs = [];
    this.openEntries = [];
    await Promise.allSettled(this.saving);
    await this.finish();
  }

  private async finish(): Promise<void> {
    if (this.finished) return;
    this.finished = true;
    await this.ctx.lock.release().catch(() => undefined);
  }

  private usable(): void {
    if (this.finished) throw new Error('this repository writer was committed, flushed or aborted');
    if (this.failure !== undefined) throw this.failure;
    this.ctx.signal?.throwIfAborted();
  }

  private report(): void {
    this.ctx.onProgress?.({ ...this.progress });
  }
}

/**
 * Batch buffers in shared memory, reused: a fresh 4 MiB buffer per batch costs the main thread page faults
 * and garbage collection for every byte offloaded. A buffer is taken before it is filled and given back once
 * its batch is sealed or dropped (the worker reads it in place until then). Waits while all are taken.
 */
class BatchBuffers {
  private readonly free: SharedArrayBuffer[] = [];
  private readonly waiters: ((b: SharedArrayBuffer) => void)[] = [];
  private made = 0;

  constructor(
    private readonly bytes: number,
    private readonly most: number,
  ) {}

  async take(): Promise<SharedArrayBuffer> {
    const b = this.free.pop();
    if (b !== undefined) return b;
    if (this.made < this.most) {
      this.made++;
      return new SharedArrayBuffer(this.bytes);
    }
    return new Promise((resolve) => this.waiters.push(resolve));
  }

  give(b: SharedArrayBuffer): void {
    const w = this.waiters.shift();
    if (w !== undefined) w(b);
    else this.free.push(b);
  }
}

/**
 * What a source's stream may also carry (the fs array's does): positional reads into the caller's memory,
 * `target.length` bytes at `position` (fewer at the end of the range asked for), resolving the bytes read.
 * The writer then never consumes the stream, only destroys it (which closes the file).
 */
export interface PositionalSource {
  readAt(target: Uint8Array, position: number): Promise<number>;
}

/** Runs of consecutive undefined entries, as [first, last] index pairs. */
function* runsOf(chunks: (string | undefined)[]): Generator<[number, number]> {
  let i = 0;
  while (i < chunks.length) {
    if (chunks[i] !== undefined) {
      i++;
      continue;
    }
    const first = i;
    while (i < chunks.length && chunks[i] === undefined) i++;
    yield [first, i - 1];
  }
}
