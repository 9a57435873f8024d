import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { runAttach } from '../../src/engine/attach.js';
import { runBackup } from '../../src/engine/backup.js';
import { runRestore } from '../../src/engine/restore.js';
import { UsageError } from '../../src/errors.js';
import { diskBytes, type EngineLab, engineLabPerTest, web01Spec, world } from './harness.js';

const SPEC = web01Spec({
  name: 'helper',
  host: 'esx01',
  disks: [{ datastore: 'ds-a', sizeMB: 8 }],
});
const startLab = engineLabPerTest();

/** A lab with a backup of task `nightly`, which leaves web01's Hard disk 2 out (and names a disk no VM has). */
async function backedUpWithExclusion(): Promise<{ l: EngineLab; backupId: string }> {
  const l = await startLab(SPEC);
  await l.ctx.catalog.createTask({
    name: 'nightly',
    select: { vms: ['web01'] },
    exclude: {
      disks: [
        { vm: 'web*', disks: ['Hard disk 2'] },
        { vm: 'web01', disks: ['Hard disk 7'] },
      ],
    },
  });
  const record = await runBackup(l.ctx, { taskName: 'nightly', mode: 'SNAPSHOT_EXCL_MEM' });
  assert.equal(record.state, 'complete');
  return { l, backupId: record.id };
}

describe('disk exclusions on the fakes', () => {
  it('the backup records the excluded disk with its reason and warns of the rule that matched nothing', async () => {
    const { l, backupId } = await backedUpWithExclusion();
    const record = await l.ctx.catalog.getBackup(backupId);
    const disks = record?.vms[0]?.disks.map((d) => [d.label, d.included, d.exclusion, d.note]);
    assert.deepEqual(disks, [
      ['Hard disk 1', true, undefined, undefined],
      ['Hard disk 2', false, 'task', 'excluded by task nightly'],
    ]);
    assert.deepEqual(
      record?.warnings.filter((w) => w.code === 'DISK_EXCLUSION_UNMATCHED').map((w) => w.message),
      ['the disk exclusions of nightly match nothing: no VM matching web01 has disk Hard disk 7'],
    );
  });

  it('restore --disk of the excluded disk is refused before any change', async () => {
    const { l, backupId } = await backedUpWithExclusion();
    const before = await world(l);
    await assert.rejects(
      runRestore(l.ctx, { backupId, vm: 'web01', disks: ['Hard disk 2'], to: 'helper' }),
      (e: unknown) =>
        e instanceof UsageError &&
        e.code === 'DISK_EXCLUDED' &&
        /web01 \/ Hard disk 2 .* excluded from the backup \(excluded by task nightly\) and cannot be restored/.test(
          e.message,
        ),
    );
    assert.deepEqual(await world(l), before);
  });

  it('a whole-VM restore to the original place is refused: it would delete the live excluded disk', async () => {
    const { l, backupId } = await backedUpWithExclusion();
    const before = await world(l);
    await assert.rejects(
      runRestore(l.ctx, { backupId, vm: 'web01', original: true, confirmed: true }),
      (e: unknown) =>
        e instanceof UsageError &&
        e.code === 'DISK_EXCLUDED_ORIGINAL' &&
        /web01 \/ Hard disk 2 is excluded .*would delete the live disk/.test(e.message),
    );
    assert.deepEqual(await world(l), before);
  });

  it('a whole-VM restore leaves the excluded disk out with a warning', async () => {
    const { l, backupId } = await backedUpWithExclusion();
    const r = await runRestore(l.ctx, { backupId, vm: 'web01', as: 'web01-r' });
    assert.deepEqual(
      l.vc.vm('web01-r')!.disks.map((d) => d.file),
      ['[ds-a] web01-r/web01-r_0.vmdk'],
    );
    assert.deepEqual(
      r.warnings.map((w) => w.code),
      ['DISK_EXCLUDED_NOT_RESTORED'],
    );
    const flat = r.disks[0]!.path.replace(/\.vmdk$/, '-flat.vmdk');
    assert.deepEqual(l.array.readPath(flat), diskBytes(l.vc.vm('web01')!.disks[0]!.file));
  });

  it('attach skips the excluded disk with a warning, and refuses when only excluded disks are asked for', async () => {
    const { l, backupId } = await backedUpWithExclusion();
    const before = await world(l);
    await assert.rejects(
      runAttach(l.ctx, { backupId, vm: 'web01', to: 'helper', disks: ['Hard disk 2'] }),
      /NOTHING_TO_ATTACH|no standard disk/,
    );
    assert.deepEqual(await world(l), before);
    const a = await runAttach(l.ctx, { backupId, vm: 'web01', to: 'helper' });
    assert.deepEqual(
      a.disks.map((d) => d.label),
      ['Hard disk 1'],
    );
    assert.deepEqual(
      a.warnings.map((w) => w.code),
      ['DISK_EXCLUDED_NOT_ATTACHED'],
    );
    assert.equal(l.vc.vm('helper')!.disks.length, 2);
  });
});
