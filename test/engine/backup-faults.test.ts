import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { runBackup } from '../../src/engine/backup.js';
import { recover } from '../../src/engine/recover.js';
import type { BackupRecord } from '../../src/model/backup.js';
import type { BackupMode } from '../../src/model/modes.js';
import { arraySnapshotIds, assertReleased, BEFORE, start } from './backup-lab.js';
import { ARRAY, type EngineLab, LATER } from './harness.js';

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
    assert.deepEqual(await l.ctx.catalog.getBackup(record.id), record);
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
    assert.deepEqual(await l.ctx.catalog.unfinishedOperations(), []);
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
    await assert.rejects(async () => ctx.catalog.getBackup(first.id));
    const orphan = first.snapshots[0]!.snapshotId;
    assert.deepEqual(await arraySnapshotIds(l), [orphan, second.snapshots[0]!.snapshotId]);
    const report = await recover(l.context(LATER));
    assert.deepEqual(report.deletedArraySnapshots, [{ array: ARRAY, snapshotId: orphan }]);
    assert.deepEqual(await arraySnapshotIds(l), [second.snapshots[0]!.snapshotId]);
  });
});
