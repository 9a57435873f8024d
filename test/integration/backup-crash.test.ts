import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { after, before, describe, it } from 'node:test';
import { Catalog } from '../../src/catalog/index.js';
import { loadConfig } from '../../src/config/load.js';
import type { BackupRecord } from '../../src/model/backup.js';
import { runCli } from '../helpers/cli.js';
import { startLab, type TestLab } from '../helpers/lab.js';
import { arraySnapshots, assertClean, type VmSnapshotState, vmStates } from '../helpers/state.js';

const STANDARD = new URL('../../../test/fixtures/lab/standard.json', import.meta.url);

/** Where the process kills itself (SNAPKEEPER_CRASH_AT), and what must be visible right after. */
const POINTS = [
  { point: 'prepared', vmsHeld: true, snapshot: false, recordState: 'running' },
  { point: 'array-snapshot', vmsHeld: true, snapshot: false, recordState: 'running' },
  { point: 'snapshotted', vmsHeld: true, snapshot: true, recordState: 'running' },
  { point: 'released', vmsHeld: false, snapshot: true, recordState: 'running' },
  { point: 'recorded', vmsHeld: false, snapshot: true, recordState: 'complete' },
] as const;

describe('SIGKILL in every phase, then recover', () => {
  let lab: TestLab;
  let clean: Record<string, VmSnapshotState>;

  before(async () => {
    lab = await startLab(JSON.parse(await readFile(STANDARD, 'utf8')));
    clean = await vmStates(loadConfig(lab.configPath));
  });
  after(async () => {
    await lab?.stop();
  });

  for (const mode of ['SUSPEND', 'SNAPSHOT_EXCL_MEM'] as const) {
    for (const p of POINTS) {
      it(`${mode}, killed at ${p.point}: recover leaves no held VM, stray snapshot or orphan`, async () => {
        const config = loadConfig(lab.configPath);
        const backupsBefore = countBackups(config.catalog.path);
        const run = await runCli(
          ['--config', lab.configPath, '--json', 'backup', '--vm', 'web01', 'app01', '--mode', mode],
          {
            env: { SNAPKEEPER_CRASH_AT: p.point },
          },
        );
        assert.equal(run.signal, 'SIGKILL', `the run was killed at ${p.point}: ${run.stderr}`);

        // The crash really left the state of that phase behind.
        const id = newestBackup(config.catalog.path);
        assert.equal(countBackups(config.catalog.path), backupsBefore + 1);
        assert.equal(id.state, p.recordState);
        const states = await vmStates(config);
        if (p.vmsHeld) {
          if (mode === 'SUSPEND') assert.equal(states.web01!.powerState, 'suspended');
          else assert.deepEqual(states.web01!.snapshots, [`snapkeeper-${id.id}`]);
        } else {
          assert.deepEqual(states, clean);
        }
        const snaps = (await arraySnapshots(config)).filter((s) => s.label === id.id);
        assert.equal(snaps.length, p.snapshot ? 1 : 0);

        const rec = await runCli(['--config', lab.configPath, '--json', 'recover']);
        assert.equal(rec.code, 0, rec.stdout + rec.stderr);
        assert.deepEqual(
          rec.json.operations.map((o: { id: string }) => o.id),
          [id.id],
        );
        const after = newestBackup(config.catalog.path);
        assert.equal(after.state, p.recordState === 'complete' ? 'complete' : 'failed');
        await assertClean(lab.configPath, clean);

        // Recover is idempotent.
        const again = await runCli(['--config', lab.configPath, '--json', 'recover']);
        assert.equal(again.code, 0);
        assert.equal(again.json.operations.length, 0);
        assert.equal(again.json.removedVmSnapshots.length, 0);
        assert.equal(again.json.deletedArraySnapshots.length, 0);
      });
    }
  }

  it('the next backup repairs a crashed one before it starts', async () => {
    const config = loadConfig(lab.configPath);
    const crashed = await runCli(
      ['--config', lab.configPath, 'backup', '--vm', 'web01', '--mode', 'SUSPEND'],
      {
        env: { SNAPKEEPER_CRASH_AT: 'snapshotted' },
      },
    );
    assert.equal(crashed.signal, 'SIGKILL');
    const crashedId = newestBackup(config.catalog.path).id;
    assert.equal((await vmStates(config)).web01!.powerState, 'suspended');

    const next = await runCli([
      '--config',
      lab.configPath,
      '--json',
      'backup',
      '--vm',
      'web01',
      '--mode',
      'SUSPEND',
    ]);
    assert.equal(next.code, 0, next.stdout + next.stderr);
    assert.equal((next.json as BackupRecord).state, 'complete');
    const catalog = Catalog.open(config.catalog.path);
    try {
      assert.equal(catalog.getBackup(crashedId).state, 'failed');
    } finally {
      catalog.close();
    }
    await assertClean(lab.configPath, clean);
  });

  it('recover --dry-run reports and changes nothing', async () => {
    const config = loadConfig(lab.configPath);
    const crashed = await runCli(
      ['--config', lab.configPath, 'backup', '--vm', 'web01', '--mode', 'SNAPSHOT_EXCL_MEM'],
      {
        env: { SNAPKEEPER_CRASH_AT: 'snapshotted' },
      },
    );
    assert.equal(crashed.signal, 'SIGKILL');
    const held = await vmStates(config);
    const snapsBefore = await arraySnapshots(config);
    const dry = await runCli(['--config', lab.configPath, '--json', 'recover', '--dry-run']);
    assert.equal(dry.code, 0);
    assert.equal(dry.json.removedVmSnapshots.length, 1);
    assert.equal(dry.json.deletedArraySnapshots.length, 1);
    assert.deepEqual(await vmStates(config), held, 'dry run changed no VM');
    assert.deepEqual(await arraySnapshots(config), snapsBefore, 'dry run deleted no snapshot');
    const real = await runCli(['--config', lab.configPath, '--json', 'recover']);
    assert.equal(real.code, 0);
    await assertClean(lab.configPath, clean);
  });
});

function countBackups(catalogPath: string): number {
  const c = Catalog.open(catalogPath);
  try {
    return c.listBackups().length;
  } finally {
    c.close();
  }
}

function newestBackup(catalogPath: string): BackupRecord {
  const c = Catalog.open(catalogPath);
  try {
    return c.listBackups({ limit: 1 })[0]!;
  } finally {
    c.close();
  }
}
