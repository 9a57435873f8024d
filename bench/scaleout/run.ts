/**
 * Scale-out benchmark (issue 10 "Benchmark", README.md beside this file): the offload of one backup of 8 disks
 * (the 2 GiB reference image and 7 mutations of it, reflinked copies on a btrfs array, one array snapshot)
 * as 8 disk jobs on the PostgreSQL job queue, taken by 1, 2 and 4 worker processes, into a fresh moto S3
 * bucket each time. Prints throughput, per-worker utilisation, queue latency (ready to started, p50/p99) and
 * queue statements per job.
 */
import { execFile as execFileCb, spawn } from 'node:child_process';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { loadavg, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import pg from 'pg';
import { initFsArray, layout, openFsArray } from '../../src/arrays/fs/index.js';
import { silentEvents } from '../../src/engine/context.js';
import type { WorkerJobEvent } from '../../src/engine/index.js';
import { type DiskJobPayload, followDiskJobs } from '../../src/engine/offload-disk.js';
import { connectionOf, PgBossJobQueue } from '../../src/jobs/index.js';
import { canMountLoopBtrfs, mountLoopBtrfs, unmountLoopBtrfs } from '../../src/lab/loop-btrfs.js';
import {
  createMotoBucket,
  MOTO_ACCESS_KEY,
  MOTO_REGION,
  MOTO_SECRET_KEY,
  motoAvailable,
  startMoto,
} from '../../src/lab/moto.js';
import { createPostgresDatabase, postgresAvailable, startPostgres } from '../../src/lab/postgres.js';
import { initRepository, openRepository, S3Backend } from '../../src/repository/index.js';
import { Secret } from '../../src/util/secret.js';
import { arg, bucketBytes, imagesDir, MiB } from '../common.js';

const execFile = promisify(execFileCb);
const here = dirname(fileURLToPath(import.meta.url));
const PASS = 'bench-passphrase';
const DISKS = 8;

function percentile(values: number[], p: number): number {
  if (values.length === 0) return 0;
  const s = [...values].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.ceil((p / 100) * s.length) - 1)]!;
}

interface WorkerProc {
  pid: number;
  events: { event: WorkerJobEvent; at: number }[];
  summary?: unknown;
  exited: Promise<void>;
  kill(): void;
}

