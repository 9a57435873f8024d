import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import Database from 'better-sqlite3';
import { Catalog, LATEST_SCHEMA_VERSION } from '../../src/catalog/index.js';
import { SnapkeeperError, UsageError } from '../../src/errors.js';
import { assertOpenRefused, emptyBackup, olderCatalog, withCatalog } from '../helpers/catalog.js';

const root = mkdtempSync(join(tmpdir(), 'snapkeeper-catalog-safety-'));
after(() => rmSync(root, { recursive: true, force: true }));
let n = 0;
const fresh = (name = 'catalog.db') => join(root, `case-${++n}`, name);

describe('catalog files: only init, lab up and catalog create make one', () => {
  it('a missing file is refused naming the path, and neither file nor directory is created', async () => {
    const file = fresh();
    assertOpenRefused(file, 'CATALOG_NOT_FOUND');
    assert.equal(existsSync(join(file, '..')), false, 'no directory either');
    await Catalog.create(file).close();
    assert.ok(existsSync(file));
    await Catalog.open(file).close();
  });

  it('an empty file is refused, even by create, and left as it was', async () => {
    const file = fresh();
    await Catalog.create(file).close();
    writeFileSync(file, '');
    for (const openIt of [() => Catalog.open(file), () => Catalog.create(file)]) {
      assert.throws(openIt, (err: unknown) => {
        assert.ok(err instanceof UsageError);
        assert.equal(err.code, 'CATALOG_INVALID');
        assert.ok(err.message.includes(file));
        return true;
      });
    }
    assert.equal(statSync(file).size, 0);
  });

  it('an empty SQLite database is not a catalog unless created as one', async () => {
    const file = fresh();
    await Catalog.create(join(file, '..', 'other.db')).close();
    const db = new Database(file);
    db.pragma('user_version = 7'); // a valid SQLite file without tables
    db.close();
    const before = readFileSync(file);
    assert.throws(() => Catalog.open(file), { code: 'CATALOG_INVALID' });
    assert.deepEqual(readFileSync(file), before, 'left untouched');
  });

  it('a damaged file is CATALOG_CORRUPT naming it, not an internal error', async () => {
    const file = fresh();
    const c = Catalog.create(file);
    for (let i = 0; i < 50; i++) await c.insertBackup(emptyBackup(`b-${i}`));
    await c.close();
    // Keep the header page, scribble over every other page.
    const f = await open(file, 'r+');
    const size = (await f.stat()).size;
    await f.write(Buffer.alloc(size - 4096, 0x5a), 0, size - 4096, 4096);
    await f.close();
    await assert.rejects(
      async () => Catalog.open(file).listBackups(),
      (err: unknown) => {
        assert.ok(err instanceof SnapkeeperError);
        assert.equal(err.code, 'CATALOG_CORRUPT');
        assert.ok(err.message.includes(file), err.message);
        return true;
      },
    );
  });
});

describe('catalog identity and the migration that brings it', () => {
  it('every catalog has an id of its own, kept across opens', async () => {
    const a = Catalog.create(fresh());
    const b = Catalog.create(fresh());
    try {
      assert.match(a.id, /^[0-9a-f]{12}$/);
      assert.notEqual(a.id, b.id);
      const again = Catalog.open(a.path);
      assert.equal(again.id, a.id);
      await again.close();
    } finally {
      await a.close();
      await b.close();
    }
  });

  it('an old catalog gets an id, keeps its locks (exclusive), its backups and their index rows', async () => {
    const file = fresh();
    rmSync(join(file, '..'), { recursive: true, force: true });
    await Catalog.create(join(file, '..', 'seed.db')).close();
    const { db: old, record } = olderCatalog(file, 3);
    old
      .prepare(
        "INSERT INTO operations (id, kind, pid, host, state, started_at) VALUES ('op-1', 'restore', 1, 'h', 'running', '2026-01-01T00:00:00.000Z')",
      )
      .run();
    old
      .prepare(
        "INSERT INTO operations (id, kind, pid, host, state, started_at, finished_at) VALUES ('op-2', 'backup', 1, 'h', 'failed', '2026-01-01T00:00:00.000Z', '2026-01-01T00:01:00.000Z')",
      )
      .run();
    old
      .prepare("INSERT INTO locks (resource, operation_id, acquired_at) VALUES ('backup:b-old', 'op-1', 'x')")
      .run();
    old
      .prepare(
        "INSERT INTO mounts (id, backup_id, kind, data, created_at) VALUES ('m', 'b-old', 'datastore', '{}', 'x')",
      )
      .run();
    old.close();

    await withCatalog(file, async (c) => {
      assert.equal(await c.schemaVersion(), LATEST_SCHEMA_VERSION);
      assert.match(c.id, /^[0-9a-f]{12}$/);
      assert.deepEqual(await c.getBackup('b-old'), record);
      assert.deepEqual(
        (await c.listBackups({ vm: 'web01' })).map((b) => b.id),
        ['b-old'],
      );
      assert.equal((await c.mountsOf('b-old')).length, 1, 'the mount still points at its backup');
      assert.deepEqual(
        (await c.lockHolders('backup:b-old')).map((h) => [h.mode, h.operation.id]),
        [['exclusive', 'op-1']],
      );
      // A failed operation of the old release finished itself after a clean undo: nothing to repair.
      assert.deepEqual(await c.listOperations({ state: ['failed'], recovered: false }), []);
      // The new state is accepted.
      await c.updateBackup({ ...record, state: 'lost' });
      assert.equal((await c.getBackup('b-old')).state, 'lost');
    });
  });
});
