import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { loadConfig } from '../../src/config/load.js';
import { runCli, runJson } from '../helpers/cli.js';
import { startLab, type TestLab } from '../helpers/lab.js';
import { vmStates } from '../helpers/state.js';

/** Names vCenter accepts that are not file names: the lab must hold them and `*` must select them all. */
const ODD_NAMES = ['web 01', 'a/b', '..', '.hidden', '100%', 'db%2f02', 'x/../y'];

const spec = {
  datacenters: [
    {
      name: 'DC1',
      hosts: ['esx01'],
      datastores: [{ name: 'ds-a', capacityGB: 1 }],
      vms: [
        { name: 'plain01', host: 'esx01', disks: [{ datastore: 'ds-a', sizeMB: 1 }] },
        ...ODD_NAMES.map((name, i) => ({
          name,
          host: 'esx01',
          power: i % 2 === 0 ? 'poweredOn' : 'poweredOff',
          disks: [{ datastore: 'ds-a', sizeMB: 1 }],
        })),
      ],
    },
  ],
};
const ALL = ['plain01', ...ODD_NAMES].sort();

/**
 * A backup that completed with every VM: exit 0, or 1 for the copy driver's NOT_POINT_IN_TIME (the lab's array
 * is not on btrfs here), never a selection warning.
 */
// biome-ignore lint/suspicious/noExplicitAny: the CLI's JSON document
function assertComplete(run: { code: number | null; stdout: string; stderr: string; json: any }): void {
  assert.ok(run.code === 0 || run.code === 1, run.stdout + run.stderr);
  assert.equal(run.json.state, 'complete');
  const codes = [
    ...run.json.warnings,
    ...run.json.vms.flatMap((v: { warnings: unknown[] }) => v.warnings),
  ].map((w: { code: string }) => w.code);
  assert.deepEqual(
    codes.filter((c: string) => c !== 'NOT_POINT_IN_TIME'),
    [],
  );
}

describe('a lab whose VMs have names that are not file names', () => {
  let lab: TestLab;
  const cli = (...args: string[]) => runJson(lab.configPath, ...args);

  before(async () => {
    lab = await startLab(spec);
  });
  after(async () => {
    await lab?.stop();
  });

  it('lab up creates them under their real names, with the data keyed by those names', async () => {
    assert.deepEqual(lab.state.vms.map((v) => v.name).sort(), ALL);
    assert.deepEqual(Object.keys(await vmStates(loadConfig(lab.configPath))).sort(), ALL);
    for (const name of ['a/b', '..']) {
      const run = await runCli(['--json', 'lab', 'verify', '--dir', lab.dir, '--vm', name]);
      assert.equal(run.code, 0, run.stdout + run.stderr);
    }
  });

  it("inventory --vm '*' lists every VM", async () => {
    const run = await cli('inventory', '--vm', '*');
    assert.equal(run.code, 0, run.stderr);
    assert.deepEqual(run.json.vms.map((v: { name: string }) => v.name).sort(), ALL);
  });

  it("backup --vm '*' and the lab-all task (vms: ['*']) back up every VM", async () => {
    const adhoc = await cli('backup', '--vm', '*', '--mode', 'ASIS');
    assertComplete(adhoc);
    assert.deepEqual(adhoc.json.vms.map((v: { name: string }) => v.name).sort(), ALL);

    const task = await cli('backup', '--task', 'lab-all', '--mode', 'ASIS');
    assertComplete(task);
    assert.deepEqual(task.json.vms.map((v: { name: string }) => v.name).sort(), ALL);
  });

  it('a name with glob characters or a slash is matched literally too', async () => {
    const run = await cli('backup', '--vm', 'a/b', '100%', '--mode', 'ASIS');
    assertComplete(run);
    assert.deepEqual(run.json.vms.map((v: { name: string }) => v.name).sort(), ['100%', 'a/b']);
  });
});
