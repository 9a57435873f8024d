import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { recover } from '../../src/engine/recover.js';
import { runRestore } from '../../src/engine/restore.js';
import type { RestoreRequest } from '../../src/engine/restore-plan.js';
import type { FaultableMethod } from '../../src/vsphere/index.js';
import {
  backUpWeb01,
  crashedAt,
  diskBytes,
  type EngineLab,
  engineLabPerTest,
  LATER,
  web01Spec,
  world,
} from './harness.js';

const SPEC = web01Spec({
  name: 'app01',
  host: 'esx01',
  power: 'poweredOff',
  disks: [{ datastore: 'ds-a', sizeMB: 8 }],
});
const startLab = engineLabPerTest();

/** A lab with one complete backup of web01. */
const backedUp = async () => backUpWeb01(await startLab(SPEC), 'SNAPSHOT_EXCL_MEM');

/** The restored disk's extent holds the backed-up bytes. */
function assertBytes(l: EngineLab, descriptorPath: string, sourceFile: string): void {
  const flat = descriptorPath.replace(/\.vmdk$/, '-flat.vmdk');
  assert.deepEqual(l.array.readPath(flat), diskBytes(sourceFile));
}

/** A restore that fails with a fault at `method` (before or after its effect) and leaves the world as it was. */
async function failsCleanly(
  l: EngineLab,
  request: RestoreRequest,
  inject: () => void,
  message: RegExp,
): Promise<void> {
  const before = await world(l);
  inject();
  await assert.rejects(runRestore(l.ctx, request), message);
  assert.deepEqual(await world(l), before);
}

describe('restore on the fakes', () => {
  it('as a new VM: created powered off from the captured configuration, every disk byte for byte', async () => {
    const { l, backupId } = await backedUp();
    const r = await runRestore(l.ctx, { backupId, vm: 'web01', as: 'web01-r' });
    assert.equal(r.mode, 'new');
    assert.equal(r.cloned, true);
    const vm = l.vc.vm('web01-r')!;
    assert.equal(vm.powerState, 'poweredOff');
    assert.deepEqual(
      vm.disks.map((d) => d.file),
      ['[ds-a] web01-r/web01-r_0.vmdk', '[ds-b] web01-r/web01-r_1.vmdk'],
    );
    const source = l.vc.vm('web01')!.disks;
    for (const [i, d] of r.disks.entries()) assertBytes(l, d.path, source[i]!.file);
    assert.deepEqual(await l.ctx.catalog.unfinishedOperations(), []);
  });

  it('single disk into an existing VM: added on a free slot, the VM keeps its own disks', async () => {
    const { l, backupId } = await backedUp();
    const r = await runRestore(l.ctx, { backupId, vm: 'web01', disks: ['Hard disk 2'], to: 'app01' });
    assert.equal(r.mode, 'disks');
    const files = l.vc.vm('app01')!.disks.map((d) => d.file);
    assert.equal(files.length, 2);
    assert.equal(files[1], r.disks[0]!.target);
    assertBytes(l, r.disks[0]!.path, l.vc.vm('web01')!.disks[1]!.file);
  });

  it('to the original place: the live VM is replaced by the backed-up one, its old files deleted', async () => {
    const { l, backupId } = await backedUp();
    const live = l.vc.vm('web01')!;
    // The live disk changes after the backup: the restore must bring back the backed-up bytes.
    l.array.writeFile('ds-a', 'web01/web01_0-flat.vmdk', Buffer.alloc(8192, 7));
    const r = await runRestore(l.ctx, { backupId, vm: 'web01', original: true, confirmed: true });
    assert.equal(r.mode, 'original');
    const vm = l.vc.vm('web01')!;
    assert.notEqual(vm.id, live.id);
    assert.deepEqual(
      vm.disks.map((d) => d.file),
      live.disks.map((d) => d.file),
    );
    assert.deepEqual(
      l.array.readVolumeFile('ds-a', 'web01/web01_0-flat.vmdk'),
      diskBytes(live.disks[0]!.file),
    );
    const leftovers = l.array.listPath('/memory/array1/ds-a').map((e) => e.name);
    assert.deepEqual(
      leftovers.filter((n) => n.includes('snapkeeper')),
      [],
    );
  });

  it('a dry run changes nothing', async () => {
    const { l, backupId } = await backedUp();
    const before = await world(l);
    const r = await runRestore(l.ctx, { backupId, vm: 'web01', as: 'web01-r', dryRun: true });
    assert.equal(r.dryRun, true);
    assert.deepEqual(await world(l), before);
  });
});

