/**
 * Restore benchmark: how long restoring one disk out of an array snapshot takes, for disks of 64 MiB, 1 GiB
 * and 8 GiB, with the btrfs, reflink and copy drivers of the fs array, next to a plain `cp` of the same file
 * (`cp --reflink=never`, a byte copy) run in the same process, on the same file system. The restore measured is
 * the engine's data path (restore-common.ts placeDisk: the descriptor rewritten, the extent through
 * StorageArray.restoreFile); the vCenter calls around it do not depend on the disk size.
 *
 * Needs root and btrfs-progs: everything happens on a sparse btrfs image loop-mounted under the temporary
 * directory (the reflink driver is forced on it; the copy driver works anywhere). Page caches are dropped
 * before every timed step, so copies read from disk.
 *
 *   npm run build && node dist/bench/restore/run.js            # 64M,1G,8G (about 3-5 minutes)
 *   SNAPKEEPER_BENCH_SIZES=64M,1G node dist/bench/restore/run.js
 */
import { execFile as execFileCb } from 'node:child_process';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { openFsArray } from '../../src/arrays/fs/index.js';
import { initFsArray, layout } from '../../src/arrays/fs/layout.js';
import { hostExportFiles } from '../../src/engine/export-files.js';
import { placeDisk } from '../../src/engine/restore-common.js';
import { arrayDiskFiles } from '../../src/engine/restore-source.js';
import { fillLabDisk } from '../../src/lab/diskdata.js';
import { canMountLoopBtrfs, mountLoopBtrfs, unmountLoopBtrfs } from '../../src/lab/loop-btrfs.js';

const execFile = promisify(execFileCb);
const MiB = 1024 * 1024;

function parseSize(s: string): number {
  const m = /^(\d+)([MG])$/i.exec(s.trim());
  if (!m) throw new Error(`bad size ${s} (use e.g. 64M, 1G)`);
  return Number(m[1]) * (m[2]!.toUpperCase() === 'G' ? 1024 * MiB : MiB);
}

function label(bytes: number): string {
  return bytes >= 1024 * MiB ? `${bytes / 1024 / MiB} GiB` : `${bytes / MiB} MiB`;
}

async function dropCaches(): Promise<void> {
  await execFile('sync');
  await writeFile('/proc/sys/vm/drop_caches', '3\n').catch(() => undefined);
}

async function timed<T>(fn: () => Promise<T>): Promise<{ value: T; s: number }> {
  await dropCaches();
  const t0 = process.hrtime.bigint();
  const value = await fn();
  await execFile('sync');
  return { value, s: Number(process.hrtime.bigint() - t0) / 1e9 };
}

function descriptor(flat: string, bytes: number): string {
  return `# Disk DescriptorFile\nversion=1\nCID=fffffffe\nparentCID=ffffffff\ncreateType="vmfs"\n\nRW ${bytes / 512} VMFS "${flat}"\n`;
}

async function main(): Promise<void> {
  const can = await canMountLoopBtrfs();
  if (!can.ok) {
    console.error(`restore benchmark skipped: ${can.reason}`);
    process.exitCode = 1;
    return;
  }
  const sizes = (process.env.SNAPKEEPER_BENCH_SIZES ?? '64M,1G,8G').split(',').map(parseSize);
  const total = sizes.reduce((a, b) => a + b, 0);
  const dir = await mkdtemp(join(tmpdir(), 'snapkeeper-bench-restore-'));
  const image = join(dir, 'array.img');
  const root = join(dir, 'array');
  // Pool + a copy-driver snapshot + one restored file + one cp at a time, with room to spare.
  const imageBytes = Math.max(4 * 1024 * MiB, Math.ceil(total * 2 + Math.max(...sizes) * 2 + 2048 * MiB));
  await mountLoopBtrfs(image, root, imageBytes);
  try {
    await initFsArray(root, ['bench']);
    const volume = layout.volume(root, 'bench');
    console.log(`filling ${sizes.map(label).join(', ')} of lab data on a ${label(imageBytes)} btrfs image`);
    for (const [i, bytes] of sizes.entries()) {
      await mkdir(join(volume, `vm${i}`));
      await fillLabDisk(join(volume, `vm${i}`, `vm${i}_0-flat.vmdk`), `bench${i}`, 0, bytes);
      await writeFile(join(volume, `vm${i}`, `vm${i}_0.vmdk`), descriptor(`vm${i}_0-flat.vmdk`, bytes));
    }
    await execFile('sync');

    const rows: string[][] = [];
    for (const driver of ['btrfs', 'reflink', 'copy'] as const) {
      const array = await openFsArray({ name: 'bench', path: root, driver });
      const snap = await timed(() => array.snapshotGroup(['bench'], { label: `bench-${driver}` }));
      console.log(`${driver}: snapshot of ${label(total)} in ${snap.s.toFixed(2)} s`);
      const snapRoot = await array.snapshotVolumePath(snap.value.id, 'bench');
      for (const [i, bytes] of sizes.entries()) {
        const target = join(volume, `restore-${driver}-${i}`);
        await mkdir(target);
        const restore = await timed(() =>
          placeDisk(
            arrayDiskFiles(array, snap.value.id, 'bench', `vm${i}/vm${i}_0.vmdk`),
            hostExportFiles,
            target,
            `r${i}`,
          ),
        );
        await rm(target, { recursive: true, force: true });
        const cpTarget = join(volume, `cp-${driver}-${i}.vmdk`);
        const cp = await timed(() =>
          execFile('cp', ['--reflink=never', join(snapRoot, `vm${i}`, `vm${i}_0-flat.vmdk`), cpTarget]),
        );
        await rm(cpTarget, { force: true });
        rows.push([
          driver,
          label(bytes),
          restore.s.toFixed(3),
          String(restore.value.cloned),
          cp.s.toFixed(3),
          (restore.s / cp.s).toFixed(3),
        ]);
        console.log(`  ${rows[rows.length - 1]!.join('  ')}`);
      }
      await array.deleteSnapshot(snap.value.id);
    }
    const head = ['driver', 'disk', 'restore s', 'cloned', 'cp s', 'restore/cp'];
    const widths = head.map((h, c) => Math.max(h.length, ...rows.map((r) => r[c]!.length)));
    const line = (r: string[]) => r.map((v, c) => v.padStart(widths[c]!)).join('  ');
    console.log(`\n${line(head)}\n${rows.map(line).join('\n')}`);
  } finally {
    await unmountLoopBtrfs(image, root);
    await rm(dir, { recursive: true, force: true });
  }
}

await main();
