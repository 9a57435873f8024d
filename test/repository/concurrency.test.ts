import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import {
  initRepository,
  LOCK_STALE_MS,
  MemoryBackend,
  openRepository,
  RepositoryError,
} from '../../src/repository/index.js';
import { bufferSink, bufferSource, FAST, fileEntry, PASS, pseudoRandom, TestDirBackend } from './helpers.js';

const CS = 1 << 16;
const child = fileURLToPath(new URL('./child.js', import.meta.url));
const run = promisify(execFile);

describe('repository: several writers, locks, prune', () => {
  it('two writers at once (sharing half their data) both commit; check --read-data is clean', async () => {
    const backend = new MemoryBackend();
    const repo = await initRepository(backend, PASS, { ...FAST, chunkSize: CS, packSize: 1 << 20 });
    const other = await openRepository(backend, PASS, FAST);
    const shared = pseudoRandom(20 * CS, 'shared');
    const a = Buffer.concat([shared, pseudoRandom(20 * CS, 'a')]);
    const b = Buffer.concat([shared, pseudoRandom(20 * CS, 'b')]);
    const [wa, wb] = await Promise.all([repo.writer(), other.writer()]);
    assert.equal(backend.keys('locks/').length, 2);
    const [fa, fb] = await Promise.all([wa.addFile(bufferSource('a', a)), wb.addFile(bufferSource('b', b))]);
    const [sa, sb] = await Promise.all([wa.commit(fileEntry([fa], 'A')), wb.commit(fileEntry([fb], 'B'))]);
    assert.deepEqual(backend.keys('locks/'), []);
    assert.equal(backend.keys('index/').length, 2, 'each writer wrote its own index');
    const report = await repo.check({ readData: true });
    assert.deepEqual(report.issues, []);
    assert.equal(report.manifests, 2);
    for (const [s, data] of [
      [sa, a],
      [sb, b],
    ] as const) {
      const sink = bufferSink(data.length);
      await repo.restoreFile((await repo.loadManifest(s.id)).body.vms[0]!.files[0]!, sink);
      assert.ok(sink.data.equals(data));
    }
    await repo.close();
    await other.close();
  });

  it('two writers in two processes into one directory repository; check --read-data is clean', async (t) => {
    const root = await mkdtemp(join(tmpdir(), 'repo-two-'));
    t.after(() => rm(root, { recursive: true, force: true }));
    const repo = await initRepository(new TestDirBackend(root), PASS, {
      ...FAST,
      chunkSize: CS,
      packSize: 1 << 20,
    });
    const job = (backupId: string, seed: string) =>
      run(process.execPath, [child, JSON.stringify({ op: 'offload', root, backupId, seed, size: 3 << 20 })]);
    const results = await Promise.all([job('P1', 'one'), job('P2', 'two')]);
    const ids = results.map((r) => JSON.parse(r.stdout.trim()).id as string);
    const report = await repo.check({ readData: true });
    assert.deepEqual(report.issues, []);
    assert.equal(report.manifests, 2);
    const m = await repo.loadManifest(ids[1]!);
    const sink = bufferSink(3 << 20);
    await repo.restoreFile(m.body.vms[0]!.files[0]!, sink);
    assert.ok(sink.data.equals(pseudoRandom(3 << 20, 'two')));
    await repo.close();
  });

  it('prune is refused while a writer holds its lock, naming the holder; a writer is refused during prune', async () => {
    const backend = new MemoryBackend();
    const repo = await initRepository(backend, PASS, { ...FAST, chunkSize: CS });
    const w = await repo.writer();
    await assert.rejects(repo.prune({ safetyDelayMs: 0 }), (e: unknown) => {
      assert.ok(e instanceof RepositoryError);
      assert.equal(e.code, 'REPOSITORY_LOCKED');
      assert.match(e.message, new RegExp(`shared lock of pid ${process.pid} on ${hostname()}`));
      return true;
    });
    assert.equal(backend.keys('locks/').length, 1, 'the refused prune removed its own lock');
    await w.abort();
    // A prune holding its lock (planted as another live process's would be).
    backend.put(
      'locks/exclusive-other',
      Buffer.from(
        JSON.stringify({
          kind: 'exclusive',
          host: 'other-host',
          pid: 1,
          created: new Date().toISOString(),
          refreshed: new Date().toISOString(),
        }),
      ),
    );
    await assert.rejects(repo.writer(), { code: 'REPOSITORY_LOCKED' });
    await repo.close();
  });

  it('stale locks (old, or of a dead pid on this host) do not block and are removed by prune', async () => {
    const backend = new MemoryBackend();
    const repo = await initRepository(backend, PASS, { ...FAST, chunkSize: CS });
    const old = new Date(Date.now() - LOCK_STALE_MS - 60_000).toISOString();
    const lock = (kind: string, host: string, pid: number, refreshed: string) =>
      Buffer.from(JSON.stringify({ kind, host, pid, created: refreshed, refreshed }));
    backend.put('locks/old', lock('shared', 'elsewhere', 1, old));
    // A pid that cannot be alive: above the kernel's pid limit.
    backend.put('locks/dead', lock('shared', hostname(), 2 ** 22 + 1, new Date().toISOString()));
    await repo.prune({ safetyDelayMs: 0 });
    assert.deepEqual(backend.keys('locks/'), []);
    await repo.close();
  });

  it('prune keeps unreferenced packs younger than the safety delay and deletes them later', async () => {
    const backend = new MemoryBackend();
    const repo = await initRepository(backend, PASS, { ...FAST, chunkSize: CS, packSize: 1 << 20 });
    const keep = pseudoRandom(10 * CS, 'keep');
    const drop = pseudoRandom(30 * CS, 'drop');
    const w1 = await repo.writer();
    const f1 = await w1.addFile(bufferSource('keep', keep));
    const s1 = await w1.commit(fileEntry([f1], 'K'));
    const w2 = await repo.writer();
    const f2 = await w2.addFile(bufferSource('drop', drop));
    const s2 = await w2.commit(fileEntry([f2], 'D'));
    const packsBefore = backend.keys('packs/').length;
    await repo.forget(s2.id);
    await assert.rejects(repo.forget(s2.id), { code: 'REPOSITORY_BACKUP_NOT_FOUND' });

    const hour = 3_600_000;
    const first = await repo.prune({ safetyDelayMs: hour });
    assert.equal(first.packsDeleted, 0);
    assert.ok(first.packsPending >= 1);
    assert.equal(backend.keys('packs/').length, packsBefore);

    const later = await repo.prune({ safetyDelayMs: hour, now: new Date(Date.now() + 2 * hour) });
    assert.equal(later.packsDeleted, first.packsPending);
    assert.ok(later.bytesFreed >= 30 * CS);
    assert.equal(later.packsPending, 0);
    assert.equal(backend.keys('index/').length, 1, 'one index replaces the old ones');
    assert.deepEqual((await repo.check({ readData: true })).issues, []);
    const sink = bufferSink(keep.length);
    await repo.restoreFile((await repo.loadManifest(s1.id)).body.vms[0]!.files[0]!, sink);
    assert.ok(sink.data.equals(keep));
    await repo.close();
  });

  it('prune adopts packs a dead writer left without an index when a manifest needs them, else collects them', async () => {
    const backend = new MemoryBackend();
    const repo = await initRepository(backend, PASS, { ...FAST, chunkSize: CS, packSize: 1 << 20 });
    const data = pseudoRandom(20 * CS, 'orphan');
    // The writer dies before its index: its first index save fails, after its packs were saved.
    backend.failNext('save', new Error('killed'), 'index/');
    const w = await repo.writer();
    const f = await w.addFile(bufferSource('disk', data));
    await assert.rejects(w.commit(fileEntry([f])), /killed/);
    const orphans = backend.keys('packs/');
    assert.ok(orphans.length >= 2);
    assert.deepEqual((await repo.check()).issues, [], 'packs no index names are not an issue');
    const r = await repo.prune({ safetyDelayMs: 0 });
    assert.equal(r.packsDeleted, orphans.length);
    assert.deepEqual(backend.keys('packs/'), []);
    await repo.close();
  });
});
