import assert from 'node:assert/strict';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { after, before, describe, it } from 'node:test';
import Database from 'better-sqlite3';
import YAML from 'yaml';
import { openArray } from '../../src/arrays/index.js';
import { Catalog, LEASE_MS } from '../../src/catalog/index.js';
import { loadConfig } from '../../src/config/load.js';
import { vmSnapshotName } from '../../src/engine/ids.js';
import { canMountLoopBtrfs } from '../../src/lab/loop-btrfs.js';
import { withCatalog } from '../helpers/catalog.js';
import { runCli, runJson } from '../helpers/cli.js';
import { startLab, type TestLab } from '../helpers/lab.js';
import { requireCapability } from '../helpers/require.js';
import { arraySnapshots, vmStates, withVcenter } from '../helpers/state.js';

const SPEC = {
  datacenters: [
    {
      name: 'DC1',
      hosts: ['esx01'],
      datastores: [{ name: 'ds-a', capacityGB: 10 }],
      vms: [{ name: 'web01', host: 'esx01', power: 'poweredOn', disks: [{ datastore: 'ds-a', sizeMB: 4 }] }],
    },
  ],
};

/**
 * Issue 7 section 1 on the lab (copy driver): two catalogs sharing one array, a mistyped or foreign catalog
 * file, delete and expire against a running restore, and an array snapshot deleted behind the catalog's
 * back. Restores are slowed (the simulator delays VM registration) so that one is running while others act.
 */
