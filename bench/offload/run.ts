/**
 * Offload benchmark (issue 8 "Benchmark"): snapkeeper's repository side by side with restic and borg, in one
 * run, on the 2 GiB reference image of shared/bench/make-disk-image.py read from btrfs array snapshots as in
 * production, encryption on:
 *   1. full offload of the image (snapshot b1)
 *   2. incremental after `mutate-disk-image.py IMG 1 65536 7` (snapshot b2; snapkeeper reads only the array's
 *      changed ranges between b1 and b2, restic and borg read the whole file)
 *   3. incremental after `1 4096 8` (snapshot b3)
 *   4. restore of b3 to a file
 * into a local repository (on the machine's disk, not the btrfs image), then the same into a moto S3 server
 * for snapkeeper and restic (borg has no S3), plus moto's own cost: raw PutObject / GetObject of as many
 * 16 MiB objects as snapkeeper's full offload stored, 4 in flight (the "within 80%" figure).
 *
 * Every step runs in its own process under /usr/bin/time (wall time, peak RSS). The snapshot file is read
 * once before each step so every tool starts with it in the page cache (as the reference figures were taken),
 * and dirty data is synced before each step so no step pays for the writeback of the ones before it.
 * Restores are checked byte for byte against the snapshot (outside the timing).
 *
 * Needs root, btrfs-progs, restic and borgbackup (`apt-get install -y restic borgbackup`), python3 with moto.
 *
 *   npm run build && node dist/bench/offload/run.js [--no-s3] [--keep] [--images DIR]
 *
 * `--images DIR`: where make-disk-image.py and mutate-disk-image.py are (default: the shared bench folder
 * beside the repository, else ./bench-data). Prints a table and writes results.json in the work directory.
 */
