import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { constants } from 'node:fs';
import { mkdir, mkdtemp, open, readdir, readFile, rm, truncate, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import {
  type FsArray,
  type FsDriverChoice,
  initFsArray,
  layout,
  openFsArray,
} from '../../src/arrays/fs/index.js';
import { removeTree } from '../../src/arrays/fs/tree.js';
import { pathExists } from '../../src/util/fs.js';
import { type ArrayUnderTest, COUNTER_WIDTH, type CounterWriter, type HostFiles } from './conformance.js';

export const TEST_VOLUMES = ['vol-a', 'vol-b', 'vol-c'];

export interface FsArrayUnderTest extends ArrayUnderTest {
  array: FsArray;
  root: string;
}

/** The host's view of an fs array's exports: plain file-system calls, writes made durable. */
export const fsHost: HostFiles = {
  async write(path, data, offset) {
    await mkdir(dirname(path), { recursive: true });
    if (offset === undefined) {
      await writeFile(path, data, { flush: true });
      return;
    }
    const fh = await open(path, constants.O_WRONLY | constants.O_CREAT);
    try {
      const bytes = typeof data === 'string' ? Buffer.from(data) : data;
      await fh.write(bytes, 0, bytes.length, offset);
      await fh.sync();
    } finally {
      await fh.close();
    }
  },
  async truncate(path, size) {
    await truncate(path, size);
  },
  read: (path) => readFile(path),
  async mkdir(path) {
    await mkdir(path, { recursive: true });
  },
  async remove(path) {
    await rm(path, { recursive: true, force: true });
  },
  async list(path) {
    const out: { name: string; type: 'file' | 'directory' }[] = [];
    for (const e of await readdir(path, { withFileTypes: true })) {
      if (e.isDirectory()) out.push({ name: e.name, type: 'directory' });
      else if (e.isFile()) out.push({ name: e.name, type: 'file' });
    }
    return out.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  },
  exists: pathExists,
};

/** A fresh fs array with three empty volumes in a new directory under `parent`, opened with `driver`. */
export async function makeFsArray(parent: string, driver: FsDriverChoice): Promise<FsArrayUnderTest> {
  const root = await mkdtemp(join(parent, 'array-'));
  await initFsArray(root, TEST_VOLUMES);
  const array = await openFsArray({ name: 'test-array', path: root, driver });
  return {
    array,
    root,
    host: fsHost,
    async leftovers() {
      return [...(await readdir(layout.snapshots(root))), ...(await readdir(layout.clones(root)))];
    },
    startCounterWriter,
    cleanup: () => removeFsArray(root),
  };
}

/** Removes an fs array whatever its drivers made (btrfs subvolumes need `btrfs subvolume delete`). */
export async function removeFsArray(root: string): Promise<void> {
  for (const dir of [layout.snapshots(root), layout.clones(root)]) {
    const names = await readdir(dir).catch(() => [] as string[]);
    for (const n of names) await removeTree(join(dir, n));
  }
  await removeTree(layout.pool(root));
  await rm(root, { recursive: true, force: true });
}

/**
 * A separate process that writes n to A, makes it durable, then n to B, durably, for n = 1, 2, ...
 * Durable writes matter: a file system is free to write back unsynced pages in any order, so without them
 * even a crash-consistent snapshot could show B ahead of A. Resolves once both files hold a counter.
 */
async function startCounterWriter(fileA: string, fileB: string): Promise<CounterWriter> {
  const zero = '0'.repeat(COUNTER_WIDTH);
  await writeFile(fileA, zero);
  await writeFile(fileB, zero);
  const script = `
    const fs = require('node:fs');
    const a = fs.openSync(process.argv[1], 'r+');
    const b = fs.openSync(process.argv[2], 'r+');
    const put = (fd, n) => { fs.writeSync(fd, String(n).padStart(${COUNTER_WIDTH}, '0'), 0); fs.fdatasyncSync(fd); };
    put(a, 1); put(b, 1);
    process.stdout.write('ready\\n');
    for (let n = 2; ; n++) { put(a, n); put(b, n); }
  `;
  const child = spawn(process.execPath, ['-e', script, fileA, fileB], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const [line] = (await Promise.race([
    once(child.stdout!, 'data'),
    once(child, 'exit').then(() => {
      throw new Error('the counter writer exited before it was ready');
    }),
  ])) as [Buffer];
  assert.equal(line.toString().trim(), 'ready');
  return {
    async stop() {
      child.kill('SIGKILL');
      if (child.exitCode === null && child.signalCode === null) await once(child, 'exit');
    },
  };
}
