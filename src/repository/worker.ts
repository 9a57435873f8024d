import { parentPort, workerData } from 'node:worker_threads';
import { compress, decompress } from 'zstd-napi';
import { AAD, chunkId, FLAG_RAW, FLAG_ZSTD, isAllZero, open, seal, ZERO_CHUNK } from './crypto.js';
import type { WorkerReply, WorkerRequest } from './pool.js';

/**
 * A worker of the pool (pool.ts): hashes chunks, then on the main thread's word compresses and seals them;
 * opens and verifies sealed chunks for restore and check. Chunk bytes come and go as transferred
 * ArrayBuffers: no copy between threads.
 */

const { encKey, macKey, level } = workerData as { encKey: Uint8Array; macKey: Uint8Array; level: number };
const enc = Buffer.from(encKey);
const mac = Buffer.from(macKey);
/** Chunks hashed and waiting for the main thread's store-or-drop word. */
const held = new Map<number, Buffer>();

function reply(msg: WorkerReply, transfer: ArrayBuffer[] = []): void {
  parentPort!.postMessage(msg, transfer);
}

/** A Buffer that owns its whole ArrayBuffer, so it can be transferred. */
function owned(parts: Buffer[]): Buffer {
  const total = parts.reduce((n, p) => n + p.length, 0);
  const out = Buffer.from(new ArrayBuffer(total));
  let off = 0;
  for (const p of parts) {
    p.copy(out, off);
    off += p.length;
  }
  return out;
}

parentPort!.on('message', (msg: WorkerRequest) => {
  try {
    switch (msg.type) {
      case 'hash': {
        const data = Buffer.from(msg.data);
        if (isAllZero(data)) {
          reply({ type: 'hashed', job: msg.job, id: ZERO_CHUNK });
          return;
        }
        held.set(msg.job, data);
        reply({ type: 'hashed', job: msg.job, id: chunkId(mac, data) });
        return;
      }
      case 'drop':
        held.delete(msg.job);
        return;
      case 'seal': {
        const data = held.get(msg.job);
        held.delete(msg.job);
        if (data === undefined) throw new Error(`job ${msg.job} is not held`);
        const z = compress(data, { compressionLevel: level });
        const sealed =
          z.length < data.length
            ? seal(enc, [Buffer.from([FLAG_ZSTD]), z], AAD.chunk(msg.id))
            : seal(enc, [Buffer.from([FLAG_RAW]), data], AAD.chunk(msg.id));
        const out = owned([sealed]);
        reply({ type: 'sealed', job: msg.job, blob: out.buffer as ArrayBuffer, rawLength: data.length }, [
          out.buffer as ArrayBuffer,
        ]);
        return;
      }
      case 'open': {
        const plain = open(enc, Buffer.from(msg.blob), AAD.chunk(msg.id));
        if (plain === undefined || plain.length === 0 || (plain[0] !== FLAG_RAW && plain[0] !== FLAG_ZSTD)) {
          reply({ type: 'failed', job: msg.job, reason: 'does not authenticate (AEAD)' });
          return;
        }
        let data: Buffer;
        try {
          data = plain[0] === FLAG_ZSTD ? decompress(plain.subarray(1)) : plain.subarray(1);
        } catch {
          reply({ type: 'failed', job: msg.job, reason: 'does not decompress' });
          return;
        }
        if (chunkId(mac, data) !== msg.id) {
          reply({ type: 'failed', job: msg.job, reason: 'its content does not match its id' });
          return;
        }
        if (msg.rawLength !== undefined && data.length !== msg.rawLength) {
          reply({ type: 'failed', job: msg.job, reason: `is ${data.length} bytes, not ${msg.rawLength}` });
          return;
        }
        if (msg.discard) {
          reply({ type: 'opened', job: msg.job, rawLength: data.length });
          return;
        }
        const out = owned([data]);
        reply({ type: 'opened', job: msg.job, rawLength: data.length, data: out.buffer as ArrayBuffer }, [
          out.buffer as ArrayBuffer,
        ]);
        return;
      }
    }
  } catch (err) {
    reply({ type: 'failed', job: msg.job, reason: err instanceof Error ? err.message : String(err) });
  }
});
