import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { initRepository, openRepository } from '../../src/repository/index.js';
import { bufferSink, bufferSource, FAST, fileEntry, PASS, pseudoRandom, TestDirBackend } from './helpers.js';

const CS = 1 << 16;
const child = fileURLToPath(new URL('./child.js', import.meta.url));
const run = promisify(execFile);

/**
 * Two backups in three writers' indexes; one forgotten. Prune will: save 1 lock, save the new index, remove
 * 3 old indexes, remove the forgotten backup's packs, remove its lock.
 */
async function setup(root: string) {
  const backend = new TestDirBackend(root);
  const repo = await initRepository(backend, PASS, { ...FAST, chunkSize: CS, packSize: 1 << 20 });
  const keep = pseudoRandom(24 * CS, 'keep');
  const ids: string[] = [];
  for (const [name, data] of [
    ['keep', keep],
    ['drop', pseudoRandom(40 * CS, 'drop')],
    ['drop2', pseudoRandom(8 * CS, 'drop2')],
  ] as const) {
    const w = await repo.writer();
    const f = await w.addFile(bufferSource('disk', data));
    ids.push((await w.commit(fileEntry([f], name))).id);
  }
  await repo.forget(ids[1]!);
  await repo.forget(ids[2]!);
  await repo.close();
  return { keep, keepId: ids[0]! };
}

describe('repository: prune killed (SIGKILL) at any point leaves check clean and data restorable', () => {
  const points = [
    { method: 'save', n: 2, what: 'before the new index is saved' },
    { method: 'remove', n: 1, what: 'after the new index, before any old index is removed' },
    { method: 'remove', n: 3, what: 'among the old indexes' },
    { method: 'remove', n: 5, what: 'among the packs' },
    { method: 'remove', n: 8, what: 'among the packs, later' },
  ] as const;
  for (const killAt of points) {
    it(`killed ${killAt.what} (${killAt.method} #${killAt.n})`, async (t) => {
      const root = await mkdtemp(join(tmpdir(), 'repo-prune-kill-'));
      t.after(() => rm(root, { recursive: true, force: true }));
      const { keep, keepId } = await setup(root);
      const killed = await run(process.execPath, [child, JSON.stringify({ op: 'prune', root, killAt })]).then(
        () => undefined,
        (err: { signal?: string }) => err.signal,
      );
      assert.equal(killed, 'SIGKILL', 'the prune was killed part way');
      const repo = await openRepository(new TestDirBackend(root), PASS, FAST);
      assert.deepEqual((await repo.check({ readData: true })).issues, []);
      const sink = bufferSink(keep.length);
      await repo.restoreFile((await repo.loadManifest(keepId)).body.vms[0]!.files[0]!, sink);
      assert.ok(sink.data.equals(keep));
      // The dead prune's lock is stale (dead pid on this host): the next prune runs and finishes the job.
      const again = await repo.prune({ safetyDelayMs: 0 });
      assert.equal(again.packsPending, 0);
      const after = await repo.check({ readData: true });
      assert.deepEqual(after.issues, []);
      assert.equal(after.manifests, 1);
      assert.ok(after.chunks <= 24 + 16, `only what the kept backup needs is left (${after.chunks} chunks)`);
      await repo.close();
    });
  }
});
