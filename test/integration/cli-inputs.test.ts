import assert from 'node:assert/strict';
import { chmod, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, beforeEach, describe, it } from 'node:test';
import { loadConfig } from '../../src/config/load.js';
import { el } from '../../src/vsphere/xml.js';
import { runCli, runJson } from '../helpers/cli.js';
import { type FaultProxy, startFaultProxy } from '../helpers/fault-proxy.js';
import { editConfig, standardSpec, startLab, type TestLab } from '../helpers/lab.js';
import { arraySnapshots, type VmSnapshotState, vmStates, withVcenter } from '../helpers/state.js';

/** Issue 7 section 2 against the lab: every input checked, before anything is touched. */
describe('inputs checked by the CLI against the lab', () => {
  let lab: TestLab;
  let proxy: FaultProxy;
  let clean: Record<string, VmSnapshotState>;
  const cli = (...args: string[]) => runJson(lab.configPath, ...args);

  /** A copy of the lab's configuration with other vCenter settings, written next to it. */
  async function configWith(name: string, vcenter: Record<string, unknown>): Promise<string> {
    return editConfig(
      lab.configPath,
      (doc) => {
        doc.vcenter = { ...doc.vcenter, ...vcenter };
        if (vcenter.passwordEnv !== undefined) delete doc.vcenter.passwordFile;
        if (vcenter.url !== undefined) delete doc.vcenter.thumbprint;
      },
      join(lab.dir, name),
    );
  }

  before(async () => {
    lab = await startLab(await standardSpec());
    proxy = await startFaultProxy(lab.state.url);
    clean = await vmStates(loadConfig(lab.configPath));
  });
  after(async () => {
    await proxy?.close();
    await lab?.stop();
  });
  beforeEach(() => proxy.reset());

  it('backup --vm with a name matching no VM is refused (exit 3, naming it) and touches nothing', async () => {
    const run = await cli('backup', '--vm', 'web01', 'webO1-typo');
    assert.equal(run.code, 3, run.stdout + run.stderr);
    assert.equal(run.json.error.code, 'SELECTION_UNMATCHED');
    assert.match(run.json.error.message, /webO1-typo/);
    assert.doesNotMatch(run.json.error.message, /web01[,;]/);
    assert.deepEqual(run.json.error.details.unmatched, [{ criterion: 'vms', pattern: 'webO1-typo' }]);
    assert.deepEqual((await cli('inquire')).json, []);
    assert.deepEqual(await arraySnapshots(loadConfig(lab.configPath)), []);
    assert.deepEqual(await vmStates(loadConfig(lab.configPath)), clean);

    const glob = await runCli(['--config', lab.configPath, 'backup', '--vm', 'web01', 'zz*']);
    assert.equal(glob.code, 3);
    assert.match(glob.stderr, /no VM matches vms zz\*/);
    // Nothing at all selected keeps its own code, and names what matched nothing too.
    const none = await runCli(['--config', lab.configPath, 'backup', '--vm', 'zz*']);
    assert.equal(none.code, 3);
    assert.match(none.stderr, /matches no VM .*; no VM matches vms zz\*/);
  });

  it('a task naming a VM that no longer exists backs up the rest with a warning (exit 1)', async () => {
    const created = await cli('task', 'create', 'nightly', '--vm', 'web01', 'gone01', '--mode', 'ASIS');
    assert.equal(created.code, 0, created.stdout + created.stderr);
    const run = await cli('backup', '--task', 'nightly');
    assert.equal(run.code, 1, run.stdout + run.stderr);
    assert.equal(run.json.state, 'complete');
    assert.deepEqual(
      run.json.vms.map((v: { name: string }) => v.name),
      ['web01'],
    );
    const warning = run.json.warnings.find((w: { code: string }) => w.code === 'SELECTION_UNMATCHED');
    assert.ok(warning, JSON.stringify(run.json.warnings));
    assert.match(warning.message, /nightly.*vms gone01/);
    // The warning is part of the record, not only of this output.
    const stored = await cli('inquire', '--backup', run.json.id);
    assert.ok(stored.json.warnings.some((w: { code: string }) => w.code === 'SELECTION_UNMATCHED'));
  });

  it('inventory --vm with a glob matching no VM is refused, like backup --vm', async () => {
    const run = await cli('inventory', '--vm', 'nothing-like-this*');
    assert.equal(run.code, 3);
    assert.equal(run.json.error.code, 'SELECTION_UNMATCHED');
  });

  for (const [title, content] of [
    ['empty', ''],
    ['whitespace-only', '  \n'],
  ] as const) {
    it(`a password file that is ${title} is a config error and vCenter sees no login`, async () => {
      const pw = join(lab.dir, `pw-${title}`);
      await writeFile(pw, content, { mode: 0o600 });
      const config = await configWith(`${title}.yaml`, { url: proxy.url, passwordFile: pw });
      const run = await runJson(config, 'inventory');
      assert.equal(run.code, 3, run.stdout + run.stderr);
      assert.equal(run.json.error.code, 'CONFIG_INVALID');
      assert.match(run.json.error.message, /vcenter\.passwordFile: .* is empty/);
      assert.deepEqual(proxy.methods(), []);
    });
  }

  it('a whitespace-only password variable is a config error and vCenter sees no login', async () => {
    const config = await configWith('env.yaml', { url: proxy.url, passwordEnv: 'SK_TEST_PW' });
    const run = await runCli(['--config', config, 'backup', '--vm', 'web01'], { env: { SK_TEST_PW: ' \t' } });
    assert.equal(run.code, 3, run.stdout + run.stderr);
    assert.match(run.stderr, /vcenter\.passwordEnv: environment variable SK_TEST_PW is empty/);
    assert.deepEqual(proxy.methods(), []);
  });

  it('a password file readable by others works, with a warning on stderr and under warnings in --json', async () => {
    const password = await readFile(lab.state.passwordFile, 'utf8');
    const pw = join(lab.dir, 'pw-open');
    await writeFile(pw, password);
    await chmod(pw, 0o644);
    const config = await configWith('open.yaml', { passwordFile: pw });

    const json = await runJson(config, 'inventory');
    assert.equal(json.code, 0, json.stdout + json.stderr);
    assert.equal(json.json.vms.length, 5);
    assert.deepEqual(
      json.json.warnings.map((w: { code: string }) => w.code),
      ['PASSWORD_FILE_READABLE'],
    );
    assert.equal(json.stderr, '');

    const text = await runCli(['--config', config, 'inventory']);
    assert.equal(text.code, 0);
    assert.match(
      text.stderr,
      /warning PASSWORD_FILE_READABLE: .*pw-open is readable by others \(mode 0644\)/,
    );
    assert.match(text.stdout, /VMs \(5\)/);
    for (const out of [json.stdout, json.stderr, text.stdout, text.stderr]) {
      assert.ok(!out.includes(password.trim()), 'the password never appears');
    }
  });

  it('inquire refuses --since later than --until', async () => {
    const run = await cli('inquire', '--since', '2026-12-02', '--until', '2026-12-01');
    assert.equal(run.code, 3);
    assert.match(run.json.error.message, /--since: 2026-12-02 is later than --until 2026-12-01/);
  });

  it("--vm '*' selects every VM whatever its name, in inventory and backup alike", async () => {
    // vCenter allows any characters in a VM name; the lab's spec names are file-safe, so some are renamed.
    const odd = { app01: 'app 01/..', off01: '..', susp01: '.dot%25' } as const;
    await withVcenter(loadConfig(lab.configPath).vcenter, async (vc) => {
      for (const [from, to] of Object.entries(odd)) {
        const vm = lab.vm(from);
        await vc.runTask('Rename_Task', { type: 'VirtualMachine', value: vm.id }, el('newName', to));
      }
    });
    const all = (await cli('inventory')).json.vms.map((v: { name: string }) => v.name).sort();
    assert.equal(all.length, 5);
    assert.ok(all.includes('..'), JSON.stringify(all));

    const listed = await cli('inventory', '--vm', '*');
    assert.equal(listed.code, 0, listed.stderr);
    assert.deepEqual(listed.json.vms.map((v: { name: string }) => v.name).sort(), all);

    const run = await cli('backup', '--vm', '*', '--mode', 'ASIS');
    assert.ok(run.code === 0 || run.code === 1, run.stdout + run.stderr);
    assert.deepEqual(run.json.vms.map((v: { name: string }) => v.name).sort(), all);
    assert.equal(run.json.state, 'complete');
  });
});

