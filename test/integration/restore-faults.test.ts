import assert from 'node:assert/strict';
import { after, before, beforeEach, describe, it } from 'node:test';
import { openArray } from '../../src/arrays/index.js';
import { Catalog } from '../../src/catalog/index.js';
import { loadConfig } from '../../src/config/load.js';
import type { BackupRecord } from '../../src/model/backup.js';
import { destroyVm } from '../../src/vsphere/vm-ops.js';
import { withCatalog } from '../helpers/catalog.js';
import { completeBackup, runCli, runJson } from '../helpers/cli.js';
import { type FaultProxy, type FaultRule, startFaultProxy } from '../helpers/fault-proxy.js';
import { configWithVcenterUrl, standardSpec, startLab, type TestLab } from '../helpers/lab.js';
import {
  inventoryOf,
  inventoryState,
  type LabContents,
  labContents,
  poolFiles,
  withVcenter,
} from '../helpers/state.js';

/**
 * User datastores whose names look like ours: `snapkeeper-data` (only the prefix) and one shaped exactly
 * like a mounted datastore (`snapkeeper-<backup id>-<name>`) but on an array volume, not in a clone. A VM
 * has a disk on each. Every `recover` below (a full one: it sweeps stray mounts) must leave them alone.
 */
const LOOKALIKES = ['snapkeeper-data', 'snapkeeper-20260101-000000-abcdef-x'];

/**
 * Faults and crashes in the middle of restore, mount and attach: afterwards (and after `recover` for a
 * crash) there is no extra VM, no snapkeeper datastore, no clone, no stray file, no open operation and no
 * mount record, and the VMs are as they were.
 */
