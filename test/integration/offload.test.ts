import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { openArray } from '../../src/arrays/index.js';
import { loadConfig } from '../../src/config/load.js';
import { EngineContext } from '../../src/engine/context.js';
import { openConfiguredRepository } from '../../src/engine/repository-access.js';
import type { BackupRecord } from '../../src/model/backup.js';
import type { StoredFile } from '../../src/repository/index.js';
import { CLI, completeBackup, runCli } from '../helpers/cli.js';
import { editConfig, standardSpec, startLab, type TestLab } from '../helpers/lab.js';
import { fileMoto, MOTO_ACCESS_KEY, MOTO_REGION, MOTO_SECRET_KEY } from '../helpers/moto.js';

/**
 * Offload on a copy-driver lab (no root needed) into a local repository and into S3 (moto), through the CLI
 * as a user runs it: init, offload, check --read-data, copies in inquire, the bytes of a copy against the
 * array snapshot, two offloads at once into one repository, a SIGKILL at each crash point then recover and
 * offload again, and the refusals (exit 3, nothing changed).
 */

const moto = fileMoto();
const ENV = {
  SNAPKEEPER_TEST_S3_KEY: MOTO_ACCESS_KEY,
  SNAPKEEPER_TEST_S3_SECRET: MOTO_SECRET_KEY,
};
const REPOS = ['local', 's3'] as const;

