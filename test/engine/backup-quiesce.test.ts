import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { runBackup } from '../../src/engine/backup.js';
import { recover } from '../../src/engine/recover.js';
import type { BackupRecord, VmRecord } from '../../src/model/backup.js';
import type { ToolsState } from '../../src/model/inventory.js';
import { VsphereFault } from '../../src/vsphere/index.js';
import { assertReleased } from './backup-lab.js';
import { crashedAt, type EngineLab, engineLabPerTest, LATER, web01Spec } from './harness.js';

const start = engineLabPerTest();
const BEFORE = { web01: 'poweredOn', app01: 'poweredOn' };

/** web01 with Tools running, app01 beside it with Tools in `tools`. */
function lab(tools: ToolsState): Promise<EngineLab> {
  return start(web01Spec({ name: 'app01', host: 'esx01', tools, disks: [{ datastore: 'ds-a', sizeMB: 8 }] }));
}

function vmOf(record: BackupRecord, name: string): VmRecord {
  const vm = record.vms.find((v) => v.name === name);
  assert.ok(vm, `${name} is in the record`);
  return vm;
}

function quiesceWarnings(vm: VmRecord): string[] {
  return vm.warnings.filter((w) => w.code === 'QUIESCE_FAILED').map((w) => w.message);
}

/** The quiesced CreateSnapshot of a VM whose Tools run, answered as vCenter does when the guest cannot freeze. */
function quiesceFault(): VsphereFault {
  return new VsphereFault(
    'FilesystemQuiesceFault',
    'CreateSnapshot_Task: vSphere fault FilesystemQuiesceFault: An error occurred while quiescing the virtual machine',
    undefined,
    'CreateSnapshot_Task',
  );
}

