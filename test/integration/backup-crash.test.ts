import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { after, before, describe, it } from 'node:test';
import Database from 'better-sqlite3';
import { openArray } from '../../src/arrays/index.js';
import { Catalog } from '../../src/catalog/index.js';
import { loadConfig } from '../../src/config/load.js';
import { ownedLabel, vmSnapshotName } from '../../src/engine/ids.js';
import type { BackupRecord } from '../../src/model/backup.js';
import { catalogIdOf, countBackups, newestBackup, withCatalog } from '../helpers/catalog.js';
import { runCli, runJson } from '../helpers/cli.js';
import { standardSpec, startLab, type TestLab } from '../helpers/lab.js';
import {
  arraySnapshots,
  assertClean,
  type VmSnapshotState,
  vmStates,
  withVcenter,
} from '../helpers/state.js';

/** Where the process kills itself (SNAPKEEPER_CRASH_AT), and what must be visible right after. */
const POINTS = [
  { point: 'prepared', vmsHeld: true, snapshot: false, recordState: 'running' },
  { point: 'array-snapshot', vmsHeld: true, snapshot: false, recordState: 'running' },
  { point: 'snapshotted', vmsHeld: true, snapshot: true, recordState: 'running' },
  { point: 'released', vmsHeld: false, snapshot: true, recordState: 'running' },
  { point: 'recorded', vmsHeld: false, snapshot: true, recordState: 'complete' },
] as const;

