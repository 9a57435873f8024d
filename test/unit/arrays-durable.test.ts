import assert from 'node:assert/strict';
import { mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { initFsArray, readManifest } from '../../src/arrays/fs/index.js';
import { durableTempPath, writeFileDurable, writeJsonDurable } from '../../src/util/fs.js';

async function withDir(body: (dir: string) => Promise<void>): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'snapkeeper-durable-'));
  try {
    await body(dir);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

test('writeFileDurable replaces the file whole, with its mode, even over a temporary file a crash left', () =>
  withDir(async (dir) => {
    const file = join(dir, 'secret');
    await writeFile(file, 'old');
    // A crash left a world-readable temporary file: the new content must not inherit its mode.
    await writeFile(durableTempPath(file), 'half written', { mode: 0o644 });
    await writeFileDurable(file, 'new secret\n', 0o600);
    assert.equal(await readFile(file, 'utf8'), 'new secret\n');
    assert.equal((await stat(file)).mode & 0o777, 0o600);
    assert.deepEqual(await readdir(dir), ['secret']);
    await writeJsonDurable(join(dir, 'v.json'), { a: 1 });
    assert.equal(await readFile(join(dir, 'v.json'), 'utf8'), '{\n  "a": 1\n}\n');
  }));

test('array.json is written through the durable helper: no temporary file is left, a stale one is replaced', () =>
  withDir(async (dir) => {
    await initFsArray(dir, ['vol-a']);
    await writeFile(durableTempPath(join(dir, 'array.json')), '{ half');
    const manifest = await initFsArray(dir, ['vol-b']);
    assert.deepEqual(
      manifest.volumes.map((v) => v.name),
      ['vol-a', 'vol-b'],
    );
    assert.deepEqual(await readManifest(dir), manifest);
    assert.deepEqual((await readdir(dir)).sort(), ['array.json', 'clones', 'pool', 'snapshots']);
  }));
