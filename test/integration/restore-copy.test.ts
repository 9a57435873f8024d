import assert from 'node:assert/strict';
import { open, readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { Catalog } from '../../src/catalog/index.js';
import { loadConfig } from '../../src/config/load.js';
import { checkNoDeltaDisks } from '../../src/engine/restore-common.js';
import { SnapkeeperError } from '../../src/errors.js';
import { labDiskChunk } from '../../src/lab/diskdata.js';
import type { BackupRecord, DiskRecord } from '../../src/model/backup.js';
import { destroyVm } from '../../src/vsphere/vm-ops.js';
import { withCatalog } from '../helpers/catalog.js';
import { completeBackup, runCli, runJson } from '../helpers/cli.js';
import { standardSpec, startLab, type TestLab } from '../helpers/lab.js';
import { inventoryOf, inventoryState, poolFiles, withVcenter } from '../helpers/state.js';

/** The whole inventory, fresh from the simulator. */
/**
 * What restore must leave alone, by name: VMs (power, host, folder, disks) and datastores. A VM's list of
 * datastores is limited to existing ones: the simulator never drops a datastore from it (SPEC 7 quirk).
 */
/** Every file below the array's pool (the datastores' contents), with sizes. */
/** Asserts a flat file holds exactly the lab's deterministic bytes of disk `index` of `vm`. */
async function assertLabBytes(path: string, vm: string, index: number, size: number): Promise<void> {
  assert.equal((await stat(path)).size, size, `${path} has the disk's size`);
  const f = await open(path, 'r');
  try {
    const chunk = 4 * 1024 * 1024;
    for (let off = 0; off < size; off += chunk) {
      const n = Math.min(chunk, size - off);
      const buf = Buffer.alloc(n);
      await f.read(buf, 0, n, off);
      assert.ok(
        buf.equals(labDiskChunk(vm, index, off, n)),
        `${path}: bytes at ${off} are those of ${vm} disk ${index} at backup time`,
      );
    }
  } finally {
    await f.close();
  }
}

/** Overwrites 64 KiB at the start and in the middle of a file: the live disk changes after the backup. */
async function scribble(path: string): Promise<void> {
  const f = await open(path, 'r+');
  try {
    const size = (await f.stat()).size;
    const junk = Buffer.alloc(64 * 1024, 0xa5);
    await f.write(junk, 0, junk.length, 0);
    await f.write(junk, 0, junk.length, Math.floor(size / 2));
  } finally {
    await f.close();
  }
}

function flatOf(descriptor: string): string {
  return descriptor.replace(/\.vmdk$/, '-flat.vmdk');
}

describe('restore on a copy-driver lab', () => {
  let lab: TestLab;
  let backup: BackupRecord;
  let cli: (...args: string[]) => ReturnType<typeof runCli>;
  const sizes = (vm: string) => backup.vms.find((v) => v.name === vm)!.disks;

  before(async () => {
    const spec = await standardSpec();
    // A tiny datastore (4 MiB) for the free-space check.
    spec.datacenters[0].datastores.push({ name: 'ds-tiny', capacityGB: 0.004 });
    lab = await startLab(spec);
    cli = (...args: string[]) => runJson(lab.configPath, ...args);
    backup = await completeBackup(lab.configPath, '--task', 'lab-all');
    assert.equal(backup.snapshots[0]!.driver, 'copy');
    // After the backup: the live disks change and app01 is deleted.
    for (const vm of lab.state.vms) {
      if (vm.name === 'off01' || vm.name === 'susp01') continue;
      for (const d of vm.disks) if (d.kind === 'flat' || d.kind === 'independent') await scribble(d.path);
    }
    await withVcenter(loadConfig(lab.configPath).vcenter, async (vc) => {
      await destroyVm(vc, lab.vm('app01').id);
    });
  });
  after(async () => {
    await lab?.stop();
  });

  it('refuses bad input with exit 3 and changes nothing', async () => {
    const before0 = inventoryState(await inventoryOf(lab.configPath));
    const files0 = await poolFiles(lab.state.arrayPath);
    const b = backup.id;
    const cases: [string[], string][] = [
      [['restore', '--backup', '20990101-000000-abcdef', '--vm', 'web01', '--as', 'x1'], 'BACKUP_NOT_FOUND'],
      [['restore', '--backup', b, '--vm', 'nope01', '--as', 'x1'], 'VM_NOT_IN_BACKUP'],
      [['restore', '--backup', b, '--vm', 'web01', '--as', 'db01'], 'VM_EXISTS'],
      [['restore', '--backup', b, '--vm', 'web01', '--as', '../evil'], 'INVALID_NAME'],
      [['restore', '--backup', b, '--vm', 'web01', '--as', 'a/b'], 'INVALID_NAME'],
      [
        ['restore', '--backup', b, '--vm', 'web01', '--as', 'x1', '--datastore', 'ds-tiny'],
        'INSUFFICIENT_SPACE',
      ],
      [
        ['restore', '--backup', b, '--vm', 'web01', '--as', 'x1', '--datastore', 'no-such-ds'],
        'DATASTORE_NOT_FOUND',
      ],
      [['restore', '--backup', b, '--vm', 'web01', '--as', 'x1', '--host', 'no-such-host'], 'HOST_NOT_FOUND'],
      [['restore', '--backup', b, '--vm', 'web01', '--as', 'x1', '--folder', 'no/such'], 'FOLDER_NOT_FOUND'],
      [['restore', '--backup', b, '--vm', 'web01', '--original'], 'CONFIRMATION_REQUIRED'],
      [['restore', '--backup', b, '--vm', 'web01'], 'RESTORE_MODE'],
      [
        ['restore', '--backup', b, '--vm', 'web01', '--disk', 'no-such-disk', '--to', 'off01'],
        'DISK_NOT_IN_BACKUP',
      ],
      [
        ['restore', '--backup', b, '--vm', 'web01', '--disk', sizes('web01')[0]!.label, '--to', 'missing01'],
        'VM_NOT_FOUND',
      ],
      [
        ['restore', '--backup', b, '--vm', 'web01', '--disk', sizes('web01')[0]!.label, '--files-only'],
        'RESTORE_MODE',
      ],
      [['attach', '--backup', b, '--vm', 'web01', '--to', 'off01'], 'VM_NOT_RUNNING'],
      [['attach', '--backup', b, '--vm', 'web01', '--to', 'missing01'], 'VM_NOT_FOUND'],
      [['attach', '--backup', b, '--vm', 'web01', '--to', '../x'], 'INVALID_NAME'],
      [['mount', '--backup', '20990101-000000-abcdef'], 'BACKUP_NOT_FOUND'],
      [['mount', '--backup', b, '--host', 'no-such-host'], 'HOST_NOT_FOUND'],
      [['unmount', '--backup', b], 'NOT_MOUNTED'],
      [['detach', '--to', 'web01'], 'NOT_ATTACHED'],
    ];
    for (const [args, code] of cases) {
      const run = await cli(...args);
      assert.equal(run.code, 3, `${args.join(' ')}: exit 3 (${run.stdout}${run.stderr})`);
      assert.equal(run.json?.error?.code, code, `${args.join(' ')}: ${run.stdout}`);
      assert.ok(String(run.json.error.message).length > 10, 'a message that says what is wrong');
    }
    // Dry runs check the same and report the plan, changing nothing either.
    const dry = await cli('restore', '--backup', b, '--vm', 'web01', '--original', '--dry-run');
    assert.equal(dry.code, 0, dry.stdout + dry.stderr);
    assert.equal(dry.json.dryRun, true);
    assert.equal(dry.json.mode, 'original');
    assert.deepEqual(
      dry.json.disks.map((d: { target: string }) => d.target),
      sizes('web01').map((d) => d.file),
    );
    const dryNew = await cli('restore', '--backup', b, '--vm', 'db01', '--as', 'db01-dry', '--dry-run');
    assert.equal(dryNew.code, 1, 'the RDM warnings are reported by a dry run too');
    assert.equal(dryNew.json.disks[0].target, '[ds-a] db01-dry/db01-dry_0.vmdk');
    assert.deepEqual(inventoryState(await inventoryOf(lab.configPath)), before0, 'vCenter is unchanged');
    assert.deepEqual(await poolFiles(lab.state.arrayPath), files0, 'no file was written');
    await withCatalog(loadConfig(lab.configPath).catalog.path, async (catalog) => {
      assert.deepEqual(await catalog.unfinishedOperations(), []);
      assert.equal(
        (await catalog.listOperations({ kind: ['restore', 'mount', 'attach'] })).length,
        0,
        'no operation began',
      );
    });
  });

  /**
   * A VM with user VM snapshots at backup time has delta disks (`name-00000N.vmdk`) in its record, whose
   * parents a restore would not bring along. The simulator (govmomi 0.24) never renames a disk's file when
   * it takes a VM snapshot, so a real backup cannot produce such a record here: the rule is tested on its
   * own, then end to end with a catalog record edited to name a delta, as vCenter would have captured it.
   */
  it('refuses to restore delta disks of a VM that had VM snapshots (exit 3, nothing changed)', async () => {
    const disk = (file: string): DiskRecord => ({ ...sizes('web01')[0]!, file });
    assert.doesNotThrow(() => checkNoDeltaDisks('web01', [disk('[ds-a] web01/web01_0.vmdk')]));
    assert.doesNotThrow(() => checkNoDeltaDisks('web01', [disk('[ds-a] web01/web01_0-flat.vmdk')]));
    assert.throws(
      () => checkNoDeltaDisks('web01', [disk('[ds-a] web01/web01_0-000002.vmdk')]),
      (err: unknown) =>
        err instanceof SnapkeeperError &&
        err.code === 'DELTA_DISK_NOT_SUPPORTED' &&
        err.message.includes('web01') &&
        err.message.includes(sizes('web01')[0]!.label),
    );

    const before0 = inventoryState(await inventoryOf(lab.configPath));
    const files0 = await poolFiles(lab.state.arrayPath);
    const catalog = Catalog.open(loadConfig(lab.configPath).catalog.path);
    const edited: BackupRecord = structuredClone(backup);
    edited.id = `${backup.id.slice(0, 16)}${backup.id.endsWith('d0d0d0') ? 'e0e0e0' : 'd0d0d0'}`;
    const web = edited.vms.find((v) => v.name === 'web01')!;
    web.disks[0]!.file = web.disks[0]!.file.replace(/\.vmdk$/, '-000001.vmdk');
    await catalog.insertBackup(edited);
    try {
      for (const args of [
        ['--as', 'web01-delta'],
        ['--as', 'web01-delta', '--dry-run'],
        ['--disk', web.disks[0]!.label, '--files-only', '--datastore', 'ds-b'],
      ]) {
        const run = await cli('restore', '--backup', edited.id, '--vm', 'web01', ...args);
        assert.equal(run.code, 3, `${args.join(' ')}: ${run.stdout}${run.stderr}`);
        assert.equal(run.json.error.code, 'DELTA_DISK_NOT_SUPPORTED');
        assert.match(run.json.error.message, /web01.*Hard disk 1.*-000001\.vmdk/);
      }
      // The other disk is a base disk: it restores as usual.
      const ok = await cli(
        'restore',
        '--backup',
        edited.id,
        '--vm',
        'web01',
        '--disk',
        web.disks[1]!.label,
        '--files-only',
        '--datastore',
        'ds-b',
        '--dry-run',
      );
      assert.equal(ok.code, 0, ok.stdout + ok.stderr);
    } finally {
      await catalog.deleteBackup(edited.id);
      await catalog.close();
    }
    assert.deepEqual(inventoryState(await inventoryOf(lab.configPath)), before0, 'vCenter is unchanged');
    assert.deepEqual(await poolFiles(lab.state.arrayPath), files0, 'no file was written');
  });

  it('restores a whole VM as a new VM with the bytes of backup time, the live VM untouched', async () => {
    const liveBefore = await readFile(lab.vm('web01').disks[0]!.path);
    const run = await cli('restore', '--backup', backup.id, '--vm', 'web01', '--as', 'web01-new');
    assert.equal(run.code, 0, run.stdout + run.stderr);
    const r = run.json;
    assert.equal(r.mode, 'new');
    assert.equal(r.targetVm.name, 'web01-new');
    assert.equal(r.cloned, false, 'the copy driver copies');
    assert.equal(r.warnings.length, 0);
    const disks = sizes('web01');
    assert.equal(r.disks.length, 2);
    assert.equal(
      r.bytes,
      disks.reduce((a, d) => a + d.capacityBytes, 0),
    );
    for (const [i, d] of r.disks.entries()) {
      assert.equal(d.source, disks[i]!.file);
      assert.match(d.target, /^\[ds-[ab]\] web01-new\/web01-new_\d\.vmdk$/);
      await assertLabBytes(flatOf(d.path), 'web01', i, disks[i]!.capacityBytes);
    }
    const inv = await inventoryOf(lab.configPath);
    const vm = inv.vms.find((v) => v.name === 'web01-new')!;
    assert.equal(vm.powerState, 'poweredOff');
    assert.equal(vm.host, 'esx01');
    assert.deepEqual(
      vm.disks.map((d) => [d.label, d.file, d.capacityBytes, d.controllerKey !== undefined]),
      r.disks.map((d: { label: string; target: string }, i: number) => [
        d.label,
        d.target,
        disks[i]!.capacityBytes,
        true,
      ]),
    );
    assert.equal(vm.hardware?.numCpu, backup.vms.find((v) => v.name === 'web01')!.hardware?.numCpu);
    // The backup held web01 with a VM snapshot: the base disks are its state, and no snapshot comes along.
    assert.match(
      backup.vms.find((v) => v.name === 'web01')!.vmSnapshot!,
      new RegExp(`^snapkeeper-${backup.id}\\.[0-9a-f]{12}$`),
    );
    assert.deepEqual(vm.snapshots, []);
    assert.ok(
      r.disks.every((d: { source: string }) => !/-\d{6}\.vmdk$/.test(d.source)),
      'base disks, not deltas',
    );
    assert.notEqual(vm.instanceUuid, backup.vms.find((v) => v.name === 'web01')!.instanceUuid);
    const live = inv.vms.find((v) => v.name === 'web01')!;
    assert.equal(live.powerState, 'poweredOn', 'the live VM is untouched');
    assert.ok((await readFile(lab.vm('web01').disks[0]!.path)).equals(liveBefore));
  });

  it('leaves RDM disks out with a warning per disk and exit 1', async () => {
    const run = await cli(
      'restore',
      '--backup',
      backup.id,
      '--vm',
      'db01',
      '--as',
      'db01-new',
      '--host',
      'esx-standalone',
    );
    assert.equal(run.code, 1, run.stdout + run.stderr);
    const rdm = run.json.warnings.filter((w: { code: string }) => w.code === 'RDM_NOT_RESTORED');
    assert.equal(rdm.length, 2);
    assert.equal(run.json.disks.length, 1);
    await assertLabBytes(flatOf(run.json.disks[0].path), 'db01', 0, sizes('db01')[0]!.capacityBytes);
    const vm = (await inventoryOf(lab.configPath)).vms.find((v) => v.name === 'db01-new')!;
    assert.equal(vm.host, 'esx-standalone');
    assert.deepEqual(
      vm.disks.map((d) => d.kind),
      ['flat'],
    );
    const text = await runCli([
      '--config',
      lab.configPath,
      'restore',
      '--backup',
      backup.id,
      '--vm',
      'db01',
      '--disk',
      sizes('db01')[0]!.label,
      '--files-only',
      '--datastore',
      'ds-b',
    ]);
    assert.equal(text.code, 0, text.stderr);
    assert.match(text.stdout, /restored 1 disk file/);
  });

  it('restores a deleted VM to its original place', async () => {
    const run = await cli('restore', '--backup', backup.id, '--vm', 'app01', '--original', '--force');
    assert.equal(run.code, 0, run.stdout + run.stderr);
    const rec = backup.vms.find((v) => v.name === 'app01')!;
    const inv = await inventoryOf(lab.configPath);
    const vm = inv.vms.find((v) => v.name === 'app01')!;
    assert.equal(vm.vmxFile, rec.vmxFile);
    assert.equal(vm.host, rec.host);
    assert.equal(vm.instanceUuid, rec.instanceUuid, 'the simulator honours instanceUuid in the config spec');
    assert.deepEqual(
      vm.disks.map((d) => [d.label, d.file, d.diskMode]),
      rec.disks.map((d) => [d.label, d.file, d.diskMode]),
    );
    for (const [i, d] of rec.disks.entries()) {
      const path = join(lab.state.arrayPath, 'pool', d.datastore, 'app01', `app01_${i}-flat.vmdk`);
      await assertLabBytes(path, 'app01', i, d.capacityBytes);
    }
  });

  it('replaces a live VM at its original place, keeping its identity, and powers it on', async () => {
    const rec = backup.vms.find((v) => v.name === 'web01')!;
    const oldId = (await inventoryOf(lab.configPath)).vms.find((v) => v.name === 'web01')!.id;
    const run = await cli(
      'restore',
      '--backup',
      backup.id,
      '--vm',
      'web01',
      '--original',
      '--force',
      '--power-on',
    );
    assert.equal(run.code, 0, run.stdout + run.stderr);
    const inv = await inventoryOf(lab.configPath);
    const same = inv.vms.filter((v) => v.name === 'web01');
    assert.equal(same.length, 1, 'one web01, the restored one');
    const vm = same[0]!;
    assert.notEqual(vm.id, oldId);
    assert.equal(vm.powerState, 'poweredOn');
    assert.equal(vm.instanceUuid, rec.instanceUuid);
    assert.equal(vm.host, rec.host);
    assert.equal(vm.folder, rec.folder);
    assert.deepEqual(
      vm.disks.map((d) => d.file),
      rec.disks.map((d) => d.file),
    );
    for (const [i, d] of rec.disks.entries()) {
      await assertLabBytes(lab.vm('web01').disks[i]!.path, 'web01', i, d.capacityBytes);
    }
    const leftovers = (await poolFiles(lab.state.arrayPath)).filter((f) => f.includes('.snapkeeper-'));
    assert.deepEqual(leftovers, [], 'no staging or replaced directory is left');
  });

  it('restores single disks into an existing VM, added or replacing one', async () => {
    const src = sizes('web01')[1]!;
    const beforeInv = (await inventoryOf(lab.configPath)).vms.find((v) => v.name === 'off01')!;
    const add = await cli(
      'restore',
      '--backup',
      backup.id,
      '--vm',
      'web01',
      '--disk',
      src.label,
      '--to',
      'off01',
    );
    assert.equal(add.code, 0, add.stdout + add.stderr);
    assert.equal(add.json.mode, 'disks');
    await assertLabBytes(flatOf(add.json.disks[0].path), 'web01', 1, src.capacityBytes);
    let off = (await inventoryOf(lab.configPath)).vms.find((v) => v.name === 'off01')!;
    assert.equal(off.disks.length, beforeInv.disks.length + 1);
    assert.ok(off.disks.some((d) => d.file === add.json.disks[0].target));

    // Replace off01's first disk with db01's first disk of the same label.
    const label = off.disks[0]!.label;
    const db = sizes('db01').find((d) => d.label === label);
    assert.ok(db, `db01 has a disk labelled ${label}`);
    const rep = await cli(
      'restore',
      '--backup',
      backup.id,
      '--vm',
      'db01',
      '--disk',
      label,
      '--to',
      'off01',
      '--replace',
    );
    assert.equal(rep.code, 0, rep.stdout + rep.stderr);
    off = (await inventoryOf(lab.configPath)).vms.find((v) => v.name === 'off01')!;
    assert.equal(off.disks.length, beforeInv.disks.length + 1, 'replaced, not added');
    const replaced = off.disks.find((d) => d.label === label)!;
    assert.equal(replaced.file, rep.json.disks[0].target);
    assert.equal(rep.json.disks[0].replaced, beforeInv.disks[0]!.file);
    await assertLabBytes(flatOf(rep.json.disks[0].path), 'db01', 0, db!.capacityBytes);
  });

  it('restores disks as files on a datastore', async () => {
    const run = await cli(
      'restore',
      '--backup',
      backup.id,
      '--vm',
      'web01',
      '--disk',
      ...sizes('web01').map((d) => d.label),
      '--files-only',
      '--datastore',
      'ds-b',
    );
    assert.equal(run.code, 0, run.stdout + run.stderr);
    assert.equal(run.json.mode, 'files');
    for (const [i, d] of run.json.disks.entries()) {
      assert.match(d.target, new RegExp(`^\\[ds-b\\] web01-restore-${backup.id}/web01_${i}\\.vmdk$`));
      await assertLabBytes(flatOf(d.path), 'web01', i, sizes('web01')[i]!.capacityBytes);
    }
    const again = await cli(
      'restore',
      '--backup',
      backup.id,
      '--vm',
      'web01',
      '--disk',
      sizes('web01')[0]!.label,
      '--files-only',
      '--datastore',
      'ds-b',
    );
    assert.equal(again.code, 3);
    assert.equal(again.json.error.code, 'TARGET_EXISTS');
  });

  it('leaves nothing for recover to do', async () => {
    const rec = await cli('recover');
    assert.equal(rec.code, 0, rec.stdout);
    assert.deepEqual(rec.json.operations, []);
    assert.deepEqual(rec.json.actions, []);
  });
});
