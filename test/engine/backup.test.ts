import assert from 'node:assert/strict';
import { text } from 'node:stream/consumers';
import { afterEach, describe, it } from 'node:test';
import { runBackup } from '../../src/engine/backup.js';
import { recover } from '../../src/engine/recover.js';
import type { BackupRecord } from '../../src/model/backup.js';
import type { BackupMode } from '../../src/model/modes.js';
import type { FakeSpec } from '../../src/vsphere/index.js';
import { ARRAY, crashedAt, diskBytes, type EngineLab, engineLab, LATER } from './harness.js';

const RDM_LUN = 'naa.600a0980383030534a3f463045727a71';

const SPEC: FakeSpec = {
  datacenters: [
    {
      name: 'DC1',
      clusters: [{ name: 'Prod', hosts: ['esx01', 'esx02'] }],
      datastores: [
        { name: 'ds-a', capacityGB: 50 },
        { name: 'ds-b', capacityGB: 20 },
      ],
      vms: [
        { name: 'web01', host: 'esx01', disks: [{ datastore: 'ds-a', sizeMB: 8 }] },
        {
          name: 'db01',
          host: 'esx02',
          disks: [
            { datastore: 'ds-a', sizeMB: 8 },
            { datastore: 'ds-b', sizeMB: 8 },
          ],
        },
        { name: 'off01', host: 'esx01', power: 'poweredOff', disks: [{ datastore: 'ds-b', sizeMB: 8 }] },
        { name: 'susp01', host: 'esx02', power: 'suspended', disks: [{ datastore: 'ds-b', sizeMB: 8 }] },
        {
          name: 'rdm01',
          host: 'esx01',
          disks: [
            { datastore: 'ds-a', sizeMB: 8 },
            { rdm: 'physical', lun: RDM_LUN, sizeMB: 64 },
          ],
        },
      ],
    },
  ],
};

let lab: EngineLab | undefined;
afterEach(async () => {
  await lab?.close();
  lab = undefined;
});

async function start(): Promise<EngineLab> {
  lab = await engineLab(SPEC);
  return lab;
}

/** Nothing of the run is left on any VM: no snapkeeper snapshot, the power state it had before. */
async function assertReleased(l: EngineLab, power: Record<string, string>): Promise<void> {
  for (const vm of (await l.vc.inventory()).vms) {
    assert.deepEqual(
      vm.snapshots.filter((s) => s.name.startsWith('snapkeeper-')),
      [],
      `${vm.name} keeps a VM snapshot`,
    );
    if (power[vm.name] !== undefined) assert.equal(vm.powerState, power[vm.name], vm.name);
  }
}

const BEFORE = { web01: 'poweredOn', db01: 'poweredOn', off01: 'poweredOff', susp01: 'suspended' };

async function arraySnapshotIds(l: EngineLab): Promise<string[]> {
  return (await l.array.listSnapshots()).map((s) => s.id);
}

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
      assert.deepEqual(l.ctx.catalog.getBackup(record.id).state, 'complete');
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

