import { open } from 'node:fs/promises';
import { Readable } from 'node:stream';
import { initRepository, openRepository, type RepositoryBackend } from '../../src/repository/index.js';
import { bufferSource, FAST, fileEntry, PASS, pseudoRandom, TestDirBackend } from './helpers.js';

/**
 * A child process for the repository tests that need one: a prune killed by SIGKILL part way, two writers
 * from two processes, the memory bound of an offload. Arguments: one JSON object (see `Job`). Prints one JSON
 * line with its result.
 */

interface Job {
  op: 'prune' | 'offload' | 'offload-file';
  root: string;
  /** SIGKILL itself on the n-th (1-based) call of this backend method. */
  killAt?: { method: 'save' | 'remove'; n: number };
  seed?: string;
  size?: number;
  backupId?: string;
  file?: string;
  chunkSize?: number;
}

function killing(backend: RepositoryBackend, killAt: Job['killAt']): RepositoryBackend {
  if (killAt === undefined) return backend;
  let calls = 0;
  const original = backend[killAt.method].bind(backend) as (...a: unknown[]) => Promise<void>;
  (backend as unknown as Record<string, unknown>)[killAt.method] = async (...args: unknown[]) => {
    if (++calls === killAt.n) process.kill(process.pid, 'SIGKILL');
    return original(...args);
  };
  return backend;
}

const job = JSON.parse(process.argv[2]!) as Job;
const backend = killing(new TestDirBackend(job.root), job.killAt);

if (job.op === 'prune') {
  const repo = await openRepository(backend, PASS, { workers: 1 });
  const report = await repo.prune({ safetyDelayMs: 0 });
  await repo.close();
  console.log(JSON.stringify(report));
} else if (job.op === 'offload') {
  const repo = await openRepository(backend, PASS, { workers: 1 });
  const w = await repo.writer();
  const f = await w.addFile(bufferSource('disk.vmdk', pseudoRandom(job.size!, job.seed!)));
  const s = await w.commit(fileEntry([f], job.backupId));
  await repo.close();
  console.log(JSON.stringify(s));
} else if (job.op === 'offload-file') {
  // Memory bound: a big (sparse) file through the whole write path, RSS sampled by the parent's measure.
  const repo = await initRepository(backend, PASS, { ...FAST, workers: undefined, chunkSize: job.chunkSize });
  const fh = await open(job.file!);
  const size = (await fh.stat()).size;
  let peak = 0;
  const sample = setInterval(() => {
    peak = Math.max(peak, process.memoryUsage().rss);
  }, 20);
  const w = await repo.writer({
    onProgress: () => {
      peak = Math.max(peak, process.memoryUsage().rss);
    },
  });
  const f = await w.addFile({
    path: 'big-flat.vmdk',
    size,
    async read(offset, length) {
      return Readable.from(
        fh.createReadStream({
          start: offset,
          end: offset + length - 1,
          autoClose: false,
          highWaterMark: 4 << 20,
        }),
      );
    },
  });
  await w.commit(fileEntry([f], 'big'));
  clearInterval(sample);
  await fh.close();
  await repo.close();
  const stored = f.chunks.filter((c) => c !== 'zero').length;
  console.log(
    JSON.stringify({
      peakRss: peak,
      maxRss: process.resourceUsage().maxRSS * 1024,
      size,
      stored,
      chunks: f.chunks.length,
    }),
  );
}
