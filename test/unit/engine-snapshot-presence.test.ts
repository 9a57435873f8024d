import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { initFsArray } from '../../src/arrays/fs/layout.js';
import { Catalog } from '../../src/catalog/index.js';
import { parseConfig } from '../../src/config/load.js';
import { EngineContext } from '../../src/engine/context.js';
import { assertSnapshotsPresent } from '../../src/engine/snapshot-presence.js';
import { SnapkeeperError } from '../../src/errors.js';
import type { BackupRecord } from '../../src/model/backup.js';

const root = mkdtempSync(join(tmpdir(), 'snapkeeper-presence-'));
after(() => rmSync(root, { recursive: true, force: true }));

describe('a dry run checks that the backup’s array snapshot still exists', () => {
  it('passes while the snapshot is there and names it once it is gone', async () => {
    await initFsArray(join(root, 'array'), ['vol1']);
    const text = `
vcenter: { url: https://vcenter.invalid/sdk, user: u, passwordEnv: SNAPKEEPER_TEST_PASSWORD }
arrays: [{ name: a, type: fs, path: ${root}/array, driver: copy }]
catalog: { path: ${root}/catalog.db }
`;
    const config = parseConfig(text, join(root, 'snapkeeper.yaml'), { SNAPKEEPER_TEST_PASSWORD: 'x' });
    await Catalog.create(config.catalog.path).close();
    const ctx = new EngineContext({ config });
    try {
      const array = await ctx.array('a');
      const snap = await array.snapshotGroup(['vol1'], { label: '20260101-000000-aaaaaa.0123456789ab' });
      const backup: BackupRecord = {
        id: '20260101-000000-aaaaaa',
        task: 'adhoc',
        state: 'complete',
        startedAt: '2026-01-01T00:00:00.000Z',
        snapshots: [
          {
            array: 'a',
            snapshotId: snap.id,
            volumes: ['vol1'],
            pointInTime: snap.pointInTime,
            driver: snap.driver,
            datastores: {},
          },
        ],
        vms: [],
        warnings: [],
      };
      await assertSnapshotsPresent(ctx, backup);
      await array.deleteSnapshot(snap.id);
      await assert.rejects(assertSnapshotsPresent(ctx, backup), (err: unknown) => {
        assert.ok(err instanceof SnapkeeperError);
        assert.equal(err.code, 'SNAPSHOT_MISSING');
        assert.ok(err.message.includes(`a/${snap.id}`), err.message);
        return true;
      });
    } finally {
      await ctx.close();
    }
  });
});
