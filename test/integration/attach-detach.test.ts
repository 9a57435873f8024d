import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { openArray } from '../../src/arrays/index.js';
import { Catalog } from '../../src/catalog/index.js';
import { loadConfig } from '../../src/config/load.js';
import type { BackupRecord } from '../../src/model/backup.js';
import { connect } from '../../src/vsphere/index.js';
import { withCatalog } from '../helpers/catalog.js';
import { completeBackup, runCli, runJson } from '../helpers/cli.js';
import { standardSpec, startLab, type TestLab } from '../helpers/lab.js';
import { inventoryOf, inventoryState } from '../helpers/state.js';

/**
 * Attach and detach leave nothing behind: one attach per backup and VM, a detach releases the mount an
 * attach made (but never a user's mount), and the VM backs up afterwards as before.
 */
describe('attach and detach on a copy-driver lab', () => {
  let lab: TestLab;
  let backup: BackupRecord;
  let cli: (...args: string[]) => ReturnType<typeof runCli>;
  let clean: ReturnType<typeof inventoryState>;

  async function mountRecords(): Promise<{ id: string; kind: string }[]> {
    const catalog = Catalog.open(loadConfig(lab.configPath).catalog.path);
    try {
      return (await catalog.listMounts()).map((m) => ({ id: m.id, kind: m.kind }));
    } finally {
      await catalog.close();
    }
  }

  async function clones(): Promise<string[]> {
    const array = await openArray(loadConfig(lab.configPath).arrays[0]!);
    return (await array.listClones()).map((c) => c.id);
  }

  async function snapkeeperDatastores(): Promise<string[]> {
    return (await inventoryOf(lab.configPath)).datastores
      .map((d) => d.name)
      .filter((n) => n.startsWith('snapkeeper-'));
  }

  before(async () => {
    lab = await startLab(await standardSpec());
    cli = (...args: string[]) => runJson(lab.configPath, ...args);
    backup = await completeBackup(lab.configPath, '--vm', 'web01', 'app01', '--mode', 'ASIS');
    clean = inventoryState(await inventoryOf(lab.configPath));
  });
  after(async () => {
    await lab?.stop();
  });

  it('refuses to attach the same backup twice to one VM, naming the attach and how to detach it', async () => {
    const first = await cli('attach', '--backup', backup.id, '--vm', 'web01', '--to', 'app01');
    assert.equal(first.code, 0, first.stdout + first.stderr);
    const attached = inventoryState(await inventoryOf(lab.configPath));
    const records = await mountRecords();

    const twice = await cli(
      'attach',
      '--backup',
      backup.id,
      '--vm',
      'web01',
      '--to',
      'app01',
      '--disk',
      'Hard disk 2',
    );
    assert.equal(twice.code, 3, twice.stdout + twice.stderr);
    assert.equal(twice.json.error.code, 'ALREADY_ATTACHED');
    assert.ok(twice.json.error.message.includes(first.json.attachId), twice.json.error.message);
    assert.ok(
      twice.json.error.message.includes(`snapkeeper detach --to app01 --backup ${backup.id}`),
      twice.json.error.message,
    );
    assert.deepEqual(
      inventoryState(await inventoryOf(lab.configPath)),
      attached,
      'refused: vCenter unchanged',
    );
    assert.deepEqual(await mountRecords(), records, 'refused: no record added');

    const detach = await cli('detach', '--to', 'app01');
    assert.equal(detach.code, 0, detach.stdout + detach.stderr);
    assert.equal(detach.json.detached.length, 1);
    assert.equal(detach.json.detached[0].unmounted, true);
  });

  it('after attach and detach nothing remains: no datastore, no clone, no record, and delete succeeds', async () => {
    const other = (await cli('backup', '--vm', 'web01', '--mode', 'ASIS')).json as BackupRecord;
    assert.equal(other.state, 'complete');
    const run = await cli('attach', '--backup', other.id, '--vm', 'web01', '--to', 'app01');
    assert.equal(run.code, 0, run.stdout + run.stderr);
    assert.equal(run.json.mount.created, true);
    assert.equal((await snapkeeperDatastores()).length, 2);
    const detach = await cli('detach', '--to', 'app01', '--backup', other.id);
    assert.equal(detach.code, 0, detach.stdout + detach.stderr);
    assert.equal(detach.json.detached[0].unmounted, true);
    assert.deepEqual(await snapkeeperDatastores(), [], 'no snapkeeper datastore is left');
    assert.deepEqual(await clones(), [], 'no clone is left');
    assert.deepEqual(await mountRecords(), [], 'no mount or attach record is left');
    assert.deepEqual(inventoryState(await inventoryOf(lab.configPath)), clean, 'vCenter is as before');
    const del = await cli('delete', '--backup', other.id);
    assert.equal(del.code, 0, del.stdout + del.stderr);
    assert.deepEqual(
      del.json.deleted.map((d: { id: string }) => d.id),
      [other.id],
    );
  });

  it('a detach leaves a mount the user made; unmount then removes it', async () => {
    const mount = await cli('mount', '--backup', backup.id, '--host', 'esx01');
    assert.equal(mount.code, 0, mount.stdout + mount.stderr);
    const mounted = await snapkeeperDatastores();
    const run = await cli('attach', '--backup', backup.id, '--vm', 'web01', '--to', 'app01');
    assert.equal(run.code, 0, run.stdout + run.stderr);
    assert.equal(run.json.mount.created, false);
    assert.equal(run.json.mount.id, mount.json.mountId);
    const detach = await cli('detach', '--to', 'app01');
    assert.equal(detach.code, 0, detach.stdout + detach.stderr);
    assert.equal(detach.json.detached[0].unmounted, false);
    assert.deepEqual(await snapkeeperDatastores(), mounted, 'the user’s mount stays');
    assert.deepEqual(await mountRecords(), [{ id: mount.json.mountId, kind: 'datastore' }]);
    assert.equal((await clones()).length, 1);
    const un = await cli('unmount', '--backup', backup.id);
    assert.equal(un.code, 0, un.stdout + un.stderr);
    assert.deepEqual(await snapkeeperDatastores(), []);
    assert.deepEqual(await clones(), []);
    assert.deepEqual(inventoryState(await inventoryOf(lab.configPath)), clean, 'vCenter is as before');
  });

  it('a VM backs up with a VM snapshot after attach and detach (the removed datastore left no trace)', async () => {
    const run = await cli('attach', '--backup', backup.id, '--vm', 'web01', '--to', 'web01');
    assert.equal(run.code, 0, run.stdout + run.stderr);
    const detach = await cli('detach', '--to', 'web01');
    assert.equal(detach.code, 0, detach.stdout + detach.stderr);
    const again = await cli('backup', '--vm', 'web01', '--mode', 'SNAPSHOT_EXCL_MEM');
    assert.equal(again.code, 0, again.stdout + again.stderr);
    assert.equal(again.json.state, 'complete');
    assert.deepEqual(
      again.json.vms[0].datastores.slice().sort(),
      ['ds-a', 'ds-b'],
      'the VM lists only the datastores it uses',
    );
    assert.equal(again.json.vms[0].consistency, 'file-system');
  });

  it('the simulator refuses, as vCenter does, to remove a datastore a VM has a disk on', async () => {
    const run = await cli('attach', '--backup', backup.id, '--vm', 'web01', '--to', 'app01');
    assert.equal(run.code, 0, run.stdout + run.stderr);
    const inv = await inventoryOf(lab.configPath);
    const ds = inv.datastores.find((d) => d.name === run.json.mount.datastores[0])!;
    const host = inv.hosts.find((h) => h.name === ds.hosts[0])!;
    const session = await connect(loadConfig(lab.configPath).vcenter);
    try {
      await assert.rejects(session.removeDatastore(host.id, ds.id), /in use/);
    } finally {
      await session.logout();
    }
    assert.ok((await snapkeeperDatastores()).includes(ds.name), 'the datastore is still there');
    const detach = await cli('detach', '--to', 'app01');
    assert.equal(detach.code, 0, detach.stdout + detach.stderr);
    assert.deepEqual(inventoryState(await inventoryOf(lab.configPath)), clean, 'vCenter is as before');
  });

  it('SIGKILL in a detach once the disks are off the VM: recover finishes it and nothing remains', async () => {
    const run = await cli('attach', '--backup', backup.id, '--vm', 'web01', '--to', 'app01');
    assert.equal(run.code, 0, run.stdout + run.stderr);
    const killed = await runCli(['--config', lab.configPath, '--json', 'detach', '--to', 'app01'], {
      env: { SNAPKEEPER_CRASH_AT: 'detach-disks-removed' },
    });
    assert.equal(killed.signal, 'SIGKILL', killed.stdout + killed.stderr);
    assert.equal((await mountRecords()).length, 2, 'the attach and the mount it made are still recorded');
    const rec = await cli('recover');
    assert.equal(rec.code, 0, rec.stdout + rec.stderr);
    assert.deepEqual(await snapkeeperDatastores(), [], 'no snapkeeper datastore is left');
    assert.deepEqual(await clones(), [], 'no clone is left');
    assert.deepEqual(await mountRecords(), [], 'no mount or attach record is left');
    assert.deepEqual(inventoryState(await inventoryOf(lab.configPath)), clean, 'vCenter is as before');
    await withCatalog(loadConfig(lab.configPath).catalog.path, async (catalog) => {
      assert.deepEqual(await catalog.unfinishedOperations(), [], 'no operation is left open');
    });
  });
});