describe('options a command would ignore are refused before anything is read', () => {
  // A configuration that does not exist: each refusal must come before the configuration is even loaded.
  const cli = (...args: string[]) => runJson('/nonexistent/snapkeeper.yaml', ...args);
  /** A restore of one disk of VM v of backup b, before the options that say where it goes. */
  const disk = ['restore', '--backup', 'b', '--vm', 'v', '--disk', 'Hard disk 1'];

  const rows: [string, string[], RegExp][] = [
    ['restore --as with --to', ['restore', '--backup', 'b', '--vm', 'v', '--as', 'X', '--to', 'Y'], /--to/],
    [
      'restore --as with --replace and --force',
      ['restore', '--backup', 'b', '--vm', 'v', '--as', 'X', '--replace', '--force'],
      /restore --as does not use --force, --replace/,
    ],
    [
      'restore --original with --files-only',
      ['restore', '--backup', 'b', '--vm', 'v', '--original', '--force', '--files-only'],
      /--files-only/,
    ],
    [
      'restore --disk --to with --host and --power-on',
      [...disk, '--to', 'w', '--host', 'h', '--power-on'],
      /restore --disk --to does not use --host, --power-on/,
    ],
    ['restore --disk --to with --force but no --replace', [...disk, '--to', 'w', '--force'], /--force/],
    [
      'restore --disk --files-only with --replace',
      [...disk, '--files-only', '--datastore', 'd', '--replace'],
      /--replace/,
    ],
    [
      'lab status with --config',
      ['lab', 'status', '--dir', '/nonexistent-lab'],
      /lab commands do not use --config/,
    ],
    [
      'init with --password-file and --password-env',
      ['init', '--url', 'https://vc/sdk', '--password-file', 'f', '--password-env', 'E'],
      /one of --password-file and --password-env/,
    ],
    [
      'init with --thumbprint and --trust-server-certificate',
      ['init', '--url', 'https://vc/sdk', '--thumbprint', 'AA', '--trust-server-certificate'],
      /one of --thumbprint and --trust-server-certificate/,
    ],
    [
      'init with --output and --config',
      ['init', '--output', '/nonexistent/x.yaml'],
      /one of --output and --config/,
    ],
    [
      'init --trust-server-certificate on plain HTTP',
      ['init', '--url', 'http://vc/sdk', '--trust-server-certificate'],
      /needs an https:\/\/ --url/,
    ],
    [
      'delete with --backup twice',
      ['delete', '--backup', 'a', '--backup', 'b'],
      /--backup was given more than once/,
    ],
    ['expire with --task twice', ['expire', '--task', 'a', '--task', 'b'], /--task was given more than once/],
    [
      'inquire with --limit twice',
      ['inquire', '--limit', '1', '--limit', '2'],
      /--limit was given more than once/,
    ],
  ];
  for (const [title, args, message] of rows) {
    it(title, async () => {
      const run = await cli(...args);
      assert.equal(run.code, 3, run.stdout + run.stderr);
      assert.match(run.json.error.message, message);
      assert.notEqual(run.json.error.code, 'CONFIG_NOT_FOUND');
    });
  }

  it('restore --disk --to --replace takes --force (it replaces disks of a VM that may be running)', async () => {
    const run = await cli(...disk, '--to', 'w', '--replace', '--force');
    // Past the option checks: what stops it is the missing configuration.
    assert.equal(run.json.error.code, 'CONFIG_NOT_FOUND');
  });

  it('a repeatable option (lab up --delay) still takes several values', async () => {
    const run = await runCli([
      '--json',
      'lab',
      'up',
      '--spec',
      '/nonexistent.json',
      '--dir',
      '/nonexistent-lab',
      '--delay',
      'Login=1',
      '--delay',
      'Logout=1',
    ]);
    assert.equal(run.code, 3);
    assert.doesNotMatch(run.json.error.message, /more than once/);
  });
});