function startWorkerProc(config: string, env: NodeJS.ProcessEnv): Promise<WorkerProc> {
  const child = spawn(process.execPath, [join(here, 'worker.js'), config, '1'], {
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const proc: WorkerProc = {
    pid: child.pid ?? 0,
    events: [],
    exited: new Promise((r) => child.on('close', () => r())),
    kill: () => child.kill('SIGTERM'),
  };
  return new Promise((resolveP, reject) => {
    const lines = createInterface({ input: child.stdout! });
    lines.on('line', (line) => {
      const m = JSON.parse(line) as {
        ready?: boolean;
        event?: WorkerJobEvent;
        at?: number;
        summary?: unknown;
      };
      if (m.ready) resolveP(proc);
      else if (m.event) proc.events.push({ event: m.event, at: m.at! });
      else if (m.summary) proc.summary = m.summary;
    });
    child.on('error', reject);
    child.on('close', (code) => reject(new Error(`worker exited (${code}) before it was ready`)));
  });
}

interface Row {
  workers: number;
  seconds: number;
  mbps: number;
  utilisation: number[];
  latencyP50: number;
  latencyP99: number;
  statementsPerJob: number;
  repoBytes: number;
  jobsPerWorker: number[];
}

async function main(): Promise<void> {
  const problems: string[] = [];
  const can = await canMountLoopBtrfs();
  if (!can.ok) problems.push(can.reason);
  if (!motoAvailable()) problems.push('python3 cannot import moto');
  if (!postgresAvailable())
    problems.push("PostgreSQL server binaries are missing (Debian's package postgresql)");
  const images = imagesDir();
  if (!images) problems.push('make-disk-image.py not found (pass --images DIR)');
  const counts = (arg('--workers') ?? '1,2,4').split(',').map(Number);
  if (counts.some((n) => !Number.isInteger(n) || n < 1 || n > 16))
    problems.push('--workers takes e.g. 1,2,4');
  if (problems.length > 0) {
    console.error(`scale-out benchmark cannot run:\n  ${problems.join('\n  ')}`);
    process.exitCode = 1;
    return;
  }

  const work = await mkdtemp(join(tmpdir(), 'snapkeeper-bench-scaleout-'));
  const image = join(work, 'array.img');
  const arrayRoot = join(work, 'array');
  console.log(
    `work directory ${work}; load average at start ${loadavg()
      .map((l) => l.toFixed(1))
      .join(' ')}`,
  );
  await mountLoopBtrfs(image, arrayRoot, 8 * 1024 * MiB);
  const moto = await startMoto({ logFile: join(work, 'moto.log') });
  const server = await startPostgres({ dataDir: join(work, 'pg'), unsafeFast: true });
  const rows: Row[] = [];
  try {
    await initFsArray(arrayRoot, ['bench']);
    const array = await openFsArray({ name: 'bench', path: arrayRoot, driver: 'btrfs' });
    const vmDir = join(layout.volume(arrayRoot, 'bench'), 'vm0');
    await mkdir(vmDir, { recursive: true });
    const t0 = Date.now();
    await execFile('python3', [join(images!, 'make-disk-image.py'), join(vmDir, 'disk0-flat.vmdk')]);
    for (let i = 1; i < DISKS; i++) {
      const f = join(vmDir, `disk${i}-flat.vmdk`);
      await execFile('cp', ['--reflink=always', join(vmDir, 'disk0-flat.vmdk'), f]);
      await execFile('python3', [join(images!, 'mutate-disk-image.py'), f, '1', '65536', String(i)]);
    }
    console.log(`8 disks made in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
    const snap = await array.snapshotGroup(['bench'], { label: 'scaleout' });
    const size = (await array.statFile(snap.id, 'bench', 'vm0/disk0-flat.vmdk')).size;
    const total = size * DISKS;

    const dbUrl = createPostgresDatabase(server, 'scaleout');
    const env = {
      BENCH_VC_PASSWORD: 'unused',
      BENCH_S3_KEY: MOTO_ACCESS_KEY,
      BENCH_S3_SECRET: MOTO_SECRET_KEY,
      BENCH_REPO_PASS: PASS,
      BENCH_PG_PASSWORD: server.password,
    };
    const stats = new pg.Client(connectionOf(dbUrl, new Secret(server.password)));
    await stats.connect();
    const statements = async () => {
      // The statistics collector flushes each backend's counters about once a second.
      await new Promise((r) => setTimeout(r, 1500));
      const r = await stats.query(
        'select xact_commit + xact_rollback as n from pg_stat_database where datname = current_database()',
      );
      return Number(r.rows[0].n);
    };

    for (const n of counts) {
      const bucket = `scaleout-${n}-${Date.now()}`;
      await createMotoBucket(moto.endpoint, bucket);
      const config = join(work, `config-${n}.yaml`);
      await writeFile(
        config,
        [
          'vcenter: { url: "https://127.0.0.1:1/sdk", user: bench, passwordEnv: BENCH_VC_PASSWORD, insecure: true }',
          `arrays: [{ name: bench, type: fs, path: "${arrayRoot}", driver: btrfs }]`,
          'repositories:',
          `  - { name: bench, type: s3, endpoint: "${moto.endpoint}", region: ${MOTO_REGION}, bucket: ${bucket}, pathStyle: true, accessKeyIdEnv: BENCH_S3_KEY, secretAccessKeyEnv: BENCH_S3_SECRET, passphraseEnv: BENCH_REPO_PASS }`,
          `workers: { concurrency: 1, queue: { url: "${dbUrl}", passwordEnv: BENCH_PG_PASSWORD } }`,
          '',
        ].join('\n'),
      );
      const backend = () =>
        new S3Backend({
          endpoint: moto.endpoint,
          bucket,
          region: MOTO_REGION,
          pathStyle: true,
          credentials: { accessKeyId: MOTO_ACCESS_KEY, secretAccessKey: MOTO_SECRET_KEY },
        });
      const initialised = await initRepository(backend(), PASS);
      const repositoryId = initialised.id;
      await initialised.close();

      const workers: WorkerProc[] = [];
      for (let i = 0; i < n; i++) workers.push(await startWorkerProc(config, env));
      const queue = new PgBossJobQueue({ url: dbUrl, password: new Secret(server.password) });
      await queue.start();
      const jobs: DiskJobPayload[] = Array.from({ length: DISKS }, (_, i) => ({
        v: 1,
        backupId: `scaleout-${n}`,
        repository: 'bench',
        repositoryId,
        vmId: 'vm-1',
        vmName: 'vm0',
        unit: `disk${i}`,
        files: [
          {
            path: `disk${i}-flat.vmdk`,
            datastorePath: `[bench] vm0/disk${i}-flat.vmdk`,
            array: 'bench',
            snapshotId: snap.id,
            volume: 'bench',
            relativePath: `vm0/disk${i}-flat.vmdk`,
            size,
            disk: `disk${i}`,
          },
        ],
      }));
      const before = await statements();
      const started = Date.now();
      const outputs = await followDiskJobs({
        queue,
        opId: `scaleout-${n}`,
        jobs,
        leaseMs: 120_000,
        retries: 1,
        seedFirst: !process.argv.includes('--no-seed'),
        events: silentEvents,
        onProgress: () => {},
      });
      const repo = await openRepository(backend(), PASS);
      const writer = await repo.writer();
      await writer.commit({
        backupId: `scaleout-${n}`,
        catalogId: '0123456789ab',
        task: 'bench',
        startedAt: new Date(started).toISOString(),
        record: {},
        vms: [{ vmId: 'vm-1', name: 'vm0', files: outputs.flatMap((o) => o.files) }],
      });
      await repo.close();
      const ms = Date.now() - started;
      const after = await statements();
      for (const w of workers) w.kill();
      await Promise.all(workers.map((w) => w.exited));
      await queue.close();

      const all = workers.flatMap((w) => w.events);
      const latencies = all.filter((e) => e.event.type === 'started').map((e) => e.event.waitedMs ?? 0);
      rows.push({
        workers: n,
        seconds: ms / 1000,
        mbps: total / 1e6 / (ms / 1000),
        utilisation: workers.map(
          (w) =>
            w.events.filter((e) => e.event.type === 'completed').reduce((s, e) => s + (e.event.ms ?? 0), 0) /
            ms,
        ),
        jobsPerWorker: workers.map((w) => w.events.filter((e) => e.event.type === 'completed').length),
        latencyP50: percentile(latencies, 50),
        latencyP99: percentile(latencies, 99),
        statementsPerJob: (after - before) / DISKS,
        repoBytes: await bucketBytes(moto.endpoint, bucket),
      });
      console.log(JSON.stringify(rows.at(-1)));
    }
    await stats.end();
    report(rows, total);
    await writeFile(join(process.cwd(), 'scaleout-results.json'), `${JSON.stringify(rows, null, 2)}\n`);
  } finally {
    await moto.stop().catch(() => {});
    await server.stop().catch(() => {});
    await unmountLoopBtrfs(image, arrayRoot).catch(() => {});
    if (!process.argv.includes('--keep')) await rm(work, { recursive: true, force: true });
  }
}

function report(rows: Row[], total: number): void {
  const base = rows.find((r) => r.workers === 1)?.seconds;
  console.log(
    `\n8 disks, ${(total / 1e6).toFixed(0)} MB in all; load average now ${loadavg()
      .map((l) => l.toFixed(1))
      .join(' ')}\n`,
  );
  console.log(
    '| workers | wall s | MB/s | speed-up | jobs per worker | utilisation per worker | queue latency p50 / p99 | queue statements per job | repository |',
  );
  console.log('| ---: | ---: | ---: | ---: | --- | --- | --- | ---: | ---: |');
  for (const r of rows) {
    console.log(
      `| ${r.workers} | ${r.seconds.toFixed(1)} | ${r.mbps.toFixed(0)} | ${base ? (base / r.seconds).toFixed(2) : '-'}x | ${r.jobsPerWorker.join(', ')} | ${r.utilisation.map((u) => `${(u * 100).toFixed(0)}%`).join(', ')} | ${r.latencyP50} ms / ${r.latencyP99} ms | ${r.statementsPerJob.toFixed(1)} | ${(r.repoBytes / 1e6).toFixed(0)} MB |`,
    );
  }
}

await main();
