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
const SIZE = 6 << 20;

describe('repository: an offload killed (SIGKILL) part way', () => {
  // Saves of the offload: 1 lock, then packs (1 MiB each: 6), then the index, then the manifest.
  for (const n of [2, 4, 8, 9]) {
    it(`killed at save #${n}: check stays clean, the next offload reuses what was stored`, async (t) => {
      const root = await mkdtemp(join(tmpdir(), 'repo-offload-kill-'));
      t.after(() => rm(root, { recursive: true, force: true }));
      await (
        await initRepository(new TestDirBackend(root), PASS, { ...FAST, chunkSize: CS, packSize: 1 << 20 })
      ).close();
      const job = {
        op: 'offload',
        root,
        seed: 'killed',
        size: SIZE,
        backupId: 'K',
        killAt: { method: 'save', n },
      };
      const signal = await run(process.execPath, [child, JSON.stringify(job)]).then(
        () => undefined,
        (err: { signal?: string }) => err.signal,
      );
      assert.equal(signal, 'SIGKILL');
      const backend = new TestDirBackend(root);
      const repo = await openRepository(backend, PASS, FAST);
      const before = await repo.check({ readData: true });
      assert.deepEqual(before.issues, []);
      assert.equal(before.manifests, 0);
      const packsBefore = [];
      for await (const o of backend.list('packs/')) packsBefore.push(o.key);

      const data = pseudoRandom(SIZE, 'killed');
      let added = 0;
      const w = await repo.writer({ onProgress: (p) => (added = p.bytesAdded) });
      const f = await w.addFile(bufferSource('disk.vmdk', data));
      const s = await w.commit(fileEntry([f], 'K'));
      // What the killed offload had saved is not saved again.
      assert.ok(
        added <= SIZE - packsBefore.length * (1 << 20) + 200_000,
        `added ${added} after ${packsBefore.length} packs`,
      );
      assert.deepEqual((await repo.check({ readData: true })).issues, []);
      const sink = bufferSink(SIZE);
      await repo.restoreFile((await repo.loadManifest(s.id)).body.vms[0]!.files[0]!, sink);
      assert.ok(sink.data.equals(data));
      await repo.close();
    });
  }
});
