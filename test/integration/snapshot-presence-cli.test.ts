import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { openArray } from '../../src/arrays/index.js';
import { loadConfig } from '../../src/config/load.js';
import { connect } from '../../src/vsphere/index.js';
import { runCli } from '../helpers/cli.js';
import { startLab, type TestLab } from '../helpers/lab.js';
import { arraySnapshots, vmStates } from '../helpers/state.js';

const SPEC = {
  datacenters: [
    {
      name: 'DC1',
      hosts: ['esx01'],
      datastores: [{ name: 'ds-a', capacityGB: 10 }],
      vms: [
        { name: 'web01', host: 'esx01', power: 'poweredOn', disks: [{ datastore: 'ds-a', sizeMB: 4 }] },
        { name: 'helper', host: 'esx01', power: 'poweredOn', disks: [{ datastore: 'ds-a', sizeMB: 4 }] },
      ],
    },
  ],
};

/**
 * Issue 7 on the lab, through the CLI: a backup whose array snapshot was deleted behind the catalog's back is
 * refused by restore, mount and attach, dry or real (exit 2, SNAPSHOT_MISSING naming the snapshot), and
 * nothing changes, until `recover` marks it lost; a backup whose snapshot is there passes the dry runs.
 */
describe('restore, mount and attach check that the backup’s array snapshot exists', () => {
  let lab: TestLab;
  const cli = (...args: string[]) => runCli(['--config', lab.configPath, '--json', ...args]);

  /** VMs, datastores and array snapshots, as a user would see them. */
  async function seen(): Promise<unknown> {
    const config = loadConfig(lab.configPath);
    const vc = await connect(config.vcenter);
    try {
      const datastores = (await vc.inventory()).datastores.map((d) => d.name).sort();
      return { vms: await vmStates(config), datastores, snapshots: await arraySnapshots(config) };
    } finally {
      await vc.logout();
    }
  }

  before(async () => {
    lab = await startLab(SPEC);
  });
  after(async () => {
    await lab?.stop();
  });

  it('a vanished snapshot: every use is refused naming it, nothing changes, recover marks it lost', async () => {
    const kept = await cli('backup', '--vm', 'web01');
    assert.equal(kept.code, 0, kept.stdout);
    const gone = await cli('backup', '--vm', 'web01');
    assert.equal(gone.code, 0, gone.stdout);
    const snapshotId = gone.json.snapshots[0].snapshotId as string;
    await (await openArray(loadConfig(lab.configPath).arrays[0]!)).deleteSnapshot(snapshotId);

    const before = await seen();
    const id = gone.json.id as string;
    const uses = [
      ['restore', '--dry-run', '--backup', id, '--vm', 'web01', '--as', 'web01-r'],
      ['restore', '--backup', id, '--vm', 'web01', '--as', 'web01-r'],
      ['mount', '--dry-run', '--backup', id],
      ['mount', '--backup', id],
      ['attach', '--dry-run', '--backup', id, '--vm', 'web01', '--to', 'helper'],
      ['attach', '--backup', id, '--vm', 'web01', '--to', 'helper'],
    ];
    for (const args of uses) {
      const run = await cli(...args);
      assert.equal(run.code, 2, `${args.join(' ')}: ${run.stdout}${run.stderr}`);
      assert.equal(run.json.error.code, 'SNAPSHOT_MISSING', args.join(' '));
      assert.ok(run.json.error.message.includes(snapshotId), run.json.error.message);
    }
    assert.deepEqual(await seen(), before, 'nothing changed');
    assert.equal((await cli('inquire', '--backup', id)).json.state, 'complete');

    // The backup whose snapshot is there passes the same dry runs, and they change nothing either.
    for (const args of [
      ['mount', '--dry-run', '--backup', kept.json.id],
      ['attach', '--dry-run', '--backup', kept.json.id, '--vm', 'web01', '--to', 'helper'],
    ]) {
      const run = await cli(...args);
      assert.equal(run.code, 0, `${args.join(' ')}: ${run.stdout}${run.stderr}`);
      assert.equal(run.json.dryRun, true);
    }
    assert.deepEqual(await seen(), before, 'the dry runs changed nothing');

    const rec = await cli('recover');
    assert.equal(rec.code, 1, rec.stdout);
    assert.deepEqual(
      rec.json.lostBackups.map((b: { id: string }) => b.id),
      [id],
    );
    const refused = await cli('mount', '--dry-run', '--backup', id);
    assert.equal(refused.code, 3, refused.stdout);
    assert.equal(refused.json.error.code, 'BACKUP_NOT_RESTORABLE');
  });
});
