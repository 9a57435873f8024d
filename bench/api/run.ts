/**
 * API benchmark (issue 9): 50 concurrent clients page through 10,000 catalog backups with
 * `GET /api/v1/backups?limit=50` (following nextCursor, then starting over) for 20 s, over keep-alive
 * connections, against `snapkeeper serve` running as a child process. Prints requests per second, p50, p99
 * and max latency, errors (must be 0) and the daemon's RSS. Target: p99 under 100 ms.
 *
 *   node dist/bench/api/run.js            (BENCH_CLIENTS, BENCH_SECONDS, BENCH_BACKUPS override the sizes)
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { Agent, request } from 'node:http';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Catalog } from '../../src/catalog/index.js';
import type { BackupRecord } from '../../src/model/backup.js';
import { createToken } from '../../src/server/index.js';

const CLI = fileURLToPath(new URL('../../../bin/snapkeeper.js', import.meta.url));
const CLIENTS = Number(process.env.BENCH_CLIENTS ?? 50);
const SECONDS = Number(process.env.BENCH_SECONDS ?? 20);
const BACKUPS = Number(process.env.BENCH_BACKUPS ?? 10_000);
const PAGE = 50;

/** A record shaped like a real three-VM backup (disks, an RDM warning, quiesce windows). */
function record(i: number, start: number): BackupRecord {
  const at = new Date(start + i * 60_000).toISOString();
  const end = new Date(start + i * 60_000 + 42_000).toISOString();
  const vm = (n: number) => ({
    id: `vm-${n}`,
    name: `vm${String(n).padStart(4, '0')}`,
    instanceUuid: `uuid-${n}`,
    host: 'esx01',
    folder: 'prod',
    datacenter: 'DC1',
    vmxFile: `[ds-a] vm${n}/vm${n}.vmx`,
    homeDatastore: 'ds-a',
    datastores: ['ds-a'],
    powerState: 'poweredOn' as const,
    requestedMode: 'SNAPSHOT_EXCL_MEM' as const,
    effectiveMode: n % 3 === 0 ? ('ASIS' as const) : ('SNAPSHOT_EXCL_MEM' as const),
    consistency: n % 3 === 0 ? ('crash' as const) : ('file-system' as const),
    quiesce: { start: at, end: at, ms: 900 },
    state: 'ok' as const,
    disks: [
      {
        key: 2000,
        label: 'Hard disk 1',
        kind: 'flat' as const,
        capacityBytes: 42949672960,
        file: `[ds-a] vm${n}/vm${n}.vmdk`,
        datastore: 'ds-a',
        diskMode: 'persistent',
        included: true,
      },
    ],
    warnings:
      n % 3 === 0 ? [{ code: 'MODE_CHANGED_RDM', message: `vm${n} has RDM disks: backed up ASIS` }] : [],
  });
  return {
    id: `bench-${String(i).padStart(6, '0')}`,
    task: `task-${i % 10}`,
    state: 'complete',
    startedAt: at,
    finishedAt: end,
    snapshotAt: at,
    snapshots: [
      {
        array: 'a1',
        snapshotId: `snap-${i}`,
        volumes: ['vol1'],
        pointInTime: 'atomic',
        driver: 'btrfs',
        datastores: { 'ds-a': ['vol1'] },
      },
    ] as BackupRecord['snapshots'],
    vms: [vm(i * 3), vm(i * 3 + 1), vm(i * 3 + 2)] as BackupRecord['vms'],
    warnings: [],
  };
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address() as { port: number };
      s.close(() => resolve(port));
    });
  });
}

function rssKiB(pid: number, field: 'VmRSS' | 'VmHWM'): Promise<number> {
  return readFile(`/proc/${pid}/status`, 'utf8').then((t) =>
    Number(new RegExp(`${field}:\\s+(\\d+)`).exec(t)?.[1] ?? 0),
  );
}

function get(
  agent: Agent,
  port: number,
  path: string,
  token: string,
): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request(
      { host: '127.0.0.1', port, path, agent, headers: { authorization: `Bearer ${token}` } },
      (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => {
          body += c;
        });
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      },
    );
    req.on('error', reject);
    req.end();
  });
}

/** CPU seconds (user + system) the process has used, from /proc (clock ticks of 1/100 s). */
async function cpuSeconds(pid: number): Promise<number> {
  const fields = (await readFile(`/proc/${pid}/stat`, 'utf8')).split(') ')[1]!.split(' ');
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? Number.NaN;
}

