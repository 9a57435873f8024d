import assert from 'node:assert/strict';
import { open } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { openArray } from '../../src/arrays/index.js';
import { loadConfig } from '../../src/config/load.js';
import { labDiskChunk } from '../../src/lab/diskdata.js';
import type { BackupRecord } from '../../src/model/backup.js';
import { withCatalog } from '../helpers/catalog.js';
import { completeBackup, type runCli, runJson } from '../helpers/cli.js';
import { editConfig, standardSpec, startLab, type TestLab } from '../helpers/lab.js';
import { inventoryOf, inventoryState } from '../helpers/state.js';

/** The inventory by name, for before/after comparisons. */
async function readRange(path: string, offset: number, length: number): Promise<Buffer> {
  const f = await open(path, 'r');
  try {
    const buf = Buffer.alloc(length);
    await f.read(buf, 0, length, offset);
    return buf;
  } finally {
    await f.close();
  }
}

describe('mount, unmount, attach and detach on a copy-driver lab', () => {
  let lab: TestLab;
  let older: BackupRecord;
  let newer: BackupRecord;
  let cli: (...args: string[]) => ReturnType<typeof runCli>;

  before(async () => {
    lab = await startLab(await standardSpec());
    // Keep one version: the older backup expires unless it is mounted.
    await editConfig(lab.configPath, (doc) => {
      doc.tasks[0].retention = { versions: 1 };
      doc.tasks[0].mode = 'ASIS';
    });
    cli = (...args: string[]) => runJson(lab.configPath, ...args);
    older = await completeBackup(lab.configPath, '--task', 'lab-all');
  });
  after(async () => {
    await lab?.stop();
  });

  it('mounts a backup as datastores through a clone, pins it, and unmounts it leaving vCenter as before', async () => {
    const before0 = inventoryState(await inventoryOf(lab.configPath));
    const run = await cli('mount', '--backup', older.id);
    assert.equal(run.code, 0, run.stdout + run.stderr);
    const m = run.json;
    assert.equal(m.host, older.vms[0]!.host, 'default host: that of the backup’s first VM');
    assert.deepEqual(m.datastores.map((d: { name: string }) => d.name).sort(), [
      `snapkeeper-${older.id}-ds-a`,
      `snapkeeper-${older.id}-ds-b`,
    ]);
    const inv = await inventoryOf(lab.configPath);
    for (const d of m.datastores) {
      const ds = inv.datastores.find((x) => x.name === d.name)!;
      assert.deepEqual(ds.hosts, [m.host]);
      assert.equal(ds.url, d.path);
    }
    // The mounted datastore shows the backup's bytes; writing to it never changes the backup.
    const dsA = m.datastores.find((d: { source: string }) => d.source === 'ds-a');
    const web0 = join(dsA.path, 'web01', 'web01_0-flat.vmdk');
    assert.ok((await readRange(web0, 0, 4096)).equals(labDiskChunk('web01', 0, 0, 4096)));
    const f = await open(web0, 'r+');
    await f.write(Buffer.alloc(4096, 1), 0, 4096, 0);
    await f.close();
    const config = loadConfig(lab.configPath);
    const array = await openArray(config.arrays[0]!);
    const snapFile = join(
      await array.snapshotVolumePath(older.snapshots[0]!.snapshotId, 'ds-a'),
      'web01',
      'web01_0-flat.vmdk',
    );
    assert.ok(
      (await readRange(snapFile, 0, 4096)).equals(labDiskChunk('web01', 0, 0, 4096)),
      'the snapshot is unchanged',
    );

    // Mounted: neither delete nor expire may remove it.
    const del = await cli('delete', '--backup', older.id);
    assert.equal(del.code, 3);
    assert.equal(del.json.error.code, 'BACKUP_MOUNTED');
    newer = await completeBackup(lab.configPath, '--task', 'lab-all');
    const expire = await cli('expire');
    assert.equal(expire.code, 0, expire.stdout);
    assert.ok(
      !expire.json.deleted.some((d: { id: string }) => d.id === older.id),
      'a mounted backup is not expired',
    );
    const again = await cli('mount', '--backup', older.id);
    assert.equal(again.code, 3);
    assert.equal(again.json.error.code, 'BACKUP_MOUNTED');

    const un = await cli('unmount', '--backup', older.id);
    assert.equal(un.code, 0, un.stdout + un.stderr);
    assert.deepEqual(
      inventoryState(await inventoryOf(lab.configPath)),
      before0,
      'vCenter is as before the mount',
    );
    assert.deepEqual(await array.listClones(), [], 'the clone is deleted');
    await withCatalog(config.catalog.path, async (catalog) => {
      assert.deepEqual(await catalog.listMounts(), []);
    });
    const expired = await cli('expire');
    assert.ok(
      expired.json.deleted.some((d: { id: string }) => d.id === older.id),
      'unmounted, it expires',
    );
  });

  it('attaches standard disks to a running VM and detaches them, leaving vCenter as before', async () => {
    const before0 = inventoryState(await inventoryOf(lab.configPath));
    const run = await cli('attach', '--backup', newer.id, '--vm', 'db01', '--to', 'app01');
    assert.equal(run.code, 1, `RDM disks are skipped with a warning: ${run.stdout}${run.stderr}`);
    const a = run.json;
    assert.equal(a.warnings.filter((w: { code: string }) => w.code === 'RDM_NOT_ATTACHED').length, 2);
    assert.equal(a.mount.created, true);
    assert.equal(a.disks.length, 1);
    assert.equal(a.disks[0].file, `[snapkeeper-${newer.id}-ds-a] db01/db01_0.vmdk`);
    const inv = await inventoryOf(lab.configPath);
    const app = inv.vms.find((v) => v.name === 'app01')!;
    assert.equal(app.powerState, 'poweredOn');
    const attached = app.disks.find((d) => d.file === a.disks[0].file);
    assert.ok(attached, 'the VM has the disk');
    assert.equal(attached.unitNumber, a.disks[0].unitNumber);
    const ds = inv.datastores.find((d) => d.name === `snapkeeper-${newer.id}-ds-a`)!;
    const flat = join(ds.url, 'db01', 'db01_0-flat.vmdk');
    assert.ok(
      (await readRange(flat, 1 << 20, 4096)).equals(labDiskChunk('db01', 0, 1 << 20, 4096)),
      'the attached disk holds the backup’s bytes',
    );

    // A second attach reuses the mount.
    const second = await cli(
      'attach',
      '--backup',
      newer.id,
      '--vm',
      'web01',
      '--to',
      'web01',
      '--disk',
      newer.vms.find((v) => v.name === 'web01')!.disks[1]!.label,
    );
    assert.equal(second.code, 0, second.stdout + second.stderr);
    assert.equal(second.json.mount.created, false);
    assert.equal((await cli('unmount', '--backup', newer.id)).json.error.code, 'MOUNT_IN_USE');

    const d1 = await cli('detach', '--to', 'web01');
    assert.equal(d1.code, 0, d1.stdout + d1.stderr);
    assert.equal(d1.json.detached[0].unmounted, false, 'another attach still uses the mount');
    const d2 = await cli('detach', '--to', 'app01', '--backup', newer.id);
    assert.equal(d2.code, 0, d2.stdout + d2.stderr);
    assert.equal(d2.json.detached[0].unmounted, true);
    assert.deepEqual(
      inventoryState(await inventoryOf(lab.configPath)),
      before0,
      'vCenter is as before the attach',
    );
    const config = loadConfig(lab.configPath);
    assert.deepEqual(await (await openArray(config.arrays[0]!)).listClones(), []);
    const rec = await cli('recover');
    assert.deepEqual(rec.json.actions, [], 'nothing left for recover');
    // The VMs that had the backup's disks attached back up as before (no trace of the removed datastore).
    const again = await cli('backup', '--vm', 'app01', 'web01', '--mode', 'ASIS');
    assert.equal(again.json.state, 'complete', again.stdout + again.stderr);
  });
});