describe('offload through the CLI on a copy-driver lab', () => {
  let lab: TestLab;
  let withS3 = false;

  const cli = (...args: string[]) => runCli(['--config', lab.configPath, '--json', ...args], { env: ENV });

  before(async () => {
    lab = await startLab(await standardSpec());
    withS3 = moto.available;
    const bucket = withS3 ? await moto.bucket() : undefined;
    await writeFile(join(lab.dir, 'repo.passphrase'), 'the lab passphrase\n', { mode: 0o600 });
    await editConfig(lab.configPath, (doc) => {
      doc.repositories = [
        { name: 'local', type: 'local', path: 'offload-repository', passphraseFile: 'repo.passphrase' },
        {
          name: 'wrongpass',
          type: 'local',
          path: 'offload-repository',
          passphraseEnv: 'SNAPKEEPER_TEST_WRONG',
        },
        ...(withS3
          ? [
              {
                name: 's3',
                type: 's3',
                endpoint: moto.endpoint(),
                region: MOTO_REGION,
                bucket,
                prefix: 'snapkeeper/',
                pathStyle: true,
                accessKeyIdEnv: 'SNAPKEEPER_TEST_S3_KEY',
                secretAccessKeyEnv: 'SNAPKEEPER_TEST_S3_SECRET',
                passphraseFile: 'repo.passphrase',
              },
            ]
          : []),
      ];
    });
    for (const name of repos()) {
      const init = await cli('repo', 'init', '--repository', name);
      assert.equal(init.code, 0, init.stdout + init.stderr);
    }
  });
  after(async () => {
    await lab?.stop();
  });

  function repos(): string[] {
    return REPOS.filter((r) => r !== 's3' || withS3);
  }

  /** The bytes of a stored file, as the repository restores them. */
  async function restoredBytes(name: string, file: StoredFile): Promise<Buffer> {
    const ctx = new EngineContext({ config: loadConfig(lab.configPath, { ...process.env, ...ENV }) });
    const saved = { ...process.env };
    Object.assign(process.env, ENV);
    const { repository } = await openConfiguredRepository(ctx, name);
    try {
      const out = Buffer.alloc(file.size);
      await repository.restoreFile(file, { write: async (o, d) => void d.copy(out, o) });
      return out;
    } finally {
      await repository.close();
      process.env = saved;
      await ctx.close();
    }
  }

  async function storedFiles(name: string, backupId: string, vm: string): Promise<StoredFile[]> {
    const ctx = new EngineContext({ config: loadConfig(lab.configPath, { ...process.env, ...ENV }) });
    const saved = { ...process.env };
    Object.assign(process.env, ENV);
    const { repository } = await openConfiguredRepository(ctx, name);
    try {
      return (await repository.loadManifest(backupId)).body.vms.find((v) => v.name === vm)!.files;
    } finally {
      await repository.close();
      process.env = saved;
      await ctx.close();
    }
  }

  async function snapshotBytes(record: BackupRecord, path: string): Promise<Buffer> {
    const config = loadConfig(lab.configPath);
    const s = record.snapshots[0]!;
    const array = await openArray(config.arrays.find((a) => a.name === s.array)!);
    const parts: Buffer[] = [];
    for await (const c of await array.readFile(s.snapshotId, 'ds-a', path)) parts.push(c as Buffer);
    return Buffer.concat(parts);
  }

  async function checkClean(name: string): Promise<void> {
    const check = await cli('repo', 'check', '--repository', name, '--read-data');
    assert.equal(check.code, 0, check.stdout + check.stderr);
    assert.equal(check.json.ok, true);
    assert.deepEqual(check.json.issues, []);
  }

  it('refuses an unknown repository and a wrong passphrase with exit 3, changing nothing', async () => {
    const backup = await completeBackup(lab.configPath, '--vm', 'web01');
    const unknown = await cli('offload', '--backup', backup.id, '--repository', 'nowhere');
    assert.equal(unknown.code, 3, unknown.stdout);
    assert.equal(unknown.json.error.code, 'REPOSITORY_UNKNOWN');
    const wrong = await runCli(
      ['--config', lab.configPath, '--json', 'offload', '--backup', backup.id, '--repository', 'wrongpass'],
      { env: { ...ENV, SNAPKEEPER_TEST_WRONG: 'not-the-passphrase-xyzzy' } },
    );
    assert.equal(wrong.code, 3, wrong.stdout + wrong.stderr);
    assert.equal(wrong.json.error.code, 'REPOSITORY_PASSPHRASE');
    assert.ok(!wrong.stdout.includes('xyzzy') && !wrong.stderr.includes('xyzzy'));
    const shown = await cli('inquire', '--backup', backup.id);
    assert.deepEqual(
      shown.json.copies.map((c: { kind: string }) => c.kind),
      ['array'],
    );
  });

  it('offloads a backup to each repository; check --read-data is clean; the copy has the snapshot bytes', async () => {
    const backup = await completeBackup(lab.configPath, '--task', 'lab-all');
    for (const name of repos()) {
      const run = await cli('offload', '--backup', backup.id, '--repository', name);
      assert.equal(run.code, 0, run.stdout + run.stderr);
      assert.equal(run.json.alreadyStored, false);
      const db = run.json.vms.find((v: { name: string }) => v.name === 'db01');
      assert.deepEqual(
        db.excludedDisks.map((d: { reason: string }) => d.reason),
        ['rdm', 'rdm'],
      );
      await checkClean(name);
      const files = await storedFiles(name, backup.id, 'web01');
      const flat = files.find((f) => /^web01.*-flat\.vmdk$/.test(f.path))!;
      assert.ok(flat, files.map((f) => f.path).join(', '));
      assert.ok((await restoredBytes(name, flat)).equals(await snapshotBytes(backup, `web01/${flat.path}`)));
    }
    const shown = await cli('inquire', '--backup', backup.id);
    assert.deepEqual(
      shown.json.copies.map((c: { kind: string; name?: string }) => c.name ?? c.kind),
      ['array', ...repos()],
    );
    const list = await runCli(['--config', lab.configPath, 'inquire'], { env: ENV });
    assert.match(list.stdout, /COPIES/);
    assert.match(list.stdout, new RegExp(`array, ${repos().join(', ')}`));
    const held = await cli('repo', 'backups', '--repository', 'local');
    assert.ok(
      held.json.some(
        (b: { backupId: string; inCatalog: boolean }) => b.backupId === backup.id && b.inCatalog,
      ),
    );

    // A second offload of the same backup stores nothing more and keeps one copy.
    const again = await cli('offload', '--backup', backup.id, '--repository', 'local');
    assert.equal(again.json.alreadyStored, true);
    assert.equal(again.json.bytesAdded, 0);
    // Deleting the backup keeps its copies.
    const deleted = await cli('delete', '--backup', backup.id);
    assert.equal(deleted.code, 0, deleted.stdout + deleted.stderr);
    const gone = await cli('inquire', '--backup', backup.id);
    assert.equal(gone.code, 0, gone.stdout + gone.stderr);
    assert.equal(gone.json.state, 'deleted');
    assert.equal(gone.json.copies[0].present, false);
    assert.equal(gone.json.copies.length, 1 + repos().length);
  });

  it('two offloads at once (two processes) into one repository, then check --read-data is clean', async () => {
    const a = await completeBackup(lab.configPath, '--vm', 'web01');
    const b = await completeBackup(lab.configPath, '--vm', 'app01');
    for (const name of repos()) {
      const [ra, rb] = await Promise.all([
        cli('offload', '--backup', a.id, '--repository', name),
        cli('offload', '--backup', b.id, '--repository', name),
      ]);
      assert.equal(ra.code, 0, ra.stdout + ra.stderr);
      assert.equal(rb.code, 0, rb.stdout + rb.stderr);
      await checkClean(name);
    }
  });

  it('holds the backup while it runs: delete is refused naming the offload, then the offload completes', async (t) => {
    if (!moto.require(t)) return;
    // A gate in front of moto holds the first upload of a pack: the offload is then surely mid-way.
    const gate = await holdingProxy(new URL(moto.endpoint()), '/packs/');
    try {
      const bucket = await moto.bucket();
      await editConfig(lab.configPath, (doc) => {
        doc.repositories.push({
          name: 'gated',
          type: 's3',
          endpoint: gate.url,
          region: MOTO_REGION,
          bucket,
          pathStyle: true,
          accessKeyIdEnv: 'SNAPKEEPER_TEST_S3_KEY',
          secretAccessKeyEnv: 'SNAPKEEPER_TEST_S3_SECRET',
          passphraseFile: 'repo.passphrase',
        });
      });
      assert.equal((await cli('repo', 'init', '--repository', 'gated')).code, 0);
      const backup = await completeBackup(lab.configPath, '--vm', 'web01');
      const offload = cli('offload', '--backup', backup.id, '--repository', 'gated');
      await gate.held;
      const refused = await cli('delete', '--backup', backup.id);
      assert.equal(refused.code, 3, refused.stdout + refused.stderr);
      assert.equal(refused.json.error.code, 'BACKUP_IN_USE');
      assert.match(refused.json.error.message, /offload/);
      gate.release();
      const done = await offload;
      assert.equal(done.code, 0, done.stdout + done.stderr);
      assert.equal((await cli('delete', '--backup', backup.id)).code, 0);
      await checkClean('gated');
    } finally {
      gate.release();
      await gate.close();
    }
  });

  for (const point of ['offload.stored', 'offload.committed', 'offload.recorded']) {
    it(`SIGKILL at ${point}: recover, then offload again records the copy once and adds little`, async () => {
      const backup = await completeBackup(lab.configPath, '--vm', 'web01');
      const killed = await new Promise<{ signal: NodeJS.Signals | null }>((resolve, reject) => {
        const child = spawn(
          process.execPath,
          [
            CLI,
            '--config',
            lab.configPath,
            '--json',
            'offload',
            '--backup',
            backup.id,
            '--repository',
            'local',
          ],
          { env: { ...process.env, ...ENV, SNAPKEEPER_CRASH_AT: point }, stdio: 'ignore' },
        );
        child.on('error', reject);
        child.on('close', (_code, signal) => resolve({ signal }));
      });
      assert.equal(killed.signal, 'SIGKILL');
      const recovered = await cli('recover');
      assert.equal(recovered.code, 0, recovered.stdout + recovered.stderr);
      const copies = (await cli('inquire', '--backup', backup.id)).json.copies;
      assert.equal(copies.length, point === 'offload.stored' ? 1 : 2);
      await checkClean('local');

      const again = await cli('offload', '--backup', backup.id, '--repository', 'local');
      assert.equal(again.code, 0, again.stdout + again.stderr);
      if (point !== 'offload.stored') assert.equal(again.json.alreadyStored, true);
      // web01's data is already in the repository from the earlier tests: little is new in any case.
      assert.ok(again.json.bytesAdded < 1024 * 1024, `added ${again.json.bytesAdded} bytes`);
      const after = (await cli('inquire', '--backup', backup.id)).json.copies;
      assert.deepEqual(
        after.map((c: { kind: string; name?: string }) => c.name ?? c.kind),
        ['array', 'local'],
      );
      await checkClean('local');
    });
  }

  it('a task with offload: offloads after its backup and applies its repository retention', async () => {
    await editConfig(lab.configPath, (doc) => {
      doc.tasks.push({
        name: 'offloaded',
        select: { vms: ['off01'] },
        offload: { repository: 'local', retention: { versions: 1 } },
      });
    });
    const first = await cli('backup', '--task', 'offloaded');
    assert.equal(first.code, 0, first.stdout + first.stderr);
    assert.equal(first.json.offload.repository, 'local');
    assert.ok(first.json.offload.result.manifestId);
    const second = await cli('backup', '--task', 'offloaded');
    assert.equal(second.code, 0, second.stdout + second.stderr);
    assert.deepEqual(
      second.json.offload.retention.forgotten.map((f: { backupId: string }) => f.backupId),
      [first.json.id],
    );
    const held = await cli('repo', 'backups', '--repository', 'local');
    const ids = held.json.map((b: { backupId: string }) => b.backupId);
    assert.ok(ids.includes(second.json.id) && !ids.includes(first.json.id));
    // The forgotten copy is gone from the catalog too; the array backup stays (array retention is separate).
    const shown = await cli('inquire', '--backup', first.json.id);
    assert.deepEqual(
      shown.json.copies.map((c: { kind: string }) => c.kind),
      ['array'],
    );
    const pruned = await cli('repo', 'prune', '--repository', 'local', '--safety-delay', '0');
    assert.equal(pruned.code, 0, pruned.stdout + pruned.stderr);
    await checkClean('local');
  });

  it('backup --offload with an unknown repository is refused before any backup (exit 3)', async () => {
    const before = (await cli('inquire')).json.length;
    const run = await cli('backup', '--vm', 'web01', '--offload', 'nowhere');
    assert.equal(run.code, 3, run.stdout);
    assert.equal((await cli('inquire')).json.length, before);
  });

  it('repo passwd changes the passphrase: the old one is refused, the new one opens it', async () => {
    await writeFile(join(lab.dir, 'new.passphrase'), 'a new passphrase\n', { mode: 0o600 });
    const changed = await cli(
      'repo',
      'passwd',
      '--repository',
      'local',
      '--new-passphrase-file',
      join(lab.dir, 'new.passphrase'),
    );
    assert.equal(changed.code, 0, changed.stdout + changed.stderr);
    assert.ok(!changed.stdout.includes('a new passphrase'));
    const old = await cli('repo', 'check', '--repository', 'local');
    assert.equal(old.code, 3);
    assert.equal(old.json.error.code, 'REPOSITORY_PASSPHRASE');
    await writeFile(join(lab.dir, 'repo.passphrase'), 'a new passphrase\n', { mode: 0o600 });
    await checkClean('local');
  });
});

/**
 * An HTTP proxy to `target` that holds every request whose path contains `hold` until `release()`; `held`
 * resolves when the first one arrives.
 */
async function holdingProxy(
  target: URL,
  hold: string,
): Promise<{ url: string; held: Promise<void>; release(): void; close(): Promise<void> }> {
  let arrived!: () => void;
  const held = new Promise<void>((resolve) => {
    arrived = resolve;
  });
  let open!: () => void;
  const released = new Promise<void>((resolve) => {
    open = resolve;
  });
  const server = http.createServer((req, res) => {
    const forward = () => {
      const upstream = http.request(
        { host: target.hostname, port: target.port, method: req.method, path: req.url, headers: req.headers },
        (answer) => {
          res.writeHead(answer.statusCode ?? 502, answer.headers);
          answer.pipe(res);
        },
      );
      upstream.on('error', () => res.destroy());
      req.pipe(upstream);
    };
    if ((req.url ?? '').includes(hold)) {
      arrived();
      void released.then(forward);
    } else forward();
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    held,
    release: open,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
