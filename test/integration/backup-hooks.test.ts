import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { loadConfig } from '../../src/config/load.js';
import { vmSnapshotName } from '../../src/engine/ids.js';
import { groupAlive } from '../../src/engine/steps/hooks.js';
import type { BackupRecord } from '../../src/model/backup.js';
import { catalogIdOf, newestBackup, withCatalog } from '../helpers/catalog.js';
import { runCli, runJson } from '../helpers/cli.js';
import { editConfig, standardSpec, startLab, type TestLab } from '../helpers/lab.js';
import { assertClean, type VmSnapshotState, vmStates } from '../helpers/state.js';

/** A hook that appends its phase, backup id and VMs to `log`, then runs `script`. */
function hook(phase: string, log: string, script: string, more: Record<string, unknown> = {}) {
  return {
    phase,
    run: [
      '/bin/sh',
      '-c',
      `echo "$SNAPKEEPER_PHASE $SNAPKEEPER_BACKUP_ID $SNAPKEEPER_VMS" >> '${log}'; ${script}`,
    ],
    ...more,
  };
}

describe('backup hooks through the CLI on the lab', () => {
  let lab: TestLab;
  let clean: Record<string, VmSnapshotState>;
  let log: string;

  before(async () => {
    lab = await startLab(await standardSpec());
    log = join(lab.dir, 'hooks.log');
    await editConfig(lab.configPath, (doc) => {
      doc.tasks = [
        {
          name: 'hooked',
          select: { vms: ['web01'] },
          hooks: [
            hook('before-prepare', log, 'echo flushing'),
            hook('after-snapshot', log, 'true'),
            hook('after-release', log, 'echo thawed'),
            hook('on-failure', log, 'true'),
          ],
        },
        {
          name: 'refused',
          select: { vms: ['web01'] },
          hooks: [hook('before-prepare', log, 'echo no-flush >&2; exit 9'), hook('on-failure', log, 'true')],
        },
        {
          name: 'crashing',
          select: { vms: ['web01'] },
          hooks: [hook('after-snapshot', log, 'sleep 300', { timeoutSeconds: 600 })],
        },
      ];
    });
    clean = await vmStates(loadConfig(lab.configPath));
  });
  after(async () => {
    await lab?.stop();
  });

  function phasesLogged(id: string): string[] {
    return readFileSync(log, 'utf8')
      .trim()
      .split('\n')
      .filter((line) => line.includes(id))
      .map((line) => line.split(' ')[0]!);
  }

  it('runs a hook per phase and records them', async () => {
    const run = await runJson(lab.configPath, 'backup', '--task', 'hooked');
    assert.equal(run.code, 0, run.stdout + run.stderr);
    const record = run.json as BackupRecord;
    assert.equal(record.state, 'complete');
    assert.deepEqual(phasesLogged(record.id), ['before-prepare', 'after-snapshot', 'after-release']);
    assert.deepEqual(
      record.hooks?.map((h) => [h.phase, h.exitCode, h.output]),
      [
        ['before-prepare', 0, 'flushing\n'],
        ['after-snapshot', 0, ''],
        ['after-release', 0, 'thawed\n'],
      ],
    );
    assert.ok(readFileSync(log, 'utf8').includes(`${record.id} ["web01"]`), 'the VMs are passed as JSON');

    const shown = await runCli(['--config', lab.configPath, 'inquire', '--backup', record.id]);
    assert.equal(shown.code, 0, shown.stderr);
    assert.match(shown.stdout, /^hooks:$/m);
    assert.match(shown.stdout, /^ {2}after-release: \/bin\/sh -c .* ok \(exit 0\)$/m);
    await assertClean(lab.configPath, clean);
  });

  it('a failing before-prepare hook stops the run before web01 is touched', async () => {
    const run = await runJson(lab.configPath, 'backup', '--task', 'refused');
    assert.equal(run.code, 2, run.stdout + run.stderr);
    const record = run.json as BackupRecord;
    assert.equal(record.state, 'failed');
    assert.match(record.error ?? '', /before-prepare hook "\/bin\/sh" failed: exited with code 9/);
    assert.deepEqual(phasesLogged(record.id), ['before-prepare', 'on-failure']);
    assert.match(record.hooks?.[0]?.output ?? '', /no-flush/);
    assert.deepEqual(record.snapshots, []);
    await withCatalog(loadConfig(lab.configPath).catalog.path, async (c) => {
      const held = (await c.journalEntries(record.id)).filter((e) => e.action === 'vm-snapshot');
      assert.deepEqual(held, [], 'no VM snapshot was even intended');
    });
    await assertClean(lab.configPath, clean);
  });

  it('refuses a malformed hook with exit 3, naming it', async () => {
    const bad = await editConfig(
      lab.configPath,
      (doc) => {
        doc.tasks[0].hooks[0].phase = 'before-everything';
      },
      join(lab.dir, 'bad-hooks.yaml'),
    );
    const run = await runJson(bad, 'backup', '--task', 'hooked');
    assert.equal(run.code, 3, run.stdout + run.stderr);
    assert.equal(run.json.error.code, 'CONFIG_INVALID');
    assert.match(run.json.error.message, /tasks\[0\]\.hooks\[0\]\.phase \(task hooked\)/);
    await assertClean(lab.configPath, clean);
  });

  it('SIGKILL while an after-snapshot hook runs: recover kills the hook and releases web01', async () => {
    const config = loadConfig(lab.configPath);
    const run = await runCli(['--config', lab.configPath, 'backup', '--task', 'crashing'], {
      env: { SNAPKEEPER_CRASH_AT: 'hook-after-snapshot' },
    });
    assert.equal(run.signal, 'SIGKILL', run.stderr);
    const crashed = await newestBackup(config.catalog.path);
    assert.equal(crashed.state, 'running');
    const entry = await withCatalog(config.catalog.path, async (c) =>
      (await c.journalEntries(crashed.id)).find((e) => e.action === 'hook.run'),
    );
    const pgid = Number(entry?.data.pgid);
    assert.ok(pgid > 0, 'the hook was journaled with its process group');
    assert.equal(groupAlive(pgid), true, 'the hook outlived the killed snapkeeper');
    assert.deepEqual((await vmStates(config)).web01?.snapshots, [
      vmSnapshotName(crashed.id, await catalogIdOf(config.catalog.path)),
    ]);

    const rec = await runJson(lab.configPath, 'recover');
    assert.equal(rec.code, 0, rec.stdout + rec.stderr);
    assert.ok(
      rec.json.actions.some((a: string) => a.includes(`process group ${pgid}`)),
      JSON.stringify(rec.json.actions),
    );
    assert.equal(groupAlive(pgid), false, 'the hook is gone');
    assert.equal((await newestBackup(config.catalog.path)).state, 'failed');
    await assertClean(lab.configPath, clean);

    const again = await runJson(lab.configPath, 'recover');
    assert.equal(again.code, 0);
    assert.deepEqual(again.json.operations, []);
    assert.deepEqual(again.json.actions, []);
  });
});
