/**
 * Orchestration benchmark (issue: backup engine): 1,000 VMs on 20 datastores, the simulator delaying
 * snapshot, suspend and power calls by 500 ms each, mode SNAPSHOT_EXCL_MEM. Prints wall time, median and
 * maximum quiesce window, SOAP round trips, peak RSS, and the ratio to the ideal schedule at the
 * configured concurrency (prepare and release phases each scheduled optimally under the same limits).
 *
 *   npm run build && node dist/bench/orchestration/run.js [--vms 1000] [--datastores 20] [--hosts 20]
 *       [--delay-ms 500] [--global 50] [--per-host 8] [--mode SNAPSHOT_EXCL_MEM]
 */
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import YAML from 'yaml';
import { labDown, labUp } from '../../src/lab/index.js';
import { canMountLoopBtrfs } from '../../src/lab/loop-btrfs.js';
import type { BackupRecord } from '../../src/model/backup.js';
import { idealMakespan } from '../../src/rules/index.js';
import { parseStatsLine } from '../../src/util/stats.js';
import { runCli } from '../../test/helpers/cli.js';

const { values } = parseArgs({
  options: {
    vms: { type: 'string', default: '1000' },
    datastores: { type: 'string', default: '20' },
    hosts: { type: 'string', default: '20' },
    'delay-ms': { type: 'string', default: '500' },
    global: { type: 'string', default: '50' },
    'per-host': { type: 'string', default: '8' },
    mode: { type: 'string', default: 'SNAPSHOT_EXCL_MEM' },
  },
});
const vmCount = Number(values.vms);
const dsCount = Number(values.datastores);
const hostCount = Number(values.hosts);
const delayMs = Number(values['delay-ms']);
const limits = { global: Number(values.global), perHost: Number(values['per-host']) };

function spec() {
  const hosts = Array.from({ length: hostCount }, (_, i) => `esx${String(i + 1).padStart(2, '0')}`);
  const datastores = Array.from({ length: dsCount }, (_, i) => ({
    name: `ds${String(i + 1).padStart(2, '0')}`,
    capacityGB: 500,
  }));
  const vms = Array.from({ length: vmCount }, (_, i) => ({
    name: `vm${String(i + 1).padStart(4, '0')}`,
    host: hosts[i % hostCount]!,
    disks: [{ datastore: datastores[i % dsCount]!.name, sizeMB: 1 }],
  }));
  return { datacenters: [{ name: 'DC1', clusters: [{ name: 'Bench', hosts }], datastores, vms }] };
}

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length === 0 ? 0 : (s[Math.floor((s.length - 1) / 2)]! + s[Math.ceil((s.length - 1) / 2)]!) / 2;
};

const root = await mkdtemp(join(tmpdir(), 'snapkeeper-bench-orch-'));
const dir = join(root, 'lab');
const specFile = join(root, 'spec.json');
await writeFile(specFile, JSON.stringify(spec()));
const btrfs = await canMountLoopBtrfs();
const delays = Object.fromEntries(
  ['CreateSnapshot_Task', 'RemoveSnapshot_Task', 'SuspendVM_Task', 'PowerOnVM_Task'].map((m) => [m, delayMs]),
);
console.log(
  `lab: ${vmCount} VMs, ${dsCount} datastores, ${hostCount} hosts, ${delayMs} ms per snapshot/suspend/power call`,
);
const labStart = performance.now();
const lab = await labUp({ specFile, dir, delays, ...(btrfs.ok ? { btrfsImageBytes: 8 * 1024 ** 3 } : {}) });
console.log(
  `lab up in ${((performance.now() - labStart) / 1000).toFixed(1)} s (array on ${btrfs.ok ? 'btrfs' : 'plain directories'})`,
);
try {
  const doc = YAML.parse(await readFile(lab.configFile, 'utf8'));
  doc.defaults = { ...(doc.defaults ?? {}), concurrency: limits };
  // Enough HTTP requests in flight for every VM the engine may prepare at once.
  doc.vcenter.maxConcurrentRequests = Math.min(64, limits.global + 4);
  await writeFile(lab.configFile, YAML.stringify(doc));

  const runStart = performance.now();
  const run = await runCli(
    ['--config', lab.configFile, '--json', 'backup', '--task', 'lab-all', '--mode', String(values.mode)],
    { env: { SNAPKEEPER_STATS: '1' } },
  );
  const wallMs = performance.now() - runStart;
  const record = JSON.parse(run.stdout) as BackupRecord;
  const stats = parseStatsLine(run.stderr);
  if (record.state !== 'complete') throw new Error(`backup ${record.state}: ${record.error ?? run.stderr}`);
  const quiesce = record.vms.map((v) => v.quiesce?.ms ?? 0);
  const jobs = record.vms.map((v) => ({ host: v.host, durationMs: delayMs }));
  const idealPhase = idealMakespan(jobs, limits);
  const ideal = 2 * idealPhase;
  const started = Date.parse(record.startedAt);
  const snapshotAt = Date.parse(record.snapshotAt ?? record.startedAt);
  const finished = Date.parse(record.finishedAt ?? record.startedAt);
  const engineMs = finished - started;

  const rows: [string, string][] = [
    ['VMs backed up', String(record.vms.length)],
    ['concurrency (global / per host)', `${limits.global} / ${limits.perHost}`],
    ['wall time, whole command', `${(wallMs / 1000).toFixed(2)} s`],
    ['backup run (record start to finish)', `${(engineMs / 1000).toFixed(2)} s`],
    ['  prepare + array snapshot', `${((snapshotAt - started) / 1000).toFixed(2)} s`],
    ['  release + record', `${((finished - snapshotAt) / 1000).toFixed(2)} s`],
    ['ideal schedule (prepare + release)', `${(ideal / 1000).toFixed(2)} s`],
    ['ratio wall / ideal', `${(wallMs / ideal).toFixed(3)}x`],
    ['ratio backup run / ideal', `${(engineMs / ideal).toFixed(3)}x`],
    [
      'quiesce window median / max',
      `${(median(quiesce) / 1000).toFixed(2)} s / ${(Math.max(...quiesce) / 1000).toFixed(2)} s`,
    ],
    ['SOAP round trips', String(stats?.soapRoundTrips ?? 'n/a')],
    ['round trips per VM', stats ? (stats.soapRoundTrips / record.vms.length).toFixed(2) : 'n/a'],
    ['peak RSS', stats ? `${(stats.maxRssBytes / 1024 ** 2).toFixed(0)} MB` : 'n/a'],
  ];
  const w = Math.max(...rows.map((r) => r[0].length));
  for (const [k, v] of rows) console.log(`${k.padEnd(w)}  ${v}`);
  console.log(`target: ratio within 1.3x of ideal, under 500 MB RSS`);
} finally {
  await labDown(dir);
  await rm(root, { recursive: true, force: true });
}
