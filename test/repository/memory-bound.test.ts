import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, open, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { pseudoRandom } from './helpers.js';

const child = fileURLToPath(new URL('./child.js', import.meta.url));
const run = promisify(execFile);
const GiB = 1 << 30;
const MiB = 1 << 20;

describe('repository: memory stays bounded whatever the disk size', () => {
  it('offloading a sparse 8 GiB file (with 48 MiB of data in it) peaks under 1 GiB RSS', async (t) => {
    const dir = await mkdtemp(join(tmpdir(), 'repo-rss-'));
    t.after(() => rm(dir, { recursive: true, force: true }));
    const file = join(dir, 'big-flat.vmdk');
    const fh = await open(file, 'w');
    // Data in 12 places, 4 MiB each, the rest a hole.
    for (let i = 0; i < 12; i++) await fh.write(pseudoRandom(4 * MiB, `rss-${i}`), 0, 4 * MiB, i * 680 * MiB);
    await fh.truncate(8 * GiB);
    await fh.close();
    const root = join(dir, 'repo');
    const { stdout } = await run(
      process.execPath,
      [child, JSON.stringify({ op: 'offload-file', root, file, chunkSize: 4 * MiB })],
      { maxBuffer: 1 << 20 },
    );
    const r = JSON.parse(stdout.trim()) as { maxRss: number; size: number; stored: number; chunks: number };
    assert.equal(r.size, 8 * GiB);
    assert.equal(r.chunks, 2048);
    assert.equal(r.stored, 12, 'every data chunk stored, every hole a zero chunk');
    assert.ok(r.maxRss < GiB, `peak RSS ${(r.maxRss / MiB).toFixed(0)} MiB`);
    t.diagnostic(`peak RSS ${(r.maxRss / MiB).toFixed(0)} MiB for an 8 GiB file`);
  });
});
