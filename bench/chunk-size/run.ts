/**
 * Chunk-size benchmark of the repository format (docs/repository-format.md, "Choice of chunk size"): the
 * reference image of the offload benchmarks, offloaded three times (the image, then after the 64 KiB
 * clustered pass, then after the 4 KiB scattered pass) into a fresh in-memory repository per chunk size, then
 * restored. Prints repository size, bytes added per pass, wall time and throughput, and the index size.
 * In memory on purpose: the format's cost without a disk's (the backends have their own benchmark).
 *
 *   python3 SHARED/bench/make-disk-image.py DIR/v0.img
 *   cp DIR/v0.img DIR/v1.img && python3 SHARED/bench/mutate-disk-image.py DIR/v1.img 1 65536 7
 *   cp DIR/v1.img DIR/v2.img && python3 SHARED/bench/mutate-disk-image.py DIR/v2.img 1 4096 8
 *   npm run build && node dist/bench/chunk-size/run.js DIR [64K,256K,1M,4M]
 */
import { open } from 'node:fs/promises';
import { join } from 'node:path';
import { initRepository, MemoryBackend } from '../../src/repository/index.js';

const MiB = 1 << 20;
const SIZES: Record<string, number> = { '64K': 1 << 16, '256K': 1 << 18, '1M': 1 << 20, '4M': 1 << 22 };

function total(backend: MemoryBackend, prefix = ''): number {
  return backend.keys(prefix).reduce((n, k) => n + backend.bytes(k)!.length, 0);
}

async function main(): Promise<void> {
  const dir = process.argv[2];
  if (dir === undefined) throw new Error('usage: run.js DIR [64K,256K,1M,4M]');
  const sizes = (process.argv[3] ?? '64K,256K,1M,4M').split(',');
  const rows: string[] = [];
  for (const label of sizes) {
    const chunkSize = SIZES[label];
    if (chunkSize === undefined) throw new Error(`chunk size ${label} is not one of ${Object.keys(SIZES)}`);
    const backend = new MemoryBackend();
    const repo = await initRepository(backend, 'bench', { chunkSize, kdf: { N: 1 << 15 } });
    const cells: string[] = [];
    let lastFile: Awaited<ReturnType<Awaited<ReturnType<typeof repo.writer>>['addFile']>> | undefined;
    for (const img of ['v0.img', 'v1.img', 'v2.img']) {
      const fh = await open(join(dir, img));
      const size = (await fh.stat()).size;
      const before = total(backend);
      const cpu0 = process.cpuUsage();
      const t0 = process.hrtime.bigint();
      const w = await repo.writer();
      lastFile = await w.addFile({
        path: 'disk-flat.vmdk',
        size,
        async read(offset, length) {
          return fh.createReadStream({
            start: offset,
            end: offset + length - 1,
            autoClose: false,
            highWaterMark: 4 * MiB,
          });
        },
      });
      await w.commit({
        backupId: img,
        catalogId: '000000000000',
        task: 'bench',
        startedAt: new Date().toISOString(),
        record: {},
        vms: [{ vmId: 'vm-1', name: 'bench', files: [lastFile] }],
      });
      const s = Number(process.hrtime.bigint() - t0) / 1e9;
      const cpu = process.cpuUsage(cpu0);
      const cpuS = (cpu.user + cpu.system) / 1e6;
      await fh.close();
      const added = total(backend) - before;
      cells.push(
        `${(added / 1e6).toFixed(0)} MB, ${s.toFixed(1)} s (${(size / 1e6 / s).toFixed(0)} MB/s), ${cpuS.toFixed(1)} cpu-s`,
      );
    }
    let restored = 0;
    const cpu0 = process.cpuUsage();
    const t0 = process.hrtime.bigint();
    await repo.restoreFile(lastFile!, {
      async write(_offset, data) {
        restored += data.length;
      },
    });
    const rs = Number(process.hrtime.bigint() - t0) / 1e9;
    const rcpu = process.cpuUsage(cpu0);
    const size = lastFile!.size;
    rows.push(
      `| ${label} | ${cells.join(' | ')} | ${(total(backend) / 1e6).toFixed(0)} MB | ` +
        `${(total(backend, 'index/') / 1e6).toFixed(1)} MB | ${rs.toFixed(1)} s (${(size / 1e6 / rs).toFixed(0)} MB/s), ` +
        `${((rcpu.user + rcpu.system) / 1e6).toFixed(1)} cpu-s |`,
    );
    console.error(rows.at(-1), `restored ${restored} non-zero bytes`);
    await repo.close();
  }
  console.log(
    '| chunk | full offload: stored, time | after `1 65536 7`: added | after `1 4096 8`: added | repository | indexes | restore |',
  );
  console.log('|---|---|---|---|---|---|---|');
  for (const r of rows) console.log(r);
}

await main();
