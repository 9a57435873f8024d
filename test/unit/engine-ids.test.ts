import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { Catalog, HEARTBEAT_INTERVAL_MS } from '../../src/catalog/index.js';
import {
  newBackupId,
  ownedLabel,
  ownershipOf,
  parseLabel,
  parseVmSnapshotName,
  vmSnapshotName,
} from '../../src/engine/ids.js';
import { RunningOperation, withOperation } from '../../src/engine/operation.js';

const root = mkdtempSync(join(tmpdir(), 'snapkeeper-engine-ids-'));
after(() => rmSync(root, { recursive: true, force: true }));
let n = 0;

describe('names that carry the catalog identity', () => {
  const catalogId = '0123456789ab';
  const backupId = newBackupId(new Date('2026-11-25T08:15:00Z'));

  it('labels and VM snapshot names round-trip, within what arrays and vSphere accept', () => {
    const label = ownedLabel(backupId, catalogId);
    assert.match(label, /^[A-Za-z0-9._-]{1,160}$/);
    assert.deepEqual(parseLabel(label), { operationId: backupId, catalogId });
    assert.deepEqual(parseLabel(ownedLabel(`restore-${backupId}`, catalogId)), {
      operationId: `restore-${backupId}`,
      catalogId,
    });
    const name = vmSnapshotName(backupId, catalogId);
    assert.ok(name.length <= 80, 'vSphere snapshot names stay short');
    assert.deepEqual(parseVmSnapshotName(name), { operationId: backupId, catalogId });
    // Earlier releases' names parse, without a catalog id.
    assert.deepEqual(parseLabel(backupId), { operationId: backupId });
    assert.deepEqual(parseVmSnapshotName(`snapkeeper-${backupId}`), { operationId: backupId });
    for (const other of [
      'admin-before-upgrade',
      `${backupId}.xyz`,
      `${backupId}.0123456789abc`,
      'snapkeeper-data',
    ]) {
      assert.equal(parseLabel(other), undefined, other);
      assert.equal(parseVmSnapshotName(other), undefined, other);
    }
  });

  it('only what carries this catalog id AND an operation of its journal is ours', async () => {
    const c = Catalog.create(join(root, `c${++n}.db`));
    try {
      await c.beginOperation({ id: backupId, kind: 'backup' });
      assert.deepEqual(await ownershipOf(parseLabel(ownedLabel(backupId, c.id)), c), {
        owner: 'ours',
        operationId: backupId,
      });
      const foreign = [
        ownedLabel(backupId, '0000000000ff'), // another catalog
        backupId, // an earlier release
        ownedLabel('20200101-000000-abcdef', c.id), // our id, but no such operation (an older copy)
      ];
      for (const label of foreign) {
        assert.equal((await ownershipOf(parseLabel(label), c)).owner, 'foreign', label);
      }
      assert.equal((await ownershipOf(parseLabel('admin'), c)).owner, 'unrelated');
    } finally {
      await c.close();
    }
  });
});

describe('the operation runner', () => {
  it('renews the lease while running and stops when it ends', async (t) => {
    t.mock.timers.enable({ apis: ['setInterval'] });
    let clock = Date.parse('2026-11-25T08:00:00.000Z');
    const c = Catalog.create(join(root, `c${++n}.db`), { now: () => new Date(clock) });
    try {
      const op = await RunningOperation.begin(c, { id: 'op-1', kind: 'backup', locks: ['vm:vm-1'] });
      clock += HEARTBEAT_INTERVAL_MS;
      t.mock.timers.tick(HEARTBEAT_INTERVAL_MS);
      assert.equal((await c.getOperation('op-1')).heartbeatAt, new Date(clock).toISOString());
      await op.finish('done');
      const last = (await c.getOperation('op-1')).heartbeatAt;
      clock += HEARTBEAT_INTERVAL_MS;
      t.mock.timers.tick(HEARTBEAT_INTERVAL_MS);
      assert.equal((await c.getOperation('op-1')).heartbeatAt, last, 'no renewal after the end');
      assert.deepEqual(await c.locksOf('op-1'), []);
    } finally {
      await c.close();
    }
  });

  it('closes a refused operation as failed with nothing to repair, and a failed body as failed', async () => {
    const c = Catalog.create(join(root, `c${++n}.db`));
    try {
      await c.beginOperation({ id: 'holder', kind: 'restore' });
      await c.acquireLocks('holder', [{ resource: 'backup:b', mode: 'shared' }]);
      await assert.rejects(
        withOperation(c, { id: 'del', kind: 'delete', locks: ['backup:b'] }, async () => 1),
        { code: 'RESOURCE_LOCKED' },
      );
      assert.equal((await c.getOperation('del')).state, 'failed');
      assert.ok((await c.getOperation('del')).recoveredAt);
      await assert.rejects(
        withOperation(c, { id: 'boom', kind: 'delete', locks: [] }, async () => {
          throw new Error('boom');
        }),
        /boom/,
      );
      assert.equal((await c.getOperation('boom')).state, 'failed');
      assert.equal(await withOperation(c, { id: 'ok', kind: 'delete', locks: [] }, async () => 7), 7);
      assert.equal((await c.getOperation('ok')).state, 'done');
    } finally {
      await c.close();
    }
  });
});
