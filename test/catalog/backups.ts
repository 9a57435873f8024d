import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ConflictError, NotFoundError, UsageError } from '../../src/errors.js';
import type { BackupRecord, BackupState, VmRecord } from '../../src/model/backup.js';
import { type CatalogFactory, catalogPerCase } from './harness.js';

function vm(name: string, id = `vm-${name}`): VmRecord {
  return {
    id,
    name,
    instanceUuid: `uuid-${name}`,
    host: 'esx01',
    folder: 'prod/web',
    datacenter: 'DC1',
    vmxFile: `[ds-a] ${name}/${name}.vmx`,
    homeDatastore: 'ds-a',
    datastores: ['ds-a', 'ds-b'],
    powerState: 'poweredOn',
    requestedMode: 'SNAPSHOT_EXCL_MEM',
    effectiveMode: 'SNAPSHOT_EXCL_MEM',
    consistency: 'file-system',
    state: 'ok',
    disks: [
      {
        key: 2000,
        label: 'Hard disk 1',
        kind: 'flat',
        capacityBytes: 64 * 1024 * 1024,
        file: `[ds-a] ${name}/${name}.vmdk`,
        datastore: 'ds-a',
        diskMode: 'persistent',
        included: true,
      },
    ],
    warnings: [],
  };
}

/** A backup record; `snaps` are `array/snapshotId` pairs. */
function backup(
  id: string,
  o: { task?: string; state?: BackupState; at: string; vms?: string[]; snaps?: string[] },
): BackupRecord {
  return {
    id,
    task: o.task ?? 'nightly',
    state: o.state ?? 'complete',
    startedAt: o.at,
    snapshots: (o.snaps ?? []).map((s) => {
      const [array, snapshotId] = s.split('/') as [string, string];
      return {
        array,
        snapshotId,
        volumes: ['vol-a'],
        pointInTime: 'atomic',
        driver: 'btrfs',
        datastores: { 'ds-a': ['vol-a'] },
      };
    }),
    vms: (o.vms ?? []).map((name) => vm(name)),
    warnings: [],
  };
}

const ids = (records: BackupRecord[]) => records.map((r) => r.id);

