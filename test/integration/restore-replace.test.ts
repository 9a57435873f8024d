import assert from 'node:assert/strict';
import { after, before, beforeEach, describe, it } from 'node:test';
import { loadConfig } from '../../src/config/load.js';
import { EngineContext } from '../../src/engine/context.js';
import { runRestore } from '../../src/engine/restore.js';
import { UsageError } from '../../src/errors.js';
import { verifyLabVm } from '../../src/lab/verify.js';
import type { BackupRecord } from '../../src/model/backup.js';
import { withCatalog } from '../helpers/catalog.js';
import { completeBackup, runCli, runJson } from '../helpers/cli.js';
import { type FaultProxy, type FaultRule, startFaultProxy } from '../helpers/fault-proxy.js';
import { configWithVcenterUrl, standardSpec, startLab, type TestLab } from '../helpers/lab.js';
import { inventoryOf, inventoryState, type LabContents, labContents, poolFiles } from '../helpers/state.js';

/**
 * `restore --disk ... --replace`: the target VM keeps its own disk whatever fails. A failed add of the
 * restored disk, a failed re-add of the original during the undo (then `recover`), a lost answer with a
 * failed detach (then `recover`), and a SIGKILL after removing the original or after adding the restored
 * disk (then `recover`) all end with the VM holding its original disk with its original bytes, no operation
 * open and no lock held.
 */