describe('nothing snapkeeper did not make, and nothing in use, is ever deleted', () => {
  let lab: TestLab;
  let root: string;
  let second: string;

  /** A configuration of the same lab (vCenter, array) with another catalog path and retention. */
  function variant(name: string, catalogPath: string, retention?: object): string {
    const doc = YAML.parse(readFileSync(lab.configPath, 'utf8'));
    doc.vcenter.passwordFile = resolve(lab.dir, doc.vcenter.passwordFile);
    doc.arrays[0].path = resolve(lab.dir, doc.arrays[0].path);
    doc.catalog.path = catalogPath;
    if (retention) doc.defaults = { ...doc.defaults, retention };
    const file = join(root, `${name}.yaml`);
    writeFileSync(file, YAML.stringify(doc));
    return file;
  }

  before(async () => {
    lab = await startLab(SPEC, { delays: { RegisterVM_Task: 4000, CreateVM_Task: 4000 } });
    root = resolve(lab.dir, '..');
    second = variant('second', join(root, 'second.db'));
  });
  after(async () => {
    await lab?.stop();
  });

  it('a missing catalog is refused naming its path, and nothing is created', async () => {
    const typo = join(root, 'typo', 'dir', 'catalog.db');
    const config = variant('typo', typo);
    for (const args of [['recover', '--dry-run'], ['inquire'], ['backup', '--vm', 'web01']]) {
      const run = await runJson(config, ...args);
      assert.equal(run.code, 3, `${args.join(' ')}: ${run.stdout}${run.stderr}`);
      assert.equal(run.json.error.code, 'CATALOG_NOT_FOUND');
      assert.ok(run.json.error.message.includes(typo), run.json.error.message);
    }
    assert.equal(existsSync(join(root, 'typo')), false, 'no directory was created');
    const created = await runJson(config, 'catalog', 'create');
    assert.equal(created.code, 0, created.stderr);
    assert.match(created.json.id, /^[0-9a-f]{12}$/);
    assert.equal((await runJson(config, 'inquire')).code, 0);
  });

  it('an empty file and a file that is not a catalog are refused and left untouched', async () => {
    const cases: [string, string | Buffer][] = [
      ['empty.db', ''],
      ['notes.db', 'not a database\n'.repeat(100)],
    ];
    for (const [name, content] of cases) {
      const file = join(root, name);
      writeFileSync(file, content);
      const run = await runJson(variant(name, file), 'recover', '--dry-run');
      assert.equal(run.code, 3, run.stdout);
      assert.equal(run.json.error.code, 'CATALOG_INVALID');
      assert.ok(run.json.error.message.includes(file));
      assert.equal(readFileSync(file, 'utf8'), content, `${name} is untouched`);
      assert.equal(existsSync(`${file}-wal`), false);
    }
  });

  it('two catalogs on one array: recover in either deletes nothing of the other, even mid-crash', async () => {
    await twoCatalogs(lab.configPath, second);
  });

  it('delete refuses and expire skips a backup a running restore reads', async () => {
    const older = await runJson(lab.configPath, 'backup', '--vm', 'web01');
    const newer = await runJson(lab.configPath, 'backup', '--vm', 'web01');
    assert.equal(newer.json.state, 'complete', newer.stderr);
    const id = older.json.id as string;
    const restore = runJson(lab.configPath, 'restore', '--backup', id, '--vm', 'web01', '--as', 'web01-held');
    const catalog = Catalog.open(loadConfig(lab.configPath).catalog.path);
    try {
      // Wait for the restore to hold the backup (a condition, not a guess at a time).
      const deadline = Date.now() + 60_000;
      while ((await catalog.lockHolders(`backup:${id}`)).length === 0) {
        assert.ok(Date.now() < deadline, 'the restore took its hold');
        await new Promise((r) => setTimeout(r, 50));
      }
      const holder = (await catalog.lockHolders(`backup:${id}`))[0]!;
      assert.equal(holder.mode, 'shared');
      const del = await runJson(lab.configPath, 'delete', '--backup', id);
      assert.equal(del.code, 3, del.stdout);
      assert.equal(del.json.error.code, 'BACKUP_IN_USE');
      assert.match(
        del.json.error.message,
        new RegExp(`restore operation ${holder.operation.id} \\(pid ${holder.operation.pid} on `),
      );
      const keepOne = variant('keep-one', loadConfig(lab.configPath).catalog.path, { versions: 1 });
      const exp = await runJson(keepOne, 'expire');
      assert.equal(exp.code, 1, exp.stdout);
      assert.deepEqual(
        exp.json.skipped.map((s: { id: string }) => s.id),
        [id],
      );
      assert.ok(!exp.json.deleted.some((d: { id: string }) => d.id === id));
      assert.ok(await catalog.findBackup(id), 'the held backup is still there');
      const restored = await restore;
      assert.ok(restored.code === 0 || restored.code === 1, restored.stdout + restored.stderr);
      assert.equal((await catalog.lockHolders(`backup:${id}`)).length, 0, 'the hold ends with the restore');
    } finally {
      await catalog.close();
      await restore;
    }
    const del = await runJson(lab.configPath, 'delete', '--backup', id);
    assert.equal(del.code, 0, del.stdout);
  });

  it('a backup whose array snapshot vanished is marked lost and never offered again', async () => {
    const run = await runJson(lab.configPath, 'backup', '--vm', 'web01');
    const id = run.json.id as string;
    const config = loadConfig(lab.configPath);
    const array = await openArray(config.arrays[0]!);
    await array.deleteSnapshot(run.json.snapshots[0].snapshotId);
    const rec = await runJson(lab.configPath, 'recover');
    assert.equal(rec.code, 1, rec.stdout);
    assert.deepEqual(
      rec.json.lostBackups.map((b: { id: string }) => b.id),
      [id],
    );
    const shown = await runJson(lab.configPath, 'inquire', '--backup', id);
    assert.equal(shown.json.state, 'lost', shown.stdout);
    assert.ok(shown.json.lost.reason.includes(run.json.snapshots[0].snapshotId));
    const dry = await runJson(
      lab.configPath,
      'restore',
      '--dry-run',
      '--backup',
      id,
      '--vm',
      'web01',
      '--as',
      'x1',
    );
    assert.equal(dry.code, 3, dry.stdout);
    assert.equal(dry.json.error.code, 'BACKUP_NOT_RESTORABLE');
    assert.match(dry.json.error.message, /lost/);
    const again = await runJson(lab.configPath, 'recover');
    assert.deepEqual(again.json.lostBackups, [], 'marked once');
    assert.equal((await runJson(lab.configPath, 'delete', '--backup', id)).code, 0, 'a lost record can go');
  });

  it('liveness by lease: another host’s run is dead once its heartbeat is stale, alive while it is fresh', async () => {
    const config = loadConfig(lab.configPath);
    const webId = lab.vm('web01').id;
    const catalog = Catalog.open(config.catalog.path);
    const stale = '20200102-000000-5a1e00';
    const fresh = '20200102-000001-f1e500';
    try {
      for (const id of [stale, fresh]) {
        await catalog.beginOperation({ id, kind: 'backup', subject: 'elsewhere' });
        await catalog.acquireLocks(id, [`vm:${webId}-${id}`]);
        await catalog.journal(id, { action: 'vm-snapshot', target: webId, data: { vm: 'web01' } });
      }
      await withVcenter(config.vcenter, async (vc) => {
        await vc.createVmSnapshot(webId, {
          name: vmSnapshotName(stale, catalog.id),
          memory: false,
          quiesce: false,
        });
      });
      // Both began on a host this one cannot probe; only the stale one stopped renewing its lease.
      const db = new Database(config.catalog.path);
      try {
        db.prepare("UPDATE operations SET host = 'other-host', pid = 1 WHERE id IN (?, ?)").run(stale, fresh);
        db.prepare('UPDATE operations SET heartbeat_at = ? WHERE id = ?').run(
          new Date(Date.now() - LEASE_MS - 1000).toISOString(),
          stale,
        );
      } finally {
        db.close();
      }
      const rec = await runJson(lab.configPath, 'recover');
      assert.equal(rec.code, 0, rec.stdout);
      assert.deepEqual(
        rec.json.operations.map((o: { id: string }) => o.id),
        [stale],
      );
      assert.deepEqual(
        rec.json.running.map((o: { id: string }) => o.id),
        [fresh],
      );
      assert.deepEqual(
        (await vmStates(config)).web01!.snapshots,
        [],
        'the dead run’s VM snapshot is removed',
      );
      assert.equal((await catalog.getOperation(stale)).state, 'failed');
      assert.deepEqual(await catalog.locksOf(stale), [], 'no lock outlives its holder');
      assert.equal((await catalog.getOperation(fresh)).state, 'running');
    } finally {
      if ((await catalog.findOperation(fresh))?.state === 'running')
        await catalog.finishOperation(fresh, 'done');
      await catalog.close();
    }
  });

  it('a backup recorded before catalog ids is not foreign to its catalog and expires normally', async () => {
    const config = loadConfig(lab.configPath);
    const array = await openArray(config.arrays[0]!);
    const volume = (await array.listVolumes())[0]!.name;
    const id = '20200101-000000-0a0b0c';
    const old = await array.snapshotGroup([volume], { label: id });
    await withCatalog(config.catalog.path, async (catalog) => {
      await catalog.insertBackup({
        id,
        task: 'adhoc',
        state: 'complete',
        startedAt: '2020-01-01T00:00:00.000Z',
        snapshots: [
          {
            array: config.arrays[0]!.name,
            snapshotId: old.id,
            volumes: [volume],
            pointInTime: old.pointInTime,
            driver: old.driver,
            datastores: {},
          },
        ],
        vms: [],
        warnings: [],
      });
    });
    const rec = await runJson(lab.configPath, 'recover');
    assert.equal(rec.code, 0, rec.stdout);
    assert.deepEqual(rec.json.deletedArraySnapshots, []);
    assert.deepEqual(rec.json.lostBackups, []);
    assert.ok(!rec.json.foreign.some((f: { name: string }) => f.name === old.id), 'its own record owns it');
    const del = await runJson(lab.configPath, 'delete', '--backup', id);
    assert.equal(del.code, 0, del.stdout);
    assert.ok(!(await arraySnapshots(config)).some((s) => s.id === old.id), 'its snapshot went with it');
  });
});

