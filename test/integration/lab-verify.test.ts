import assert from 'node:assert/strict';
import { open } from 'node:fs/promises';
import { after, before, describe, it } from 'node:test';
import { runCli } from '../helpers/cli.js';
import { standardSpec, startLab, type TestLab } from '../helpers/lab.js';

describe('lab verify', () => {
  let lab: TestLab;
  before(async () => {
    lab = await startLab(await standardSpec());
  });
  after(async () => {
    await lab?.stop();
  });

  it('confirms untouched disks and finds the first changed byte, skipping RDMs', async () => {
    const good = await runCli(['--json', 'lab', 'verify', '--dir', lab.dir, '--vm', 'db01']);
    assert.equal(good.code, 0, good.stderr);
    assert.equal(good.json.ok, true);
    assert.deepEqual(
      good.json.disks.map((d: { label: string }) => d.label),
      ['Hard disk 1'],
      'only the flat disk; RDMs are never compared',
    );

    const web = lab.vm('web01');
    const fh = await open(web.disks[1]!.path, 'r+');
    await fh.write(Buffer.from([0x55, 0xaa]), 0, 2, 4097);
    await fh.close();
    const bad = await runCli(['--json', 'lab', 'verify', '--dir', lab.dir, '--vm', 'web01']);
    assert.equal(bad.code, 2);
    assert.equal(bad.json.ok, false);
    const [d1, d2] = bad.json.disks;
    assert.equal(d1.ok, true);
    assert.equal(d2.ok, false);
    assert.ok(d2.firstDifference === 4097 || d2.firstDifference === 4098);

    const otherVm = await runCli([
      '--json',
      'lab',
      'verify',
      '--dir',
      lab.dir,
      '--vm',
      'web01',
      '--as',
      'app01',
    ]);
    assert.equal(otherVm.json.ok, false, "another VM's disks do not hold web01's bytes");
    const missing = await runCli(['lab', 'verify', '--dir', lab.dir, '--vm', 'nope']);
    assert.equal(missing.code, 3);
  });
});
