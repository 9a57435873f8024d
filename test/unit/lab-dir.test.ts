import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { SnapkeeperError, UsageError } from '../../src/errors.js';
import { labFiles, labUp } from '../../src/lab/index.js';
import { startSimulator } from '../../src/lab/simulator.js';
import { STANDARD_SPEC } from '../helpers/lab.js';

const CLI = fileURLToPath(new URL('../../../bin/snapkeeper.js', import.meta.url));

/** Every file of `dir` with its content and mode: what "nothing changed" compares. */
async function snapshotDir(dir: string): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  for (const name of (await readdir(dir)).sort()) {
    const p = join(dir, name);
    out[name] = `${((await stat(p)).mode & 0o777).toString(8)}:${await readFile(p, 'utf8')}`;
  }
  return out;
}

async function withDir(body: (dir: string) => Promise<void>): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'snapkeeper-lab-dir-'));
  try {
    await body(dir);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

const refusedAsNotEmpty =
  (...names: string[]) =>
  (err: unknown) => {
    assert.ok(err instanceof UsageError, String(err));
    assert.equal(err.code, 'LAB_DIR_NOT_EMPTY');
    assert.equal(err.exitCode, 3);
    for (const n of names) assert.ok(err.message.includes(n), `${err.message} names ${n}`);
    return true;
  };

describe('lab up refuses a directory holding files a lab writes', () => {
  test("a user's configuration, password and catalog are neither overwritten nor deleted", () =>
    withDir(async (dir) => {
      await writeFile(join(dir, labFiles.config), 'vcenter: { url: https://real-vcenter/sdk }\n');
      await writeFile(join(dir, labFiles.password), 'the real password\n', { mode: 0o600 });
      await writeFile(join(dir, 'catalog.db'), 'real catalog');
      await writeFile(join(dir, 'catalog.db-wal'), 'real wal');
      await writeFile(join(dir, 'notes.txt'), 'unrelated');
      const before = await snapshotDir(dir);
      await assert.rejects(
        labUp({ specFile: STANDARD_SPEC, dir }),
        refusedAsNotEmpty(labFiles.config, labFiles.password, 'catalog.db', 'catalog.db-wal'),
      );
      assert.deepEqual(await snapshotDir(dir), before, 'nothing changed');
    }));

  test('each file a lab writes is enough to refuse', async () => {
    const names = [
      labFiles.config,
      labFiles.password,
      labFiles.resolvedSpec,
      labFiles.log,
      'catalog.db',
      'catalog.db-shm',
      'catalog.db-journal',
      `${labFiles.config}.tmp`,
    ];
    for (const name of names) {
      await withDir(async (dir) => {
        await writeFile(join(dir, name), 'mine');
        await assert.rejects(labUp({ specFile: STANDARD_SPEC, dir }), refusedAsNotEmpty(name));
        assert.deepEqual(await readdir(dir), [name]);
      });
    }
  });

  test('a stale simulator.ready.json is refused, not taken for the new simulator', () =>
    withDir(async (dir) => {
      const stale = JSON.stringify({ url: 'https://127.0.0.1:1/sdk', pid: 1, vms: [] });
      await writeFile(join(dir, labFiles.ready), stale);
      await assert.rejects(labUp({ specFile: STANDARD_SPEC, dir }), refusedAsNotEmpty(labFiles.ready));
      assert.equal(await readFile(join(dir, labFiles.ready), 'utf8'), stale);
    }));

  test('other files do not stop lab up, and undoing a failed lab up leaves them alone', () =>
    withDir(async (dir) => {
      await writeFile(join(dir, 'notes.txt'), 'unrelated');
      // The directory passes the check; the simulator then fails, and undoing leaves the user's file alone.
      await assert.rejects(
        labUp({ specFile: STANDARD_SPEC, dir, env: { ...process.env, SNAPKEEPER_SIMULATOR: '/bin/false' } }),
        (err: unknown) => err instanceof SnapkeeperError && err.code === 'LAB_SIMULATOR_FAILED',
      );
      assert.deepEqual(await readdir(dir), ['notes.txt']);
    }));

  test('`snapkeeper lab up --dir .` in a working directory exits 3 and changes nothing', () =>
    withDir(async (dir) => {
      await writeFile(join(dir, labFiles.config), 'arrays: []\n');
      const before = await snapshotDir(dir);
      const child = spawn(
        process.execPath,
        [CLI, '--json', 'lab', 'up', '--spec', STANDARD_SPEC, '--dir', '.'],
        {
          cwd: dir,
          stdio: ['ignore', 'pipe', 'pipe'],
        },
      );
      const out: Buffer[] = [];
      child.stdout.on('data', (b: Buffer) => out.push(b));
      const code = await new Promise((r) => child.on('close', r));
      assert.equal(code, 3);
      assert.equal(JSON.parse(Buffer.concat(out).toString('utf8')).error.code, 'LAB_DIR_NOT_EMPTY');
      assert.deepEqual(await snapshotDir(dir), before);
    }));
});

test('startSimulator removes a stale ready file before it starts the simulator', () =>
  withDir(async (dir) => {
    const readyFile = join(dir, labFiles.ready);
    await writeFile(readyFile, JSON.stringify({ url: 'https://127.0.0.1:1/sdk', pid: 1, vms: [] }));
    await writeFile(join(dir, 'password'), 'x\n');
    // /bin/false never writes a ready file: an old one must not be taken for its answer.
    await assert.rejects(
      startSimulator({
        binary: '/bin/false',
        specFile: join(dir, 'spec.json'),
        readyFile,
        logFile: join(dir, 'log'),
        user: 'u',
        passwordFile: join(dir, 'password'),
        tls: false,
      }),
      (err: unknown) =>
        err instanceof SnapkeeperError &&
        err.code === 'LAB_SIMULATOR_FAILED' &&
        /exit code 1/.test(err.message),
    );
  }));