describe('restore, mount and attach under faults and SIGKILL', () => {
  let lab: TestLab;
  let proxy: FaultProxy;
  let proxied: string;
  let backup: BackupRecord;
  let clean: LabContents;

  async function assertNothingLeft(what: string) {
    assert.deepEqual(
      inventoryState(await inventoryOf(lab.configPath)),
      clean.inv,
      `${what}: vCenter is as before`,
    );
    assert.deepEqual(await poolFiles(lab.state.arrayPath), clean.files, `${what}: no stray file`);
    const config = loadConfig(lab.configPath);
    const array = await openArray(config.arrays[0]!);
    assert.deepEqual(await array.listClones(), [], `${what}: no clone left`);
    await withCatalog(config.catalog.path, async (catalog) => {
      assert.deepEqual(await catalog.unfinishedOperations(), [], `${what}: no open operation`);
      assert.deepEqual(await catalog.listMounts(), [], `${what}: no mount record`);
      assert.equal((await catalog.getBackup(backup.id)).state, 'complete');
    });
  }

  before(async () => {
    const spec = await standardSpec();
    const dc = spec.datacenters[0];
    for (const name of LOOKALIKES) dc.datastores.push({ name, capacityGB: 1 });
    dc.vms.push({
      name: 'user01',
      host: 'esx01',
      power: 'poweredOff',
      disks: LOOKALIKES.map((datastore) => ({ datastore, sizeMB: 1 })),
    });
    lab = await startLab(spec);
    proxy = await startFaultProxy(lab.state.url);
    proxied = await configWithVcenterUrl(lab, proxy.url, 'proxied.yaml');
    backup = await completeBackup(lab.configPath, '--task', 'lab-all', '--mode', 'ASIS');
    clean = await labContents(lab);
  });
  after(async () => {
    await proxy?.close();
    await lab?.stop();
  });
  beforeEach(() => proxy.reset());

  const label = (vm: string, i: number) => backup.vms.find((v) => v.name === vm)!.disks[i]!.label;
  const faults: { name: string; args: () => string[]; rules: FaultRule[] }[] = [
    {
      name: 'restore as new: CreateVM_Task fails',
      args: () => ['restore', '--backup', backup.id, '--vm', 'web01', '--as', 'web01-x'],
      rules: [{ method: 'CreateVM_Task', action: 'fault' }],
    },
    {
      name: 'restore to the original place: CreateVM_Task fails (the live VM comes back)',
      args: () => ['restore', '--backup', backup.id, '--vm', 'web01', '--original', '--force'],
      rules: [{ method: 'CreateVM_Task', action: 'fault' }],
    },
    {
      name: 'restore to the original place: UnregisterVM fails',
      args: () => ['restore', '--backup', backup.id, '--vm', 'app01', '--original', '--force'],
      rules: [{ method: 'UnregisterVM', action: 'fault' }],
    },
    {
      name: 'disk restore into a VM: ReconfigVM_Task fails',
      args: () => [
        'restore',
        '--backup',
        backup.id,
        '--vm',
        'web01',
        '--disk',
        label('web01', 0),
        '--to',
        'app01',
      ],
      rules: [{ method: 'ReconfigVM_Task', action: 'fault' }],
    },
    {
      name: 'mount: CreateLocalDatastore fails for the second datastore',
      args: () => ['mount', '--backup', backup.id],
      rules: [{ method: 'CreateLocalDatastore', nth: 2, action: 'fault' }],
    },
    {
      name: 'attach: ReconfigVM_Task fails after the mount',
      args: () => ['attach', '--backup', backup.id, '--vm', 'web01', '--to', 'app01'],
      rules: [{ method: 'ReconfigVM_Task', action: 'fault' }],
    },
    {
      name: 'attach: CreateLocalDatastore fails',
      args: () => ['attach', '--backup', backup.id, '--vm', 'web01', '--to', 'app01'],
      rules: [{ method: 'CreateLocalDatastore', action: 'fault' }],
    },
  ];
  for (const c of faults) {
    it(`${c.name}: exit 2, everything undone`, async () => {
      proxy.rules = c.rules;
      const run = await runCli(['--config', proxied, '--json', ...c.args()]);
      proxy.rules = [];
      assert.ok(
        proxy.seen.some((s) => s.injected === 'fault'),
        'the fault was injected',
      );
      assert.equal(run.code, 2, run.stdout + run.stderr);
      assert.match(run.json.error.message, /everything it did was undone/);
      await assertNothingLeft(c.name);
    });
  }

  const crashes: { point: string; what: string; args: () => string[] }[] = [
    {
      point: 'restore-files-placed',
      what: 'restore as new',
      args: () => ['restore', '--backup', backup.id, '--vm', 'web01', '--as', 'web01-k'],
    },
    {
      point: 'restore-vm-created',
      what: 'restore as new',
      args: () => ['restore', '--backup', backup.id, '--vm', 'web01', '--as', 'web01-k'],
    },
    {
      point: 'restore-unregistered',
      what: 'restore to the original place',
      args: () => ['restore', '--backup', backup.id, '--vm', 'web01', '--original', '--force'],
    },
    {
      point: 'restore-vm-created',
      what: 'restore to the original place',
      args: () => ['restore', '--backup', backup.id, '--vm', 'app01', '--original', '--force'],
    },
    {
      point: 'restore-vm-reconfigured',
      what: 'disk restore into a VM',
      args: () => [
        'restore',
        '--backup',
        backup.id,
        '--vm',
        'web01',
        '--disk',
        label('web01', 1),
        '--to',
        'app01',
      ],
    },
    { point: 'mount-cloned', what: 'mount', args: () => ['mount', '--backup', backup.id] },
    { point: 'mount-datastore-created', what: 'mount', args: () => ['mount', '--backup', backup.id] },
    {
      point: 'attach-disks-added',
      what: 'attach',
      args: () => ['attach', '--backup', backup.id, '--vm', 'web01', '--to', 'app01'],
    },
  ];
  for (const c of crashes) {
    it(`SIGKILL at ${c.point} (${c.what}), then recover: nothing left`, async () => {
      const run = await runCli(['--config', lab.configPath, '--json', ...c.args()], {
        env: { SNAPKEEPER_CRASH_AT: c.point },
      });
      assert.equal(run.signal, 'SIGKILL', `killed at ${c.point}: ${run.stdout}${run.stderr}`);
      const config = loadConfig(lab.configPath);
      await withCatalog(config.catalog.path, async (catalog) => {
        const open = await catalog.unfinishedOperations();
        assert.equal(open.length, 1, 'the crash left its operation open');
        // The backup is pinned while its files are read: delete and expire take the same lock.
        assert.ok(
          (await catalog.locksOf(open[0]!.id)).includes(`backup:${backup.id}`),
          `${c.what} holds backup:${backup.id} (${(await catalog.locksOf(open[0]!.id)).join(', ')})`,
        );
      });
      const rec = await runJson(lab.configPath, 'recover');
      assert.equal(rec.code, 0, rec.stdout + rec.stderr);
      assert.equal(rec.json.operations.length, 1);
      assert.ok(rec.json.actions.length > 0, 'recover undid something');
      await assertNothingLeft(c.point);
      const again = await runJson(lab.configPath, 'recover');
      assert.deepEqual(again.json.actions, [], 'recover is idempotent');
    });
  }

  it('recover sweeps a clone and a snapkeeper datastore that no mount record owns', async () => {
    const run = await runJson(lab.configPath, 'mount', '--backup', backup.id);
    assert.equal(run.code, 0, run.stdout + run.stderr);
    // Forget the mount record, as a catalog restored from an older copy would.
    const config = loadConfig(lab.configPath);
    await withCatalog(config.catalog.path, async (catalog) => {
      await catalog.removeMount(run.json.mountId);
    });
    // A clone someone else made on the array (not labelled with one of our operation ids) is not ours.
    const array = await openArray(config.arrays[0]!);
    const foreign = await array.cloneSnapshot(backup.snapshots[0]!.snapshotId, { label: 'someone-else' });
    const datastores = (await inventoryOf(lab.configPath)).datastores.length;
    // ds-a, ds-b and the look-alikes, each once as itself and once mounted from the backup.
    assert.equal(datastores, 2 * (2 + LOOKALIKES.length));
    const dry = await runJson(lab.configPath, 'recover', '--dry-run');
    // The mounted datastores and the mount's clone; neither the look-alikes nor the foreign clone.
    assert.equal(dry.json.actions.length, 2 + LOOKALIKES.length + 1, JSON.stringify(dry.json.actions));
    assert.equal(
      (await inventoryOf(lab.configPath)).datastores.length,
      datastores,
      'the dry run removed nothing',
    );
    const rec = await runJson(lab.configPath, 'recover');
    assert.equal(rec.code, 0, rec.stdout);
    assert.ok(rec.json.actions.some((a: string) => a.includes('stray datastore')));
    assert.ok(rec.json.actions.some((a: string) => a.includes('stray clone')));
    assert.ok(
      !rec.json.actions.some(
        (a: string) => LOOKALIKES.some((l) => a.endsWith(`datastore ${l}`)) || a.includes(foreign.id),
      ),
      `only what snapkeeper made is swept: ${JSON.stringify(rec.json.actions)}`,
    );
    assert.deepEqual(
      (await array.listClones()).map((c) => c.id),
      [foreign.id],
      'the foreign clone is left alone',
    );
    await array.deleteClone(foreign.id);
    await assertNothingLeft('sweep');
  });

  it('dry runs and refused requests leave a crashed SUSPEND backup alone; the next restore repairs it', async () => {
    const config = loadConfig(lab.configPath);
    const crashed = await runCli(
      ['--config', lab.configPath, '--json', 'backup', '--vm', 'web01', '--mode', 'SUSPEND'],
      { env: { SNAPKEEPER_CRASH_AT: 'prepared' } },
    );
    assert.equal(crashed.signal, 'SIGKILL', crashed.stdout + crashed.stderr);
    const web01 = async () => (await inventoryOf(lab.configPath)).vms.find((v) => v.name === 'web01')!;
    const crashedBackup = async () => {
      const catalog = Catalog.open(config.catalog.path);
      try {
        return (await catalog.listBackups()).find((b) => b.id !== backup.id)!;
      } finally {
        await catalog.close();
      }
    };
    assert.equal((await web01()).powerState, 'suspended', 'the crash left web01 suspended');
    assert.equal((await crashedBackup()).state, 'running');

    const cli = (...args: string[]) => runCli(['--config', lab.configPath, ...args]);
    const dry = await cli('restore', '--backup', backup.id, '--vm', 'web01', '--original', '--dry-run');
    assert.equal(dry.code, 0, dry.stdout + dry.stderr);
    assert.match(dry.stdout, /dry run: nothing was changed/);
    // Refused after vCenter was contacted (the inventory is needed to refuse them): still nothing changes.
    const refused: [string[], string][] = [
      [['restore', '--backup', backup.id, '--vm', 'web01', '--as', 'db01'], 'VM_EXISTS'],
      [
        ['restore', '--backup', backup.id, '--vm', 'web01', '--as', 'x1', '--host', 'nohost'],
        'HOST_NOT_FOUND',
      ],
      [['mount', '--backup', backup.id, '--host', 'no-such-host'], 'HOST_NOT_FOUND'],
      [['attach', '--backup', backup.id, '--vm', 'web01', '--to', 'off01'], 'VM_NOT_RUNNING'],
    ];
    for (const [args, code] of refused) {
      const run = await cli('--json', ...args);
      assert.equal(run.code, 3, `${args.join(' ')}: ${run.stdout}${run.stderr}`);
      assert.equal(run.json.error.code, code);
    }
    assert.equal((await web01()).powerState, 'suspended', 'web01 is still suspended');
    assert.equal((await crashedBackup()).state, 'running', 'the crashed backup is not touched either');

    // A real restore repairs first (the crashed backup's VM is powered on), then restores.
    const real = await cli('--json', 'restore', '--backup', backup.id, '--vm', 'off01', '--as', 'off01-r');
    assert.equal(real.code, 0, real.stdout + real.stderr);
    assert.equal((await web01()).powerState, 'poweredOn', 'the restore repaired the crashed backup');
    assert.equal((await crashedBackup()).state, 'failed');
    await withVcenter(config.vcenter, async (vc) => {
      await destroyVm(vc, real.json.targetVm.id);
    });
    await withCatalog(config.catalog.path, async (catalog) => {
      await catalog.deleteBackup((await crashedBackup()).id);
    });
    await assertNothingLeft('after the repairing restore');
  });
  it('a restore after a crash checks again once the repair has run (the crashed restore had unregistered the VM)', async () => {
    const args = ['restore', '--backup', backup.id, '--vm', 'web01', '--original', '--force', '--power-on'];
    const crashed = await runCli(['--config', lab.configPath, '--json', ...args], {
      env: { SNAPKEEPER_CRASH_AT: 'restore-unregistered' },
    });
    assert.equal(crashed.signal, 'SIGKILL', crashed.stdout + crashed.stderr);
    assert.ok(
      !(await inventoryOf(lab.configPath)).vms.some((v) => v.name === 'web01'),
      'the crash left web01 unregistered',
    );
    // Checked before the repair, web01 looks deleted; the repair registers it again, so the restore must
    // check again and replace the live VM (not restore over a registered VM's directory).
    const run = await runJson(lab.configPath, ...args);
    assert.equal(run.code, 0, run.stdout + run.stderr);
    const inv = await inventoryOf(lab.configPath);
    const web = inv.vms.filter((v) => v.name === 'web01');
    assert.equal(web.length, 1, 'one web01, the restored one');
    assert.equal(web[0]!.id, run.json.targetVm.id);
    assert.equal(web[0]!.powerState, 'poweredOn');
    assert.deepEqual(
      (await poolFiles(lab.state.arrayPath)).filter((f) => f.includes('.snapkeeper-')),
      [],
      'no staging or replaced directory is left',
    );
    assert.deepEqual(
      inventoryState(inv).vms.find((v) => v.name === 'web01'),
      clean.inv.vms.find((v) => v.name === 'web01'),
      'web01 is where and what it was',
    );
    const config = loadConfig(lab.configPath);
    await withCatalog(config.catalog.path, async (catalog) => {
      assert.deepEqual(await catalog.unfinishedOperations(), [], 'no operation is left open');
    });
  });
});
