import assert from 'node:assert/strict';
import { afterEach, describe, it } from 'node:test';
import { runAttach } from '../../src/engine/attach.js';
import { runBackup } from '../../src/engine/backup.js';
import { runMount } from '../../src/engine/mount.js';
import { recover } from '../../src/engine/recover.js';
import { runRestore } from '../../src/engine/restore.js';
import { ExitCode, SnapkeeperError } from '../../src/errors.js';
import type { BackupRecord } from '../../src/model/backup.js';
import { type EngineLab, engineLab, web01Spec, world } from './harness.js';

/**
 * A backup whose array snapshot vanished behind the catalog's back (an admin, another tool): restore, mount
 * and attach, dry or real, refuse it naming the snapshot and change nothing; `recover` then marks it lost.
 */

const SPEC = web01Spec({ name: 'helper', host: 'esx01', disks: [{ datastore: 'ds-a', sizeMB: 8 }] });

let lab: EngineLab | undefined;
afterEach(async () => {
  await lab?.close();
  lab = undefined;
});

async function backedUp(): Promise<{ l: EngineLab; backup: BackupRecord }> {
  lab = await engineLab(SPEC);
  const backup = await runBackup(lab.ctx, { vmPatterns: ['web01'], mode: 'ASIS' });
  assert.equal(backup.state, 'complete');
  return { l: lab, backup };
}

/** What each entry point is asked, dry and real, of the backup. */
const uses: [string, (l: EngineLab, backupId: string, dryRun: boolean) => Promise<unknown>][] = [
  [
    'restore --as',
    (l, backupId, dryRun) => runRestore(l.ctx, { backupId, vm: 'web01', as: 'web01-r', dryRun }),
  ],
  [
    'restore --disk --to',
    (l, backupId, dryRun) =>
      runRestore(l.ctx, { backupId, vm: 'web01', disks: ['Hard disk 1'], to: 'helper', dryRun }),
  ],
  [
    'restore --disk --files-only',
    (l, backupId, dryRun) =>
      runRestore(l.ctx, {
        backupId,
        vm: 'web01',
        disks: ['Hard disk 1'],
        filesOnly: true,
        datastore: 'ds-b',
        dryRun,
      }),
  ],
  ['mount', (l, backupId, dryRun) => runMount(l.ctx, { backupId, dryRun })],
  ['attach', (l, backupId, dryRun) => runAttach(l.ctx, { backupId, vm: 'web01', to: 'helper', dryRun })],
];

describe('restore, mount and attach of a backup whose array snapshot is gone', () => {
  for (const [what, use] of uses) {
    for (const dryRun of [true, false]) {
      it(`${what}${dryRun ? ' (dry run)' : ''} is refused naming the snapshot, and nothing changes`, async () => {
        const { l, backup } = await backedUp();
        const snapshotId = backup.snapshots[0]!.snapshotId;
        await l.array.deleteSnapshot(snapshotId);
        const before = await world(l);
        await assert.rejects(use(l, backup.id, dryRun), (err: unknown) => {
          assert.ok(err instanceof SnapkeeperError, String(err));
          assert.equal(err.code, 'SNAPSHOT_MISSING');
          assert.equal(err.exitCode, ExitCode.failed);
          assert.ok(err.message.includes(`array1/${snapshotId}`), err.message);
          return true;
        });
        assert.deepEqual(await world(l), before);
        assert.equal((await l.ctx.catalog.getBackup(backup.id)).state, 'complete');
      });
    }
  }

  it('recover then marks it lost, and a dry run refuses it as not restorable (exit 3)', async () => {
    const { l, backup } = await backedUp();
    const snapshotId = backup.snapshots[0]!.snapshotId;
    await l.array.deleteSnapshot(snapshotId);
    await assert.rejects(runRestore(l.ctx, { backupId: backup.id, vm: 'web01', as: 'x', dryRun: true }));
    const report = await recover(l.ctx);
    assert.deepEqual(report.lostBackups, [{ id: backup.id, missing: [{ array: 'array1', snapshotId }] }]);
    assert.equal((await l.ctx.catalog.getBackup(backup.id)).state, 'lost');
    await assert.rejects(
      runMount(l.ctx, { backupId: backup.id, dryRun: true }),
      (err: unknown) =>
        err instanceof SnapkeeperError &&
        err.code === 'BACKUP_NOT_RESTORABLE' &&
        err.exitCode === ExitCode.usage,
    );
  });
});

describe('dry runs of mount and attach while the snapshot is there', () => {
  it('mount: names the datastores it would make on the host, and changes nothing', async () => {
    const { l, backup } = await backedUp();
    const before = await world(l);
    const plan = await runMount(l.ctx, { backupId: backup.id, dryRun: true });
    assert.equal(plan.dryRun, true);
    assert.equal(plan.mountId, '');
    assert.equal(plan.host, 'esx01');
    assert.deepEqual(plan.datastores.map((d) => [d.name, d.source]).sort(), [
      [`snapkeeper-${backup.id}-ds-a`, 'ds-a'],
      [`snapkeeper-${backup.id}-ds-b`, 'ds-b'],
    ]);
    assert.deepEqual(await world(l), before);
    // What the dry run announced is what a real mount makes.
    const real = await runMount(l.ctx, { backupId: backup.id });
    assert.equal(real.dryRun, false);
    assert.deepEqual(real.datastores.map((d) => d.name).sort(), plan.datastores.map((d) => d.name).sort());
  });

  it('attach: the disks on the slots a real attach then uses, and changes nothing', async () => {
    const { l, backup } = await backedUp();
    const before = await world(l);
    const plan = await runAttach(l.ctx, { backupId: backup.id, vm: 'web01', to: 'helper', dryRun: true });
    assert.equal(plan.dryRun, true);
    assert.equal(plan.attachId, '');
    assert.equal(plan.mount.created, true);
    assert.equal(plan.disks.length, 2);
    assert.deepEqual(await world(l), before);
    const real = await runAttach(l.ctx, { backupId: backup.id, vm: 'web01', to: 'helper' });
    assert.equal(real.dryRun, false);
    const where = (r: typeof plan) => r.disks.map((d) => [d.label, d.file, d.controllerKey, d.unitNumber]);
    assert.deepEqual(where(real), where(plan));
  });
});
