import { availableParallelism } from 'node:os';
import { Worker } from 'node:worker_threads';
import type { HashAlgorithms } from './crypto.js';
import type { MasterKeys } from './format.js';

/**
 * A small pool of worker threads (one per core) for the CPU work of the format: hashing, compression,
 * encryption on write; decryption, decompression and id checks on read. Jobs go to the least busy worker;
 * callers bound how many they have in flight (read-ahead), which bounds memory. The workers are unref'd while
 * idle, so a forgotten pool never holds the process open, and ref'd while a job is pending.
 */

export type WorkerRequest =
  /** `data`: a view of a SharedArrayBuffer (shared: the writer reuses it once sealed or dropped) or of a transferred one. */
  | { type: 'hash'; job: number; data: Uint8Array; chunkSize: number }
  | { type: 'drop'; job: number }
  | { type: 'seal'; job: number; ids: (string | null)[] }
  | {
      type: 'open';
      job: number;
      /** The sealed bytes: `data`, or `length` bytes of it from `offset`. */
      data: ArrayBuffer | SharedArrayBuffer;
      offset?: number;
      length?: number;
      blobs: { id: string; offset: number; length: number; rawLength?: number }[];
      discard: boolean;
      /** Shared memory for the plaintexts, used when large enough (the reply then has `length` and no `data`). */
      out?: SharedArrayBuffer;
    };

export type WorkerReply =
  | { type: 'hashed'; job: number; ids: string[] }
  | { type: 'sealed'; job: number; data: ArrayBuffer; lengths: number[] }
  | {
      type: 'opened';
      job: number;
      failures: { index: number; reason: string }[];
      /** The plaintexts end to end (none when they went into the request's `out`). */
      data?: ArrayBuffer;
      /** Bytes of plaintext written into the request's `out`. */
      length?: number;
    }
  | { type: 'failed'; job: number; reason: string };

/** What every worker starts with: the keys, the compression level and the repository's hash functions. */
export interface WorkerData {
  encKey: Uint8Array;
  macKey: Uint8Array;
  level: number;
  algorithms: HashAlgorithms;
}

interface Slot {
  worker: Worker;
  pending: number;
}

export class WorkerPool {
  private readonly slots: Slot[];
  private readonly waiting = new Map<number, { resolve: (r: WorkerReply) => void; slot: Slot }>();
  /** Which worker holds a hashed chunk until it is sealed or dropped. */
  private readonly holder = new Map<number, Slot>();
  private nextJob = 1;
  private closed = false;

  constructor(
    keys: MasterKeys,
    level: number,
    algorithms: HashAlgorithms,
    size = Math.max(1, availableParallelism()),
  ) {
    this.slots = Array.from({ length: size }, () => {
      const worker = new Worker(new URL('./worker.js', import.meta.url), {
        workerData: {
          encKey: new Uint8Array(keys.encKey),
          macKey: new Uint8Array(keys.macKey),
          level,
          algorithms,
        } satisfies WorkerData,
      });
      const slot: Slot = { worker, pending: 0 };
      worker.on('message', (msg: WorkerReply) => this.settle(msg));
      worker.on('error', (err) => this.failAll(slot, err));
      worker.unref();
      return slot;
    });
  }

  get size(): number {
    return this.slots.length;
  }

  /**
   * Hashes a batch of consecutive chunks (`data` cut every `chunkSize` bytes). `zero` for an all-zero chunk.
   * The worker keeps the bytes for `seal` or `drop`: a view of a SharedArrayBuffer is shared (the caller must
   * not change it until the batch is sealed or dropped), any other is transferred (detached here).
   */
  async hash(data: Uint8Array, chunkSize: number): Promise<{ job: number; ids: string[] }> {
    const shared = data.buffer instanceof SharedArrayBuffer;
    const view = shared ? data : new Uint8Array(transferable(data));
    const slot = this.leastBusy();
    const job = this.nextJob++;
    const reply = await this.send(
      slot,
      job,
      { type: 'hash', job, data: view, chunkSize },
      shared ? [] : [view.buffer as ArrayBuffer],
    );
    if (reply.type !== 'hashed')
      throw new Error(`hash: ${reply.type === 'failed' ? reply.reason : reply.type}`);
    this.holder.set(job, slot);
    return { job, ids: reply.ids };
  }

  /** The worker lets go of a hashed batch none of whose chunks is to be stored. */
  drop(job: number): void {
    const slot = this.holder.get(job);
    this.holder.delete(job);
    slot?.worker.postMessage({ type: 'drop', job } satisfies WorkerRequest);
  }