export function backupCases(factory: CatalogFactory): void {
  const t = catalogPerCase(factory);
  describe('catalog backups', () => {
    it('round-trips a full record exactly', async () => {
      const record: BackupRecord = {
        ...backup('b-full', { at: '2026-11-02T03:04:05.678Z', vms: ['web01'], snaps: ['arr1/snap-1'] }),
        finishedAt: '2026-11-02T03:05:00.000Z',
        snapshotAt: '2026-11-02T03:04:30.000Z',
        requestedMode: 'SNAPSHOT_INCL_MEM',
        state: 'partial',
        error: 'db02: suspend failed',
        warnings: [{ code: 'MODE_CHANGED_RDM', message: 'db01 has RDM disks: SNAPSHOT_EXCL_MEM -> ASIS' }],
      };
      const v = record.vms[0]!;
      v.vmSnapshot = 'snapkeeper-b-full';
      v.quiesce = { start: '2026-11-02T03:04:20.000Z', end: '2026-11-02T03:04:31.500Z', ms: 11500 };
      v.disks.push({
        key: 2001,
        label: 'Hard disk 2',
        kind: 'rdm-physical',
        capacityBytes: 1 << 30,
        file: '[ds-a] web01/web01_1.vmdk',
        datastore: 'ds-a',
        diskMode: 'independent_persistent',
        included: false,
        note: 'RDM disks are not backed up',
        lun: 'naa.600a0980383030534a3f463045727a71',
        controllerKey: 1000,
        unitNumber: 1,
      });
      v.hardware = {
        numCpu: 2,
        memoryMB: 4096,
        guestId: 'otherGuest64',
        devices: [{ key: 4000, mac: 'aa:bb' }],
      };
      v.warnings.push({ code: 'INDEPENDENT_DISK', message: 'Hard disk 2 is crash consistent' });
      const copy = structuredClone(record);
      await t.catalog.insertBackup(record);
      assert.deepEqual(await t.catalog.getBackup('b-full'), copy);
      assert.deepEqual(await t.catalog.findBackup('b-full'), copy);
      // A second connection (another process) reads the same bytes.
      const other = await t.connect();
      assert.deepEqual(await other.getBackup('b-full'), copy);
    });

    it('refuses a duplicate id and reports unknown ids with stable codes', async () => {
      await t.catalog.insertBackup(backup('b-1', { at: '2026-11-01T00:00:00Z' }));
      await assert.rejects(
        async () => t.catalog.insertBackup(backup('b-1', { at: '2026-11-01T00:00:00Z' })),
        (e: unknown) => {
          assert.ok(e instanceof ConflictError);
          assert.equal(e.code, 'BACKUP_EXISTS');
          return true;
        },
      );
      assert.equal(await t.catalog.findBackup('nope'), undefined);
      await assert.rejects(
        async () => t.catalog.getBackup('nope'),
        (e: unknown) => {
          assert.ok(e instanceof NotFoundError);
          assert.equal(e.code, 'BACKUP_NOT_FOUND');
          assert.match(e.message, /nope/);
          return true;
        },
      );
      await assert.rejects(
        async () => t.catalog.updateBackup(backup('nope', { at: '2026-11-01T00:00:00Z' })),
        {
          code: 'BACKUP_NOT_FOUND',
        },
      );
      await assert.rejects(async () => t.catalog.deleteBackup('nope'), { code: 'BACKUP_NOT_FOUND' });
      await assert.rejects(async () => t.catalog.insertBackup(backup('b-bad', { at: 'yesterday-ish' })), {
        code: 'INVALID_TIME',
      });
      await assert.rejects(
        async () =>
          t.catalog.insertBackup({
            ...backup('b-bad', { at: '2026-11-01T00:00:00Z' }),
            state: 'weird' as BackupState,
          }),
        (e: unknown) => e instanceof UsageError && e.code === 'BACKUP_INVALID',
      );
      assert.equal(await t.catalog.findBackup('b-bad'), undefined);
    });

    it('lists newest first and filters by task, state, time and limit', async () => {
      await t.catalog.insertBackup(
        backup('a1', { task: 'a', at: '2026-11-01T01:00:00.000Z', state: 'complete' }),
      );
      await t.catalog.insertBackup(
        backup('b1', { task: 'b', at: '2026-11-02T01:00:00.000Z', state: 'failed' }),
      );
      await t.catalog.insertBackup(
        backup('a2', { task: 'a', at: '2026-11-03T01:00:00.000Z', state: 'partial' }),
      );
      // Offsets are compared as instants: 04:00+02:00 is 02:00Z, after a2.
      await t.catalog.insertBackup(
        backup('a3', { task: 'a', at: '2026-11-03T04:00:00+02:00', state: 'running' }),
      );

      assert.deepEqual(ids(await t.catalog.listBackups()), ['a3', 'a2', 'b1', 'a1']);
      assert.deepEqual(ids(await t.catalog.listBackups({ task: 'a' })), ['a3', 'a2', 'a1']);
      assert.deepEqual(ids(await t.catalog.listBackups({ task: 'zzz' })), []);
      assert.deepEqual(ids(await t.catalog.listBackups({ state: ['complete', 'partial'] })), ['a2', 'a1']);
      assert.deepEqual(ids(await t.catalog.listBackups({ state: [] })), ['a3', 'a2', 'b1', 'a1']);
      assert.deepEqual(ids(await t.catalog.listBackups({ since: '2026-11-02' })), ['a3', 'a2', 'b1']);
      assert.deepEqual(ids(await t.catalog.listBackups({ since: '2026-11-02T01:00:00.000Z' })), [
        'a3',
        'a2',
        'b1',
      ]);
      assert.deepEqual(ids(await t.catalog.listBackups({ until: '2026-11-02T01:00:00.000Z' })), ['a1']);
      assert.deepEqual(
        ids(await t.catalog.listBackups({ since: '2026-11-02', until: '2026-11-03T01:30:00Z' })),
        ['a2', 'b1'],
      );
      assert.deepEqual(ids(await t.catalog.listBackups({ limit: 2 })), ['a3', 'a2']);
      assert.deepEqual(
        ids(await t.catalog.listBackups({ task: 'a', state: ['complete', 'partial'], limit: 1 })),
        ['a2'],
      );
      assert.deepEqual(ids(await t.catalog.listBackups({ limit: 0 })), []);
      await assert.rejects(async () => t.catalog.listBackups({ limit: -1 }), { code: 'INVALID_LIMIT' });
      await assert.rejects(async () => t.catalog.listBackups({ since: 'last tuesday' }), {
        code: 'INVALID_TIME',
      });
      // The record keeps the time as the engine wrote it; only the query column is normalised.
      assert.equal((await t.catalog.getBackup('a3')).startedAt, '2026-11-03T04:00:00+02:00');
    });

    it('filters by VM name, exact or glob', async () => {
      await t.catalog.insertBackup(backup('x1', { at: '2026-11-01T00:00:00Z', vms: ['web01', 'db01'] }));
      await t.catalog.insertBackup(backup('x2', { at: '2026-11-02T00:00:00Z', vms: ['web02'] }));
      await t.catalog.insertBackup(backup('x3', { at: '2026-11-03T00:00:00Z', vms: ['app (old)', 'db01'] }));

      assert.deepEqual(ids(await t.catalog.listBackups({ vm: 'db01' })), ['x3', 'x1']);
      assert.deepEqual(ids(await t.catalog.listBackups({ vm: 'web*' })), ['x2', 'x1']);
      assert.deepEqual(ids(await t.catalog.listBackups({ vm: 'web0?' })), ['x2', 'x1']);
      assert.deepEqual(ids(await t.catalog.listBackups({ vm: '*' })), ['x3', 'x2', 'x1']);
      assert.deepEqual(ids(await t.catalog.listBackups({ vm: 'app (old)' })), ['x3']);
      assert.deepEqual(ids(await t.catalog.listBackups({ vm: 'web' })), []);
      assert.deepEqual(ids(await t.catalog.listBackups({ vm: 'db01', since: '2026-11-02' })), ['x3']);
    });

    it('update replaces the record and its VM and snapshot index', async () => {
      const running = backup('u1', {
        at: '2026-11-01T00:00:00Z',
        state: 'running',
        vms: ['web01'],
        snaps: ['arr1/s-1'],
      });
      await t.catalog.insertBackup(running);
      assert.deepEqual(ids(await t.catalog.listBackups({ state: ['running'] })), ['u1']);

      const done: BackupRecord = {
        ...backup('u1', {
          at: '2026-11-01T00:00:00Z',
          state: 'complete',
          vms: ['db01'],
          snaps: ['arr2/s-9'],
        }),
        finishedAt: '2026-11-01T00:10:00Z',
      };
      await t.catalog.updateBackup(done);
      assert.deepEqual(await t.catalog.getBackup('u1'), done);
      assert.deepEqual(ids(await t.catalog.listBackups({ state: ['running'] })), []);
      assert.deepEqual(ids(await t.catalog.listBackups({ vm: 'web01' })), []);
      assert.deepEqual(ids(await t.catalog.listBackups({ vm: 'db01' })), ['u1']);
      assert.deepEqual(await t.catalog.snapshotOwners('arr1', 's-1'), []);
      assert.deepEqual(await t.catalog.snapshotOwners('arr2', 's-9'), [
        { backupId: 'u1', state: 'complete' },
      ]);
    });

    it('answers snapshot ownership from the snapshots of the records', async () => {
      await t.catalog.insertBackup(
        backup('o1', { at: '2026-11-01T00:00:00Z', state: 'complete', snaps: ['arr1/s-1', 'arr2/s-1'] }),
      );
      await t.catalog.insertBackup(
        backup('o2', { at: '2026-11-02T00:00:00Z', state: 'partial', snaps: ['arr1/s-2'] }),
      );
      await t.catalog.insertBackup(
        backup('o3', { at: '2026-11-03T00:00:00Z', state: 'failed', snaps: ['arr1/s-3'] }),
      );
      await t.catalog.insertBackup(
        backup('o4', { at: '2026-11-04T00:00:00Z', state: 'running', snaps: ['arr1/s-4'] }),
      );
      // Two records naming one snapshot (e.g. a re-run that adopted it) are both owners.
      await t.catalog.insertBackup(
        backup('o5', { at: '2026-11-05T00:00:00Z', state: 'failed', snaps: ['arr1/s-2'] }),
      );

      assert.deepEqual(await t.catalog.snapshotOwners('arr1', 's-2'), [
        { backupId: 'o2', state: 'partial' },
        { backupId: 'o5', state: 'failed' },
      ]);
      assert.deepEqual(await t.catalog.snapshotOwners('arr1', 's-1'), [
        { backupId: 'o1', state: 'complete' },
      ]);
      assert.deepEqual(await t.catalog.snapshotOwners('arr3', 's-1'), []);
      assert.deepEqual(await t.catalog.ownedSnapshotIds('arr1'), new Set(['s-1', 's-2']));
      assert.deepEqual(await t.catalog.ownedSnapshotIds('arr2'), new Set(['s-1']));
      assert.deepEqual(
        await t.catalog.ownedSnapshotIds('arr1', ['complete', 'partial', 'running']),
        new Set(['s-1', 's-2', 's-4']),
      );
      assert.deepEqual(await t.catalog.ownedSnapshotIds('nothing-here'), new Set());

      await t.catalog.deleteBackup('o1');
      assert.deepEqual(await t.catalog.snapshotOwners('arr1', 's-1'), []);
      assert.deepEqual(await t.catalog.ownedSnapshotIds('arr1'), new Set(['s-2']));
      assert.equal(await t.catalog.findBackup('o1'), undefined);
      assert.deepEqual(ids(await t.catalog.listBackups()), ['o5', 'o4', 'o3', 'o2']);
    });

    it('marks a backup lost in one write, only while it is still restorable', async () => {
      await t.catalog.insertBackup(backup('l1', { at: '2026-11-01T00:00:00Z', snaps: ['arr1/s-1'] }));
      await t.catalog.insertBackup(backup('l2', { at: '2026-11-02T00:00:00Z', state: 'failed' }));
      const lost = await t.catalog.markBackupLost('l1', {
        at: '2026-11-05T00:00:00.000Z',
        reason: 'arr1/s-1 is gone',
      });
      assert.equal(lost?.state, 'lost');
      const stored = await t.catalog.getBackup('l1');
      assert.deepEqual(stored, lost);
      assert.deepEqual(stored.lost, {
        at: '2026-11-05T00:00:00.000Z',
        reason: 'arr1/s-1 is gone',
        previousState: 'complete',
      });
      assert.deepEqual(stored.warnings, [
        { code: 'BACKUP_LOST', message: 'backup l1 is lost: arr1/s-1 is gone' },
      ]);
      assert.deepEqual(ids(await t.catalog.listBackups({ state: ['lost'] })), ['l1']);
      assert.deepEqual(
        await t.catalog.ownedSnapshotIds('arr1'),
        new Set(),
        'a lost backup is not restorable',
      );
      // Changed meanwhile (already lost, failed, deleted): nothing is written.
      assert.equal(
        await t.catalog.markBackupLost('l1', { at: '2026-11-06T00:00:00.000Z', reason: 'again' }),
        undefined,
      );
      assert.deepEqual(await t.catalog.getBackup('l1'), stored);
      assert.equal(
        await t.catalog.markBackupLost('l2', { at: '2026-11-06T00:00:00.000Z', reason: 'x' }),
        undefined,
      );
      assert.equal((await t.catalog.getBackup('l2')).state, 'failed');
      assert.equal(
        await t.catalog.markBackupLost('ghost', { at: '2026-11-06T00:00:00.000Z', reason: 'x' }),
        undefined,
      );
    });
  });
}