import { execFile as execFileCb, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createReadStream, existsSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { initFsArray, layout, openFsArray } from '../../src/arrays/fs/index.js';
import { canMountLoopBtrfs, mountLoopBtrfs, unmountLoopBtrfs } from '../../src/lab/loop-btrfs.js';
import {
  createMotoBucket,
  MOTO_ACCESS_KEY,
  MOTO_SECRET_KEY,
  motoAvailable,
  startMoto,
} from '../../src/lab/moto.js';
import { bucketBytes, imagesDir, MiB } from '../common.js';
import type { BackendSpec, StepResult, StepSpec } from './step.js';

const execFile = promisify(execFileCb);
const here = dirname(fileURLToPath(import.meta.url));
const PASS = 'bench-passphrase';
const FILE = 'vm0/disk-flat.vmdk';

interface Measured {
  tool: string;
  target: 'local' | 's3';
  step: string;
  seconds: number;
  mbps: number;
  rssMiB: number;
  repoBytes?: number;
  addedBytes?: number;
  detail?: string;
}

async function which(cmd: string): Promise<boolean> {
  return execFile('sh', ['-c', `command -v ${cmd}`]).then(
    () => true,
    () => false,
  );
}

/**
 * Runs a command under /usr/bin/time; returns its wall seconds, peak RSS and stdout. The page cache's dirty
 * data is written out first (`sync`, untimed): otherwise a step pays for the writeback of the steps before
 * it (a restic or borg repository of gigabytes), and its figure depends on the order of the steps.
 */
async function timed(
  cmd: string,
  args: string[],
  options: { cwd?: string; env?: NodeJS.ProcessEnv } = {},
): Promise<{ seconds: number; rssMiB: number; stdout: string }> {
  await execFile('sync');
  const fmt = '__TIME__ %e %M';
  return new Promise((resolveP, reject) => {
    const child = spawn('/usr/bin/time', ['-f', fmt, cmd, ...args], {
      cwd: options.cwd,
      env: { ...process.env, ...options.env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    let err = '';
    child.stdout.on('data', (d: Buffer) => {
      out += d.toString();
    });
    child.stderr.on('data', (d: Buffer) => {
      err += d.toString();
    });
    child.on('error', reject);
    child.on('exit', (code) => {
      const m = /__TIME__ ([\d.]+) (\d+)/.exec(err);
      if (code !== 0 || !m) {
        reject(
          new Error(`${cmd} ${args.join(' ')} failed (${code}):\n${err.slice(-2000)}\n${out.slice(-1000)}`),
        );
        return;
      }
      resolveP({ seconds: Number(m[1]), rssMiB: Number(m[2]) / 1024, stdout: out });
    });
  });
}

/** Bytes under `path` (0 before it exists: a repository made by the first step). */
async function duBytes(path: string): Promise<number> {
  if (!existsSync(path)) return 0;
  const { stdout } = await execFile('du', ['-sb', path]);
  return Number(stdout.split(/\s/)[0]);
}

async function sha256(path: string): Promise<string> {
  const h = createHash('sha256');
  for await (const c of createReadStream(path, { highWaterMark: 8 * MiB })) h.update(c as Buffer);
  return h.digest('hex');
}

/** Reads a file so that it is in the page cache (every tool starts warm). */
async function warm(path: string): Promise<void> {
  await execFile('sh', ['-c', `cat '${path}' > /dev/null`]);
}

async function main(): Promise<void> {
  const problems: string[] = [];
  const can = await canMountLoopBtrfs();
  if (!can.ok) problems.push(can.reason);
  for (const tool of ['restic', 'borg', '/usr/bin/time']) {
    if (!(await which(tool))) problems.push(`${tool} is missing (apt-get install -y restic borgbackup time)`);
  }
  const withS3 = !process.argv.includes('--no-s3');
  if (withS3 && !motoAvailable()) problems.push('python3 cannot import moto (or pass --no-s3)');
  const images = imagesDir();
  if (!images) problems.push('make-disk-image.py not found (pass --images DIR)');
  if (problems.length > 0) {
    console.error(`offload benchmark cannot run:\n  ${problems.join('\n  ')}`);
    process.exitCode = 1;
    return;
  }

  const work = await mkdtemp(join(tmpdir(), 'snapkeeper-bench-offload-'));
  const image = join(work, 'array.img');
  const arrayRoot = join(work, 'array');
  const results: Measured[] = [];
  const step = join(here, 'step.js');
  let stopMoto: (() => Promise<void>) | undefined;
  console.log(`work directory ${work}`);
  await mountLoopBtrfs(image, arrayRoot, 8 * 1024 * MiB);
  try {
    await initFsArray(arrayRoot, ['bench']);
    const array = await openFsArray({ name: 'bench', path: arrayRoot, driver: 'btrfs' });
    const live = join(layout.volume(arrayRoot, 'bench'), FILE);
    await mkdir(dirname(live), { recursive: true });
    const t0 = Date.now();
    await execFile('python3', [join(images!, 'make-disk-image.py'), live]);
    console.log(`reference image made in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
    const snaps: { id: string; dir: string }[] = [];
    const snap = async (label: string) => {
      const s = await array.snapshotGroup(['bench'], { label });
      snaps.push({ id: s.id, dir: await array.snapshotVolumePath(s.id, 'bench') });
    };
    await snap('b1');
    await execFile('python3', [join(images!, 'mutate-disk-image.py'), live, '1', '65536', '7']);
    await snap('b2');
    await execFile('python3', [join(images!, 'mutate-disk-image.py'), live, '1', '4096', '8']);
    await snap('b3');
    const size = (await array.statFile(snaps[0]!.id, 'bench', FILE)).size;
    const mb = size / 1e6;
    const b3sum = await sha256(join(snaps[2]!.dir, FILE));
    const stepNames = ['full', 'incr 64K', 'incr 4K'];

    type Timed = Awaited<ReturnType<typeof timed>>;
    /**
     * One tool's three offloads (each from a warm page cache) and its restore of b3, checked byte for byte
     * against the snapshot (outside the timing); a row for each.
     */
    const measure = async (
      tool: string,
      target: 'local' | 's3',
      sizeOf: () => Promise<number>,
      offload: (i: number, snap: { id: string; dir: string }) => Promise<{ r: Timed; detail?: string }>,
      restore: () => Promise<{ r: Timed; file: string; remove: string; detail?: string }>,
    ) => {
      let before = await sizeOf();
      for (const [i, s] of snaps.entries()) {
        await warm(join(s.dir, FILE));
        const { r, detail } = await offload(i, s);
        const after = await sizeOf();
        results.push({
          tool,
          target,
          step: stepNames[i]!,
          seconds: r.seconds,
          mbps: mb / r.seconds,
          rssMiB: r.rssMiB,
          repoBytes: after,
          addedBytes: after - before,
          ...(detail !== undefined ? { detail } : {}),
        });
        before = after;
      }
      const { r, file, remove, detail } = await restore();
      const same = (await sha256(file)) === b3sum;
      await rm(remove, { recursive: true, force: true });
      if (!same) throw new Error(`${tool} ${target} restore differs from the snapshot`);
      results.push({
        tool,
        target,
        step: 'restore',
        seconds: r.seconds,
        mbps: mb / r.seconds,
        rssMiB: r.rssMiB,
        detail: detail ?? 'verified',
      });
    };

    const ours = (target: 'local' | 's3', backend: BackendSpec, sizeOf: () => Promise<number>) =>
      measure(
        'snapkeeper',
        target,
        sizeOf,
        async (i, s) => {
          const spec: StepSpec = {
            op: 'offload',
            backend,
            passphrase: PASS,
            init: i === 0,
            array: arrayRoot,
            volume: 'bench',
            file: FILE,
            snapshot: s.id,
            backupId: `b${i + 1}`,
            ...(i > 0 ? { previous: { backupId: `b${i}`, snapshot: snaps[i - 1]!.id } } : {}),
          };
          const r = await timed(process.execPath, [step, JSON.stringify(spec)]);
          const res = JSON.parse(r.stdout.trim().split('\n').pop()!) as StepResult;
          const changed =
            res.changedBytes !== undefined
              ? ` (changed ranges ${(res.changedBytes / MiB).toFixed(1)} MiB)`
              : '';
          return { r, detail: `read ${((res.bytesRead ?? 0) / MiB).toFixed(0)} MiB${changed}` };
        },
        async () => {
          const out = join(work, `restore-snapkeeper-${target}.img`);
          const spec: StepSpec = { op: 'restore', backend, passphrase: PASS, backupId: 'b3', out };
          const r = await timed(process.execPath, [step, JSON.stringify(spec)]);
          const restored = JSON.parse(r.stdout.trim().split('\n').at(-1) ?? '{}') as StepResult;
          const detail = `verified; the final fsync ${(restored.syncSeconds ?? 0).toFixed(2)} s of it`;
          return { r, file: out, remove: out, detail };
        },
      );

    const restic = async (
      target: 'local' | 's3',
      repo: string,
      env: NodeJS.ProcessEnv,
      sizeOf: () => Promise<number>,
    ) => {
      const e = { ...env, RESTIC_PASSWORD: PASS, RESTIC_CACHE_DIR: join(work, 'restic-cache', target) };
      await execFile('restic', ['-r', repo, 'init'], { env: { ...process.env, ...e } });
      await measure(
        'restic',
        target,
        sizeOf,
        async (_, s) => ({
          r: await timed('restic', ['-r', repo, 'backup', '--quiet', FILE], { cwd: s.dir, env: e }),
        }),
        async () => {
          const out = join(work, `restore-restic-${target}`);
          const r = await timed('restic', ['-r', repo, 'restore', 'latest', '--target', out], { env: e });
          return { r, file: join(out, FILE), remove: out };
        },
      );
    };

    const borg = async () => {
      const repo = join(work, 'borg-repo');
      const e = {
        BORG_PASSPHRASE: PASS,
        BORG_BASE_DIR: join(work, 'borg-base'),
        BORG_RELOCATED_REPO_ACCESS_IS_OK: 'yes',
      };
      await execFile('borg', ['init', '-e', 'repokey-blake2', repo], { env: { ...process.env, ...e } });
      await measure(
        'borg',
        'local',
        () => duBytes(repo),
        async (i, s) => ({
          r: await timed('borg', ['create', '--compression', 'lz4', `${repo}::b${i + 1}`, FILE], {
            cwd: s.dir,
            env: e,
          }),
        }),
        async () => {
          const out = join(work, 'restore-borg');
          await mkdir(out);
          const r = await timed('borg', ['extract', `${repo}::b3`], { cwd: out, env: e });
          return { r, file: join(out, FILE), remove: out };
        },
      );
    };

    console.log('local repositories ...');
    const ourLocal = join(work, 'snapkeeper-repo');
    await ours('local', { type: 'local', path: ourLocal }, () => duBytes(ourLocal));
    const resticLocal = join(work, 'restic-repo');
    await restic('local', resticLocal, {}, () => duBytes(resticLocal));
    await borg();

    if (withS3) {
      console.log('moto S3 ...');
      const moto = await startMoto({ logFile: join(work, 'moto.log') });
      stopMoto = moto.stop;
      await createMotoBucket(moto.endpoint, 'snapkeeper');
      await ours('s3', { type: 's3', endpoint: moto.endpoint, bucket: 'snapkeeper' }, () =>
        bucketBytes(moto.endpoint, 'snapkeeper'),
      );
      await createMotoBucket(moto.endpoint, 'restic');
      await restic(
        's3',
        `s3:${moto.endpoint}/restic`,
        { AWS_ACCESS_KEY_ID: MOTO_ACCESS_KEY, AWS_SECRET_ACCESS_KEY: MOTO_SECRET_KEY },
        () => bucketBytes(moto.endpoint, 'restic'),
      );
      const full = results.find((r) => r.tool === 'snapkeeper' && r.target === 's3' && r.step === 'full')!;
      const objectBytes = 16 * MiB;
      const objects = Math.max(1, Math.round((full.addedBytes ?? 0) / objectBytes));
      await createMotoBucket(moto.endpoint, 'raw');
      for (const op of ['raw-put', 'raw-get'] as const) {
        const spec: StepSpec = { op, endpoint: moto.endpoint, bucket: 'raw', objects, objectBytes };
        const r = await timed(process.execPath, [step, JSON.stringify(spec)]);
        const res = JSON.parse(r.stdout.trim().split('\n').pop()!) as StepResult;
        results.push({
          tool: 'moto raw',
          target: 's3',
          step: op === 'raw-put' ? `PutObject ${objects} x 16 MiB` : `GetObject ${objects} x 16 MiB`,
          seconds: res.seconds,
          mbps: (objects * objectBytes) / 1e6 / res.seconds,
          rssMiB: r.rssMiB,
        });
      }
    }
    report(results, size);
    await writeFile(join(work, 'results.json'), `${JSON.stringify({ size, results }, null, 2)}\n`);
    console.log(`\nresults: ${join(work, 'results.json')}`);
  } finally {
    await stopMoto?.();
    await unmountLoopBtrfs(image, arrayRoot).catch((e: Error) => console.error(`unmount: ${e.message}`));
    if (!process.argv.includes('--keep')) {
      const json = await readFile(join(work, 'results.json'), 'utf8').catch(() => undefined);
      await rm(work, { recursive: true, force: true });
      if (json) {
        await mkdir(work, { recursive: true });
        await writeFile(join(work, 'results.json'), json);
      }
    }
  }
}

function report(results: Measured[], size: number): void {
  const mb = (n: number | undefined) => (n === undefined ? '' : `${(n / 1e6).toFixed(0)} MB`);
  console.log(`\nimage ${(size / MiB).toFixed(0)} MiB; MB/s = image bytes / wall time\n`);
  console.log('| tool | target | step | wall s | MB/s | repository | added | peak RSS MiB | note |');
  console.log('|---|---|---|---|---|---|---|---|---|');
  for (const r of results) {
    console.log(
      `| ${r.tool} | ${r.target} | ${r.step} | ${r.seconds.toFixed(2)} | ${r.mbps.toFixed(0)} | ${mb(r.repoBytes)} | ${mb(r.addedBytes)} | ${r.rssMiB.toFixed(0)} | ${r.detail ?? ''} |`,
    );
  }
  const get = (tool: string, target: string, step: string) =>
    results.find((r) => r.tool === tool && r.target === target && r.step === step);
  const lines: string[] = [];
  for (const target of ['local', 's3'] as const) {
    const rows: [string, string][] = [
      ['full offload', 'full'],
      ['incremental after 1 65536 7', 'incr 64K'],
      ['incremental after 1 4096 8', 'incr 4K'],
      ['restore', 'restore'],
    ];
    for (const [what, step] of rows) {
      const us = get('snapkeeper', target, step);
      if (!us) continue;
      for (const other of ['restic', 'borg']) {
        const them = get(other, target, step);
        if (!them) continue;
        const speed = them.seconds / us.seconds;
        const bytes =
          us.addedBytes !== undefined && them.addedBytes !== undefined
            ? `, bytes added ${(us.addedBytes / them.addedBytes).toFixed(2)}x theirs, repository ${((us.repoBytes ?? 0) / (them.repoBytes ?? 1)).toFixed(2)}x`
            : '';
        lines.push(`${target} ${what}: ${speed.toFixed(2)}x ${other}'s speed${bytes}`);
      }
    }
  }
  const put = results.find((r) => r.tool === 'moto raw' && r.step.startsWith('PutObject'));
  const getRaw = results.find((r) => r.tool === 'moto raw' && r.step.startsWith('GetObject'));
  const s3full = get('snapkeeper', 's3', 'full');
  const s3restore = get('snapkeeper', 's3', 'restore');
  if (put && s3full) {
    lines.push(
      `s3 full offload vs moto's raw PutObject of the same bytes: ${((100 * put.seconds) / s3full.seconds).toFixed(0)}% (${put.seconds.toFixed(2)} s raw / ${s3full.seconds.toFixed(2)} s)`,
    );
  }
  if (getRaw && s3restore) {
    lines.push(
      `s3 restore vs moto's raw GetObject of the same bytes: ${((100 * getRaw.seconds) / s3restore.seconds).toFixed(0)}% (${getRaw.seconds.toFixed(2)} s raw / ${s3restore.seconds.toFixed(2)} s)`,
    );
  }
  console.log(`\n${lines.join('\n')}`);
}

await main();