describe('backup on the fakes: a failure at every step', () => {
  /** The run's record, after which every VM is released and no operation is left open. */
  async function failingRun(
    l: EngineLab,
    mode: BackupMode,
    inject: () => void,
    vms = ['web01', 'db01'],
  ): Promise<BackupRecord> {
    inject();
    const record = await runBackup(l.ctx, { vmPatterns: vms, mode });
    await assertReleased(l, BEFORE);
    assert.deepEqual(l.ctx.catalog.getBackup(record.id), record);
    return record;
  }

  it('createVmSnapshot fails for one VM: that VM failed without a quiesce window, the backup partial', async () => {
    const l = await start();
    const record = await failingRun(l, 'SNAPSHOT_EXCL_MEM', () => l.vc.failNext('createVmSnapshot'));
    assert.equal(record.state, 'partial');
    const failed = record.vms.filter((v) => v.state === 'failed');
    assert.equal(failed.length, 1);
    assert.equal(failed[0]!.quiesce, undefined);
    assert.notEqual(failed[0]!.consistency, 'file-system');
    assert.equal(record.vms.filter((v) => v.state === 'ok').length, 1);
    assert.deepEqual(await arraySnapshotIds(l), [record.snapshots[0]!.snapshotId]);
  });

  it('createVmSnapshot whose answer is lost: the snapshot made anyway is removed by the release', async () => {
    const l = await start();
    const record = await failingRun(
      l,
      'SNAPSHOT_EXCL_MEM',
      () => l.vc.failNext('createVmSnapshot', undefined, { after: true }),
      ['web01'],
    );
    assert.equal(record.state, 'failed');
    assert.deepEqual(await arraySnapshotIds(l), []);
  });

  it('suspendVm fails: that VM failed and stays on, the other is suspended and resumed', async () => {
    const l = await start();
    const record = await failingRun(l, 'SUSPEND', () => l.vc.failNext('suspendVm'));
    assert.equal(record.state, 'partial');
    const failed = record.vms.find((v) => v.state === 'failed')!;
    assert.notEqual(failed.consistency, 'suspended');
    assert.equal(failed.quiesce, undefined);
  });

  it('snapshotGroup fails: the backup failed, every VM released, no array snapshot', async () => {
    const l = await start();
    const record = await failingRun(l, 'SNAPSHOT_INCL_MEM', () => l.array.failNext('snapshotGroup'));
    assert.equal(record.state, 'failed');
    assert.match(record.error ?? '', /array snapshot failed/);
    assert.ok(record.vms.every((v) => v.state === 'failed'));
    assert.deepEqual(await arraySnapshotIds(l), []);
    assert.deepEqual(l.ctx.catalog.unfinishedOperations(), []);
  });

  it('removeVmSnapshot fails once: the release retries, the backup completes', async () => {
    const l = await start();
    const record = await failingRun(l, 'SNAPSHOT_EXCL_MEM', () => l.vc.failNext('removeVmSnapshot'), [
      'web01',
    ]);
    assert.equal(record.state, 'complete');
    assert.equal(l.vc.calls('removeVmSnapshot'), 2);
  });

  it('powerOnVm fails once after a suspend: the release retries and the VM runs again', async () => {
    const l = await start();
    const record = await failingRun(l, 'SUSPEND', () => l.vc.failNext('powerOnVm'), ['web01']);
    assert.equal(record.state, 'complete');
    assert.equal(l.vc.calls('powerOnVm'), 2);
  });

  it('deleteSnapshot fails during retention: a warning, and recover deletes the orphaned snapshot', async () => {
    const l = await start();
    const ctx = l.ctx;
    const first = await runBackup(ctx, { vmPatterns: ['web01'], mode: 'ASIS' });
    // Ad-hoc retention: 1 version from here on.
    (ctx.config.defaults.retention as { versions: number }).versions = 1;
    l.array.failNext('deleteSnapshot');
    const second = await runBackup(ctx, { vmPatterns: ['web01'], mode: 'ASIS' });
    assert.ok(
      second.warnings.some((w) => w.code === 'EXPIRE_FAILED'),
      JSON.stringify(second.warnings),
    );
    // The record goes first, so the failed delete leaves a snapshot no backup owns, which recover deletes.
    assert.throws(() => ctx.catalog.getBackup(first.id));
    const orphan = first.snapshots[0]!.snapshotId;
    assert.deepEqual(await arraySnapshotIds(l), [orphan, second.snapshots[0]!.snapshotId]);
    const report = await recover(l.context(LATER));
    assert.deepEqual(report.deletedArraySnapshots, [{ array: ARRAY, snapshotId: orphan }]);
    assert.deepEqual(await arraySnapshotIds(l), [second.snapshots[0]!.snapshotId]);
  });
});

describe('recover on the fakes after a backup stopped at each crash point', () => {
  for (const mode of ['SNAPSHOT_EXCL_MEM', 'SUSPEND'] as const) {
    for (const point of ['prepared', 'array-snapshot', 'snapshotted', 'released', 'recorded']) {
      it(`${mode}, stopped at ${point}: recover releases every VM and closes the run`, async () => {
        const l = await start();
        await crashedAt(l, point, (ctx) => runBackup(ctx, { vmPatterns: ['web01', 'db01'], mode }));
        const open = l.ctx.catalog.unfinishedOperations();
        assert.equal(open.length, 1, 'the crashed run is left open');
        const id = open[0]!.id;
        const report = await recover(l.context(LATER));
        assert.deepEqual(report.errors, []);
        await assertReleased(l, BEFORE);
        assert.deepEqual(l.ctx.catalog.unfinishedOperations(), []);
        const record = l.ctx.catalog.getBackup(id);
        if (point === 'recorded') {
          // The record was complete before the crash: recover keeps it and its snapshot.
          assert.equal(record.state, 'complete');
          assert.deepEqual(await arraySnapshotIds(l), [record.snapshots[0]!.snapshotId]);
        } else {
          assert.equal(record.state, 'failed');
          assert.deepEqual(await arraySnapshotIds(l), [], 'no array snapshot of a failed run is left');
        }
        // A new run works on the repaired state.
        const next = await runBackup(l.context(LATER), { vmPatterns: ['web01', 'db01'], mode });
        assert.equal(next.state, 'complete');
      });
    }
  }
});
