import assert from 'node:assert/strict';
import { hostname } from 'node:os';
import { describe, it } from 'node:test';
import pg from 'pg';
import {
  type CatalogHandle,
  LATEST_SCHEMA_VERSION,
  openCatalog,
  POSTGRES_MIGRATIONS,
  PostgresCatalog,
} from '../../src/catalog/index.js';
import type { PostgresCatalogConfig } from '../../src/config/catalog.js';
import { freePort } from '../../src/lab/moto.js';
import { Secret } from '../../src/util/secret.js';
import { filePostgres } from '../helpers/postgres.js';

// What only the PostgreSQL catalog can show: opening and creating over the network, what it refuses and how
// it names the server (never the password), migrations under concurrent creators, and the server's clock.
const postgres = filePostgres();

function configOf(db: { url: string; password: string }): PostgresCatalogConfig {
  return { url: db.url, path: db.url, password: new Secret(db.password) };
}

async function sql(db: { url: string; password: string }, text: string): Promise<pg.QueryResult> {
  const u = new URL(db.url);
  const c = new pg.Client({
    host: u.hostname,
    port: Number(u.port),
    user: decodeURIComponent(u.username),
    database: u.pathname.slice(1),
    password: db.password,
  });
  await c.connect();
  try {
    return await c.query(text);
  } finally {
    await c.end();
  }
}

