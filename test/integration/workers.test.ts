import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it, type TestContext } from 'node:test';
import pgDriver from 'pg';
import { openArray } from '../../src/arrays/index.js';
import { loadConfig } from '../../src/config/load.js';
import { EngineContext } from '../../src/engine/context.js';
import { openConfiguredRepository } from '../../src/engine/repository-access.js';
import { connectionOf } from '../../src/jobs/index.js';
import type { BackupRecord } from '../../src/model/backup.js';
import type { StoredFile } from '../../src/repository/index.js';
import { Secret } from '../../src/util/secret.js';
import { CLI, completeBackup, runCli } from '../helpers/cli.js';
import { editConfig, standardSpec, startLab, type TestLab } from '../helpers/lab.js';
import { fileMoto, MOTO_ACCESS_KEY, MOTO_REGION, MOTO_SECRET_KEY } from '../helpers/moto.js';
import { filePostgres } from '../helpers/postgres.js';

/**
 * Offload workers (issue 10) through the CLI as a user runs them: a lab VM of four disks, an S3 repository on
 * moto, a PostgreSQL job queue on a real server. Worker A is SIGKILLed in the middle of its first disk job
 * (its data stored, the queue not told); worker B, started after, takes the other disks and, once A's lease
 * has expired, A's job too. The offload completes, `repo check --read-data` is clean, every file of the copy
 * restores byte for byte as the array snapshot holds it. And the refusals of bad worker configuration (exit 3,
 * no password shown).
 */

const pg = filePostgres();
const moto = fileMoto();
const ENV = { SNAPKEEPER_TEST_S3_KEY: MOTO_ACCESS_KEY, SNAPKEEPER_TEST_S3_SECRET: MOTO_SECRET_KEY };

interface Child {
  child: ChildProcess;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null; stdout: string; stderr: string }>;
}

