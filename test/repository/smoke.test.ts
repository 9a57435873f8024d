import assert from 'node:assert/strict';
import { it } from 'node:test';
import { initRepository, MemoryBackend } from '../../src/repository/index.js';
import { bufferSink, bufferSource, FAST, fileEntry, PASS, pseudoRandom } from './helpers.js';

it('smoke', async () => {
  const backend = new MemoryBackend();
  const repo = await initRepository(backend, PASS, { ...FAST, chunkSize: 1 << 16, packSize: 1 << 20 });
  const data = Buffer.concat([pseudoRandom(3_000_000, 'a'), Buffer.alloc(200_000), pseudoRandom(12345, 'b')]);
  const w = await repo.writer();
  const f = await w.addFile(bufferSource('disk.vmdk', data));
  const s = await w.commit(fileEntry([f]));
  const m = await repo.loadManifest(s.id);
  const sink = bufferSink(data.length);
  await repo.restoreFile(m.body.vms[0]!.files[0]!, sink);
  assert.ok(sink.data.equals(data));
  const c = await repo.check({ readData: true });
  assert.deepEqual(c.issues, []);
  console.log(c, backend.keys().length);
  await repo.close();
});
