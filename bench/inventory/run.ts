import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { labDown, labUp } from '../../src/lab/index.js';
import { parseStatsLine } from '../../src/util/stats.js';
import { runCli } from '../../test/helpers/cli.js';

/**
 * Inventory benchmark: a lab with N VMs (20 hosts in two clusters, 10 datastores, one 1 MB disk per VM), then
 * `snapkeeper inventory --json` as a child process; reports wall time, peak RSS and SOAP round trips. Run at
 * two sizes to show the round trips do not grow with the VM count. Targets at 2,000 VMs: < 3 s, < 300 MB.
 *
 *   npm run build && node dist/bench/inventory/run.js [--vms 200,2000]
 */

const TARGET_MS = 3000;
const TARGET_RSS_MB = 300;

function labSpec(vms: number) {
  const hosts = Array.from({ length: 20 }, (_, i) => `esx${String(i + 1).padStart(2, '0')}`);
  const datastores = Array.from({ length: 10 }, (_, i) => ({ name: `ds${i + 1}`, capacityGB: 100 }));
  return {
    datacenters: [
      {
        name: 'DC1',
        clusters: [
          { name: 'ProdA', hosts: hosts.slice(0, 10) },
          { name: 'ProdB', hosts: hosts.slice(10) },
        ],
        datastores,
        vms: Array.from({ length: vms }, (_, i) => ({
          name: `vm${String(i + 1).padStart(5, '0')}`,
          host: hosts[i % hosts.length]!,
          power: i % 10 === 9 ? 'poweredOff' : 'poweredOn',
          disks: [{ datastore: datastores[i % datastores.length]!.name, sizeMB: 1 }],
        })),
      },
    ],
  };
}

interface Measure {
  vms: number;
  wallMs: number;
  maxRssMB: number;
  roundTrips: number;
}

/** Runs the CLI once; with SNAPKEEPER_STATS=1 it reports its own peak RSS and SOAP round trips on stderr. */
async function measure(configFile: string, expectVms: number): Promise<Measure> {
  const started = process.hrtime.bigint();
  const { code, stdout, stderr } = await runCli(['--config', configFile, 'inventory', '--json'], {
    env: { SNAPKEEPER_STATS: '1' },
  });
  const wallMs = Number(process.hrtime.bigint() - started) / 1e6;
  if (code !== 0) throw new Error(`inventory failed (exit ${code}): ${stderr}`);
  const vms = (JSON.parse(stdout) as { vms: unknown[] }).vms.length;
  if (vms !== expectVms) throw new Error(`inventory listed ${vms} VMs, expected ${expectVms}`);
  const stats = parseStatsLine(stderr);
  if (!stats) throw new Error(`no statistics on stderr: ${stderr}`);
  return { vms, wallMs, maxRssMB: stats.maxRssBytes / 1024 ** 2, roundTrips: stats.soapRoundTrips };
}

async function main(): Promise<void> {
  const arg = process.argv.indexOf('--vms');
  const sizes = (arg >= 0 ? process.argv[arg + 1]! : '200,2000').split(',').map(Number);
  const root = await mkdtemp(join(tmpdir(), 'snapkeeper-bench-inventory-'));
  const results: Measure[] = [];
  try {
    for (const n of sizes) {
      const specFile = join(root, `spec-${n}.json`);
      await writeFile(specFile, JSON.stringify(labSpec(n)));
      const dir = join(root, `lab-${n}`);
      const t0 = Date.now();
      const state = await labUp({ specFile, dir });
      process.stderr.write(`lab with ${n} VMs up in ${((Date.now() - t0) / 1000).toFixed(1)} s\n`);
      try {
        await measure(state.configFile, n); // warm-up: page cache, simulator first-touch
        results.push(await measure(state.configFile, n));
      } finally {
        await labDown(dir);
      }
    }
  } finally {
    await rm(root, { recursive: true, force: true });
  }
  process.stdout.write('VMS    WALL(ms)  PEAK RSS(MB)  SOAP ROUND TRIPS\n');
  for (const r of results) {
    process.stdout.write(
      `${String(r.vms).padEnd(6)} ${r.wallMs.toFixed(0).padStart(8)}  ${r.maxRssMB.toFixed(0).padStart(12)}  ${String(r.roundTrips).padStart(16)}\n`,
    );
  }
  const big = results.find((r) => r.vms >= 2000);
  if (big) {
    const ok = big.wallMs < TARGET_MS && big.maxRssMB < TARGET_RSS_MB;
    process.stdout.write(
      `target at ${big.vms} VMs: < ${TARGET_MS} ms and < ${TARGET_RSS_MB} MB: ${ok ? 'met' : 'MISSED'}\n`,
    );
    if (!ok) process.exitCode = 1;
  }
  if (new Set(results.map((r) => r.roundTrips)).size > 1) {
    process.stdout.write('round trips differ between sizes\n');
    process.exitCode = 1;
  }
}

await main();
