import assert from 'node:assert/strict';
import { text } from 'node:stream/consumers';
import { describe, it } from 'node:test';
import { runBackup } from '../../src/engine/backup.js';
import type { BackupMode } from '../../src/model/modes.js';
import { arraySnapshotIds, assertReleased, BEFORE, start } from './backup-lab.js';
import { ARRAY, diskBytes } from './harness.js';

describe('backup on the fakes: every mode', () => {
  const cases: [BackupMode, string, { memory: boolean; quiesced: boolean } | 'suspend' | 'none'][] = [
    ['SNAPSHOT_INCL_MEM', 'running-state', { memory: true, quiesced: false }],
    ['SNAPSHOT_EXCL_MEM', 'file-system', { memory: false, quiesced: true }],
    ['SUSPEND', 'suspended', 'suspend'],
    ['ASIS', 'crash', 'none'],
  ];
  for (const [mode, consistency, prepare] of cases) {
    it(`${mode}: ${consistency}, the VMs released, the disks inside the array snapshot`, async () => {
      const l = await start();
      const record = await runBackup(l.ctx, { vmPatterns: ['web01', 'db01'], mode });
      assert.equal(record.state, 'complete');
      for (const vm of record.vms) {
        assert.equal(vm.state, 'ok');
        assert.equal(vm.effectiveMode, mode);
        assert.equal(vm.consistency, consistency);
        // ASIS holds nothing, so it has no window; every other mode holds the VM from prepare to release.
        if (prepare !== 'none')
          assert.ok(vm.quiesce && vm.quiesce.ms >= 0, `${vm.name} has a quiesce window`);
      }
      if (typeof prepare === 'object') {
        assert.equal(l.vc.calls('createVmSnapshot'), 2);
        assert.equal(l.vc.calls('removeVmSnapshot'), 2);
      } else {
        assert.equal(l.vc.calls('createVmSnapshot'), 0);
      }
      assert.equal(l.vc.calls('suspendVm'), prepare === 'suspend' ? 2 : 0);
      assert.equal(l.vc.calls('powerOnVm'), prepare === 'suspend' ? 2 : 0);
      await assertReleased(l, BEFORE);
      // One array snapshot of both datastores' volumes, holding the disks byte for byte.
      assert.equal(record.snapshots.length, 1);
      const snap = record.snapshots[0]!;
      assert.equal(snap.array, ARRAY);
      assert.deepEqual([...snap.volumes].sort(), ['ds-a', 'ds-b']);
      assert.deepEqual(await arraySnapshotIds(l), [snap.snapshotId]);
      const disk = record.vms.find((v) => v.name === 'db01')!.disks[1]!;
      const flat = disk.file.replace(/^\[ds-b\] /, '').replace(/\.vmdk$/, '-flat.vmdk');
      const bytes = await text(await l.array.readFile(snap.snapshotId, 'ds-b', flat));
      assert.equal(bytes, diskBytes(disk.file).toString());
      // The record in the catalog is the one returned.
      assert.deepEqual((await l.ctx.catalog.getBackup(record.id)).state, 'complete');
    });
  }

  it('a SNAPSHOT mode on a running VM takes the snapshot with the flags of the mode', async () => {
    const l = await start();
    const seen: { memory: boolean; quiesced: boolean }[] = [];
    const original = l.vc.createVmSnapshot.bind(l.vc);
    l.vc.createVmSnapshot = async (vmId, options) => {
      const id = await original(vmId, options);
      const s = l.vc.snapshot(id)!;
      seen.push({ memory: s.memory, quiesced: s.quiesced });
      return id;
    };
    await runBackup(l.ctx, { vmPatterns: ['web01'], mode: 'SNAPSHOT_INCL_MEM' });
    await runBackup(l.ctx, { vmPatterns: ['web01'], mode: 'SNAPSHOT_EXCL_MEM' });
    assert.deepEqual(seen, [
      { memory: true, quiesced: false },
      { memory: false, quiesced: true },
    ]);
  });

  it('powered-off and suspended VMs need nothing and are left as they are', async () => {
    const l = await start();
    const record = await runBackup(l.ctx, { vmPatterns: ['off01', 'susp01'], mode: 'SUSPEND' });
    assert.equal(record.state, 'complete');
    const by = new Map(record.vms.map((v) => [v.name, v]));
    assert.equal(by.get('off01')!.consistency, 'powered-off');
    assert.equal(by.get('susp01')!.consistency, 'suspended');
    assert.equal(l.vc.calls('suspendVm'), 0);
    assert.equal(l.vc.calls('powerOnVm'), 0);
    assert.equal(l.vc.calls('createVmSnapshot'), 0);
    await assertReleased(l, BEFORE);
  });

  it('an RDM VM in a SNAPSHOT mode is backed up ASIS with MODE_CHANGED_RDM, its LUN excluded', async () => {
    const l = await start();
    const record = await runBackup(l.ctx, { vmPatterns: ['rdm01'], mode: 'SNAPSHOT_EXCL_MEM' });
    const vm = record.vms[0]!;
    assert.equal(vm.effectiveMode, 'ASIS');
    assert.equal(vm.consistency, 'crash');
    assert.ok(
      [...vm.warnings, ...record.warnings].some((w) => w.code === 'MODE_CHANGED_RDM'),
      JSON.stringify(vm.warnings),
    );
    assert.equal(l.vc.calls('createVmSnapshot'), 0);
    const rdm = vm.disks.find((d) => d.kind === 'rdm-physical');
    assert.ok(rdm, 'the RDM disk is recorded');
    assert.deepEqual(record.snapshots[0]!.volumes, ['ds-a']);
  });

  it('an RDM VM keeps SUSPEND', async () => {
    const l = await start();
    const record = await runBackup(l.ctx, { vmPatterns: ['rdm01'], mode: 'SUSPEND' });
    assert.equal(record.vms[0]!.effectiveMode, 'SUSPEND');
    assert.equal(l.vc.calls('suspendVm'), 1);
    assert.equal(l.vc.vm('rdm01')!.powerState, 'poweredOn');
  });
});
