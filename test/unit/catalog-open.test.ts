import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import Database from 'better-sqlite3';
import { applyMigrations, Catalog, LATEST_SCHEMA_VERSION, MIGRATIONS } from '../../src/catalog/index.js';
import { SqliteDatabase } from '../../src/catalog/sqlite/database.js';
import { assertOpenRefused, emptyBackup, olderCatalog, withCatalog } from '../helpers/catalog.js';

const root = mkdtempSync(join(tmpdir(), 'snapkeeper-catalog-open-'));
after(() => rmSync(root, { recursive: true, force: true }));
let n = 0;
/** A path in a new, existing directory (the catalog makes missing parents itself; other tools do not). */
function fresh(name = 'catalog.db'): string {
  const dir = join(root, `case-${++n}`);
  mkdirSync(dir);
  return join(dir, name);
}

describe('Catalog.open', () => {
  it('creates the parent directory and the file, in WAL mode with foreign keys on', async () => {
    const file = fresh('deep/er/catalog.db');
    const catalog = Catalog.create(file);
    try {
      assert.ok(existsSync(file));
      assert.equal(catalog.path, file);
      assert.equal(await catalog.schemaVersion(), LATEST_SCHEMA_VERSION);
    } finally {
      await catalog.close();
    }
    const db = new Database(file, { readonly: true });
    try {
      assert.equal(db.pragma('journal_mode', { simple: true }), 'wal');
      const versions = db.prepare('SELECT version, name FROM schema_migrations ORDER BY version').all();
      assert.deepEqual(
        versions,
        MIGRATIONS.map((m) => ({ version: m.version, name: m.name })),
      );
    } finally {
      db.close();
    }
  });

  it('keeps data across close and reopen, and migrates nothing the second time', async () => {
    const file = fresh();
    const first = Catalog.create(file);
    await first.insertBackup(emptyBackup('b-1'));
    await first.close();
    await first.close(); // twice is harmless
    const db = new Database(file);
    const result = applyMigrations(db, file);
    db.close();
    assert.deepEqual(result, { from: LATEST_SCHEMA_VERSION, to: LATEST_SCHEMA_VERSION, applied: [] });
    await withCatalog(file, async (second) => {
      assert.equal((await second.getBackup('b-1')).id, 'b-1');
    });
  });

  it('upgrades a catalog left by an older release and keeps its data', async () => {
    const file = fresh();
    // What release 1 would have left: only migration 1 applied, with a backup and a journaled operation.
    const { db: old, record, migrated } = olderCatalog(file, 1);
    assert.deepEqual(migrated, { from: 0, to: 1, applied: [1] });
    old.close();

    await withCatalog(file, async (catalog) => {
      assert.equal(await catalog.schemaVersion(), LATEST_SCHEMA_VERSION);
      assert.deepEqual(await catalog.getBackup('b-old'), record);
      assert.deepEqual(
        (await catalog.listBackups({ vm: 'web*' })).map((b) => b.id),
        ['b-old'],
      );
      // Tables of the later migrations work on the upgraded file.
      await catalog.createTask({ name: 'later', select: { vms: ['x'] } });
      await catalog.addMount({ id: 'm-1', backupId: 'b-old', kind: 'datastore' });
      assert.equal((await catalog.mountsOf('b-old')).length, 1);
    });
  });

  it('refuses a catalog with a newer schema, naming the file and both versions', async () => {
    const file = fresh();
    await Catalog.create(file).close();
    const db = new Database(file);
    db.prepare('INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)').run(
      LATEST_SCHEMA_VERSION + 1,
      'from the future',
      new Date().toISOString(),
    );
    db.close();
    assertOpenRefused(
      file,
      'CATALOG_TOO_NEW',
      new RegExp(`version ${LATEST_SCHEMA_VERSION + 1}\\b`),
      new RegExp(`up to ${LATEST_SCHEMA_VERSION}\\b`),
    );
  });

  it('refuses a file that is not SQLite, naming it and leaving it untouched', async () => {
    const file = fresh();
    const content = 'vcenter:\n  url: https://vc.example\n'.repeat(200);
    writeFileSync(file, content);
    assertOpenRefused(file, 'CATALOG_INVALID');
    assert.equal(readFileSync(file, 'utf8'), content);
    assert.equal(existsSync(`${file}-wal`), false);
  });

  it('refuses an SQLite database of some other program', async () => {
    const file = fresh();
    const db = new Database(file);
    db.exec('CREATE TABLE photos (id INTEGER PRIMARY KEY, path TEXT)');
    db.close();
    assert.throws(() => Catalog.open(file), { code: 'CATALOG_INVALID' });
    const again = new Database(file, { readonly: true });
    const tables = again.prepare("SELECT name FROM sqlite_master WHERE type = 'table'").all();
    again.close();
    assert.deepEqual(tables, [{ name: 'photos' }]);
  });

  it('refuses a path that cannot be a file', async () => {
    const dir = join(fresh(), '..');
    assert.throws(() => Catalog.open(dir), { code: 'CATALOG_OPEN_FAILED' });
  });

  it('has migrations numbered 1, 2, 3, ... with SQL', async () => {
    MIGRATIONS.forEach((m, i) => {
      assert.equal(m.version, i + 1);
      assert.ok(m.name.length > 0 && m.up.trim().length > 0);
    });
    assert.equal(LATEST_SCHEMA_VERSION, MIGRATIONS.length);
    const db = new Database(':memory:');
    assert.throws(() => applyMigrations(db, ':memory:', [MIGRATIONS[1]!]), /numbered/);
    db.close();
  });

  it('runs a write transaction only with a synchronous callback: an async one is refused and commits nothing', async () => {
    const db = SqliteDatabase.open(fresh(), { create: true });
    try {
      const insert = () => db.run("INSERT INTO meta (key, value) VALUES ('probe', 'x')");
      assert.throws(
        () =>
          db.write(async () => {
            insert();
          }),
        /cannot run an async callback/,
      );
      assert.equal(db.get("SELECT value FROM meta WHERE key = 'probe'"), undefined, 'rolled back');
      assert.equal(db.write(insert), 1);
      assert.deepEqual(db.get("SELECT value FROM meta WHERE key = 'probe'"), { value: 'x' });
    } finally {
      db.close();
    }
  });
});