describe('SIGKILL in every phase, then recover', () => {
  let lab: TestLab;
  let clean: Record<string, VmSnapshotState>;

  before(async () => {
    lab = await startLab(await standardSpec());
    clean = await vmStates(loadConfig(lab.configPath));
  });
  after(async () => {
    await lab?.stop();
  });

  /** Runs a backup that kills itself at `point` and returns the record the crash left behind. */
  async function crashedBackup(point: string, mode: string, vms = ['web01']): Promise<BackupRecord> {
    const run = await runCli(['--config', lab.configPath, 'backup', '--vm', ...vms, '--mode', mode], {
      env: { SNAPKEEPER_CRASH_AT: point },
    });
    assert.equal(run.signal, 'SIGKILL', `the run was killed at ${point}: ${run.stderr}`);
    return newestBackup(loadConfig(lab.configPath).catalog.path);
  }

  for (const mode of ['SUSPEND', 'SNAPSHOT_EXCL_MEM'] as const) {
    for (const p of POINTS) {
      it(`${mode}, killed at ${p.point}: recover leaves no held VM, stray snapshot or orphan`, async () => {
        const config = loadConfig(lab.configPath);
        const backupsBefore = await countBackups(config.catalog.path);
        // The crash really left the state of that phase behind.
        const id = await crashedBackup(p.point, mode, ['web01', 'app01']);
        assert.equal(await countBackups(config.catalog.path), backupsBefore + 1);
        assert.equal(id.state, p.recordState);
        const states = await vmStates(config);
        if (p.vmsHeld) {
          if (mode === 'SUSPEND') assert.equal(states.web01!.powerState, 'suspended');
          else
            assert.deepEqual(states.web01!.snapshots, [
              vmSnapshotName(id.id, await catalogIdOf(config.catalog.path)),
            ]);
        } else {
          assert.deepEqual(states, clean);
        }
        const label = ownedLabel(id.id, await catalogIdOf(config.catalog.path));
        const snaps = (await arraySnapshots(config)).filter((s) => s.label === label);
        assert.equal(snaps.length, p.snapshot ? 1 : 0);

        const rec = await runJson(lab.configPath, 'recover');
        assert.equal(rec.code, 0, rec.stdout + rec.stderr);
        assert.deepEqual(
          rec.json.operations.map((o: { id: string }) => o.id),
          [id.id],
        );
        const after = await newestBackup(config.catalog.path);
        assert.equal(after.state, p.recordState === 'complete' ? 'complete' : 'failed');
        await assertClean(lab.configPath, clean);

        // Recover is idempotent.
        const again = await runJson(lab.configPath, 'recover');
        assert.equal(again.code, 0);
        assert.equal(again.json.operations.length, 0);
        assert.equal(again.json.removedVmSnapshots.length, 0);
        assert.equal(again.json.deletedArraySnapshots.length, 0);
      });
    }
  }

  it('the next backup repairs a crashed one before it starts', async () => {
    const config = loadConfig(lab.configPath);
    const crashedId = (await crashedBackup('snapshotted', 'SUSPEND')).id;
    assert.equal((await vmStates(config)).web01!.powerState, 'suspended');

    const next = await runJson(lab.configPath, 'backup', '--vm', 'web01', '--mode', 'SUSPEND');
    assert.equal(next.code, 0, next.stdout + next.stderr);
    assert.equal((next.json as BackupRecord).state, 'complete');
    await withCatalog(config.catalog.path, async (c) =>
      assert.equal((await c.getBackup(crashedId)).state, 'failed'),
    );
    await assertClean(lab.configPath, clean);
  });

  it('a refused backup changes nothing even after a crash; the next valid one repairs, re-plans and completes', async () => {
    const config = loadConfig(lab.configPath);
    const crashedId = (await crashedBackup('prepared', 'SUSPEND')).id;
    assert.equal((await vmStates(config)).web01!.powerState, 'suspended');

    // Bad input: exit 3 and nothing changed, not even the repair of the crashed run.
    const refused = await runJson(lab.configPath, 'backup', '--vm', 'no-such-vm');
    assert.equal(refused.code, 3, refused.stdout + refused.stderr);
    assert.equal(refused.json.error.code, 'SELECTION_EMPTY');
    assert.equal((await vmStates(config)).web01!.powerState, 'suspended', 'web01 is still suspended');

    // A live run holds app01: a backup of web01 and app01 is refused before the repair too.
    const appId = lab.vm('app01').id;
    await withCatalog(config.catalog.path, async (catalog) => {
      await catalog.beginOperation({ id: 'holder-op', kind: 'backup', subject: 'other-task' });
      try {
        await catalog.acquireLocks('holder-op', [`vm:${appId}`]);
        const locked = await runJson(lab.configPath, 'backup', '--vm', 'web01', 'app01');
        assert.equal(locked.code, 2, locked.stdout + locked.stderr);
        assert.equal(locked.json.error.code, 'RESOURCE_LOCKED');
        assert.match(locked.json.error.message, /holder-op/);
      } finally {
        await catalog.finishOperation('holder-op', 'done');
      }
      assert.equal((await vmStates(config)).web01!.powerState, 'suspended', 'web01 is still suspended');
      assert.equal((await catalog.getBackup(crashedId)).state, 'running', 'the crashed record is untouched');
      assert.ok((await catalog.unfinishedOperations()).some((o) => o.id === crashedId));
    });

    // A valid run repairs first, then plans from the repaired state: web01 is running again, so it is
    // suspended (held) by this run, not recorded as "suspended, left as it is".
    const next = await runJson(lab.configPath, 'backup', '--vm', 'web01', '--mode', 'SUSPEND');
    assert.equal(next.code, 0, next.stdout + next.stderr);
    const record = next.json as BackupRecord;
    assert.equal(record.state, 'complete');
    const web = record.vms.find((v) => v.name === 'web01')!;
    assert.equal(web.powerState, 'poweredOn');
    assert.ok(web.quiesce !== undefined, 'web01 was held by this run');
    await withCatalog(config.catalog.path, async (c) =>
      assert.equal((await c.getBackup(crashedId)).state, 'failed'),
    );
    await assertClean(lab.configPath, clean);
  });

  it('the next backup removes stray snapkeeper VM snapshots of its VMs and says so', async () => {
    const config = loadConfig(lab.configPath);
    const webId = lab.vm('web01').id;
    // A stray of this catalog: named with its id, made by an operation its journal has (closed, repaired).
    const stray = vmSnapshotName('20200101-000000-abcdef', await catalogIdOf(config.catalog.path));
    await withCatalog(config.catalog.path, async (c) => {
      await c.beginOperation({ id: '20200101-000000-abcdef', kind: 'backup' });
      await c.finishOperation('20200101-000000-abcdef', 'failed', { repaired: true });
    });
    await withVcenter(config.vcenter, async (vc) => {
      await vc.createVmSnapshot(webId, { name: stray, memory: false, quiesce: false });
    });
    assert.deepEqual((await vmStates(config)).web01!.snapshots, [stray]);
    const run = await runJson(lab.configPath, 'backup', '--vm', 'web01', '--mode', 'SUSPEND');
    const record = run.json as BackupRecord;
    assert.equal(record.state, 'complete', run.stdout + run.stderr);
    const removed = record.warnings.filter((w) => w.code === 'STRAY_VM_SNAPSHOT_REMOVED');
    assert.equal(removed.length, 1);
    assert.ok(removed[0]!.message.includes(stray));
    assert.equal(run.code, 1, 'completed with a warning');
    assert.deepEqual((await vmStates(config)).web01!.snapshots, []);
    await assertClean(lab.configPath, clean);
  });

  it('recover deletes only unowned array snapshots this catalog labelled', async () => {
    const config = loadConfig(lab.configPath);
    const arrayConfig = config.arrays[0]!;
    const array = await openArray(arrayConfig);
    const volume = (await array.listVolumes())[0]!.name;
    const catalogId = await catalogIdOf(config.catalog.path);
    const ours = (id: string) => ownedLabel(id, catalogId);
    const admin = await array.snapshotGroup([volume], { label: 'admin-before-upgrade' });
    // Of an earlier release (no catalog id): foreign, left alone and reported.
    const legacy = await array.snapshotGroup([volume], { label: '20200101-000009-abcdef' });
    const orphan = await array.snapshotGroup([volume], { label: ours('20200101-000000-abcdef') });
    // A backup still running (its record owns the snapshot) whose operation is not live.
    const running = await array.snapshotGroup([volume], { label: ours('20200101-000001-abcdef') });
    const catalog = Catalog.open(config.catalog.path);
    try {
      // The orphan's operation is in this catalog's journal (begun and closed), so it is provably ours.
      if (await !catalog.findOperation('20200101-000000-abcdef')) {
        await catalog.beginOperation({ id: '20200101-000000-abcdef', kind: 'backup' });
        await catalog.finishOperation('20200101-000000-abcdef', 'failed', { repaired: true });
      }
      await catalog.insertBackup({
        id: '20200101-000001-abcdef',
        task: 'adhoc',
        state: 'running',
        startedAt: '2020-01-01T00:00:01.000Z',
        snapshots: [
          {
            array: arrayConfig.name,
            snapshotId: running.id,
            volumes: [volume],
            pointInTime: running.pointInTime,
            driver: running.driver,
            datastores: {},
          },
        ],
        vms: [],
        warnings: [],
      });
      const rec = await runJson(lab.configPath, 'recover');
      assert.equal(rec.code, 0, rec.stdout + rec.stderr);
      assert.deepEqual(
        rec.json.deletedArraySnapshots.map((d: { snapshotId: string }) => d.snapshotId),
        [orphan.id],
      );
      const left = (await arraySnapshots(config)).map((s) => s.id);
      assert.ok(left.includes(admin.id), 'a snapshot made by someone else is left alone');
      assert.ok(left.includes(legacy.id), 'one without this catalog id is left alone');
      assert.ok(rec.json.foreign.some((f: { name: string }) => f.name === legacy.id));
      assert.ok(left.includes(running.id), 'a running backup’s snapshot is left alone');
      assert.ok(!left.includes(orphan.id));
      await catalog.deleteBackup('20200101-000001-abcdef');
    } finally {
      await catalog.close();
      await array.deleteSnapshot(admin.id);
      await array.deleteSnapshot(legacy.id);
      await array.deleteSnapshot(running.id);
    }
    await assertClean(lab.configPath, clean);
  });

  it('recover goes on past an operation it cannot repair, closes it and retries it later', async () => {
    const config = loadConfig(lab.configPath);
    const crashedId = (await crashedBackup('prepared', 'SUSPEND')).id;
    const deadPid = spawnSync(process.execPath, ['-e', '']).pid;
    const catalog = Catalog.open(config.catalog.path);
    const broken = '20200101-000003-abcdef';
    const unreachable = '20200101-000004-abcdef';
    try {
      // One whose record cannot be read (the handler throws), one naming an array that is not configured
      // (the handler reports an error). Both dead, begun before the crashed run.
      await catalog.beginOperation({ id: broken, kind: 'backup', pid: deadPid });
      await catalog.insertBackup({
        id: broken,
        task: 'adhoc',
        state: 'running',
        startedAt: '2020-01-01T00:00:03.000Z',
        snapshots: [],
        vms: [],
        warnings: [],
      });
      const db = new Database(config.catalog.path);
      try {
        db.prepare("UPDATE backups SET record = '{not json' WHERE id = ?").run(broken);
      } finally {
        db.close();
      }
      await catalog.beginOperation({ id: unreachable, kind: 'backup', pid: deadPid });
      await catalog.journal(unreachable, { action: 'array-snapshot', target: 'no-such-array', data: {} });

      const rec = await runJson(lab.configPath, 'recover');
      assert.equal(rec.code, 2, 'errors: exit 2');
      assert.deepEqual(
        rec.json.operations.map((o: { id: string }) => o.id),
        [crashedId],
        'only the operation actually closed',
      );
      assert.deepEqual(rec.json.stillOpen.map((o: { id: string }) => o.id).sort(), [broken, unreachable]);
      assert.ok(rec.json.errors.some((e: string) => e.includes(broken)));
      assert.ok(rec.json.errors.some((e: string) => e.includes('no-such-array')));
      assert.equal(
        (await vmStates(config)).web01!.powerState,
        'poweredOn',
        'the repairable one was repaired',
      );
      const text = await runCli(['--config', lab.configPath, 'recover', '--dry-run']);
      assert.match(text.stdout, /left open.*20200101-000003-abcdef/);
      // Closed all the same (no lock outlives its holder), and left for later recovers to repair.
      assert.deepEqual(await catalog.unfinishedOperations(), []);
      assert.deepEqual(
        (await catalog.listOperations({ state: ['failed'], recovered: false })).map((o) => o.id).sort(),
        [broken, unreachable],
      );
    } finally {
      for (const id of [broken, unreachable]) {
        if ((await catalog.findOperation(id))?.state === 'running')
          await catalog.finishOperation(id, 'failed');
        await catalog.markRecovered(id);
      }
      await catalog.deleteBackup(broken);
      await catalog.close();
    }
    await assertClean(lab.configPath, clean);
  });

  it('recover --dry-run reports and changes nothing', async () => {
    const config = loadConfig(lab.configPath);
    await crashedBackup('snapshotted', 'SNAPSHOT_EXCL_MEM');
    const held = await vmStates(config);
    const snapsBefore = await arraySnapshots(config);
    const dry = await runJson(lab.configPath, 'recover', '--dry-run');
    assert.equal(dry.code, 0);
    assert.equal(dry.json.removedVmSnapshots.length, 1);
    assert.equal(dry.json.deletedArraySnapshots.length, 1);
    assert.deepEqual(await vmStates(config), held, 'dry run changed no VM');
    assert.deepEqual(await arraySnapshots(config), snapsBefore, 'dry run deleted no snapshot');
    const real = await runJson(lab.configPath, 'recover');
    assert.equal(real.code, 0);
    await assertClean(lab.configPath, clean);
  });
});