async function main(): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'snapkeeper-bench-api-'));
  let daemon: ChildProcess | undefined;
  try {
    const configPath = join(dir, 'snapkeeper.yaml');
    // No vCenter is needed to list the catalog: the daemon's start-up recover fails (logged) and it serves on.
    await writeFile(
      configPath,
      [
        'vcenter: { url: "https://127.0.0.1:9/sdk", user: bench, passwordEnv: BENCH_VC_PASSWORD }',
        'arrays: [{ name: a1, type: fs, path: ./array }]',
        'server: { logFile: ./daemon.log }',
        '',
      ].join('\n'),
    );
    const catalog = Catalog.create(join(dir, 'snapkeeper.db'));
    const t0 = Date.now();
    const start = Date.UTC(2025, 0, 1);
    for (let i = 0; i < BACKUPS; i++) await catalog.insertBackup(record(i, start));
    const { token } = await createToken(catalog, { name: 'bench', role: 'read-only' });
    await catalog.close();
    process.stdout.write(`inserted ${BACKUPS} backups in ${((Date.now() - t0) / 1000).toFixed(1)} s\n`);

    const port = await freePort();
    // BENCH_DAEMON_NODE_ARGS: node options for the daemon, e.g. "--cpu-prof --cpu-prof-dir=/tmp/prof".
    const nodeArgs = (process.env.BENCH_DAEMON_NODE_ARGS ?? '').split(' ').filter((a) => a !== '');
    daemon = spawn(
      process.execPath,
      [...nodeArgs, CLI, '--config', configPath, 'serve', '--listen', `127.0.0.1:${port}`],
      {
        env: { ...process.env, BENCH_VC_PASSWORD: 'bench-only' },
        stdio: ['ignore', 'ignore', 'pipe'],
      },
    );
    await new Promise<void>((resolve, reject) => {
      let err = '';
      daemon!.stderr!.on('data', (b: Buffer) => {
        err += b.toString();
        if (err.includes('listening on')) resolve();
      });
      daemon!.on('exit', (code) => reject(new Error(`daemon exited ${code}: ${err}`)));
    });

    const agent = new Agent({ keepAlive: true, maxSockets: CLIENTS });
    const latencies: number[] = [];
    // Requests started after the first seconds: the daemon's summaries of the pages are made by then.
    const steady: number[] = [];
    const STEADY_AFTER_MS = 5000;
    let began = Date.now();
    let errors = 0;
    let pagesWalked = 0;
    const deadline = Date.now() + SECONDS * 1000;
    const client = async () => {
      let cursor: string | undefined;
      while (Date.now() < deadline) {
        const path = `/api/v1/backups?limit=${PAGE}${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`;
        const t = process.hrtime.bigint();
        try {
          const res = await get(agent, port, path, token);
          const ms = Number(process.hrtime.bigint() - t) / 1e6;
          latencies.push(ms);
          if (Date.now() - began >= STEADY_AFTER_MS) steady.push(ms);
          if (res.status !== 200) {
            errors++;
            cursor = undefined;
            continue;
          }
          const page = JSON.parse(res.body) as { items: unknown[]; nextCursor?: string };
          if (page.items.length !== PAGE && page.nextCursor !== undefined) errors++;
          cursor = page.nextCursor;
          pagesWalked++;
        } catch {
          errors++;
          cursor = undefined;
        }
      }
    };
    began = Date.now();
    const cpuBefore = await cpuSeconds(daemon.pid!);
    await Promise.all(Array.from({ length: CLIENTS }, client));
    const elapsed = (Date.now() - began) / 1000;
    const cpu = (await cpuSeconds(daemon.pid!)) - cpuBefore;
    const rss = await rssKiB(daemon.pid!, 'VmRSS');
    const hwm = await rssKiB(daemon.pid!, 'VmHWM');
    agent.destroy();
    latencies.sort((a, b) => a - b);
    const p50 = percentile(latencies, 50);
    const p99 = percentile(latencies, 99);
    const lines = [
      `clients ${CLIENTS}, ${SECONDS} s, ${BACKUPS} backups, pages of ${PAGE}`,
      `requests ${latencies.length}  (${(latencies.length / elapsed).toFixed(0)} req/s), pages walked ${pagesWalked}`,
      `latency p50 ${p50.toFixed(1)} ms  p99 ${p99.toFixed(1)} ms  max ${(latencies[latencies.length - 1] ?? 0).toFixed(1)} ms`,
      `after the first ${STEADY_AFTER_MS / 1000} s: p50 ${percentile(
        steady.sort((a, b) => a - b),
        50,
      ).toFixed(
        1,
      )} ms  p99 ${percentile(steady, 99).toFixed(1)} ms  max ${(steady[steady.length - 1] ?? 0).toFixed(1)} ms`,
      `errors ${errors}`,
      `daemon CPU ${cpu.toFixed(1)} s: ${((cpu * 1000) / Math.max(1, latencies.length)).toFixed(2)} ms per request (the machine's load decides the rest)`,
      `daemon RSS ${(rss / 1024).toFixed(0)} MiB (peak ${(hwm / 1024).toFixed(0)} MiB)`,
      `target p99 < 100 ms: ${p99 < 100 ? 'met' : 'NOT met'}`,
    ];
    process.stdout.write(`${lines.join('\n')}\n`);
    if (errors > 0) process.exitCode = 1;
  } finally {
    if (daemon && daemon.exitCode === null) {
      daemon.kill('SIGTERM');
      await new Promise((r) => daemon!.once('exit', r));
    }
    await rm(dir, { recursive: true, force: true });
  }
}

await main();
