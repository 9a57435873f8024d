import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { runAttach, runDetach } from '../../src/engine/attach.js';
import { runMount, runUnmount } from '../../src/engine/mount.js';
import { recover } from '../../src/engine/recover.js';
import type { FaultableMethod } from '../../src/vsphere/index.js';
import { backUpWeb01, crashedAt, diskBytes, engineLabPerTest, LATER, web01Spec, world } from './harness.js';

const SPEC = web01Spec({ name: 'helper', host: 'esx01', disks: [{ datastore: 'ds-a', sizeMB: 8 }] });
const startLab = engineLabPerTest();
const backedUp = async () => backUpWeb01(await startLab(SPEC), 'ASIS');

describe('mount on the fakes', () => {
  it('mounts each datastore of the backup from a clone, and unmount removes everything', async () => {
    const { l, backupId } = await backedUp();
    const before = await world(l);
    const m = await runMount(l.ctx, { backupId });
    assert.equal(m.datastores.length, 2);
    const inventory = await l.vc.inventory();
    for (const ds of m.datastores) {
      const live = inventory.datastores.find((d) => d.name === ds.name);
      assert.ok(live, `${ds.name} is a datastore`);
      // The datastore shows the clone's volume: the backed-up disk is there, byte for byte.
      const where = await l.array.resolveExport(ds.path);
      assert.equal(where?.kind, 'clone');
      assert.equal(where?.cloneId, ds.cloneId);
    }
    const dsA = m.datastores.find((d) => d.source === 'ds-a')!;
    assert.deepEqual(
      l.array.readPath(`${dsA.path}/web01/web01_0-flat.vmdk`),
      diskBytes('[ds-a] web01/web01_0.vmdk'),
    );
    await runUnmount(l.ctx, { backupId });
    assert.deepEqual(await world(l), before);
  });

  for (const [method, after] of [
    ['createDatastore', false],
    ['createDatastore', true],
  ] as [FaultableMethod, boolean][]) {
    it(`${method} fails${after ? ' after its effect' : ''}: the undo leaves nothing`, async () => {
      const { l, backupId } = await backedUp();
      const before = await world(l);
      // The second datastore fails: the first one and the clone must go too.
      let calls = 0;
      const original = l.vc.createDatastore.bind(l.vc);
      l.vc.createDatastore = (...args) => {
        if (++calls === 2) l.vc.failNext(method, undefined, { after });
        return original(...args);
      };
      await assert.rejects(runMount(l.ctx, { backupId }), /mount failed/);
      assert.deepEqual(await world(l), before);
    });
  }
  it('cloneSnapshot fails: nothing is left', async () => {
    const { l, backupId } = await backedUp();
    const before = await world(l);
    l.array.failNext('cloneSnapshot');
    await assert.rejects(runMount(l.ctx, { backupId }), /mount failed/);
    assert.deepEqual(await world(l), before);
  });

  for (const point of ['mount-cloned', 'mount-datastore-created']) {
    it(`stopped at ${point}: recover removes what the mount made`, async () => {
      const { l, backupId } = await backedUp();
      const before = await world(l);
      await crashedAt(l, point, (ctx) => runMount(ctx, { backupId }));
      const report = await recover(l.context(LATER));
      assert.deepEqual(report.errors, []);
      assert.deepEqual(await world(l), before);
    });
  }

  it('stopped after unmount began: recover finishes the unmount', async () => {
    const { l, backupId } = await backedUp();
    const before = await world(l);
    await runMount(l.ctx, { backupId });
    await crashedAt(l, 'unmount-done', (ctx) => runUnmount(ctx, { backupId }));
    const report = await recover(l.context(LATER));
    assert.deepEqual(report.errors, []);
    assert.deepEqual(await world(l), before);
  });
});

describe('attach and detach on the fakes', () => {
  it('attach adds the backed-up disks from a mount; detach leaves nothing of it', async () => {
    const { l, backupId } = await backedUp();
    const before = await world(l);
    const a = await runAttach(l.ctx, { backupId, vm: 'web01', to: 'helper' });
    assert.equal(a.mount.created, true);
    assert.equal(a.disks.length, 2);
    const files = l.vc.vm('helper')!.disks.map((d) => d.file);
    assert.deepEqual(
      files.slice(1),
      a.disks.map((d) => d.file),
    );
    const d = await runDetach(l.ctx, { to: 'helper' });
    assert.equal(d.detached.length, 1);
    assert.equal(d.detached[0]!.unmounted, true);
    assert.deepEqual(await world(l), before);
  });

  it('attaching the same backup twice to one VM is refused and changes nothing', async () => {
    const { l, backupId } = await backedUp();
    await runAttach(l.ctx, { backupId, vm: 'web01', to: 'helper' });
    const before = await world(l);
    await assert.rejects(runAttach(l.ctx, { backupId, vm: 'web01', to: 'helper' }));
    assert.deepEqual(await world(l), before);
  });

  const faults: [FaultableMethod, boolean][] = [
    ['createDatastore', false],
    ['reconfigureDisks', false],
    ['reconfigureDisks', true],
  ];
  for (const [method, after] of faults) {
    it(`attach, ${method} fails${after ? ' after its effect' : ''}: the undo leaves nothing`, async () => {
      const { l, backupId } = await backedUp();
      const before = await world(l);
      l.vc.failNext(method, undefined, { after });
      await assert.rejects(runAttach(l.ctx, { backupId, vm: 'web01', to: 'helper' }), /attach failed/);
      assert.deepEqual(await world(l), before);
    });
  }

  it('attach stopped after adding the disks: recover detaches them and unmounts', async () => {
    const { l, backupId } = await backedUp();
    const before = await world(l);
    await crashedAt(l, 'attach-disks-added', (ctx) =>
      runAttach(ctx, { backupId, vm: 'web01', to: 'helper' }),
    );
    const report = await recover(l.context(LATER));
    assert.deepEqual(report.errors, []);
    assert.deepEqual(await world(l), before);
  });

  it('detach stopped after removing the disks: recover finishes it', async () => {
    const { l, backupId } = await backedUp();
    const before = await world(l);
    await runAttach(l.ctx, { backupId, vm: 'web01', to: 'helper' });
    await crashedAt(l, 'detach-disks-removed', (ctx) => runDetach(ctx, { to: 'helper' }));
    const report = await recover(l.context(LATER));
    assert.deepEqual(report.errors, []);
    assert.deepEqual(await world(l), before);
  });

  it('detachDiskFiles fails: the attach stays whole and a second detach completes', async () => {
    const { l, backupId } = await backedUp();
    const before = await world(l);
    await runAttach(l.ctx, { backupId, vm: 'web01', to: 'helper' });
    const attached = await world(l);
    l.vc.failNext('detachDiskFiles');
    await assert.rejects(runDetach(l.ctx, { to: 'helper' }));
    assert.deepEqual(await world(l), attached);
    await runDetach(l.ctx, { to: 'helper' });
    assert.deepEqual(await world(l), before);
  });
});