describe('restore --disk --replace: undo gives the VM its disk back', () => {
  let lab: TestLab;
  let proxy: FaultProxy;
  let proxied: string;
  let backup: BackupRecord;
  let clean: LabContents;

  // web01's first disk replaces off01's (powered off: no --force needed).
  const replaceArgs = () => [
    'restore',
    '--backup',
    backup.id,
    '--vm',
    'web01',
    '--disk',
    'Hard disk 1',
    '--to',
    'off01',
    '--replace',
  ];

  /** off01 has its own disks with their lab bytes, vCenter and the pool are as before, nothing is held. */
  async function assertOriginalBack(what: string) {
    const verified = await verifyLabVm(lab.dir, 'off01');
    assert.deepEqual(
      verified.map((d) => [d.label, d.file, d.ok]),
      [['Hard disk 1', '[ds-a] off01/off01_0.vmdk', true]],
      `${what}: off01 has its original disk with its original bytes`,
    );
    assert.deepEqual(
      inventoryState(await inventoryOf(lab.configPath)),
      clean.inv,
      `${what}: vCenter is as before`,
    );
    assert.deepEqual(await poolFiles(lab.state.arrayPath), clean.files, `${what}: no restored file left`);
    await withCatalog(loadConfig(lab.configPath).catalog.path, async (catalog) => {
      assert.deepEqual(await catalog.unfinishedOperations(), [], `${what}: no operation left running`);
      for (const op of await catalog.listOperations()) {
        assert.deepEqual(await catalog.locksOf(op.id), [], `${what}: ${op.id} holds no lock`);
      }
    });
  }

  before(async () => {
    lab = await startLab(await standardSpec());
    proxy = await startFaultProxy(lab.state.url);
    proxied = await configWithVcenterUrl(lab, proxy.url, 'proxied.yaml');
    backup = await completeBackup(lab.configPath, '--task', 'lab-all');
    clean = await labContents(lab);
  });
  after(async () => {
    await proxy?.close();
    await lab?.stop();
  });
  beforeEach(() => proxy.reset());

  it('the add of the restored disk fails: exit 2, the original disk is back', async () => {
    // ReconfigVM_Task 1 removes the original, 2 adds the restored disk, 3 (the undo) re-adds the original.
    proxy.rules = [{ method: 'ReconfigVM_Task', nth: 2, action: 'fault' }];
    const run = await runCli(['--config', proxied, '--json', ...replaceArgs()]);
    assert.equal(proxy.seen.filter((s) => s.injected === 'fault').length, 1, 'the fault was injected');
    assert.equal(run.code, 2, run.stdout + run.stderr);
    assert.match(run.json.error.message, /everything it did was undone/);
    await assertOriginalBack('add failed');
  });

  it('the undo’s re-add of the original fails too: exit 2, then recover gives the disk back', async () => {
    // The first rule takes the add (2nd call); the second rule, which never counted that call, takes the
    // undo's re-add of the original (its 2nd match, the 3rd call).
    const rules: FaultRule[] = [
      { method: 'ReconfigVM_Task', nth: 2, action: 'fault' },
      { method: 'ReconfigVM_Task', nth: 2, action: 'fault' },
    ];
    proxy.rules = rules;
    const run = await runCli(['--config', proxied, '--json', ...replaceArgs()]);
    proxy.rules = [];
    assert.equal(proxy.seen.filter((s) => s.injected === 'fault').length, 2, 'both faults were injected');
    assert.equal(run.code, 2, run.stdout + run.stderr);
    assert.match(run.json.error.message, /run snapkeeper recover/);
    const off = (await inventoryOf(lab.configPath)).vms.find((v) => v.name === 'off01')!;
    assert.deepEqual(off.disks, [], 'the failed undo left off01 without its disk (what recover repairs)');
    const rec = await runJson(lab.configPath, 'recover');
    assert.equal(rec.code, 0, rec.stdout + rec.stderr);
    assert.ok(
      rec.json.actions.some((a: string) => a.includes('re-attach [ds-a] off01/off01_0.vmdk')),
      JSON.stringify(rec.json.actions),
    );
    await assertOriginalBack('undo failed, then recover');
  });

  it('the answer to the add is lost and the undo cannot detach the restored disk: its files stay until recover', async () => {
    // The 2nd call (the add) is done but its answer lost; the second rule takes the undo's detach (3rd call).
    proxy.rules = [
      { method: 'ReconfigVM_Task', nth: 2, action: 'drop', when: 'after' },
      { method: 'ReconfigVM_Task', nth: 2, action: 'fault' },
    ];
    const run = await runCli(['--config', proxied, '--json', ...replaceArgs()]);
    proxy.rules = [];
    assert.equal(proxy.seen.filter((s) => s.injected !== undefined).length, 2, 'both faults were injected');
    assert.equal(run.code, 2, run.stdout + run.stderr);
    assert.match(run.json.error.message, /run snapkeeper recover/);
    const off = (await inventoryOf(lab.configPath)).vms.find((v) => v.name === 'off01')!;
    assert.equal(off.disks.length, 1);
    assert.match(off.disks[0]!.file, /^\[ds-a\] off01\/web01_0-restored-/, 'off01 has the restored disk');
    const stem = `ds-a/${off.disks[0]!.file.slice('[ds-a] '.length).replace(/\.vmdk$/, '')}`;
    assert.equal(
      (await poolFiles(lab.state.arrayPath)).filter((f) => f.startsWith(stem)).length,
      2,
      'the restored descriptor and extent are kept while off01 has them as a disk',
    );
    const rec = await runJson(lab.configPath, 'recover');
    assert.equal(rec.code, 0, rec.stdout + rec.stderr);
    await assertOriginalBack('lost answer and failed detach, then recover');
  });

  const crashes = [
    {
      point: 'restore-disks-removed',
      what: 'between removing the original and adding the restored disk',
      disks: 0,
    },
    { point: 'restore-vm-reconfigured', what: 'after adding the restored disk, before the commit', disks: 1 },
  ];
  for (const c of crashes) {
    it(`SIGKILL ${c.what}, then recover`, async () => {
      const run = await runCli(['--config', lab.configPath, '--json', ...replaceArgs()], {
        env: { SNAPKEEPER_CRASH_AT: c.point },
      });
      assert.equal(run.signal, 'SIGKILL', run.stdout + run.stderr);
      const off = (await inventoryOf(lab.configPath)).vms.find((v) => v.name === 'off01')!;
      assert.equal(off.disks.length, c.disks, `killed at ${c.point}`);
      assert.ok(!off.disks.some((d) => d.file === '[ds-a] off01/off01_0.vmdk'), 'the original was removed');
      const rec = await runJson(lab.configPath, 'recover');
      assert.equal(rec.code, 0, rec.stdout + rec.stderr);
      await assertOriginalBack(`SIGKILL at ${c.point}, then recover`);
      const again = await runJson(lab.configPath, 'recover');
      assert.deepEqual(again.json.actions, [], 'recover is idempotent');
    });
  }

  it('a powered-on target needs force: refused with exit 3 and nothing changed, done with force', async () => {
    const config = loadConfig(lab.configPath);
    const request = {
      backupId: backup.id,
      vm: 'app01',
      disks: ['Hard disk 1'],
      to: 'app01',
      replace: true,
    };
    const ctx = new EngineContext({ config });
    try {
      await assert.rejects(runRestore(ctx, request), (err: unknown) => {
        assert.ok(err instanceof UsageError, String(err));
        assert.equal(err.exitCode, 3);
        assert.equal(err.code, 'CONFIRMATION_REQUIRED');
        assert.match(err.message, /app01 is powered on/);
        assert.match(err.message, /power off the VM or pass --force/);
        return true;
      });
      assert.deepEqual(
        inventoryState(await inventoryOf(lab.configPath)),
        clean.inv,
        'refused: vCenter unchanged',
      );
      assert.deepEqual(await poolFiles(lab.state.arrayPath), clean.files, 'refused: no file written');
      const operations = (await ctx.catalog.listOperations()).length;
      const forced = await runRestore(ctx, { ...request, force: true });
      assert.equal((await ctx.catalog.listOperations()).length, operations + 1, 'the forced restore ran');
      const app = (await inventoryOf(lab.configPath)).vms.find((v) => v.name === 'app01')!;
      assert.equal(app.powerState, 'poweredOn');
      assert.equal(app.disks.find((d) => d.label === 'Hard disk 1')!.file, forced.disks[0]!.target);
      assert.equal(forced.disks[0]!.replaced, '[ds-b] app01/app01_0.vmdk');
      assert.ok(
        (await verifyLabVm(lab.dir, 'app01')).every((d) => d.ok),
        'app01 has its backed-up bytes on the restored disk',
      );
    } finally {
      await ctx.close();
    }
  });
});
