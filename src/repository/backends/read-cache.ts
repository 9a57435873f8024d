/**
 * Whole-object read-ahead for ranged loads over a network (S3). A restore reads one chunk (about 1 MiB) at a
 * time out of 16 MiB packs, in pack order; one ranged GET per chunk pays the request's fixed cost each time
 * (and some servers read the whole object to serve a range). This cache notices a second ranged read of
 * one object going on forward from the first (starting at most 1 MiB past where the last read ended) and then
 * fetches the object once, whole (up to `maxObjectBytes`), serving this and later ranges from memory: about 2
 * requests per pack instead of 16. Other reads are read as asked: a restore that needs one chunk of a pack
 * (a deduplicated chunk stored long before) never downloads the pack, however often it comes back to it. Concurrent reads of one object share one fetch. Memory is bounded: at most `objects`
 * objects are kept (least recently used goes), each at most `maxObjectBytes`.
 *
 * Objects are write-once, so a cached object never goes stale while it exists; `drop` forgets one that is
 * removed (a later object of the same key would be new).
 */

export interface ReadCacheOptions {
  /** Objects kept (default 8). */
  objects?: number;
  /** Largest prefix of an object fetched and kept (default 32 MiB). */
  maxObjectBytes?: number;
}

/** A read starting at most this far past the end of the last read of an object counts as reading on. */
const SEQUENTIAL_GAP = 1 << 20;

type Fetch = (offset: number, length: number | undefined) => Promise<Buffer>;

interface Entry {
  /** The first `data.length` bytes of the object; all of it when `whole`. */
  data: Buffer;
  whole: boolean;
}

export class ReadCache {
  private readonly objects: number;
  private readonly max: number;
  /** Cached objects, least recently used first (Map keeps insertion order). */
  private readonly entries = new Map<string, Entry>();
  private readonly pending = new Map<string, Promise<Entry | undefined>>();
  /** Keys read by range, with where the last range ended (bounded like the entries, a few times larger). */
  private readonly seen = new Map<string, number>();

  constructor(options: ReadCacheOptions = {}) {
    this.objects = Math.max(1, options.objects ?? 8);
    this.max = Math.max(1, options.maxObjectBytes ?? 32 * 1024 * 1024);
  }

  /** Forgets `key` (removed or replaced); a fill in flight for it is not kept. */
  drop(key: string): void {
    this.entries.delete(key);
    this.seen.delete(key);
    this.pending.delete(key);
  }

  /**
   * `length` bytes (or to the end) from `offset` of `key`, through the cache. `fetch(offset, length)` reads
   * the backend (length undefined: to the end); its errors (not found, abort) pass through unchanged. A wait
   * for another caller's fetch ends at once when `signal` aborts.
   */
  async read(
    key: string,
    offset: number,
    length: number | undefined,
    fetch: Fetch,
    signal?: AbortSignal,
  ): Promise<Buffer> {
    const cached = this.entries.get(key);
    if (cached !== undefined) return this.serve(key, offset, length) ?? fetch(offset, length);
    let pending = this.pending.get(key);
    if (pending === undefined) {
      // Fetched whole on a read going on forward from the last one (a restore reading a pack in order); a read
      // elsewhere (one deduplicated chunk in an older pack) is read as asked: its pack may never be read again.
      const last = this.seen.get(key);
      const end = length === undefined ? Number.POSITIVE_INFINITY : offset + length;
      if (last === undefined || offset < last || offset - last > SEQUENTIAL_GAP) {
        this.remember(key, end);
        return fetch(offset, length);
      }
      pending = this.fill(key, fetch);
    }
    const entry = await abortable(pending, signal);
    return (entry && this.slice(entry, offset, length)) ?? fetch(offset, length);
  }

  private fill(key: string, fetch: Fetch): Promise<Entry | undefined> {
    const p: Promise<Entry | undefined> = fetch(0, this.max).then(
      (data) => {
        const entry = { data, whole: data.length < this.max };
        // Not kept when dropped meanwhile (the key was removed while it was read).
        if (this.pending.get(key) === p) {
          this.pending.delete(key);
          this.store(key, entry);
        }
        return entry;
      },
      // A failed fill is not the callers' error: their own ranged reads say what is wrong.
      () => {
        if (this.pending.get(key) === p) this.pending.delete(key);
        return undefined;
      },
    );
    this.pending.set(key, p);
    return p;
  }

  private serve(key: string, offset: number, length: number | undefined): Buffer | undefined {
    const entry = this.entries.get(key);
    if (entry === undefined) return undefined;
    const out = this.slice(entry, offset, length);
    if (out) {
      // Most recently used goes last.
      this.entries.delete(key);
      this.entries.set(key, entry);
    }
    return out;
  }

  private slice(entry: Entry, offset: number, length: number | undefined): Buffer | undefined {
    const size = entry.data.length;
    const end = length === undefined ? (entry.whole ? size : Number.POSITIVE_INFINITY) : offset + length;
    if (end <= size) return Buffer.from(entry.data.subarray(Math.min(offset, size), end));
    if (entry.whole) return Buffer.from(entry.data.subarray(Math.min(offset, size)));
    return undefined;
  }

  private store(key: string, entry: Entry): void {
    this.entries.delete(key);
    this.entries.set(key, entry);
    while (this.entries.size > this.objects) {
      const oldest = this.entries.keys().next().value as string;
      this.entries.delete(oldest);
    }
  }

  private remember(key: string, end: number): void {
    this.seen.delete(key);
    this.seen.set(key, end);
    while (this.seen.size > this.objects * 64) {
      const oldest = this.seen.keys().next().value as string;
      this.seen.delete(oldest);
    }
  }
}

function abortable<T>(p: Promise<T>, signal: AbortSignal | undefined): Promise<T> {
  if (!signal) return p;
  signal.throwIfAborted();
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(signal.reason);
    signal.addEventListener('abort', onAbort, { once: true });
    p.then(
      (v) => {
        signal.removeEventListener('abort', onAbort);
        resolve(v);
      },
      (e: unknown) => {
        signal.removeEventListener('abort', onAbort);
        reject(e);
      },
    );
  });
}