describe('quiesce fallback on the fakes (issue 11)', () => {
  for (const tools of ['notRunning', 'notInstalled'] as const) {
    it(`Tools ${tools}, default policy: snapshot without quiesce at once, crash consistent, QUIESCE_FAILED`, async () => {
      const l = await lab(tools);
      assert.equal(l.vc.vm('app01')?.tools, tools, 'the inventory reports the Tools state');
      const record = await runBackup(l.ctx, { vmPatterns: ['web01', 'app01'], mode: 'SNAPSHOT_EXCL_MEM' });
      assert.equal(record.state, 'complete');
      const app = vmOf(record, 'app01');
      assert.equal(app.state, 'ok');
      assert.equal(app.consistency, 'crash');
      assert.ok(app.quiesce, 'app01 was held, so it has a quiesce window');
      const [message, ...more] = quiesceWarnings(app);
      assert.deepEqual(more, []);
      assert.match(message!, /app01/);
      assert.match(message!, tools === 'notInstalled' ? /not installed/ : /not running/);
      const web = vmOf(record, 'web01');
      assert.equal(web.consistency, 'file-system');
      assert.deepEqual(quiesceWarnings(web), []);
      // Nothing tried in vain: one CreateSnapshot per VM, the fake refusing any quiesced one for app01.
      assert.equal(l.vc.calls('createVmSnapshot'), 2);
      await assertReleased(l, BEFORE);
    });
  }

  it('Tools not running, onQuiesceFailure fail: app01 fails untouched, web01 goes on, the backup partial', async () => {
    const l = await lab('notRunning');
    const record = await runBackup(l.ctx, {
      vmPatterns: ['web01', 'app01'],
      mode: 'SNAPSHOT_EXCL_MEM',
      onQuiesceFailure: 'fail',
    });
    assert.equal(record.state, 'partial');
    const app = vmOf(record, 'app01');
    assert.equal(app.state, 'failed');
    assert.equal(app.consistency, 'not-prepared');
    assert.match(app.error ?? '', /VMware Tools are not running.*onQuiesceFailure: fail/);
    assert.equal(quiesceWarnings(app).length, 1);
    assert.equal(vmOf(record, 'web01').state, 'ok');
    assert.equal(l.vc.calls('createVmSnapshot'), 1, 'no snapshot was attempted on app01');
    await assertReleased(l, BEFORE);
  });

  it("a task's onQuiesceFailure applies, the configured default otherwise", async () => {
    const l = await lab('notRunning');
    await l.ctx.catalog.createTask({
      name: 'strict',
      select: { vms: ['app01'] },
      mode: 'SNAPSHOT_EXCL_MEM',
      onQuiesceFailure: 'fail',
    });
    await l.ctx.catalog.createTask({
      name: 'lenient',
      select: { vms: ['app01'] },
      mode: 'SNAPSHOT_EXCL_MEM',
    });
    assert.equal(l.ctx.config.defaults.onQuiesceFailure, 'crash-consistent');
    const strict = await runBackup(l.ctx, { taskName: 'strict' });
    assert.equal(strict.state, 'failed');
    const lenient = await runBackup(l.ctx, { taskName: 'lenient' });
    assert.equal(lenient.state, 'complete');
    assert.equal(vmOf(lenient, 'app01').consistency, 'crash');
  });

  it('a quiesce fault on a VM whose Tools run: snapshot again without quiesce (held until released)', async () => {
    const l = await lab('running');
    l.vc.failNext('createVmSnapshot', quiesceFault());
    await crashedAt(l, 'prepared', (ctx) =>
      runBackup(ctx, { vmPatterns: ['app01'], mode: 'SNAPSHOT_EXCL_MEM' }),
    );
    // Crashed while held: the snapshot that exists is the retry, and it is not quiesced.
    const held = l.vc.vm('app01')!.snapshots.filter((s) => s.name.startsWith('snapkeeper-'));
    assert.equal(held.length, 1);
    assert.equal(l.vc.snapshot(held[0]!.id)?.quiesced, false);
    assert.equal(l.vc.calls('createVmSnapshot'), 2);
    // Recover (as after a crash) removes the retried snapshot like any other.
    const later = l.context(LATER);
    await recover(later);
    await assertReleased(l, BEFORE);

    l.vc.failNext('createVmSnapshot', quiesceFault());
    const record = await runBackup(later, { vmPatterns: ['app01'], mode: 'SNAPSHOT_EXCL_MEM' });
    assert.equal(record.state, 'complete');
    const app = vmOf(record, 'app01');
    assert.equal(app.consistency, 'crash');
    const [message] = quiesceWarnings(app);
    assert.match(message!, /app01.*FilesystemQuiesceFault/);
    await assertReleased(l, BEFORE);
  });

  it('a quiesce fault under onQuiesceFailure fail: the VM fails, nothing retried', async () => {
    const l = await lab('running');
    l.vc.failNext('createVmSnapshot', quiesceFault());
    const record = await runBackup(l.ctx, {
      vmPatterns: ['web01', 'app01'],
      mode: 'SNAPSHOT_EXCL_MEM',
      onQuiesceFailure: 'fail',
    });
    assert.equal(record.state, 'partial');
    const failed = record.vms.filter((v) => v.state === 'failed');
    assert.equal(failed.length, 1);
    assert.match(failed[0]!.error ?? '', /FilesystemQuiesceFault/);
    assert.equal(quiesceWarnings(failed[0]!).length, 1);
    assert.equal(l.vc.calls('createVmSnapshot'), 2, 'one failed quiesced call, one for the other VM');
    await assertReleased(l, BEFORE);
  });

  it('a quiesce fault and then a failing retry: the VM is not prepared and not called crash consistent', async () => {
    const l = await lab('running');
    l.vc.failNext('createVmSnapshot', quiesceFault());
    l.vc.failNext('createVmSnapshot');
    const record = await runBackup(l.ctx, { vmPatterns: ['app01'], mode: 'SNAPSHOT_EXCL_MEM' });
    assert.equal(record.state, 'failed');
    const app = vmOf(record, 'app01');
    assert.equal(app.consistency, 'not-prepared');
    assert.deepEqual(quiesceWarnings(app), []);
    await assertReleased(l, BEFORE);
  });

  it('a fault that is not about quiescing fails the VM as before, under the default policy', async () => {
    const l = await lab('running');
    l.vc.failNext('createVmSnapshot');
    const record = await runBackup(l.ctx, { vmPatterns: ['app01'], mode: 'SNAPSHOT_EXCL_MEM' });
    assert.equal(record.state, 'failed');
    assert.equal(l.vc.calls('createVmSnapshot'), 1);
    assert.deepEqual(quiesceWarnings(vmOf(record, 'app01')), []);
  });
});
