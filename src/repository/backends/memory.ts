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

export type MemoryBackendOp = 'save' | 'load' | 'stat' | 'list' | 'remove';

/**
 * A `RepositoryBackend` in memory, for tests: it passes the backend conformance suite and adds what tests
 * need to reach faults: `failNext` makes the next call of an operation reject, and `bytes`, `put`, `flipBit`
 * and `truncate` reach the stored bytes directly (bypassing write-once), as a damaged disk would.
 */
export class MemoryBackend implements RepositoryBackend {
  readonly description: string;
  readonly capabilities: BackendCapabilities = { conditionalWrite: true, objectLock: false };
  private readonly objects = new Map<string, Buffer>();
  private readonly faults: { op: MemoryBackendOp; error: Error; keyPrefix: string | undefined }[] = [];
  /** Count of calls per operation (for tests that check what was or was not read). */
  readonly calls: Record<MemoryBackendOp, number> = { save: 0, load: 0, stat: 0, list: 0, remove: 0 };

  constructor(name = 'memory') {
    this.description = `memory ${name}`;
  }

  /** The next call of `op` (on a key starting with `keyPrefix`, when given) rejects with `error`; once. */
  failNext(op: MemoryBackendOp, error: Error, keyPrefix?: string): void {
    this.faults.push({ op, error, keyPrefix });
  }

  /** The stored buffer itself (changes to it change the object), or undefined. */
  bytes(key: string): Buffer | undefined {
    return this.objects.get(key);
  }

  /** Replaces or creates an object, ignoring write-once (a test's way to damage or plant data). */
  put(key: string, data: Uint8Array): void {
    this.objects.set(key, Buffer.from(data));
  }

  /** Flips one bit of a stored object. */
  flipBit(key: string, offset: number, bit = 0): void {
    const buf = this.mustGet(key);
    if (offset < 0 || offset >= buf.length)
      throw new RangeError(`offset ${offset} outside ${key} (${buf.length})`);
    buf[offset] = buf[offset]! ^ (1 << bit);
  }

  /** Cuts a stored object to `length` bytes. */
  truncate(key: string, length: number): void {
    this.objects.set(key, Buffer.from(this.mustGet(key).subarray(0, length)));
  }

  /** Every key currently stored, sorted. */
  keys(prefix = ''): string[] {
    return [...this.objects.keys()].filter((k) => k.startsWith(prefix)).sort();
  }

  async save(key: string, data: ObjectData, options: BackendSaveOptions = {}): Promise<void> {
    this.enter('save', key, options.signal);
    if (this.objects.has(key)) {
      throw new ConflictError('OBJECT_EXISTS', `${this.description}: object ${key} exists`, {
        details: { key },
      });
    }
    // A copy: the caller may reuse its buffer.
    this.objects.set(key, Buffer.concat(piecesOf(data)));
  }

  async load(
    key: string,
    options: { offset?: number; length?: number; signal?: AbortSignal } = {},
  ): Promise<Buffer> {
    this.enter('load', key, options.signal);
    const buf = this.objects.get(key);
    if (buf === undefined) {
      throw new NotFoundError('OBJECT_NOT_FOUND', `${this.description}: no object ${key}`, {
        details: { key },
      });
    }
    const offset = options.offset ?? 0;
    const end = options.length === undefined ? buf.length : Math.min(buf.length, offset + options.length);
    return Buffer.from(buf.subarray(Math.min(offset, buf.length), end));
  }

  async stat(key: string, options: { signal?: AbortSignal } = {}): Promise<BackendObject | undefined> {
    this.enter('stat', key, options.signal);
    const buf = this.objects.get(key);
    return buf === undefined ? undefined : { key, size: buf.length };
  }

  async *list(prefix: string, options: { signal?: AbortSignal } = {}): AsyncIterable<BackendObject> {
    this.enter('list', prefix, options.signal);
    // A snapshot of the keys: objects added or removed while listing may or may not appear, as on S3.
    const found = [...this.objects.entries()].filter(([k]) => k.startsWith(prefix));
    for (const [key, buf] of found) {
      options.signal?.throwIfAborted();
      yield { key, size: buf.length };
    }
  }

  async remove(key: string, options: { signal?: AbortSignal } = {}): Promise<void> {
    this.enter('remove', key, options.signal);
    this.objects.delete(key);
  }

  private enter(op: MemoryBackendOp, key: string, signal: AbortSignal | undefined): void {
    signal?.throwIfAborted();
    this.calls[op]++;
    const i = this.faults.findIndex(
      (f) => f.op === op && (f.keyPrefix === undefined || key.startsWith(f.keyPrefix)),
    );
    if (i >= 0) {
      const [fault] = this.faults.splice(i, 1);
      throw fault!.error;
    }
  }

  private mustGet(key: string): Buffer {
    const buf = this.objects.get(key);
    if (buf === undefined)
      throw new StorageError('OBJECT_NOT_FOUND', `${this.description}: no object ${key}`);
    return buf;
  }
}
