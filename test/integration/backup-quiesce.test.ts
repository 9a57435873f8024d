import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, beforeEach, describe, it } from 'node:test';
import { loadConfig } from '../../src/config/load.js';
import type { BackupRecord, VmRecord } from '../../src/model/backup.js';
import { isFault } from '../../src/vsphere/index.js';
import { runCli, runJson } from '../helpers/cli.js';
import { type FaultProxy, startFaultProxy } from '../helpers/fault-proxy.js';
import { configWithVcenterUrl, editConfig, standardSpec, startLab, type TestLab } from '../helpers/lab.js';
import { assertClean, type VmSnapshotState, vmStates, withVcenter } from '../helpers/state.js';

/**
 * Issue 11, quiesce fallback on the lab: app01's Tools do not run (the simulator reports it and refuses a
 * quiesced snapshot as vCenter does), web01's run; a quiesce fault is injected on web01 by the fault proxy.
 */
describe('quiesce fallback on the lab', () => {
  let lab: TestLab;
  let proxy: FaultProxy;
  let proxiedConfig: string;
  let clean: Record<string, VmSnapshotState>;

  before(async () => {
    const spec = await standardSpec();
    for (const vm of spec.datacenters.flatMap((dc: { vms: { name: string; tools?: string }[] }) => dc.vms)) {
      if (vm.name === 'app01') vm.tools = 'notRunning';
      if (vm.name === 'off01') vm.tools = 'notInstalled';
    }
    lab = await startLab(spec);
    proxy = await startFaultProxy(lab.state.url);
    proxiedConfig = await configWithVcenterUrl(lab, proxy.url, 'proxied.yaml');
    clean = await vmStates(loadConfig(lab.configPath));
  });
  after(async () => {
    await proxy?.close();
    await lab?.stop();
  });
  beforeEach(() => proxy.reset());

  const vmOf = (record: BackupRecord, name: string): VmRecord => {
    const vm = record.vms.find((v) => v.name === name);
    assert.ok(vm, `${name} is in the record`);
    return vm;
  };
  const quiesceWarnings = (vm: VmRecord) => vm.warnings.filter((w) => w.code === 'QUIESCE_FAILED');

  it('the inventory shows each VM’s Tools state', async () => {
    const run = await runJson(lab.configPath, 'inventory');
    assert.equal(run.code, 0, run.stderr);
    const tools = Object.fromEntries(
      run.json.vms.map((v: { name: string; tools?: string }) => [v.name, v.tools]),
    );
    assert.equal(tools.web01, 'running');
    assert.equal(tools.app01, 'notRunning');
    assert.equal(tools.off01, 'notInstalled');
    const text = await runCli(['--config', lab.configPath, 'inventory']);
    assert.equal(text.code, 0, text.stderr);
    assert.match(text.stdout, /NAME\s+POWER\s+TOOLS/);
    assert.match(text.stdout, /app01\s+poweredOn\s+notRunning/);
  });

  it('the simulator refuses a quiesced snapshot of a VM whose Tools do not run, with ToolsUnavailable', async () => {
    const app01 = lab.vm('app01').id;
    await assert.rejects(
      withVcenter(loadConfig(lab.configPath).vcenter, (vc) =>
        vc.createVmSnapshot(app01, { name: 'probe', description: '', memory: false, quiesce: true }),
      ),
      (err) => isFault(err, 'ToolsUnavailable') && /not running/.test(err.message),
    );
    await assertClean(lab.configPath, clean);
  });

  it('Tools not running, default crash-consistent: app01 backed up crash consistent with QUIESCE_FAILED', async () => {
    const run = await runJson(
      proxiedConfig,
      'backup',
      '--vm',
      'web01',
      'app01',
      '--mode',
      'SNAPSHOT_EXCL_MEM',
    );
    assert.equal(run.code, 1, run.stderr);
    const record = run.json as BackupRecord;
    assert.equal(record.state, 'complete');
    const app = vmOf(record, 'app01');
    assert.equal(app.state, 'ok');
    assert.equal(app.consistency, 'crash');
    assert.equal(quiesceWarnings(app).length, 1);
    assert.match(quiesceWarnings(app)[0]!.message, /app01.*not running/);
    assert.equal(vmOf(record, 'web01').consistency, 'file-system');
    // Known from the inventory: no quiesced call was tried on app01.
    const app01 = `>${lab.vm('app01').id}<`;
    const appSnapshots = proxy.seen.filter(
      (r) => r.method === 'CreateSnapshot_Task' && r.body.includes(app01),
    );
    assert.equal(appSnapshots.length, 1);
    assert.match(appSnapshots[0]!.body, /<quiesce>false</);
    await assertClean(lab.configPath, clean);
  });

  it('Tools not running, a task with onQuiesceFailure fail: app01 fails, web01 goes on', async () => {
    const strict = await editConfig(
      lab.configPath,
      (doc) => {
        doc.tasks = [
          {
            name: 'strict',
            select: { vms: ['web01', 'app01'] },
            mode: 'SNAPSHOT_EXCL_MEM',
            onQuiesceFailure: 'fail',
          },
        ];
      },
      join(lab.dir, 'strict.yaml'),
    );
    const run = await runJson(strict, 'backup', '--task', 'strict');
    assert.equal(run.code, 2, run.stderr);
    const record = run.json as BackupRecord;
    assert.equal(record.state, 'partial');
    const app = vmOf(record, 'app01');
    assert.equal(app.state, 'failed');
    assert.match(app.error ?? '', /not running.*onQuiesceFailure: fail/);
    assert.equal(quiesceWarnings(app).length, 1);
    assert.equal(vmOf(record, 'web01').state, 'ok');
    assert.equal(vmOf(record, 'web01').consistency, 'file-system');
    await assertClean(lab.configPath, clean);
  });

  it('task create --on-quiesce-failure: stored and applied; an unknown policy is refused with exit 3', async () => {
    const bad = await runJson(
      lab.configPath,
      'task',
      'create',
      'maybe',
      '--vm',
      'app01',
      '--on-quiesce-failure',
      'retry',
    );
    assert.equal(bad.code, 3);
    assert.match(bad.stdout + bad.stderr, /--on-quiesce-failure/);
    assert.equal((await runJson(lab.configPath, 'task', 'show', 'maybe')).code, 3, 'nothing was stored');
    const created = await runJson(
      lab.configPath,
      'task',
      'create',
      'app-strict',
      '--vm',
      'app01',
      '--mode',
      'SNAPSHOT_EXCL_MEM',
      '--on-quiesce-failure',
      'fail',
    );
    assert.equal(created.code, 0, created.stderr);
    const shown = await runJson(lab.configPath, 'task', 'show', 'app-strict');
    assert.equal(shown.json.onQuiesceFailure, 'fail');
    const run = await runJson(lab.configPath, 'backup', '--task', 'app-strict');
    assert.equal(run.code, 2, run.stderr);
    assert.equal((run.json as BackupRecord).state, 'failed');
    assert.equal(vmOf(run.json as BackupRecord, 'app01').consistency, 'not-prepared');
    await assertClean(lab.configPath, clean);
  });

  it('a quiesce fault on web01 (Tools running): snapshot again without quiesce, crash consistent', async () => {
    const web01 = `>${lab.vm('web01').id}<`;
    proxy.rules = [
      {
        method: 'CreateSnapshot_Task',
        match: web01,
        nth: 1,
        action: 'fault',
        faultType: 'FilesystemQuiesceFault',
        message: 'An error occurred while quiescing the virtual machine',
      },
    ];
    const run = await runJson(proxiedConfig, 'backup', '--vm', 'web01', '--mode', 'SNAPSHOT_EXCL_MEM');
    assert.equal(run.code, 1, run.stderr);
    const record = run.json as BackupRecord;
    assert.equal(record.state, 'complete');
    const web = vmOf(record, 'web01');
    assert.equal(web.consistency, 'crash');
    assert.match(quiesceWarnings(web)[0]?.message ?? '', /web01.*FilesystemQuiesceFault/);
    const calls = proxy.seen.filter((r) => r.method === 'CreateSnapshot_Task' && r.body.includes(web01));
    assert.deepEqual(
      calls.map((c) => /<quiesce>true</.test(c.body)),
      [true, false],
    );
    await assertClean(lab.configPath, clean);
  });
});