describe('PostgresCatalog open and create', () => {
  it('creates a catalog once, even with several creators at once, and every opener reads one id', async (t) => {
    if (!postgres.require(t)) return;
    const db = postgres.database();
    const opened: CatalogHandle[] = await Promise.all(
      [1, 2, 3, 4].map(() => openCatalog(configOf(db), { create: true })),
    );
    try {
      assert.equal(new Set(opened.map((c) => c.id)).size, 1, 'one identity');
      assert.match(opened[0]!.id, /^[0-9a-f]{12}$/);
      for (const c of opened) {
        assert.equal(c.dialect, 'postgres');
        assert.equal(await c.schemaVersion(), LATEST_SCHEMA_VERSION);
        assert.equal(c.location, db.url);
      }
      const versions = await sql(db, 'SELECT version FROM schema_migrations ORDER BY version');
      assert.deepEqual(
        versions.rows.map((r) => r.version),
        POSTGRES_MIGRATIONS.map((m) => m.version),
        'each migration applied once',
      );
    } finally {
      for (const c of opened) await c.close();
    }
  });

  it('refuses an empty database without create, a database of other tables, and a newer schema', async (t) => {
    if (!postgres.require(t)) return;
    const empty = postgres.database();
    await assert.rejects(openCatalog(configOf(empty)), (e: unknown) => {
      assert.equal((e as { code?: string }).code, 'CATALOG_NOT_FOUND');
      assert.match((e as Error).message, /catalog create/);
      return true;
    });
    assert.equal((await sql(empty, "SELECT to_regclass('schema_migrations') AS t")).rows[0].t, null);

    const other = postgres.database();
    await sql(other, 'CREATE TABLE invoices (id int)');
    await assert.rejects(openCatalog(configOf(other), { create: true }), { code: 'CATALOG_INVALID' });
    assert.equal((await sql(other, "SELECT to_regclass('schema_migrations') AS t")).rows[0].t, null);

    const newer = postgres.database();
    await (await PostgresCatalog.create(configOf(newer))).close();
    await sql(newer, "INSERT INTO schema_migrations VALUES (999, 'from the future', 'x')");
    await assert.rejects(openCatalog(configOf(newer)), (e: unknown) => {
      assert.equal((e as { code?: string }).code, 'CATALOG_TOO_NEW');
      assert.match((e as Error).message, /999/);
      return true;
    });
  });

  it('brings an older schema up to date on open, keeping its rows and identity', async (t) => {
    if (!postgres.require(t)) return;
    // Build a version-5 catalog by hand: the first five steps only.
    const fresh = postgres.database();
    await sql(
      fresh,
      'CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)',
    );
    for (const m of POSTGRES_MIGRATIONS.slice(0, 5)) {
      await sql(fresh, m.up);
      await sql(fresh, `INSERT INTO schema_migrations VALUES (${m.version}, 'm', 'x')`);
    }
    const id = (await sql(fresh, "SELECT value FROM meta WHERE key = 'catalog_id'")).rows[0].value as string;
    await sql(
      fresh,
      `INSERT INTO backups (id, task, state, started_at, record) VALUES ('b-1', 'web', 'complete', '2026-11-01T01:00:00.000Z',
        '{"id":"b-1","task":"web","state":"complete","startedAt":"2026-11-01T01:00:00.000Z","vms":[],"snapshots":[],"warnings":[]}')`,
    );
    const c = await openCatalog(configOf(fresh));
    try {
      assert.equal(await c.schemaVersion(), LATEST_SCHEMA_VERSION);
      assert.equal(c.id, id);
      assert.equal((await c.getBackup('b-1')).task, 'web');
      assert.deepEqual(await c.currentLeadership(), { term: 0, mine: false });
    } finally {
      await c.close();
    }
  });

  it('names host:port and database, never the password, when the server is absent or refuses the login', async (t) => {
    if (!postgres.require(t)) return;
    const db = postgres.database();
    const port = await freePort();
    const nowhere = db.url.replace(/:\d+\//, `:${port}/`);
    await assert.rejects(openCatalog(configOf({ url: nowhere, password: db.password })), (e: unknown) => {
      assert.equal((e as { code?: string }).code, 'CATALOG_UNREACHABLE');
      assert.match((e as Error).message, new RegExp(`127\\.0\\.0\\.1:${port} database t\\d+_\\d+`));
      assert.ok(!JSON.stringify(e).includes(db.password));
      assert.ok(!(e as Error).message.includes(db.password));
      return true;
    });
    const wrong = 'not-the-password-4711';
    await assert.rejects(openCatalog(configOf({ url: db.url, password: wrong })), (e: unknown) => {
      assert.equal((e as { code?: string }).code, 'CATALOG_AUTH_FAILED');
      assert.match((e as Error).message, /127\.0\.0\.1:\d+ database t\d+_\d+/);
      assert.match((e as Error).message, /passwordFile|passwordEnv/);
      assert.ok(!(e as Error).message.includes(wrong));
      assert.ok(!String((e as Error).cause).includes(wrong));
      return true;
    });
    const missing = db.url.replace(/\/[^/]+$/, '/no_such_database');
    await assert.rejects(openCatalog(configOf({ url: missing, password: db.password })), {
      code: 'CATALOG_NOT_FOUND',
    });
  });

  it("stamps times with the server's clock, not the caller's", async (t) => {
    if (!postgres.require(t)) return;
    const db = postgres.database();
    const c = await openCatalog(configOf(db), { create: true });
    try {
      const server = (await sql(db, 'SELECT extract(epoch FROM clock_timestamp()) * 1000 AS ms')).rows[0]
        .ms as string;
      const before = (await c.now()).getTime();
      assert.ok(Math.abs(before - Number(server)) < 60_000, 'now() is the server clock');
      await c.beginOperation({ id: 'op-1', kind: 'backup' });
      const op = await c.getOperation('op-1');
      assert.equal(op.host, hostname());
      assert.match(op.startedAt, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
      assert.ok(Date.parse(op.startedAt) >= before);
      const member = await c.heartbeatMember({ instanceId: 'd-1', host: 'h', pid: 1, listen: 'x' });
      assert.ok(Date.parse(member.heartbeatAt) >= Date.parse(op.startedAt));
      const lead = await c.claimLeadership('d-1', 30_000);
      assert.ok(lead.mine);
      assert.equal(Date.parse(lead.expiresAt!) - Date.parse((await c.currentLeadership()).expiresAt!), 0);
    } finally {
      await c.close();
    }
  });
});
