import assert from 'node:assert/strict';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { openArray } from '../../src/arrays/index.js';
import { loadConfig } from '../../src/config/load.js';
import { canMountLoopBtrfs } from '../../src/lab/loop-btrfs.js';
import type { BackupRecord } from '../../src/model/backup.js';
import { BACKUP_MODES } from '../../src/model/modes.js';
import { runCli, runJson } from '../helpers/cli.js';
import { editConfig, standardSpec, startLab, type TestLab } from '../helpers/lab.js';
import { isRoot } from '../helpers/require.js';
import { assertClean, listFiles, type VmSnapshotState, vmStates } from '../helpers/state.js';

const EXPECTED_CONSISTENCY = {
  SNAPSHOT_INCL_MEM: 'running-state',
  SNAPSHOT_EXCL_MEM: 'file-system',
  SUSPEND: 'suspended',
  ASIS: 'crash',
} as const;

const btrfs = await canMountLoopBtrfs();
const needsSkip = !btrfs.ok && process.env.SNAPKEEPER_REQUIRE_ALL !== '1';

describe('backup modes on a btrfs lab', {
  skip: needsSkip ? `btrfs lab unavailable: ${btrfs.reason}` : false,
}, () => {
  let lab: TestLab;
  let before0: Record<string, VmSnapshotState>;

  before(async () => {
    assert.ok(isRoot && btrfs.ok, `btrfs lab required (SNAPKEEPER_REQUIRE_ALL=1): ${btrfs.reason}`);
    lab = await startLab(await standardSpec(), { btrfs: true });
    // A second task that is followed by an offload: the RDM rule must keep its requested mode.
    await editConfig(lab.configPath, (doc) => {
      doc.tasks.push({
        name: 'with-offload',
        select: { vms: ['db01', 'web01'] },
        offload: { repository: 'offsite' },
      });
      doc.repositories = [
        { name: 'offsite', type: 'local', path: 'offsite-repo', passphraseFile: 'offsite.passphrase' },
      ];
    });
    await writeFile(join(lab.dir, 'offsite.passphrase'), 'offsite passphrase\n', { mode: 0o600 });
    const init = await runJson(lab.configPath, 'repo', 'init', '--repository', 'offsite');
    assert.equal(init.code, 0, init.stdout + init.stderr);
    before0 = await vmStates(loadConfig(lab.configPath));
  });
  after(async () => {
    await lab?.stop();
  });

  for (const mode of BACKUP_MODES) {
    it(`${mode}: modes, RDM rule, VM snapshot inside the array snapshot, VMs released`, async () => {
      const run = await runJson(lab.configPath, 'backup', '--task', 'lab-all', '--mode', mode);
      const record = run.json as BackupRecord;
      assert.equal(record.state, 'complete', run.stdout + run.stderr);
      const vm = (name: string) => record.vms.find((v) => v.name === name)!;

      // Powered-on VM without RDM: the requested mode, its consistency.
      assert.equal(vm('web01').effectiveMode, mode);
      assert.equal(vm('web01').consistency, EXPECTED_CONSISTENCY[mode]);
      assert.equal(
        vm('web01').quiesce !== undefined,
        mode !== 'ASIS',
        'held VMs, and only they, have a quiesce window',
      );
      assert.equal(vm('off01').quiesce, undefined);

      // RDM VM: SNAPSHOT modes fall back to ASIS with a warning; SUSPEND and ASIS are never changed.
      const db = vm('db01');
      const snapshotMode = mode === 'SNAPSHOT_INCL_MEM' || mode === 'SNAPSHOT_EXCL_MEM';
      assert.equal(db.requestedMode, mode);
      assert.equal(db.effectiveMode, snapshotMode ? 'ASIS' : mode);
      const rdmWarnings = db.warnings.filter((w) => w.code === 'MODE_CHANGED_RDM');
      assert.equal(rdmWarnings.length, snapshotMode ? 1 : 0);
      if (snapshotMode) {
        assert.match(rdmWarnings[0]!.message, /db01/);
        assert.match(rdmWarnings[0]!.message, new RegExp(mode));
        assert.match(rdmWarnings[0]!.message, /ASIS/);
      }
      assert.equal(run.code, snapshotMode ? 1 : 0, 'exit 1 exactly when completed with warnings');
      const rdmDisks = db.disks.filter((d) => d.kind === 'rdm-physical' || d.kind === 'rdm-virtual');
      assert.deepEqual(rdmDisks.map((d) => d.kind).sort(), ['rdm-physical', 'rdm-virtual']);
      assert.ok(rdmDisks.every((d) => d.included === false));
      assert.ok(db.disks.filter((d) => d.kind === 'flat').every((d) => d.included));

      // Independent disks are captured; VM snapshots do not cover them, so they are crash consistent
      // unless the whole VM is held still (suspended).
      const indep = vm('app01').disks.find((d) => d.kind === 'independent')!;
      assert.equal(indep.included, true);
      assert.equal(indep.consistency, mode === 'SUSPEND' ? 'suspended' : 'crash');

      // Powered-off and suspended VMs need nothing.
      assert.equal(vm('off01').consistency, 'powered-off');
      assert.equal(vm('susp01').consistency, 'suspended');

      // One atomic snapshot of the group, containing the VM snapshot file exactly for SNAPSHOT modes.
      assert.equal(record.snapshots.length, 1);
      const snap = record.snapshots[0]!;
      assert.equal(snap.pointInTime, 'atomic');
      assert.deepEqual([...snap.volumes].sort(), ['ds-a', 'ds-b']);
      const config = loadConfig(lab.configPath);
      const array = await openArray(config.arrays[0]!);
      const webHome = join(await array.snapshotVolumePath(snap.snapshotId, 'ds-a'), 'web01');
      const inSnapshot = (await listFiles(webHome)).filter((f) => f.endsWith('.vmsn'));
      assert.equal(
        inSnapshot.length,
        snapshotMode ? 1 : 0,
        `VM snapshot files in the array snapshot: ${inSnapshot}`,
      );
      const live = (
        await listFiles(join((await array.listVolumes()).find((v) => v.name === 'ds-a')!.path, 'web01'))
      ).filter((f) => f.endsWith('.vmsn'));
      assert.deepEqual(live, [], 'the VM snapshot is gone from the live datastore');

      // The catalog has the same record, and every VM is back as it was.
      const shown = await runJson(lab.configPath, 'inquire', '--backup', record.id);
      assert.equal(shown.code, 0);
      const { copies, ...stored } = shown.json;
      assert.deepEqual(stored, record);
      assert.deepEqual(copies, [
        {
          kind: 'array',
          present: true,
          snapshots: [{ array: record.snapshots[0]!.array, snapshotId: record.snapshots[0]!.snapshotId }],
        },
      ]);
      await assertClean(lab.configPath, before0);
    });
  }

  it('keeps the requested SNAPSHOT mode for an RDM VM when the task is followed by an offload', async () => {
    const run = await runJson(
      lab.configPath,
      'backup',
      '--task',
      'with-offload',
      '--mode',
      'SNAPSHOT_EXCL_MEM',
    );
    const record = run.json as BackupRecord;
    assert.equal(record.state, 'complete', run.stdout + run.stderr);
    const db = record.vms.find((v) => v.name === 'db01')!;
    assert.equal(db.effectiveMode, 'SNAPSHOT_EXCL_MEM');
    assert.equal(db.warnings.length, 0);
    assert.ok(db.disks.filter((d) => d.kind.startsWith('rdm')).every((d) => !d.included));
    assert.equal(run.code, 0, run.stdout + run.stderr);
    assert.deepEqual(record.vms.map((v) => v.name).sort(), ['db01', 'web01']);
    // The task's offload ran after the backup: base disks at VM-snapshot time, the RDM listed as excluded.
    const offload = run.json.offload;
    assert.equal(offload.repository, 'offsite');
    const dbCopy = offload.result.vms.find((v: { name: string }) => v.name === 'db01');
    assert.equal(dbCopy.image, 'base-disks');
    assert.deepEqual(
      dbCopy.excludedDisks.map((d: { reason: string }) => d.reason),
      ['rdm', 'rdm'],
    );
    await assertClean(lab.configPath, before0);
  });

  it('lists backups with inquire filters', async () => {
    const all = await runJson(lab.configPath, 'inquire');
    assert.equal(all.code, 0);
    assert.equal((all.json as BackupRecord[]).length, BACKUP_MODES.length + 1);
    const offload = await runJson(lab.configPath, 'inquire', '--task', 'with-offload');
    assert.equal((offload.json as BackupRecord[]).length, 1);
    const byVm = await runJson(lab.configPath, 'inquire', '--vm', 'app*');
    assert.equal((byVm.json as BackupRecord[]).length, BACKUP_MODES.length);
    const text = await runCli(['--config', lab.configPath, 'inquire']);
    assert.match(text.stdout, /lab-all/);
    const bad = await runCli(['--config', lab.configPath, 'inquire', '--state', 'nonsense']);
    assert.equal(bad.code, 3);
    assert.match(bad.stderr, /--state/);
    const missing = await runCli(['--config', lab.configPath, 'inquire', '--backup', 'no-such-backup']);
    assert.equal(missing.code, 3);
  });

  it('never writes the vCenter password into the catalog or the output', async () => {
    const config = loadConfig(lab.configPath);
    const password = config.vcenter.password.reveal();
    assert.ok(password.length >= 8);
    const run = await runJson(lab.configPath, 'backup', '--task', 'lab-all', '--mode', 'SUSPEND');
    assert.ok(!run.stdout.includes(password) && !run.stderr.includes(password));
    for (const suffix of ['', '-wal']) {
      const bytes = await readFile(`${config.catalog.path}${suffix}`).catch(() => Buffer.alloc(0));
      assert.equal(bytes.includes(password), false, `catalog${suffix} holds no password`);
    }
  });

  it('refuses a selection that matches nothing, changing nothing', async () => {
    const run = await runJson(lab.configPath, 'backup', '--vm', 'no-such-vm*');
    assert.equal(run.code, 3);
    assert.equal(run.json.error.code, 'SELECTION_EMPTY');
    const all = await runJson(lab.configPath, 'inquire');
    assert.equal((all.json as BackupRecord[]).length, BACKUP_MODES.length + 2);
  });
});
