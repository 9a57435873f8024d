import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { after, before, beforeEach, describe, it } from 'node:test';
import { layout } from '../../src/arrays/fs/layout.js';
import { Catalog } from '../../src/catalog/index.js';
import { loadConfig } from '../../src/config/load.js';
import { releaseVm } from '../../src/engine/release.js';
import type { BackupRecord } from '../../src/model/backup.js';
import { execFile } from '../../src/util/exec.js';
import { countBackups, withCatalog } from '../helpers/catalog.js';
import { CLI, runCli, runJson } from '../helpers/cli.js';
import { type FaultProxy, type FaultRule, startFaultProxy } from '../helpers/fault-proxy.js';
import { configWithVcenterUrl, editConfig, standardSpec, startLab, type TestLab } from '../helpers/lab.js';
import { assertClean, type VmSnapshotState, vmStates, withVcenter } from '../helpers/state.js';

/**
 * Fault injection between snapkeeper and vCenter: each vCenter call of a backup fails or is dropped in turn.
 * After each run (and `recover` where the run could not finish the release) there must be no VM left
 * suspended, no stray VM snapshot, no orphan array snapshot, and a consistent catalog.
 */
describe('backup under injected faults', () => {
  let lab: TestLab;
  let proxy: FaultProxy;
  let proxiedConfig: string;
  let clean: Record<string, VmSnapshotState>;
  const id = (name: string) => lab.vm(name).id;
  const only = (name: string) => `>${id(name)}<`;

  before(async () => {
    lab = await startLab(await standardSpec());
    proxy = await startFaultProxy(lab.state.url);
    proxiedConfig = await configWithVcenterUrl(lab, proxy.url, 'proxied.yaml');
    clean = await vmStates(loadConfig(lab.configPath));
  });
  after(async () => {
    await proxy?.close();
    await lab?.stop();
  });
  beforeEach(() => proxy.reset());

  async function backup(mode: string, rules: FaultRule[], vms = ['web01', 'app01', 'db01']) {
    proxy.rules = rules;
    const run = await runJson(proxiedConfig, 'backup', '--vm', ...vms, '--mode', mode);
    proxy.rules = [];
    return { run, record: run.json as BackupRecord };
  }

  const cases: { name: string; mode: string; rules: () => FaultRule[]; failedVm?: string; state: string }[] =
    [
      {
        name: 'CreateSnapshot fails for one VM',
        mode: 'SNAPSHOT_EXCL_MEM',
        rules: () => [{ method: 'CreateSnapshot_Task', match: only('web01'), action: 'fault' }],
        failedVm: 'web01',
        state: 'partial',
      },
      {
        name: 'CreateSnapshot answer lost after the snapshot was made',
        mode: 'SNAPSHOT_INCL_MEM',
        rules: () => [{ method: 'CreateSnapshot_Task', match: only('web01'), action: 'drop', when: 'after' }],
        failedVm: 'web01',
        state: 'partial',
      },
      {
        name: 'Suspend fails for one VM',
        mode: 'SUSPEND',
        rules: () => [{ method: 'SuspendVM_Task', match: only('app01'), action: 'fault' }],
        failedVm: 'app01',
        state: 'partial',
      },
      {
        name: 'Suspend answer lost after the VM was suspended',
        mode: 'SUSPEND',
        rules: () => [{ method: 'SuspendVM_Task', match: only('app01'), action: 'drop', when: 'after' }],
        failedVm: 'app01',
        state: 'partial',
      },
      {
        name: 'RemoveSnapshot fails once (retried)',
        mode: 'SNAPSHOT_EXCL_MEM',
        rules: () => [{ method: 'RemoveSnapshot_Task', nth: 1, action: 'fault' }],
        state: 'complete',
      },
      {
        name: 'RemoveSnapshot dropped once (retried)',
        mode: 'SNAPSHOT_EXCL_MEM',
        rules: () => [{ method: 'RemoveSnapshot_Task', nth: 1, action: 'drop' }],
        state: 'complete',
      },
      {
        name: 'PowerOn fails once (retried)',
        mode: 'SUSPEND',
        rules: () => [{ method: 'PowerOnVM_Task', nth: 1, action: 'fault' }],
        state: 'complete',
      },
      {
        name: 'PowerOn dropped once (retried)',
        mode: 'SUSPEND',
        rules: () => [{ method: 'PowerOnVM_Task', nth: 1, action: 'drop', when: 'after' }],
        state: 'complete',
      },
    ];

  for (const c of cases) {
    it(`${c.name}: ${c.state}, VMs released, nothing left behind`, async () => {
      const { run, record } = await backup(c.mode, c.rules());
      assert.equal(record.state, c.state, run.stdout + run.stderr);
      assert.ok(
        proxy.seen.some((s) => s.injected !== undefined),
        'the fault was injected',
      );
      if (c.failedVm) {
        const failed = record.vms.filter((v) => v.state === 'failed').map((v) => v.name);
        assert.deepEqual(failed, [c.failedVm]);
        assert.equal(run.code, 2, 'partial backups exit 2');
        // Recorded as what happened: never held, so no consistency the mode promised and no quiesce window.
        const vm = record.vms.find((v) => v.name === c.failedVm)!;
        assert.equal(vm.consistency, 'not-prepared');
        assert.equal(vm.quiesce, undefined);
        assert.equal(vm.vmSnapshot, undefined);
      }
      await assertClean(lab.configPath, clean);
    });
  }

  for (const [method, mode] of [
    ['RemoveSnapshot_Task', 'SNAPSHOT_EXCL_MEM'],
    ['PowerOnVM_Task', 'SUSPEND'],
  ] as const) {
    it(`${method} failing every time: the run reports it, recover releases the VMs`, async () => {
      const { run, record } = await backup(mode, [{ method, action: 'fault' }]);
      const unreleased = record.vms.flatMap((v) => v.warnings).filter((w) => w.code === 'RELEASE_FAILED');
      assert.ok(unreleased.length > 0, run.stdout + run.stderr);
      // VM warnings live in vms[].warnings only, not copied into the run-level list.
      assert.deepEqual(
        record.warnings.filter((w) => w.code === 'RELEASE_FAILED'),
        [],
        'RELEASE_FAILED is not reported twice',
      );
      // A VM left held is a failed guarantee, not a warning: exit 2.
      assert.equal(run.code, 2, 'a backup that could not release a VM exits 2');
      const held = await vmStates(loadConfig(lab.configPath));
      assert.notDeepEqual(held, clean, 'VMs are still held before recover');
      const rec = await runJson(lab.configPath, 'recover');
      assert.equal(rec.code, 0, rec.stdout + rec.stderr);
      assert.deepEqual(
        rec.json.operations.map((o: { id: string }) => o.id),
        [record.id],
      );
      await assertClean(lab.configPath, clean);
      // The data was captured before the release failed: the backup itself stays usable.
      await withCatalog(loadConfig(lab.configPath).catalog.path, async (catalog) => {
        assert.equal((await catalog.getBackup(record.id)).state, 'complete');
      });
    });
  }

  it('releasing a VM that no longer exists is not retried and counts as released', async () => {
    await withVcenter(loadConfig(lab.configPath).vcenter, async (vc) => {
      const before0 = vc.roundTrips;
      const done = await releaseVm(vc, 'vm-424242', { snapshotName: 'snapkeeper-x', resume: true });
      assert.deepEqual(done, { removedSnapshots: 0, poweredOn: false, gone: true });
      assert.equal(vc.roundTrips - before0, 1, 'one state read, no retry');
    });
  });

  it('Ctrl-C stops preparing more VMs, still releases the prepared ones, and reports partial', async () => {
    const serial = await editConfig(
      proxiedConfig,
      (doc) => {
        doc.defaults = { ...doc.defaults, concurrency: { global: 1, perHost: 1 } };
      },
      join(lab.dir, 'serial.yaml'),
    );
    // app01 goes first (VMs are prepared in name order); its snapshot call is held until we have interrupted.
    proxy.rules = [{ method: 'CreateSnapshot_Task', match: only('app01'), action: 'delay', ms: 1500 }];
    const child = spawn(
      process.execPath,
      [CLI, '--config', serial, '--json', 'backup', '--vm', 'app01', 'web01', '--mode', 'SNAPSHOT_EXCL_MEM'],
      {
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    const out: Buffer[] = [];
    child.stdout.on('data', (b: Buffer) => out.push(b));
    const exited = new Promise<number | null>((resolve) => child.on('close', resolve));
    await until(() => proxy.seen.some((r) => r.method === 'CreateSnapshot_Task'));
    child.kill('SIGINT');
    const code = await exited;
    proxy.rules = [];
    const record = JSON.parse(Buffer.concat(out).toString()) as BackupRecord;
    assert.equal(code, 2);
    assert.equal(record.state, 'partial');
    assert.equal(record.vms.find((v) => v.name === 'app01')!.state, 'ok');
    assert.match(record.vms.find((v) => v.name === 'web01')!.error ?? '', /interrupted/);
    assert.ok(!proxy.seen.some((r) => r.method === 'CreateSnapshot_Task' && r.body.includes(only('web01'))));
    await assertClean(lab.configPath, clean);
  });

  it('an array that fails the group snapshot: backup failed, every VM released, no orphan', async () => {
    const config = loadConfig(lab.configPath);
    const root = config.arrays[0]!.path;
    const snapshots = layout.snapshots(root);
    // Immutable: not even root can create a snapshot in it, so the array's snapshot call really fails.
    await execFile('chattr', ['+i', snapshots]);
    try {
      const { run, record } = await backup('SUSPEND', []);
      assert.equal(record.state, 'failed', run.stdout + run.stderr);
      assert.equal(run.code, 2);
      assert.match(record.error ?? '', /array snapshot failed/);
      assert.deepEqual(record.snapshots, []);
      assert.ok(record.vms.every((v) => v.state === 'failed'));
    } finally {
      await execFile('chattr', ['-i', snapshots]);
    }
    await assertClean(lab.configPath, clean);
  });

  it('two runs touching the same VM never interleave: the second is refused naming the holder', async () => {
    const config = loadConfig(lab.configPath);
    const catalog = Catalog.open(config.catalog.path);
    // A live operation of this very process holds web01, as a concurrent backup would.
    await catalog.beginOperation({ id: 'holder-op', kind: 'backup', subject: 'other-task' });
    await catalog.acquireLocks('holder-op', [`vm:${id('web01')}`]);
    try {
      const run = await runJson(lab.configPath, 'backup', '--vm', 'web01', 'app01');
      assert.equal(run.code, 2);
      assert.equal(run.json.error.code, 'RESOURCE_LOCKED');
      assert.match(run.json.error.message, /holder-op/);
      assert.deepEqual(await vmStates(config), clean, 'the refused run touched no VM');
    } finally {
      await catalog.finishOperation('holder-op', 'done');
      await catalog.close();
    }
    const retry = await runJson(lab.configPath, 'backup', '--vm', 'web01');
    assert.equal(retry.code, 0, retry.stdout + retry.stderr);
    await assertClean(lab.configPath, clean);
  });

  it('an unreachable vCenter is one clear error and changes nothing', async () => {
    const bad = await configWithVcenterUrl(lab, 'http://127.0.0.1:9/sdk', 'unreachable.yaml');
    const before0 = await countBackups(loadConfig(lab.configPath).catalog.path);
    const run = await runCli(['--config', bad, 'backup', '--vm', 'web01']);
    assert.equal(run.code, 3);
    assert.match(run.stderr, /127\.0\.0\.1:9/);
    assert.doesNotMatch(run.stderr, /\n\s+at /, 'no stack trace');
    assert.equal(await countBackups(loadConfig(lab.configPath).catalog.path), before0);
  });
});

/** Waits for a condition the test cannot be told about directly (a request reaching the proxy). */
async function until(condition: () => boolean, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error('condition not reached in time');
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}