function start(args: string[], env: Record<string, string> = {}): Child {
  const child = spawn(process.execPath, [CLI, ...args], {
    env: { ...process.env, ...ENV, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const out: Buffer[] = [];
  const err: Buffer[] = [];
  child.stdout!.on('data', (b: Buffer) => out.push(b));
  child.stderr!.on('data', (b: Buffer) => err.push(b));
  const exited = new Promise<{
    code: number | null;
    signal: NodeJS.Signals | null;
    stdout: string;
    stderr: string;
  }>((resolve) => {
    child.on('close', (code, signal) =>
      resolve({
        code,
        signal,
        stdout: Buffer.concat(out).toString('utf8'),
        stderr: Buffer.concat(err).toString('utf8'),
      }),
    );
  });
  return { child, exited };
}

describe('offload workers on a PostgreSQL job queue', () => {
  let lab: TestLab | undefined;
  let ready = false;
  let db: { url: string; password: string; passwordFile: string };
  const cli = (...args: string[]) => runCli(['--config', lab!.configPath, '--json', ...args], { env: ENV });
  const skip = (t: TestContext) => !pg.require(t) || !moto.require(t) || !ready;

  before(async () => {
    if (!pg.available || !moto.available) return;
    const spec = await standardSpec();
    spec.datacenters[0].vms.push({
      name: 'multi01',
      host: 'esx01',
      power: 'poweredOn',
      disks: [
        { datastore: 'ds-a', sizeMB: 8 },
        { datastore: 'ds-a', sizeMB: 6 },
        { datastore: 'ds-b', sizeMB: 8 },
        { datastore: 'ds-b', sizeMB: 4 },
      ],
    });
    lab = await startLab(spec);
    db = pg.database();
    const bucket = await moto.bucket();
    await writeFile(join(lab.dir, 'repo.passphrase'), 'the workers passphrase\n', { mode: 0o600 });
    await editConfig(lab.configPath, (doc) => {
      doc.repositories = [
        {
          name: 's3',
          type: 's3',
          endpoint: moto.endpoint(),
          region: MOTO_REGION,
          bucket,
          pathStyle: true,
          accessKeyIdEnv: 'SNAPKEEPER_TEST_S3_KEY',
          secretAccessKeyEnv: 'SNAPKEEPER_TEST_S3_SECRET',
          passphraseFile: 'repo.passphrase',
        },
      ];
      doc.workers = {
        concurrency: 1,
        local: false,
        leaseSeconds: 3,
        retries: 3,
        queue: { url: db.url, passwordFile: db.passwordFile },
      };
    });
    const init = await cli('repo', 'init', '--repository', 's3');
    assert.equal(init.code, 0, init.stdout + init.stderr);
    ready = true;
  });
  after(async () => {
    await lab?.stop();
  });

  async function withRepository<T>(
    fn: (r: import('../../src/repository/index.js').Repository) => Promise<T>,
  ) {
    const saved = { ...process.env };
    Object.assign(process.env, ENV);
    const ctx = new EngineContext({ config: loadConfig(lab!.configPath, process.env) });
    const { repository } = await openConfiguredRepository(ctx, 's3');
    try {
      return await fn(repository);
    } finally {
      await repository.close();
      process.env = saved;
      await ctx.close();
    }
  }

  async function snapshotBytes(record: BackupRecord, file: StoredFile, vmxDir: string): Promise<Buffer> {
    const config = loadConfig(lab!.configPath);
    const m = /^\[([^\]]+)\] (.*)$/.exec(file.path);
    const [datastore, path] = m ? [m[1]!, m[2]!] : ['ds-a', `${vmxDir}/${file.path}`];
    const s = record.snapshots.find((x) => x.datastores[datastore])!;
    const array = await openArray(config.arrays.find((a) => a.name === s.array)!);
    const parts: Buffer[] = [];
    for await (const c of await array.readFile(s.snapshotId, s.datastores[datastore]![0]!, path)) {
      parts.push(c as Buffer);
    }
    return Buffer.concat(parts);
  }

  it('two workers share one offload; one SIGKILLed mid-job, its job is retried by the other; the copy restores byte for byte', async (t) => {
    if (skip(t)) return;
    const backup = await completeBackup(lab!.configPath, '--vm', 'multi01');
    // Worker A dies right after storing its first disk job's data, before the queue hears of it.
    const a = start(['--config', lab!.configPath, 'worker'], { SNAPKEEPER_CRASH_AT: 'offload.disk-flushed' });
    const offload = start([
      '--config',
      lab!.configPath,
      '--json',
      'offload',
      '--backup',
      backup.id,
      '--repository',
      's3',
    ]);
    const died = await a.exited;
    assert.equal(died.signal, 'SIGKILL', died.stdout + died.stderr);
    assert.match(died.stderr, /started +multi01/);
    const b = start(['--config', lab!.configPath, '--json', 'worker', '--concurrency', '2']);
    try {
      const done = await offload.exited;
      assert.equal(done.code, 0, done.stdout + done.stderr);
      const result = JSON.parse(done.stdout);
      const vm = result.vms.find((v: { name: string }) => v.name === 'multi01');
      assert.equal(vm.files.filter((f: { path: string }) => /-flat\.vmdk$/.test(f.path)).length, 4);
    } finally {
      b.child.kill('SIGTERM');
    }
    const stopped = await b.exited;
    assert.equal(stopped.code, 0, stopped.stdout + stopped.stderr);
    const summary = JSON.parse(stopped.stdout);
    assert.equal(summary.stopped, true);
    assert.equal(summary.completed, 4, "B ran all four disk jobs, A's among them");
    assert.equal(summary.failed, 0);

    const check = await cli('repo', 'check', '--repository', 's3', '--read-data');
    assert.equal(check.code, 0, check.stdout + check.stderr);
    assert.deepEqual(check.json.issues, []);
    const shown = await cli('inquire', '--backup', backup.id);
    assert.deepEqual(
      shown.json.copies.map((c: { kind: string; name?: string }) => c.name ?? c.kind),
      ['array', 's3'],
    );

    const vmxDir = backup.vms[0]!.vmxFile.replace(/^\[[^\]]+\] /, '').replace(/\/[^/]*$/, '');
    await withRepository(async (repository) => {
      const files = (await repository.loadManifest(backup.id)).body.vms[0]!.files;
      assert.ok(files.length >= 8, files.map((f) => f.path).join(', '));
      for (const f of files) {
        const out = Buffer.alloc(f.size);
        await repository.restoreFile(f, { write: async (o, d) => void d.copy(out, o) });
        assert.ok(
          out.equals(await snapshotBytes(backup, f, vmxDir)),
          `${f.path} restores as the snapshot has it`,
        );
      }
    });
  });

  it('a coordinator SIGKILLed while its jobs are queued: a job finishing afterwards leaves data only prune collects; recover closes the offload; offloading again completes', async (t) => {
    if (skip(t)) return;
    const backup = await completeBackup(lab!.configPath, '--vm', 'web01');
    const db2 = new pgDriver.Client(connectionOf(db.url, new Secret(db.password)));
    await db2.connect();
    const jobStates = async () =>
      (
        await db2.query(
          "select state::text from snapkeeper_jobs.job where data->'payload'->>'backupId' = $1",
          [backup.id],
        )
      ).rows.map((r: { state: string }) => r.state);
    try {
      // No worker runs (workers.local is false): the coordinator enqueues its seed job and waits; then dies.
      const coordinator = start([
        '--config',
        lab!.configPath,
        '--json',
        'offload',
        '--backup',
        backup.id,
        '--repository',
        's3',
      ]);
      for (let i = 0; (await jobStates()).length === 0; i++) {
        assert.ok(i < 600, 'the coordinator enqueued nothing');
        await new Promise((r) => setTimeout(r, 100));
      }
      coordinator.child.kill('SIGKILL');
      assert.equal((await coordinator.exited).signal, 'SIGKILL');
      // A worker takes the orphaned job and finishes it: content-named packs and an index, no manifest.
      const w = start(['--config', lab!.configPath, '--json', 'worker']);
      try {
        for (let i = 0; !(await jobStates()).includes('completed'); i++) {
          assert.ok(i < 1200, `the orphaned job did not complete: ${await jobStates()}`);
          await new Promise((r) => setTimeout(r, 100));
        }
      } finally {
        w.child.kill('SIGTERM');
      }
      assert.equal((await w.exited).code, 0);
    } finally {
      await db2.end();
    }
    const recovered = await cli('recover');
    assert.equal(recovered.code, 0, recovered.stdout + recovered.stderr);
    const shown = await cli('inquire', '--backup', backup.id);
    assert.deepEqual(
      shown.json.copies.map((c: { kind: string; name?: string }) => c.name ?? c.kind),
      ['array'],
      'no copy is recorded: the repository holds no manifest of the backup',
    );
    const check = await cli('repo', 'check', '--repository', 's3', '--read-data');
    assert.equal(check.code, 0, check.stdout + check.stderr);
    const pruned = await cli('repo', 'prune', '--repository', 's3', '--safety-delay', '0');
    assert.equal(pruned.code, 0, pruned.stdout + pruned.stderr);
    assert.ok(pruned.json.packsDeleted >= 1, `prune collected the orphaned job's packs: ${pruned.stdout}`);

    // Offloading again (a worker running) completes, and the copy is clean.
    const w2 = start(['--config', lab!.configPath, '--json', 'worker', '--concurrency', '2']);
    try {
      const again = await cli('offload', '--backup', backup.id, '--repository', 's3');
      assert.equal(again.code, 0, again.stdout + again.stderr);
      assert.equal(again.json.alreadyStored, false);
    } finally {
      w2.child.kill('SIGTERM');
    }
    assert.equal((await w2.exited).code, 0);
    const after = await cli('repo', 'check', '--repository', 's3', '--read-data');
    assert.equal(after.code, 0, after.stdout + after.stderr);
    assert.deepEqual(after.json.issues, []);
  });

  it('with workers.local (the default) an offload on the PostgreSQL queue completes with no worker running', async (t) => {
    if (skip(t)) return;
    const config = await editConfig(
      lab!.configPath,
      (doc) => {
        delete doc.workers.local;
      },
      join(lab!.dir, 'local.yaml'),
    );
    const backup = await completeBackup(config, '--vm', 'app01');
    const run = await runCli(
      ['--config', config, '--json', 'offload', '--backup', backup.id, '--repository', 's3'],
      {
        env: ENV,
      },
    );
    assert.equal(run.code, 0, run.stdout + run.stderr);
    assert.equal(run.json.alreadyStored, false);
    const client = new pgDriver.Client(connectionOf(db.url, new Secret(db.password)));
    await client.connect();
    try {
      const r = await client.query(
        "select state::text from snapkeeper_jobs.job where data->'payload'->>'backupId' = $1",
        [backup.id],
      );
      assert.ok(r.rows.length >= 1, 'the disk jobs went through the PostgreSQL queue');
      assert.ok(r.rows.every((row: { state: string }) => row.state === 'completed'));
    } finally {
      await client.end();
    }
    const check = await cli('repo', 'check', '--repository', 's3', '--read-data');
    assert.deepEqual(check.json.issues, []);
  });

  it('refuses bad worker configuration with exit 3, never showing a password', async (t) => {
    if (skip(t)) return;
    const bad = async (edit: (doc: Record<string, unknown>) => void, ...args: string[]) => {
      const file = await editConfig(lab!.configPath, edit, join(lab!.dir, 'bad.yaml'));
      return runCli(['--config', file, '--json', 'worker', ...args], { env: ENV });
    };
    const noQueue = await bad((doc) => {
      delete doc.workers;
    });
    assert.equal(noQueue.code, 3, noQueue.stdout + noQueue.stderr);
    assert.equal(noQueue.json.error.code, 'WORKER_NO_QUEUE');

    const withPassword = await bad((doc) => {
      (doc.workers as { queue: { url: string } }).queue.url = db.url.replace(
        '//snapkeeper@',
        '//snapkeeper:hunter2secret@',
      );
    });
    assert.equal(withPassword.code, 3, withPassword.stdout + withPassword.stderr);
    assert.match(withPassword.stdout + withPassword.stderr, /workers\.queue\.url/);
    assert.ok(!(withPassword.stdout + withPassword.stderr).includes('hunter2secret'));

    const noFile = await bad((doc) => {
      (doc.workers as { queue: { passwordFile: string } }).queue.passwordFile = 'no-such-password-file';
    });
    assert.equal(noFile.code, 3, noFile.stdout + noFile.stderr);
    assert.equal(noFile.json.error.code, 'JOB_QUEUE_PASSWORD_UNAVAILABLE');

    const zero = await runCli(['--config', lab!.configPath, '--json', 'worker', '--concurrency', '0'], {
      env: ENV,
    });
    assert.equal(zero.code, 3, zero.stdout + zero.stderr);
    assert.equal(zero.json.error.code, 'WORKER_CONCURRENCY');

    const wrongPassword = await bad((doc) => {
      (doc.workers as { queue: Record<string, unknown> }).queue = {
        url: db.url,
        passwordEnv: 'SNAPKEEPER_TEST_PG_WRONG',
      };
    });
    // A variable that is not set: exit 3 naming it.
    assert.equal(wrongPassword.code, 3, wrongPassword.stdout + wrongPassword.stderr);
    assert.match(wrongPassword.json.error.message, /SNAPKEEPER_TEST_PG_WRONG/);
  });
});
