import assert from 'node:assert/strict';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, beforeEach, describe, it } from 'node:test';
import YAML from 'yaml';
import { openArray } from '../../src/arrays/index.js';
import { Catalog } from '../../src/catalog/index.js';
import { loadConfig } from '../../src/config/load.js';
import type { BackupRecord } from '../../src/model/backup.js';
import { runCli } from '../helpers/cli.js';
import { type FaultProxy, type FaultRule, startFaultProxy } from '../helpers/fault-proxy.js';
import { startLab, type TestLab } from '../helpers/lab.js';
import { inventoryOf, inventoryState, poolFiles } from '../helpers/state.js';

const STANDARD = new URL('../../../test/fixtures/lab/standard.json', import.meta.url);

/** VMs by name (ids change when a VM is registered again) and datastores; see restore-copy.test.ts. */
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
  let clean: { inv: ReturnType<typeof inventoryState>; files: string[] };

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
    const catalog = Catalog.open(config.catalog.path);
    try {
      assert.deepEqual(catalog.unfinishedOperations(), [], `${what}: no open operation`);
      assert.deepEqual(catalog.listMounts(), [], `${what}: no mount record`);
      assert.equal(catalog.getBackup(backup.id).state, 'complete');
    } finally {
      catalog.close();
    }
  }

  before(async () => {
    lab = await startLab(JSON.parse(await readFile(STANDARD, 'utf8')));
    proxy = await startFaultProxy(lab.state.url);
    const doc = YAML.parse(await readFile(lab.configPath, 'utf8'));
    doc.vcenter.url = proxy.url;
    delete doc.vcenter.thumbprint;
    proxied = join(lab.dir, 'proxied.yaml');
    await writeFile(proxied, YAML.stringify(doc));
    const run = await runCli([
      '--config',
      lab.configPath,
      '--json',
      'backup',
      '--task',
      'lab-all',
      '--mode',
      'ASIS',
    ]);
    backup = run.json as BackupRecord;
    assert.equal(backup.state, 'complete', run.stdout + run.stderr);
    clean = {
      inv: inventoryState(await inventoryOf(lab.configPath)),
      files: await poolFiles(lab.state.arrayPath),
    };
  });
  after(async () => {
    await proxy?.close();
    await lab?.stop();
  });
  beforeEach(() => {
    proxy.rules = [];
    proxy.seen.length = 0;
  });

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
      const catalog = Catalog.open(config.catalog.path);
      try {
        assert.equal(catalog.unfinishedOperations().length, 1, 'the crash left its operation open');
      } finally {
        catalog.close();
      }
      const rec = await runCli(['--config', lab.configPath, '--json', 'recover']);
      assert.equal(rec.code, 0, rec.stdout + rec.stderr);
      assert.equal(rec.json.operations.length, 1);
      assert.ok(rec.json.actions.length > 0, 'recover undid something');
      await assertNothingLeft(c.point);
      const again = await runCli(['--config', lab.configPath, '--json', 'recover']);
      assert.deepEqual(again.json.actions, [], 'recover is idempotent');
    });
  }

  it('recover sweeps a clone and a snapkeeper datastore that no mount record owns', async () => {
    const run = await runCli(['--config', lab.configPath, '--json', 'mount', '--backup', backup.id]);
    assert.equal(run.code, 0, run.stdout + run.stderr);
    // Forget the mount record, as a catalog restored from an older copy would.
    const config = loadConfig(lab.configPath);
    const catalog = Catalog.open(config.catalog.path);
    try {
      catalog.removeMount(run.json.mountId);
    } finally {
      catalog.close();
    }
    const dry = await runCli(['--config', lab.configPath, '--json', 'recover', '--dry-run']);
    assert.equal(dry.json.actions.length, 3, JSON.stringify(dry.json.actions));
    assert.equal((await inventoryOf(lab.configPath)).datastores.length, 4, 'the dry run removed nothing');
    const rec = await runCli(['--config', lab.configPath, '--json', 'recover']);
    assert.equal(rec.code, 0, rec.stdout);
    assert.ok(rec.json.actions.some((a: string) => a.includes('stray datastore')));
    assert.ok(rec.json.actions.some((a: string) => a.includes('stray clone')));
    await assertNothingLeft('sweep');
  });
});
