import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { runBackup } from '../../src/engine/backup.js';
import { recover } from '../../src/engine/recover.js';
import { arraySnapshotIds, assertReleased, BEFORE, start } from './backup-lab.js';
import { crashedAt, LATER } from './harness.js';

describe('recover on the fakes after a backup stopped at each crash point', () => {
  for (const mode of ['SNAPSHOT_EXCL_MEM', 'SUSPEND'] as const) {
    for (const point of ['prepared', 'array-snapshot', 'snapshotted', 'released', 'recorded']) {
      it(`${mode}, stopped at ${point}: recover releases every VM and closes the run`, async () => {
        const l = await start();
        await crashedAt(l, point, (ctx) => runBackup(ctx, { vmPatterns: ['web01', 'db01'], mode }));
        const open = await l.ctx.catalog.unfinishedOperations();
        assert.equal(open.length, 1, 'the crashed run is left open');
        const id = open[0]!.id;
        const report = await recover(l.context(LATER));
        assert.deepEqual(report.errors, []);
        await assertReleased(l, BEFORE);
        assert.deepEqual(await l.ctx.catalog.unfinishedOperations(), []);
        const record = await l.ctx.catalog.getBackup(id);
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