describe('restore --disk --replace on the fakes: the VM always ends with a disk in that slot', () => {
  const replace = (backupId: string): RestoreRequest => ({
    backupId,
    vm: 'web01',
    disks: ['Hard disk 1'],
    to: 'web01',
    replace: true,
    force: true,
  });

  it('replaces the disk: the restored file in the same slot, the replaced file kept', async () => {
    const { l, backupId } = await backedUp();
    const old = l.vc.vm('web01')!.disks[0]!;
    const r = await runRestore(l.ctx, replace(backupId));
    const now = l.vc.vm('web01')!.disks.find((d) => d.label === 'Hard disk 1')!;
    assert.equal(now.file, r.disks[0]!.target);
    assert.notEqual(now.file, old.file);
    assert.equal(r.disks[0]!.replaced, old.file);
    assert.equal(l.array.statPath('/memory/array1/ds-a/web01/web01_0.vmdk')?.type, 'file');
  });

  it('the add fails after the remove: the undo gives the VM its own disk back', async () => {
    const { l, backupId } = await backedUp();
    const before = await world(l);
    let calls = 0;
    const original = l.vc.reconfigureDisks.bind(l.vc);
    l.vc.reconfigureDisks = (...args) => {
      if (++calls === 2) l.vc.failNext('reconfigureDisks');
      return original(...args);
    };
    await assert.rejects(runRestore(l.ctx, replace(backupId)), /restore failed/);
    assert.deepEqual(await world(l), before);
  });

  for (const point of ['restore-disks-removed', 'restore-vm-reconfigured']) {
    it(`stopped at ${point}: recover gives the VM its own disk back`, async () => {
      const { l, backupId } = await backedUp();
      const before = await world(l);
      await crashedAt(l, point, (ctx) => runRestore(ctx, replace(backupId)));
      const report = await recover(l.context(LATER));
      assert.deepEqual(report.errors, []);
      assert.deepEqual(await world(l), before);
    });
  }
});

describe('restore on the fakes from a copying array', () => {
  const copying = async () => backUpWeb01(await startLab(SPEC, { instantClone: false }), 'ASIS');

  it('copies the disks (not cloned), byte for byte', async () => {
    const { l, backupId } = await copying();
    const r = await runRestore(l.ctx, { backupId, vm: 'web01', as: 'web01-r' });
    assert.equal(r.cloned, false);
    assert.ok(r.bytes >= 2 * 8192, `copied ${r.bytes} bytes`);
    const source = l.vc.vm('web01')!.disks;
    for (const [i, d] of r.disks.entries()) assertBytes(l, d.path, source[i]!.file);
  });

  it('an abort while copying undoes everything placed so far', async () => {
    const { l, backupId } = await copying();
    const before = await world(l);
    const abort = new AbortController();
    let calls = 0;
    const original = l.array.restoreFile.bind(l.array);
    l.array.restoreFile = (...args) => {
      // The second extent is being copied when the user presses Ctrl-C.
      if (++calls === 2) abort.abort(new Error('interrupted by the user'));
      return original(...args);
    };
    await assert.rejects(
      runRestore(l.ctx, { backupId, vm: 'web01', as: 'web01-r', signal: abort.signal }),
      /interrupted by the user/,
    );
    assert.deepEqual(await world(l), before);
  });
});

