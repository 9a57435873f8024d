/**
 * The repository's hash functions on the reference image, one thread, CPU time (docs/repository-format.md,
 * "Choice of hash functions"): chunk ids (HMAC-SHA256 of version 1, keyed BLAKE3 of version 2) over the
 * image's 64 KiB chunks that are not all zero (the writer hashes no zero chunk), and object names (SHA-256,
 * BLAKE3) over 16 MiB buffers, the size of a pack. Each figure is the median of `ROUNDS` rounds.
 *
 *   node dist/bench/hash/run.js /tmp/bench/arr/array/snapshots/b1--*\/bench/vm0/disk-flat.vmdk [MiB to read]
 */
import { closeSync, openSync, readSync } from 'node:fs';
import { hashes } from '../../src/repository/crypto.js';

const ROUNDS = 3;
const CHUNK = 1 << 16;
const PACK = 16 << 20;

const path = process.argv[2];
if (path === undefined) {
  console.error('usage: node dist/bench/hash/run.js IMAGE [MiB to read, default 2048]');
  process.exit(2);
}
const limit = Number(process.argv[3] ?? 2048) * (1 << 20);

/** The image's first `limit` bytes (read once: the timing is the hash alone). */
function readImage(): Buffer {
  const fd = openSync(path!, 'r');
  try {
    const out = Buffer.allocUnsafe(limit);
    let got = 0;
    while (got < limit) {
      const n = readSync(fd, out, got, Math.min(limit - got, 64 << 20), got);
      if (n === 0) break;
      got += n;
    }
    return out.subarray(0, got);
  } finally {
    closeSync(fd);
  }
}

function cpuSeconds(fn: () => void): number {
  const before = process.cpuUsage();
  fn();
  const used = process.cpuUsage(before);
  return (used.user + used.system) / 1e6;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

const image = readImage();
const zero = Buffer.alloc(CHUNK);
const chunks: Buffer[] = [];
for (let off = 0; off < image.length; off += CHUNK) {
  const c = image.subarray(off, Math.min(image.length, off + CHUNK));
  if (!c.equals(zero.subarray(0, c.length))) chunks.push(c);
}
const chunkBytes = chunks.reduce((n, c) => n + c.length, 0);
const packs: Buffer[] = [];
for (let off = 0; off + PACK <= image.length; off += PACK) packs.push(image.subarray(off, off + PACK));
const packBytes = packs.length * PACK;

const macKey = Buffer.alloc(32, 0x5a);
const versions = [
  { version: 1, algorithms: { chunkId: 'hmac-sha256', objectName: 'sha256' } },
  { version: 2, algorithms: { chunkId: 'blake3-keyed', objectName: 'blake3' } },
] as const;
const runs = versions.map((v) => ({
  ...v,
  h: hashes(v.algorithms, macKey),
  ids: [] as number[],
  names: [] as number[],
}));
// Rounds alternate between the versions, so that a busy moment of a shared machine falls on both.
for (let r = 0; r < ROUNDS; r++) {
  for (const run of runs) {
    run.ids.push(
      cpuSeconds(() => {
        for (const c of chunks) run.h.chunkId(c);
      }),
    );
    run.names.push(
      cpuSeconds(() => {
        for (const p of packs) run.h.contentName(p);
      }),
    );
  }
}
const results = runs.map((run) => {
  const ids = median(run.ids);
  const names = median(run.names);
  return {
    version: run.version,
    chunkId: run.algorithms.chunkId,
    chunks: chunks.length,
    chunkMBps: Math.round(chunkBytes / 1e6 / ids),
    chunkCpuSeconds: Number(ids.toFixed(3)),
    objectName: run.algorithms.objectName,
    packs: packs.length,
    packMBps: Math.round(packBytes / 1e6 / names),
    packCpuSeconds: Number(names.toFixed(3)),
  };
});
console.log(JSON.stringify(results, null, 2));