  /** Compresses (when smaller) and seals the chunks of a hashed batch whose id is given (null: not stored). */
  async seal(job: number, ids: (string | null)[]): Promise<(Buffer | null)[]> {
    const slot = this.holder.get(job);
    if (slot === undefined) throw new Error(`seal: batch ${job} is not held`);
    this.holder.delete(job);
    const reply = await this.send(slot, job, { type: 'seal', job, ids });
    if (reply.type !== 'sealed')
      throw new Error(`seal: ${reply.type === 'failed' ? reply.reason : reply.type}`);
    const all = Buffer.from(reply.data);
    let off = 0;
    return reply.lengths.map((len) => {
      if (len === 0) return null;
      const blob = all.subarray(off, off + len);
      off += len;
      return blob;
    });
  }

  /**
   * Opens sealed blobs lying in `data` and checks each against its id (and length). Returns their plaintexts
   * end to end (none with `discard`, which only verifies: check --read-data), or the blobs that failed, why.
   */
  async open(
    data: Uint8Array,
    blobs: { id: string; offset: number; length: number; rawLength?: number }[],
    discard = false,
  ): Promise<{ plain: Buffer; failures: { index: number; reason: string }[] }> {
    const ab = transferable(data);
    const slot = this.leastBusy();
    const job = this.nextJob++;
    const reply = await this.send(slot, job, { type: 'open', job, data: ab, blobs, discard }, [ab]);
    if (reply.type === 'failed') throw new Error(`open: ${reply.reason}`);
    if (reply.type !== 'opened') throw new Error(`open: ${reply.type}`);
    return {
      plain: reply.data === undefined ? Buffer.alloc(0) : Buffer.from(reply.data),
      failures: reply.failures,
    };
  }

  /**
   * `open` with shared memory a restore reuses from load to load instead of making (and collecting) buffers
   * for gigabytes: `input` holds the sealed bytes (`length` from its start); the plaintexts go into `out`
   * when they fit (`plain` is then a view of it), else into memory of their own. Shared, not transferred:
   * the caller must not touch either until this resolves.
   */
  async openInto(
    input: SharedArrayBuffer,
    length: number,
    out: SharedArrayBuffer,
    blobs: { id: string; offset: number; length: number; rawLength?: number }[],
  ): Promise<{ plain: Buffer; failures: { index: number; reason: string }[] }> {
    const slot = this.leastBusy();
    const job = this.nextJob++;
    const reply = await this.send(slot, job, {
      type: 'open',
      job,
      data: input,
      offset: 0,
      length,
      blobs,
      discard: false,
      out,
    });
    if (reply.type === 'failed') throw new Error(`open: ${reply.reason}`);
    if (reply.type !== 'opened') throw new Error(`open: ${reply.type}`);
    const plain = reply.data !== undefined ? Buffer.from(reply.data) : Buffer.from(out, 0, reply.length ?? 0);
    return { plain, failures: reply.failures };
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    // Ref'd while terminating: an unref'd worker's exit does not hold the event loop, and the caller awaits it.
    await Promise.all(
      this.slots.map((s) => {
        s.worker.ref();
        return s.worker.terminate();
      }),
    );
    // Jobs still in flight (a restore that stopped at a bad chunk) will never be answered: settle them.
    for (const job of [...this.waiting.keys()])
      this.settle({ type: 'failed', job, reason: 'the pool was closed' });
  }

  private leastBusy(): Slot {
    if (this.closed) throw new Error('the worker pool is closed');
    let best = this.slots[0]!;
    for (const s of this.slots) if (s.pending < best.pending) best = s;
    return best;
  }

  private send(
    slot: Slot,
    job: number,
    msg: WorkerRequest,
    transfer: ArrayBuffer[] = [],
  ): Promise<WorkerReply> {
    return new Promise<WorkerReply>((resolve) => {
      this.waiting.set(job, { resolve, slot });
      if (slot.pending++ === 0) slot.worker.ref();
      slot.worker.postMessage(msg, transfer);
    });
  }

  private settle(msg: WorkerReply): void {
    const w = this.waiting.get(msg.job);
    if (w === undefined) return;
    this.waiting.delete(msg.job);
    // Not while closing: close() holds the workers ref'd until they have exited.
    if (--w.slot.pending === 0 && !this.closed) w.slot.worker.unref();
    w.resolve(msg);
  }

  private failAll(slot: Slot, err: Error): void {
    for (const [job, w] of this.waiting) {
      if (w.slot === slot) this.settle({ type: 'failed', job, reason: `worker failed: ${err.message}` });
    }
  }
}

/** An ArrayBuffer holding exactly these bytes that may be transferred (copied when the view is partial). */
function transferable(data: Uint8Array): ArrayBuffer {
  if (
    data.byteOffset === 0 &&
    data.byteLength === data.buffer.byteLength &&
    data.buffer instanceof ArrayBuffer
  ) {
    return data.buffer;
  }
  const ab = new ArrayBuffer(data.byteLength);
  new Uint8Array(ab).set(data);
  return ab;
}