describe('--json always prints JSON, help included', () => {
  const rows: [string[], number, (doc: Record<string, unknown>) => void][] = [
    [
      ['--json'],
      3,
      (d) => assert.match((d.error as { message: string }).message, /no command given; one of: init, backup/),
    ],
    [['--json', '--help'], 0, (d) => assert.equal(d.command, 'snapkeeper')],
    [
      ['--help', '--json'],
      0,
      (d) => assert.ok((d.commands as { name: string }[]).some((c) => c.name === 'restore')),
    ],
    [
      ['backup', '--help', '--json'],
      0,
      (d) => {
        assert.equal(d.command, 'snapkeeper backup');
        assert.ok((d.options as { flags: string }[]).some((o) => o.flags === '--vm <glob...>'));
      },
    ],
    [['help', 'restore', '--json'], 0, (d) => assert.equal(d.command, 'snapkeeper restore')],
    [
      ['--json', 'lab'],
      3,
      (d) => assert.match((d.error as { message: string }).message, /one of: up, status/),
    ],
    [['--json', 'lab', 'up', '-h'], 0, (d) => assert.equal(d.command, 'snapkeeper lab up')],
  ];
  for (const [args, code, check] of rows) {
    it(args.join(' '), async () => {
      const run = await runCli(args);
      assert.equal(run.code, code, run.stdout + run.stderr);
      assert.ok(run.json !== undefined, `stdout is JSON: ${run.stdout}`);
      assert.equal(run.stderr, '');
      check(run.json);
    });
  }
});
