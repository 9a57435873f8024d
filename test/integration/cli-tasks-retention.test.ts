import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import YAML from 'yaml';
import { layout } from '../../src/arrays/fs/layout.js';
import { loadConfig } from '../../src/config/load.js';
import { parseLabel } from '../../src/engine/ids.js';
import type { BackupRecord } from '../../src/model/backup.js';
import { execFile } from '../../src/util/exec.js';
import { runCli, runJson } from '../helpers/cli.js';
import { editConfig, standardSpec, startLab, type TestLab } from '../helpers/lab.js';
import { arraySnapshots, assertClean, type VmSnapshotState, vmStates } from '../helpers/state.js';

describe('tasks, retention, delete and init from the CLI', () => {
  let lab: TestLab;
  let clean: Record<string, VmSnapshotState>;
  const cli = (...args: string[]) => runJson(lab.configPath, ...args);

  before(async () => {
    lab = await startLab(await standardSpec());
    clean = await vmStates(loadConfig(lab.configPath));
  });
  after(async () => {
    await lab?.stop();
  });

  it('creates, shows, edits, runs and deletes a task stored in the catalog', async () => {
    const created = await cli(
      'task',
      'create',
      'web',
      '--vm',
      'web*',
      '--mode',
      'SUSPEND',
      '--keep-versions',
      '2',
    );
    assert.equal(created.code, 0, created.stdout + created.stderr);
    assert.deepEqual(created.json.select, { vms: ['web*'] });

    const dup = await cli('task', 'create', 'web', '--vm', 'x');
    assert.equal(dup.code, 3);
    assert.equal(dup.json.error.code, 'TASK_EXISTS');

    const listed = await cli('task', 'list');
    assert.deepEqual(
      listed.json.map((t: { name: string; source: string }) => [t.name, t.source]),
      [
        ['lab-all', 'config'],
        ['web', 'catalog'],
      ],
    );

    const edited = await cli('task', 'edit', 'web', '--vm', 'web01', 'app01', '--keep-days', '30');
    assert.equal(edited.code, 0, edited.stderr);
    assert.deepEqual(edited.json.select.vms, ['web01', 'app01']);
    assert.deepEqual(edited.json.retention, { versions: 2, days: 30 });
    assert.equal(edited.json.mode, 'SUSPEND');

    const shown = await cli('task', 'show', 'web');
    assert.equal(shown.json.source, 'catalog');

    const run = await cli('backup', '--task', 'web');
    assert.equal(run.code, 0, run.stdout + run.stderr);
    const record = run.json as BackupRecord;
    assert.equal(record.task, 'web');
    assert.deepEqual(record.vms.map((v) => v.name).sort(), ['app01', 'web01']);
    assert.ok(record.vms.every((v) => v.effectiveMode === 'SUSPEND'));

    const fromConfig = await cli('task', 'delete', 'lab-all');
    assert.equal(fromConfig.code, 3);
    assert.equal(fromConfig.json.error.code, 'TASK_READ_ONLY');
    const invalid = await cli('task', 'create', 'bad/name', '--vm', 'x');
    assert.equal(invalid.code, 3);
    const noSelection = await cli('task', 'create', 'empty');
    assert.equal(noSelection.code, 3);
    const badNumber = await cli('task', 'create', 'n', '--vm', 'x', '--keep-versions', '0');
    assert.equal(badNumber.code, 3);
    assert.match(badNumber.json.error.message, /--keep-versions/);

    const deleted = await cli('task', 'delete', 'web');
    assert.equal(deleted.code, 0);
    const gone = await cli('task', 'show', 'web');
    assert.equal(gone.code, 3);
    await assertClean(lab.configPath, clean);
  });

  it('selects VMs by cluster, host, datastore and datacenter, with exclusions', async () => {
    const cases: [string[], string[]][] = [
      [
        ['--cluster', 'Prod'],
        ['app01', 'db01', 'susp01', 'web01'],
      ],
      [['--host', 'esx-standalone'], ['off01']],
      [
        ['--datastore', 'ds-b'],
        ['app01', 'susp01', 'web01'],
      ],
      [
        ['--datacenter', 'DC1', '--exclude-vm', 'db*', 'susp01'],
        ['app01', 'off01', 'web01'],
      ],
    ];
    for (const [i, [flags, expected]] of cases.entries()) {
      const name = `sel${i}`;
      const created = await cli('task', 'create', name, ...flags, '--mode', 'ASIS');
      assert.equal(created.code, 0, created.stderr);
      const run = await cli('backup', '--task', name);
      // ASIS on the copy driver completes with NOT_POINT_IN_TIME warnings: exit 1.
      assert.equal((run.json as BackupRecord).state, 'complete', run.stdout + run.stderr);
      assert.deepEqual((run.json as BackupRecord).vms.map((v) => v.name).sort(), expected, flags.join(' '));
    }
    await assertClean(lab.configPath, clean);
  });

  it('keeps at most N versions: older backups and their array snapshots are expired after each run', async () => {
    const created = await cli('task', 'create', 'keep2', '--vm', 'off01', '--keep-versions', '2');
    assert.equal(created.code, 0, created.stderr);
    const ids: string[] = [];
    for (let i = 0; i < 3; i++) {
      const run = await cli('backup', '--task', 'keep2');
      assert.equal(run.code, 0, run.stdout + run.stderr);
      ids.push((run.json as BackupRecord).id);
    }
    const listed = await cli('inquire', '--task', 'keep2');
    assert.deepEqual(
      listed.json.map((b: BackupRecord) => b.id),
      [ids[2], ids[1]],
    );
    const labels = (await arraySnapshots(loadConfig(lab.configPath))).map(
      (s) => parseLabel(s.label)?.operationId,
    );
    assert.ok(!labels.includes(ids[0]!), 'the expired backup’s array snapshot is deleted');
    assert.ok(labels.includes(ids[1]!) && labels.includes(ids[2]!));
    await assertClean(lab.configPath, clean);
  });

  it('delete and expire have dry runs that change nothing', async () => {
    const run = await cli('backup', '--vm', 'off01');
    const id = (run.json as BackupRecord).id;
    const snapsBefore = await arraySnapshots(loadConfig(lab.configPath));

    const dry = await cli('delete', '--backup', id, '--dry-run');
    assert.equal(dry.code, 0);
    assert.equal(dry.json.deleted[0].id, id);
    assert.deepEqual(await arraySnapshots(loadConfig(lab.configPath)), snapsBefore);
    assert.equal((await cli('inquire', '--backup', id)).code, 0);

    // Ad-hoc backups follow the default retention: make it keep one, then look before leaping.
    await editConfig(lab.configPath, (doc) => {
      doc.defaults = { ...doc.defaults, retention: { versions: 1 } };
    });
    const second = await cli('backup', '--vm', 'off01');
    assert.equal(second.code, 0);
    const secondId = (second.json as BackupRecord).id;
    const afterSecond = await cli('inquire', '--task', 'adhoc');
    assert.deepEqual(
      afterSecond.json.map((b: BackupRecord) => b.id),
      [secondId],
      'retention after the run kept one ad-hoc backup',
    );
    await editConfig(lab.configPath, (doc) => {
      delete doc.defaults.retention;
    });

    const real = await cli('delete', '--backup', secondId);
    assert.equal(real.code, 0);
    assert.equal((await cli('inquire', '--backup', secondId)).code, 3);
    const labels = (await arraySnapshots(loadConfig(lab.configPath))).map(
      (s) => parseLabel(s.label)?.operationId,
    );
    assert.ok(!labels.includes(secondId));

    const expireDry = await cli('expire', '--dry-run');
    assert.equal(expireDry.code, 0);
    assert.equal(expireDry.json.dryRun, true);
    await assertClean(lab.configPath, clean);
  });

  it('ad-hoc backups keep their versions per set of VMs; expire --task adhoc applies the default retention', async () => {
    const doc = YAML.parse(await readFile(lab.configPath, 'utf8'));
    const original = structuredClone(doc);
    doc.defaults = { ...doc.defaults, retention: { versions: 1 } };
    await writeFile(lab.configPath, YAML.stringify(doc));
    try {
      const ids: Record<string, string> = {};
      for (const vms of [['off01'], ['susp01'], ['off01', 'susp01'], ['off01']]) {
        const run = await cli('backup', '--vm', ...vms);
        assert.equal((run.json as BackupRecord).state, 'complete', run.stdout + run.stderr);
        ids[vms.join('+')] = (run.json as BackupRecord).id;
      }
      // The last off01 backup expired the first one, but not the only backup of susp01 nor of both.
      const listed = await cli('inquire', '--task', 'adhoc');
      assert.deepEqual(
        listed.json.map((b: BackupRecord) => b.id).sort(),
        [ids.off01, ids.susp01, ids['off01+susp01']].sort(),
      );

      // Both with a retention of one version per set: nothing more to expire.
      const expired = await cli('expire', '--task', 'adhoc');
      assert.equal(expired.code, 0, expired.stdout + expired.stderr);
      assert.deepEqual(expired.json.deleted, []);
      // A third susp01 backup made outside retention (days only) is expired by `expire --task adhoc`.
      doc.defaults.retention = { days: 365 };
      await writeFile(lab.configPath, YAML.stringify(doc));
      const extra = await cli('backup', '--vm', 'susp01');
      assert.equal(extra.code, 0, extra.stdout + extra.stderr);
      doc.defaults.retention = { versions: 1 };
      await writeFile(lab.configPath, YAML.stringify(doc));
      const again = await cli('expire', '--task', 'adhoc');
      assert.equal(again.code, 0, again.stdout + again.stderr);
      assert.deepEqual(
        again.json.deleted.map((d: { id: string }) => d.id),
        [ids.susp01],
      );

      const unknown = await cli('expire', '--task', 'NOSUCH');
      assert.equal(unknown.code, 3);
      assert.equal(unknown.json.error.code, 'TASK_NOT_FOUND');
    } finally {
      await writeFile(lab.configPath, YAML.stringify(original));
    }
    await assertClean(lab.configPath, clean);
  });

  it('a retention error after a backup is a warning of the run (EXPIRE_FAILED), exit 1', async () => {
    const config = loadConfig(lab.configPath);
    const created = await cli('task', 'create', 'keep1', '--vm', 'off01', '--keep-versions', '1');
    assert.equal(created.code, 0, created.stderr);
    const first = await cli('backup', '--task', 'keep1');
    assert.equal(first.code, 0, first.stdout + first.stderr);
    const firstRecord = first.json as BackupRecord;
    const dir = layout.snapshot(config.arrays[0]!.path, firstRecord.snapshots[0]!.snapshotId);
    // Immutable: the array cannot delete the expired backup's snapshot.
    await execFile('chattr', ['+i', dir]);
    let second: Awaited<ReturnType<typeof cli>>;
    try {
      second = await cli('backup', '--task', 'keep1');
    } finally {
      await execFile('chattr', ['-i', dir]);
    }
    const record = second.json as BackupRecord;
    assert.equal(record.state, 'complete', second.stdout + second.stderr);
    const expireFailed = record.warnings.filter((w) => w.code === 'EXPIRE_FAILED');
    assert.equal(expireFailed.length, 1);
    assert.match(expireFailed[0]!.message, new RegExp(firstRecord.id));
    assert.equal(second.code, 1);
    // The record went first; recover deletes the snapshot it left.
    const rec = await cli('recover');
    assert.equal(rec.code, 0, rec.stdout + rec.stderr);
    assert.equal((await cli('task', 'delete', 'keep1')).code, 0);
    await assertClean(lab.configPath, clean);
  });

  it('the task name adhoc is reserved, in the catalog and in the configuration file', async () => {
    const created = await cli('task', 'create', 'adhoc', '--vm', 'off01');
    assert.equal(created.code, 3, created.stdout + created.stderr);
    assert.match(created.json.error.message, /reserved/);
    const bad = join(lab.dir, 'adhoc-task.yaml');
    await editConfig(
      lab.configPath,
      (doc) => {
        doc.tasks = [{ name: 'adhoc', select: { vms: ['off01'] } }];
      },
      bad,
    );
    const run = await runCli(['--config', bad, 'task', 'list']);
    assert.equal(run.code, 3);
    assert.match(run.stderr, /tasks\[0\]\.name/);
    assert.match(run.stderr, /reserved/);
  });

  it('refuses contradictory options with exit 3; --json --version is JSON', async () => {
    const both = await cli('backup', '--task', 'lab-all', '--vm', 'off01');
    assert.equal(both.code, 3);
    assert.match(both.json.error.message, /--task/);
    assert.match(both.json.error.message, /--vm/);
    const backups = await cli('inquire');
    const id = backups.json[0]?.id ?? '20200101-000000-abcdef';
    const filtered = await cli('inquire', '--backup', id, '--task', 'lab-all');
    assert.equal(filtered.code, 3);
    assert.match(filtered.json.error.message, /--task/);
    const version = await runCli(['--json', '--version']);
    assert.equal(version.code, 0);
    assert.equal(typeof version.json.version, 'string');
    assert.deepEqual(Object.keys(version.json), ['version']);
    const plain = await runCli(['--version']);
    assert.match(plain.stdout, /^\d+\.\d+\.\d+/);
  });

  it('init writes a working configuration, pinning the certificate; refuses to overwrite', async () => {
    const out = join(lab.dir, 'init.yaml');
    const labConfig = loadConfig(lab.configPath);
    const args = [
      '--json',
      'init',
      '--url',
      lab.state.url,
      '--user',
      labConfig.vcenter.user,
      '--password-file',
      lab.state.passwordFile,
      '--trust-server-certificate',
      '--array-path',
      labConfig.arrays[0]!.path,
      '--array-name',
      'lab',
      '--mode',
      'SUSPEND',
      '--output',
      out,
    ];
    const run = await runCli(args);
    assert.equal(run.code, 0, run.stdout + run.stderr);
    assert.deepEqual(
      run.json.datastores.map((d: { name: string; volumes: string[] }) => [d.name, d.volumes]),
      [
        ['ds-a', ['ds-a']],
        ['ds-b', ['ds-b']],
      ],
    );
    const written = loadConfig(out);
    assert.equal(written.vcenter.thumbprint, lab.state.thumbprint);
    assert.equal(written.defaults.mode, 'SUSPEND');
    const text = await readFile(out, 'utf8');
    assert.doesNotMatch(
      text,
      new RegExp(labConfig.vcenter.password.reveal()),
      'the password is not in the file',
    );
    const inv = await runJson(out, 'inventory');
    assert.equal(inv.code, 0, inv.stderr);

    const again = await runCli(args);
    assert.equal(again.code, 3);
    assert.equal(again.json.error.code, 'CONFIG_EXISTS');

    const wrong = join(lab.dir, 'wrong.password');
    await writeFile(wrong, 'not-the-password');
    const other = join(lab.dir, 'init2.yaml');
    const refused = await runCli(
      args.map((a) => (a === lab.state.passwordFile ? wrong : a === out ? other : a)),
    );
    assert.equal(refused.code, 3);
    assert.equal(refused.json.error.code, 'VCENTER_LOGIN_FAILED');
    assert.equal(existsSync(other), false, 'nothing written when the connection test fails');
  });

  it('a malformed configuration is one message naming the file and the path, exit 3', async () => {
    const bad = join(lab.dir, 'bad.yaml');
    await editConfig(
      lab.configPath,
      (doc) => {
        doc.defaults = { mode: 'SNAPSHOT_WITH_MAGIC' };
        doc.tasks = [{ name: 't', select: { vms: ['x'] }, colour: 'blue' }];
      },
      bad,
    );
    const run = await runCli(['--config', bad, 'task', 'list']);
    assert.equal(run.code, 3);
    assert.match(run.stderr, new RegExp(bad.replaceAll('/', '\\/')));
    assert.match(run.stderr, /defaults\.mode/);
    assert.match(run.stderr, /tasks\[0\]/);
    assert.doesNotMatch(run.stderr, /\n\s+at /);
    const missing = await runCli(['--config', join(lab.dir, 'nope.yaml'), 'task', 'list']);
    assert.equal(missing.code, 3);
    assert.match(missing.stderr, /does not exist/);
  });
});