/**
 * Two configurations of one lab, each with its own catalog: backups in both, recover in each deletes nothing
 * of the other's (and reports it as foreign); a run of the first killed mid-way is left to the first.
 */
async function twoCatalogs(firstConfig: string, second: string): Promise<void> {
  assert.equal((await runJson(second, 'catalog', 'create')).code, 0);
  const first = await runJson(firstConfig, 'backup', '--vm', 'web01');
  assert.equal(first.json.state, 'complete', first.stderr);
  const other = await runJson(second, 'backup', '--vm', 'web01');
  assert.equal(other.json.state, 'complete', other.stderr);
  const config = loadConfig(firstConfig);
  const snaps = await arraySnapshots(config);
  assert.equal(snaps.length, 2);

  for (const [mine, theirs] of [
    [second, first.json],
    [firstConfig, other.json],
  ] as const) {
    const rec = await runJson(mine, 'recover');
    assert.equal(rec.code, 0, rec.stdout);
    assert.deepEqual(rec.json.deletedArraySnapshots, []);
    assert.deepEqual(rec.json.lostBackups, []);
    assert.ok(
      rec.json.foreign.some(
        (f: { kind: string; name: string }) =>
          f.kind === 'array-snapshot' && f.name === theirs.snapshots[0].snapshotId,
      ),
      `the other catalog's snapshot is reported foreign: ${JSON.stringify(rec.json.foreign)}`,
    );
  }
  assert.deepEqual(await arraySnapshots(config), snaps, 'both catalogs still have their snapshots');

  // The first catalog's run dies holding a VM snapshot and an array snapshot; the second recovers meanwhile.
  const crashed = await runCli(['--config', firstConfig, 'backup', '--vm', 'web01'], {
    env: { SNAPKEEPER_CRASH_AT: 'snapshotted' },
  });
  assert.equal(crashed.signal, 'SIGKILL');
  const held = await vmStates(config);
  const heldSnaps = await arraySnapshots(config);
  assert.equal(held.web01!.snapshots.length, 1);
  const rec2 = await runJson(second, 'recover');
  assert.equal(rec2.code, 0, rec2.stdout);
  assert.deepEqual(rec2.json.removedVmSnapshots, []);
  assert.ok(rec2.json.foreign.some((f: { kind: string }) => f.kind === 'vm-snapshot'));
  assert.deepEqual(await vmStates(config), held, 'the other catalog left the VM snapshot alone');
  assert.deepEqual(await arraySnapshots(config), heldSnaps);
  // Nor does the start-of-run repair of the other catalog's next backup of that VM.
  const next = await runJson(second, 'backup', '--vm', 'web01', '--mode', 'ASIS');
  assert.equal(next.json.state, 'complete', next.stdout + next.stderr);
  assert.ok(!next.json.warnings.some((w: { code: string }) => w.code === 'STRAY_VM_SNAPSHOT_REMOVED'));
  assert.deepEqual(await vmStates(config), held, 'the other catalog’s run left the VM snapshot alone');
  assert.equal((await runJson(second, 'delete', '--backup', next.json.id)).code, 0);
  assert.deepEqual(await arraySnapshots(config), heldSnaps);
  const rec1 = await runJson(firstConfig, 'recover');
  assert.equal(rec1.code, 0, rec1.stdout);
  assert.equal(rec1.json.removedVmSnapshots.length, 1);
  assert.equal(rec1.json.deletedArraySnapshots.length, 1);
  assert.deepEqual(await arraySnapshots(config), snaps, 'its own crash is repaired, nothing else');
}

/** The two-catalog case on an array whose snapshots are btrfs subvolumes (atomic, what production uses). */
describe('two catalogs on one btrfs array', () => {
  it('recover in either deletes nothing of the other', async (t) => {
    const btrfs = await canMountLoopBtrfs();
    if (!requireCapability(t, btrfs.ok, btrfs.reason)) return;
    const lab = await startLab(SPEC, { btrfs: true });
    try {
      const root = resolve(lab.dir, '..');
      const doc = YAML.parse(readFileSync(lab.configPath, 'utf8'));
      doc.vcenter.passwordFile = resolve(lab.dir, doc.vcenter.passwordFile);
      doc.arrays[0].path = resolve(lab.dir, doc.arrays[0].path);
      doc.catalog.path = join(root, 'second.db');
      const second = join(root, 'second.yaml');
      writeFileSync(second, YAML.stringify(doc));
      await twoCatalogs(lab.configPath, second);
      assert.equal((await arraySnapshots(loadConfig(lab.configPath)))[0]?.label.includes('.'), true);
    } finally {
      await lab.stop();
    }
  });
});
