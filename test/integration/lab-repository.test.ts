import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { labFiles, labStatus, verifyLabVm } from '../../src/lab/index.js';
import { isMotoProcess, motoAvailable } from '../../src/lab/moto.js';
import { pathExists } from '../../src/util/fs.js';
import { type CliRun, runCli, runJson } from '../helpers/cli.js';
import { editConfig, startLab } from '../helpers/lab.js';
import { requireCapability } from '../helpers/require.js';

/**
 * The lab's repositories: `lab up` configures and initialises the local repository `lab` (DIR/repository, a
 * random passphrase in DIR/repository.passphrase, 0600, named by file and never written in the configuration);
 * `lab up --s3` also starts a moto S3 server recorded in lab.json and configures `lab-s3` on a bucket of it; a
 * backup offloaded to either restores from it byte for byte; `lab status` shows them and `lab down` stops the
 * server and removes the repository.
 */

const SPEC = {
  datacenters: [
    {
      name: 'DC1',
      hosts: ['esx01'],
      datastores: [{ name: 'ds-a', capacityGB: 10 }],
      vms: [{ name: 'web01', host: 'esx01', disks: [{ datastore: 'ds-a', sizeMB: 6 }] }],
    },
  ],
};

function ok(r: CliRun, what: string): CliRun {
  assert.ok(r.code === 0, `${what}: exit ${r.code}\n${r.stdout}\n${r.stderr}`);
  return r;
}

/**
 * Backs web01 up, offloads it to `repository`, deletes the backup (record and array snapshot), then restores
 * web01 from the repository as `as` through the lab's catalog and as `${as}-fresh` through a new, empty
 * catalog (by the id `repo backups` lists), checking every byte of both.
 */
async function roundTrip(dir: string, config: string, repository: string, as: string): Promise<void> {
  const backup = ok(await runJson(config, 'backup', '--vm', 'web01'), 'backup');
  const id = backup.json.id;
  ok(await runJson(config, 'offload', '--backup', id, '--repository', repository), 'offload');
  ok(await runJson(config, 'delete', '--backup', id), 'delete');
  const restore = (cfg: string, backupId: string, name: string) =>
    runJson(
      cfg,
      'restore',
      '--backup',
      backupId,
      '--vm',
      'web01',
      '--as',
      name,
      '--source',
      'repository',
      '--repository',
      repository,
    );
  const r = ok(await restore(config, id, as), 'restore');
  assert.equal(r.json.repository, repository);
  const fresh = await editConfig(
    config,
    (doc) => {
      doc.catalog.path = `fresh-${repository}.db`;
    },
    join(dir, `fresh-${repository}.yaml`),
  );
  ok(await runJson(fresh, 'catalog', 'create'), 'catalog create');
  const listed = ok(await runJson(fresh, 'repo', 'backups', '--repository', repository), 'repo backups');
  const entry = listed.json.find((b: { backupId: string }) => b.backupId === id);
  assert.ok(entry, `repo backups --repository ${repository} lists ${id}`);
  ok(await restore(fresh, entry.id, `${as}-fresh`), 'restore with a fresh catalog');
  for (const vm of [as, `${as}-fresh`]) {
    const disks = await verifyLabVm(dir, 'web01', vm);
    assert.ok(disks.length === 1 && disks.every((d) => d.ok), `${vm}: ${JSON.stringify(disks)}`);
  }
  await rm(join(dir, `fresh-${repository}.db`), { force: true });
}

describe('the lab repositories', () => {
  it('lab up configures and initialises repository lab; its passphrase stays in its file', async (t) => {
    const lab = await startLab(SPEC);
    t.after(() => lab.stop());
    const config = await readFile(lab.configPath, 'utf8');
    const passphraseFile = join(lab.dir, labFiles.repositoryPassphrase);
    const passphrase = (await readFile(passphraseFile, 'utf8')).trim();
    assert.ok(passphrase.length >= 24);
    assert.equal((await stat(passphraseFile)).mode & 0o777, 0o600);
    assert.ok(!config.includes(passphrase), 'the passphrase is not in the configuration');
    assert.match(
      config,
      /name: lab\n\s+type: local\n\s+path: repository\n\s+passphraseFile: repository.passphrase/,
    );
    assert.deepEqual(
      lab.state.repositories?.map((r) => r.name),
      ['lab'],
    );
    const listed = ok(
      await runJson(lab.configPath, 'repo', 'backups', '--repository', 'lab'),
      'repo backups',
    );
    assert.deepEqual(listed.json, []);
    assert.ok(!listed.stdout.includes(passphrase) && !listed.stderr.includes(passphrase));
    const status = await labStatus(lab.dir);
    assert.deepEqual(
      status.repositories.map((r) => r.name),
      ['lab'],
    );
    assert.equal(status.s3, undefined);
    await roundTrip(lab.dir, lab.configPath, 'lab', 'web01-local');
    await lab.stop();
    assert.equal(
      await pathExists(join(lab.dir, labFiles.repository)),
      false,
      'lab down removes the repository',
    );
    assert.equal(await pathExists(passphraseFile), false);
  });

  it('lab up --s3 without moto is refused before anything is made', async () => {
    const root = await mkdtemp(join(tmpdir(), 'snapkeeper-lab-s3-'));
    try {
      await writeFile(join(root, 'spec.json'), JSON.stringify(SPEC));
      const r = await runCli(
        ['--json', 'lab', 'up', '--spec', join(root, 'spec.json'), '--dir', join(root, 'lab'), '--s3'],
        { env: { SNAPKEEPER_PYTHON: '/nonexistent/python3' } },
      );
      assert.equal(r.code, 3, r.stdout);
      assert.equal(r.json.error.code, 'LAB_S3_UNAVAILABLE');
      assert.equal(await pathExists(join(root, 'lab')), false);
    } finally {
      await rm(root, { recursive: true, force: true });
    }
  });

  it('lab up --s3 starts moto, configures lab-s3; lab status shows it; lab down stops it', async (t) => {
    if (!requireCapability(t, motoAvailable(), 'python3 cannot import moto')) return;
    const lab = await startLab(SPEC, { s3: true });
    t.after(() => lab.stop());
    const s3 = lab.state.s3!;
    assert.ok(s3, 'lab.json records the moto server');
    assert.equal(await isMotoProcess(s3.pid, s3.port), true);
    assert.deepEqual(
      lab.state.repositories?.map((r) => r.name),
      ['lab', 'lab-s3'],
    );
    assert.equal((await stat(join(lab.dir, labFiles.s3Credentials))).mode & 0o777, 0o600);
    const status = await runCli(['lab', 'status', '--dir', lab.dir]);
    assert.equal(status.code, 0, status.stderr);
    assert.match(
      status.stdout,
      /repository lab-s3: bucket snapkeeper-lab at http:\/\/127\.0\.0\.1:\d+, moto pid \d+ alive/,
    );
    await roundTrip(lab.dir, lab.configPath, 'lab-s3', 'web01-s3');
    await lab.stop();
    assert.equal(await isMotoProcess(s3.pid, s3.port), false, 'lab down stops the moto server');
  });
});
