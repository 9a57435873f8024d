import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { parse } from 'yaml';
import { openCatalog } from '../../src/catalog/index.js';
import { loadConfig } from '../../src/config/load.js';
import { labFiles } from '../../src/lab/index.js';
import { postgresAvailable } from '../../src/lab/postgres.js';
import { type CliRun, runCli, runJson } from '../helpers/cli.js';
import { requireCapability } from '../helpers/require.js';
import { api, finishedJob, makeToken, serve } from '../server/helpers.js';

/**
 * `lab up --postgres`: the lab's catalog on a PostgreSQL server started in DIR/postgres (detached: it outlives
 * `lab up`), its URL and password file in DIR/snapkeeper.yaml; a backup and `inquire` go through it; `lab down`
 * stops the server and removes the cluster.
 */

const SPEC = {
  datacenters: [
    {
      name: 'DC1',
      hosts: ['esx01'],
      datastores: [{ name: 'ds-a', capacityGB: 10 }],
      vms: [{ name: 'web01', host: 'esx01', disks: [{ datastore: 'ds-a', sizeMB: 4 }] }],
    },
  ],
};

function ok(r: CliRun, what: string): CliRun {
  assert.ok(r.code === 0, `${what}: exit ${r.code}\n${r.stdout}\n${r.stderr}`);
  return r;
}

const roots: string[] = [];
after(async () => {
  for (const r of roots) {
    // A failed test may leave a lab: take it down (stops PostgreSQL), then remove the folder.
    if (existsSync(join(r, 'lab', labFiles.state))) await runCli(['lab', 'down', '--dir', join(r, 'lab')]);
    await rm(r, { recursive: true, force: true });
  }
});

describe('lab up --postgres', () => {
  it('keeps the lab catalog on PostgreSQL: backup and inquire go through it, lab down stops the server', async (t) => {
    if (
      !requireCapability(t, postgresAvailable(), 'PostgreSQL server binaries (Debian package postgresql)')
    ) {
      return;
    }
    const root = await mkdtemp(join(tmpdir(), 'snapkeeper-lab-pg-'));
    roots.push(root);
    const spec = join(root, 'spec.json');
    await writeFile(spec, JSON.stringify(SPEC));
    const dir = join(root, 'lab');
    const up = ok(
      await runCli(['--json', 'lab', 'up', '--spec', spec, '--dir', dir, '--postgres']),
      'lab up',
    );
    const pg = up.json.postgres;
    assert.ok(pg, 'lab.json records the PostgreSQL server');
    assert.equal(pg.dataDir, join(dir, labFiles.postgres));
    assert.ok(existsSync(join(pg.dataDir, 'postmaster.pid')), 'the server outlives lab up');
    const status = ok(await runCli(['--json', 'lab', 'status', '--dir', dir]), 'lab status');
    assert.equal(status.json.running, true);
    assert.deepEqual(status.json.postgres, { url: pg.url, dataDir: pg.dataDir, alive: true });
    const password = readFileSync(join(dir, labFiles.postgresPassword), 'utf8').trim();

    const configPath = join(dir, labFiles.config);
    const yamlText = readFileSync(configPath, 'utf8');
    const doc = parse(yamlText) as { catalog: Record<string, string> };
    assert.deepEqual(doc.catalog, { url: pg.url, passwordFile: labFiles.postgresPassword });
    assert.ok(!yamlText.includes(password), 'no password in the configuration');
    assert.equal(existsSync(join(dir, labFiles.catalog)), false, 'no SQLite catalog');

    const backup = ok(await runJson(configPath, 'backup', '--task', 'lab-all'), 'backup');
    assert.equal(backup.json.state, 'complete');
    const listed = ok(await runJson(configPath, 'inquire'), 'inquire');
    assert.deepEqual(
      listed.json.map((b: { id: string }) => b.id),
      [backup.json.id],
    );
    const shown = ok(await runJson(configPath, 'inquire', '--backup', backup.json.id), 'inquire --backup');
    assert.equal(shown.json.id, backup.json.id);
    for (const run of [up, backup, listed, shown]) {
      assert.ok(
        !run.stdout.includes(password) && !run.stderr.includes(password),
        'the password is never shown',
      );
    }
    // The record is in PostgreSQL, as another process on another machine would read it.
    const catalog = await openCatalog(loadConfig(configPath).catalog);
    try {
      assert.equal(catalog.dialect, 'postgres');
      assert.equal((await catalog.getBackup(backup.json.id)).state, 'complete');
      assert.deepEqual(await catalog.unfinishedOperations(), []);
    } finally {
      await catalog.close();
    }

    // The daemon on the PostgreSQL catalog: lists the backup, runs a backup job on its shared pool.
    const token = await makeToken(configPath, 'ci', 'operator');
    const daemon = await serve(configPath);
    try {
      const listedByApi = await api(daemon.url, 'GET', '/api/v1/backups', { token });
      assert.equal(listedByApi.status, 200, listedByApi.text);
      assert.ok(JSON.stringify(listedByApi.json).includes(backup.json.id));
      const started = await api(daemon.url, 'POST', '/api/v1/tasks/lab-all/run', { token });
      assert.equal(started.status, 202, started.text);
      const job = await finishedJob(daemon.url, started.json.job.id, token);
      assert.equal(job.state, 'done', JSON.stringify(job));
    } finally {
      assert.deepEqual(await daemon.stop('SIGTERM'), { code: 0, signal: null }, daemon.stderr());
    }
    assert.ok(!daemon.stderr().includes(password) && !daemon.stdout().includes(password));
    assert.deepEqual(
      daemon.logs().filter((l) => l.level === 'error'),
      [],
      'no errors logged',
    );
    assert.ok(
      daemon.logs().some((l) => l.msg === 'schedules: leader'),
      'it leads the schedules',
    );
    assert.equal(
      (await runJson(configPath, 'inquire')).json.length,
      2,
      'the daemon’s backup is in the catalog too',
    );

    ok(await runCli(['lab', 'down', '--dir', dir]), 'lab down');
    assert.equal(existsSync(pg.dataDir), false, 'the cluster is removed');
    assert.equal(existsSync(join(dir, labFiles.postgresPassword)), false);
    const gone = await openCatalog({ url: pg.url, path: pg.url }).catch((e: unknown) => e);
    assert.equal((gone as { code?: string }).code, 'CATALOG_UNREACHABLE', 'the server is stopped');
  });
});
