import { availableParallelism } from 'node:os';
import { Worker } from 'node:worker_threads';
import type { MasterKeys } from './format.js';

/**
 * A small pool of worker threads (one per core) for the CPU work of the format: hashing, compression,
 * encryption on write; decryption, decompression and id checks on read. Jobs go to the least busy worker;
 * callers bound how many they have in flight (read-ahead), which bounds memory. The workers are unref'd while
 * idle, so a forgotten pool never holds the process open, and ref'd while a job is pending.
 */

export type WorkerRequest =
  | { type: 'hash'; job: number; data: ArrayBuffer }
  | { type: 'drop'; job: number }
  | { type: 'seal'; job: number; id: string }
  | { type: 'open'; job: number; id: string; blob: ArrayBuffer; rawLength?: number; discard?: boolean };

export type WorkerReply =
  | { type: 'hashed'; job: number; id: string }
  | { type: 'sealed'; job: number; blob: ArrayBuffer; rawLength: number }
  | { type: 'opened'; job: number; rawLength: number; data?: ArrayBuffer }
  | { type: 'failed'; job: number; reason: string };

interface Slot {
  worker: Worker;
  pending: number;
}

export class ChunkFailure extends Error {}

export class WorkerPool {
  private readonly slots: Slot[];
  private readonly waiting = new Map<number, { resolve: (r: WorkerReply) => void; slot: Slot }>();
  /** Which worker holds a hashed chunk until it is sealed or dropped. */
  private readonly holder = new Map<number, Slot>();
  private nextJob = 1;
  private closed = false;

  constructor(keys: MasterKeys, level: number, size = Math.max(1, availableParallelism())) {
    this.slots = Array.from({ length: size }, () => {
      const worker = new Worker(new URL('./worker.js', import.meta.url), {
        workerData: { encKey: new Uint8Array(keys.encKey), macKey: new Uint8Array(keys.macKey), level },
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

  /** Hashes a chunk (transferring its bytes to a worker, which keeps them); `zero` for an all-zero one. */
  async hash(data: Uint8Array): Promise<{ job: number; id: string }> {
    const ab = transferable(data);
    const slot = this.leastBusy();
    const job = this.nextJob++;
    const reply = await this.send(slot, job, { type: 'hash', job, data: ab }, [ab]);
    if (reply.type !== 'hashed')
      throw new Error(`hash: ${reply.type === 'failed' ? reply.reason : reply.type}`);
    if (reply.id !== 'zero') this.holder.set(job, slot);
    return { job, id: reply.id };
  }

  /** The worker lets go of a hashed chunk that the repository already has. */
  drop(job: number): void {
    const slot = this.holder.get(job);
    this.holder.delete(job);
    slot?.worker.postMessage({ type: 'drop', job } satisfies WorkerRequest);
  }

  /** Compresses (when smaller) and seals a hashed chunk. */
  async seal(job: number, id: string): Promise<{ blob: Buffer; rawLength: number }> {
    const slot = this.holder.get(job);
    if (slot === undefined) throw new Error(`seal: job ${job} is not held`);
    this.holder.delete(job);
    const reply = await this.send(slot, job, { type: 'seal', job, id });
    if (reply.type !== 'sealed')
      throw new Error(`seal: ${reply.type === 'failed' ? reply.reason : reply.type}`);
    return { blob: Buffer.from(reply.blob), rawLength: reply.rawLength };
  }

  /**
   * Opens a sealed chunk and checks it against its id (and length). Rejects with ChunkFailure saying why.
   * With `discard`, only verifies (check --read-data) and returns an empty buffer.
   */
  async open(id: string, blob: Uint8Array, rawLength?: number, discard = false): Promise<Buffer> {
    const ab = transferable(blob);
    const slot = this.leastBusy();
    const job = this.nextJob++;
    const reply = await this.send(slot, job, { type: 'open', job, id, blob: ab, rawLength, discard }, [ab]);
    if (reply.type === 'failed') throw new ChunkFailure(reply.reason);
    if (reply.type !== 'opened') throw new Error(`open: ${reply.type}`);
    return reply.data === undefined ? Buffer.alloc(0) : Buffer.from(reply.data);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await Promise.all(this.slots.map((s) => s.worker.terminate()));
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
    if (--w.slot.pending === 0) w.slot.worker.unref();
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