describe('restore on the fakes: a failure at every step is undone', () => {
  const asNew = (backupId: string): RestoreRequest => ({
    backupId,
    vm: 'web01',
    as: 'web01-r',
    powerOn: true,
  });
  const vcFaults: [FaultableMethod, boolean][] = [
    ['createVm', false],
    ['createVm', true],
    ['powerOnVm', false],
    ['powerOnVm', true],
  ];
  for (const [method, after] of vcFaults) {
    it(`as new, ${method} fails ${after ? 'after its effect (lost answer)' : 'before its effect'}`, async () => {
      const { l, backupId } = await backedUp();
      await failsCleanly(
        l,
        asNew(backupId),
        () => l.vc.failNext(method, undefined, { after }),
        /restore failed/,
      );
    });
  }

  it('as new, restoreFile fails on the second disk: the first one placed is deleted', async () => {
    const { l, backupId } = await backedUp();
    let calls = 0;
    const original = l.array.restoreFile.bind(l.array);
    l.array.restoreFile = async (...args) => {
      if (++calls === 2) l.array.failNext('restoreFile');
      return original(...args);
    };
    await failsCleanly(l, asNew(backupId), () => {}, /ARRAY_FAULT_INJECTED|injected/i);
  });

  it('single disk into a VM, reconfigureDisks fails: the placed files are deleted, the VM unchanged', async () => {
    const { l, backupId } = await backedUp();
    await failsCleanly(
      l,
      { backupId, vm: 'web01', disks: ['Hard disk 1'], to: 'app01' },
      () => l.vc.failNext('reconfigureDisks', undefined, { after: true }),
      /restore failed/,
    );
  });

  const originalFaults: [FaultableMethod, boolean][] = [
    ['powerOffVm', false],
    ['unregisterVm', false],
    ['unregisterVm', true],
    ['createVm', false],
    ['createVm', true],
  ];
  for (const [method, after] of originalFaults) {
    it(`to the original place, ${method} fails${after ? ' after its effect' : ''}: the live VM is back as it was`, async () => {
      const { l, backupId } = await backedUp();
      await failsCleanly(
        l,
        { backupId, vm: 'web01', original: true, confirmed: true },
        () => l.vc.failNext(method, undefined, { after }),
        /restore failed/,
      );
      assert.equal(l.vc.vm('web01')!.powerState, 'poweredOn');
    });
  }
});

describe('recover on the fakes after a restore stopped at each crash point', () => {
  const cases: [string, string, (backupId: string) => RestoreRequest][] = [
    ['as new', 'restore-files-placed', (backupId) => ({ backupId, vm: 'web01', as: 'web01-r' })],
    ['as new', 'restore-vm-created', (backupId) => ({ backupId, vm: 'web01', as: 'web01-r' })],
    [
      'single disk',
      'restore-files-placed',
      (backupId) => ({ backupId, vm: 'web01', disks: ['Hard disk 1'], to: 'app01' }),
    ],
    [
      'single disk',
      'restore-vm-reconfigured',
      (backupId) => ({ backupId, vm: 'web01', disks: ['Hard disk 1'], to: 'app01' }),
    ],
    [
      'original',
      'restore-files-placed',
      (backupId) => ({ backupId, vm: 'web01', original: true, confirmed: true }),
    ],
    [
      'original',
      'restore-unregistered',
      (backupId) => ({ backupId, vm: 'web01', original: true, confirmed: true }),
    ],
    [
      'original',
      'restore-vm-created',
      (backupId) => ({ backupId, vm: 'web01', original: true, confirmed: true }),
    ],
  ];
  for (const [what, point, request] of cases) {
    it(`${what}, stopped at ${point}: recover leaves the world as before the restore`, async () => {
      const { l, backupId } = await backedUp();
      const before = await world(l);
      await crashedAt(l, point, (ctx) => runRestore(ctx, request(backupId)));
      const report = await recover(l.context(LATER));
      assert.deepEqual(report.errors, []);
      assert.deepEqual(await world(l), before);
    });
  }
});
