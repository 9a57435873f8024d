import { parentPort, workerData } from 'node:worker_threads';
import { Compressor, Decompressor } from 'zstd-napi';
import zstd from 'zstd-napi/binding.js';
import {
  AAD,
  FLAG_RAW,
  FLAG_ZSTD,
  hashes,
  isAllZero,
  Nonces,
  open,
  sealParts,
  ZERO_CHUNK,
} from './crypto.js';
import type { WorkerData, WorkerReply, WorkerRequest } from './pool.js';

/**
 * A worker of the pool (pool.ts). Works on batches (a run of consecutive chunks, or a run of sealed blobs) so
 * that the cost of a message is paid once per batch, not per 64 KiB chunk: hashes a batch and holds it until
 * the main thread says which chunks to store; compresses and seals those; opens and verifies sealed blobs for
 * restore and check. Bytes come and go as transferred ArrayBuffers: no copy between threads.
 */

const { encKey, macKey, level, algorithms } = workerData as WorkerData;
const enc = Buffer.from(encKey);
const { chunkId } = hashes(algorithms, Buffer.from(macKey));
// One context each, reused: a context made per call (zstd-napi's simple compress) costs more than a 64 KiB chunk.
const compressor = new Compressor();
compressor.setParameters({ compressionLevel: level });
const decompressor = new Decompressor();
// The native context under it, for decompressing into a buffer of ours (Decompressor always allocates).
const dctx = new zstd.DCtx();
// A cheap look before the real compression: level 1 on the first SAMPLE_BYTES of a chunk. Random or already
// compressed data (a third of a typical disk image) costs zstd level 3 about four times as much as level 1
// and gains nothing: a chunk whose sample does not shrink by 1/64 is stored raw (flag 0) without trying.
const SAMPLE_BYTES = 4096;
const sampler = new Compressor();
sampler.setParameters({ compressionLevel: 1 });
/** Batches hashed and waiting for the main thread's word on which chunks to store. */
const held = new Map<number, { data: Buffer; chunkSize: number }>();

function reply(msg: WorkerReply, transfer: ArrayBuffer[] = []): void {
  parentPort!.postMessage(msg, transfer);
}

/** One transferable buffer holding `parts` end to end. */
function joined(parts: Buffer[]): ArrayBuffer {
  const total = parts.reduce((n, p) => n + p.length, 0);
  // Not zero-filled first: every byte is written below.
  const out = Buffer.allocUnsafeSlow(total);
  const ab = out.buffer as ArrayBuffer;
  let off = 0;
  for (const p of parts) off += p.copy(out, off);
  return ab;
}

/** False when a sample of the chunk does not compress: zstd on the whole chunk would not pay. */
function worthCompressing(data: Buffer): boolean {
  if (data.length <= SAMPLE_BYTES) return true;
  const sample = data.subarray(0, SAMPLE_BYTES);
  return sampler.compress(sample).length < SAMPLE_BYTES - SAMPLE_BYTES / 64;
}

const RAW = Buffer.from([FLAG_RAW]);
const nonces = new Nonces();
const ZSTD = Buffer.from([FLAG_ZSTD]);

/** The sealed blob of a chunk, in pieces (joined once with the batch's other blobs). */
function sealChunk(id: string, data: Buffer): Buffer[] {
  const z = worthCompressing(data) ? compressor.compress(data) : data;
  return z !== data && z.length < data.length
    ? sealParts(enc, [ZSTD, z], AAD.chunk(id), nonces.next())
    : sealParts(enc, [RAW, data], AAD.chunk(id), nonces.next());
}

/**
 * The chunk's plaintext, or why it is not the chunk `id`. With `into` (exactly `rawLength` bytes of the
 * caller's output) the plaintext lands there and the result is a view of it: a zstd chunk is decompressed
 * straight into it (15 us a 64 KiB chunk instead of 27 for a fresh buffer and its copy, measured); a raw one
 * is copied in (node's Decipher has no output buffer to decrypt into; smaller update() pieces copied from
 * cache were no faster, measured). `into` is scratch until the reply: nothing reaches the target before the
 * caller hears every blob of the load verified.
 */
