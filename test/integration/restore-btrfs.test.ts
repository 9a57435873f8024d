import assert from 'node:assert/strict';
import { mkdtemp, open, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { openArray } from '../../src/arrays/index.js';
import { loadConfig } from '../../src/config/load.js';
import { labDiskChunk } from '../../src/lab/diskdata.js';
import { type LabState, labDown, labUp } from '../../src/lab/index.js';
import { canMountLoopBtrfs } from '../../src/lab/loop-btrfs.js';
import type { BackupRecord } from '../../src/model/backup.js';
import { type runCli, runJson } from '../helpers/cli.js';
import { isRoot } from '../helpers/require.js';

const btrfs = await canMountLoopBtrfs();
const needsSkip = !btrfs.ok && process.env.SNAPKEEPER_REQUIRE_ALL !== '1';

const GiB = 1024 * 1024 * 1024;
const MiB = 1024 * 1024;

/** Compares `count` 1 MiB windows spread over the file (first and last included) with the lab's bytes. */
async function assertLabSamples(
  path: string,
  vm: string,
  index: number,
  size: number,
  count: number,
): Promise<void> {
  assert.equal((await stat(path)).size, size);
  const f = await open(path, 'r');
  try {
    for (let i = 0; i < count; i++) {
      const off = Math.floor(((size - MiB) * i) / Math.max(count - 1, 1) / 4096) * 4096;
      const buf = Buffer.alloc(MiB);
      await f.read(buf, 0, MiB, off);
      assert.ok(
        buf.equals(labDiskChunk(vm, index, off, MiB)),
        `${path}: bytes at ${off} are those at backup time`,
      );
    }
  } finally {
    await f.close();
  }
}

/**
 * Restore on a btrfs array: every restore is a clone (`cloned: true`), whatever the disk's size — a 4 GiB disk
 * is restored exactly as a 64 MiB one (the clone is asserted, not the time) — and the bytes are those of
 * backup time. The lab is made here, with an image large enough for a 4 GiB disk.
 */
describe('restore on a btrfs lab', {
  skip: needsSkip ? `btrfs lab unavailable: ${btrfs.reason}` : false,
}, () => {
  let root: string;
  let state: LabState;
  let backup: BackupRecord;
  let cli: (...args: string[]) => ReturnType<typeof runCli>;

  before(async () => {
    assert.ok(isRoot && btrfs.ok, `btrfs lab required (SNAPKEEPER_REQUIRE_ALL=1): ${btrfs.reason}`);
    root = await mkdtemp(join(tmpdir(), 'snapkeeper-restore-btrfs-'));
    const spec = {
      datacenters: [
        {
          name: 'DC1',
          hosts: ['esx01'],
          datastores: [{ name: 'ds-a', capacityGB: 50 }],
          vms: [
            { name: 'big01', host: 'esx01', disks: [{ datastore: 'ds-a', sizeMB: 4096 }] },
            { name: 'small01', host: 'esx01', disks: [{ datastore: 'ds-a', sizeMB: 64 }] },
          ],
        },
      ],
    };
    await writeFile(join(root, 'spec.json'), JSON.stringify(spec));
    state = await labUp({
      specFile: join(root, 'spec.json'),
      dir: join(root, 'lab'),
      btrfsImageBytes: 8 * GiB,
    });
    cli = (...args: string[]) => runJson(state.configFile, ...args);
    const run = await cli('backup', '--task', 'lab-all', '--mode', 'ASIS');
    backup = run.json;
    assert.equal(backup.state, 'complete', run.stdout + run.stderr);
    assert.equal(backup.snapshots[0]!.driver, 'btrfs');
    // The live disks change after the backup.
    for (const vm of state.vms) {
      const f = await open(vm.disks[0]!.path, 'r+');
      await f.write(Buffer.alloc(MiB, 0x5a), 0, MiB, 0);
      await f.close();
    }
  });
  after(async () => {
    if (state) await labDown(state.dir);
    if (root) await rm(root, { recursive: true, force: true });
  });

  it('restores a 4 GiB disk as a clone, like a 64 MiB one, with the bytes of backup time', async () => {
    const big = await cli('restore', '--backup', backup.id, '--vm', 'big01', '--as', 'big01-r');
    assert.equal(big.code, 0, big.stdout + big.stderr);
    assert.equal(big.json.cloned, true);
    assert.equal(big.json.disks[0].cloned, true);
    assert.equal(big.json.bytes, 4 * GiB);
    const small = await cli('restore', '--backup', backup.id, '--vm', 'small01', '--as', 'small01-r');
    assert.equal(small.code, 0, small.stdout + small.stderr);
    assert.equal(small.json.cloned, true);
    assert.equal(small.json.bytes, 64 * MiB);
    await assertLabSamples(big.json.disks[0].path.replace(/\.vmdk$/, '-flat.vmdk'), 'big01', 0, 4 * GiB, 33);
    await assertLabSamples(
      small.json.disks[0].path.replace(/\.vmdk$/, '-flat.vmdk'),
      'small01',
      0,
      64 * MiB,
      64,
    );
  });

  it('restores to the original place and single disks as clones', async () => {
    const orig = await cli('restore', '--backup', backup.id, '--vm', 'small01', '--original', '--force');
    assert.equal(orig.code, 0, orig.stdout + orig.stderr);
    assert.equal(orig.json.cloned, true);
    await assertLabSamples(
      state.vms.find((v) => v.name === 'small01')!.disks[0]!.path,
      'small01',
      0,
      64 * MiB,
      64,
    );
    const label = backup.vms.find((v) => v.name === 'big01')!.disks[0]!.label;
    const restoreBigDisk = (...where: string[]) =>
      cli('restore', '--backup', backup.id, '--vm', 'big01', '--disk', label, ...where);
    const files = await restoreBigDisk('--files-only', '--datastore', 'ds-a');
    assert.equal(files.code, 0, files.stdout + files.stderr);
    assert.equal(files.json.disks[0].cloned, true);
    const into = await restoreBigDisk('--to', 'small01');
    assert.equal(into.code, 0, into.stdout + into.stderr);
    assert.equal(into.json.disks[0].cloned, true);
  });

  it('mounts through a btrfs clone and unmounts without leaving it', async () => {
    const m = await cli('mount', '--backup', backup.id);
    assert.equal(m.code, 0, m.stdout + m.stderr);
    const array = await openArray(loadConfig(state.configFile).arrays[0]!);
    assert.equal((await array.listClones()).length, 1);
    const a = await cli('attach', '--backup', backup.id, '--vm', 'small01', '--to', 'big01');
    assert.equal(a.code, 0, a.stdout + a.stderr);
    assert.equal(a.json.mount.created, false);
    assert.equal((await cli('detach', '--to', 'big01')).code, 0);
    assert.equal((await cli('unmount', '--backup', backup.id)).code, 0);
    assert.deepEqual(await array.listClones(), []);
  });
});