function openChunk(id: string, blob: Buffer, rawLength: number | undefined, into?: Buffer): Buffer | string {
  const plain = open(enc, blob, AAD.chunk(id));
  if (plain === undefined || plain.length === 0 || (plain[0] !== FLAG_RAW && plain[0] !== FLAG_ZSTD)) {
    return 'does not authenticate (AEAD)';
  }
  let data: Buffer;
  try {
    if (plain[0] === FLAG_RAW) data = plain.subarray(1);
    else if (into === undefined) data = decompressor.decompress(plain.subarray(1));
    // A frame larger than `into` throws (zstd never writes past the buffer it is given).
    else data = into.subarray(0, dctx.decompress(into, plain.subarray(1)));
  } catch {
    return into === undefined ? 'does not decompress' : `does not decompress into ${into.length} bytes`;
  }
  if (chunkId(data) !== id) return 'does not match its id';
  if (rawLength !== undefined && data.length !== rawLength)
    return `is ${data.length} bytes, not ${rawLength}`;
  if (into === undefined || data.buffer === into.buffer) return data;
  if (data.length !== into.length) return `is ${data.length} bytes, not ${into.length}`;
  // fill, not copy: V8 copies into shared memory with relaxed atomics, byte by byte when the source is not
  // word-aligned (a raw plaintext starts after its flag byte): 4x slower than fill's memcpy, measured.
  into.fill(data);
  return into;
}

/** True when the plaintexts of `blobs` (each of known length) fit end to end in `bytes`. */
function fits(blobs: { rawLength?: number }[], bytes: number): boolean {
  let total = 0;
  for (const b of blobs) {
    if (b.rawLength === undefined) return false;
    total += b.rawLength;
  }
  return total <= bytes;
}

parentPort!.on('message', (msg: WorkerRequest) => {
  try {
    switch (msg.type) {
      case 'hash': {
        const data = Buffer.from(msg.data.buffer, msg.data.byteOffset, msg.data.byteLength);
        const ids: string[] = [];
        for (let off = 0; off < data.length; off += msg.chunkSize) {
          const chunk = data.subarray(off, Math.min(data.length, off + msg.chunkSize));
          ids.push(isAllZero(chunk) ? ZERO_CHUNK : chunkId(chunk));
        }
        held.set(msg.job, { data, chunkSize: msg.chunkSize });
        reply({ type: 'hashed', job: msg.job, ids });
        return;
      }
      case 'drop':
        held.delete(msg.job);
        return;
      case 'seal': {
        const batch = held.get(msg.job);
        held.delete(msg.job);
        if (batch === undefined) throw new Error(`batch ${msg.job} is not held`);
        const pieces: Buffer[] = [];
        const lengths: number[] = [];
        msg.ids.forEach((id, i) => {
          if (id === null) {
            lengths.push(0);
            return;
          }
          const off = i * batch.chunkSize;
          const blob = sealChunk(
            id,
            batch.data.subarray(off, Math.min(batch.data.length, off + batch.chunkSize)),
          );
          let length = 0;
          for (const piece of blob) {
            pieces.push(piece);
            length += piece.length;
          }
          lengths.push(length);
        });
        const ab = joined(pieces);
        reply({ type: 'sealed', job: msg.job, data: ab, lengths }, [ab]);
        return;
      }
      case 'open': {
        const data = Buffer.from(
          msg.data,
          msg.offset ?? 0,
          msg.length ?? msg.data.byteLength - (msg.offset ?? 0),
        );
        const failures: { index: number; reason: string }[] = [];
        const blobOf = (b: { offset: number; length: number }) =>
          data.subarray(b.offset, b.offset + b.length);
        if (!msg.discard && msg.out !== undefined && fits(msg.blobs, msg.out.byteLength)) {
          // Straight into the caller's shared memory (reused from load to load), each chunk at its place.
          const out = Buffer.from(msg.out);
          let off = 0;
          msg.blobs.forEach((b, index) => {
            const r = openChunk(b.id, blobOf(b), b.rawLength, out.subarray(off, off + b.rawLength!));
            if (typeof r === 'string') failures.push({ index, reason: r });
            off += b.rawLength!;
          });
          reply({
            type: 'opened',
            job: msg.job,
            failures,
            ...(failures.length === 0 ? { length: off } : {}),
          });
          return;
        }
        const plain: Buffer[] = [];
        msg.blobs.forEach((b, index) => {
          const r = openChunk(b.id, blobOf(b), b.rawLength);
          if (typeof r === 'string') failures.push({ index, reason: r });
          else if (!msg.discard) plain.push(r);
        });
        if (msg.discard || failures.length > 0) {
          reply({ type: 'opened', job: msg.job, failures });
          return;
        }
        const ab = joined(plain);
        reply({ type: 'opened', job: msg.job, failures, data: ab }, [ab]);
        return;
      }
    }
  } catch (err) {
    reply({ type: 'failed', job: msg.job, reason: err instanceof Error ? err.message : String(err) });
  }
});
