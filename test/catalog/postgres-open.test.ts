import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
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
import { parseConfig } from '../../src/config/load.js';
import { EngineContext } from '../../src/engine/index.js';
import { freePort } from '../../src/lab/moto.js';
import { Secret } from '../../src/util/secret.js';
import { runCli } from '../helpers/cli.js';
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

  it('runs the CLI on a catalog.url configuration: catalog create, token create and list, inquire, never showing the password', async (t) => {
    if (!postgres.require(t)) return;
    const db = postgres.database();
    const dir = join(postgres.server().dataDir, '..');
    const config = join(dir, `pg-cli-${process.pid}.yaml`);
    writeFileSync(
      config,
      [
        'vcenter: { url: https://vc.example/sdk, user: u, passwordEnv: VC_PASSWORD }',
        'arrays: [{ name: a1, type: fs, path: /srv/a1 }]',
        `catalog: { url: "${db.url}", passwordEnv: CATALOG_PASSWORD }`,
        '',
      ].join('\n'),
    );
    const env = { VC_PASSWORD: 'vc', CATALOG_PASSWORD: db.password };
    const cli = (...args: string[]) => runCli(['--config', config, '--json', ...args], { env });
    const before = await cli('inquire');
    assert.equal(before.code, 3, 'no catalog yet: refused');
    assert.equal(before.json?.error?.code, 'CATALOG_NOT_FOUND');
    const created = await cli('catalog', 'create');
    assert.equal(created.code, 0, created.stderr);
    assert.equal(created.json.dialect, 'postgres');
    assert.equal(created.json.path, db.url);
    assert.match(created.json.id, /^[0-9a-f]{12}$/);
    const token = await cli('token', 'create', '--name', 'ci', '--role', 'operator');
    assert.equal(token.code, 0, token.stderr);
    const listed = await cli('token', 'list');
    assert.deepEqual(
      listed.json.map((x: { name: string }) => x.name),
      ['ci'],
    );
    const inquire = await cli('inquire');
    assert.equal(inquire.code, 0, inquire.stderr);
    assert.deepEqual(inquire.json, []);
    const wrong = await runCli(['--config', config, 'inquire'], {
      env: { ...env, CATALOG_PASSWORD: 'nope-nope' },
    });
    assert.equal(wrong.code, 3);
    assert.match(wrong.stderr, /refused the login/);
    for (const run of [before, created, token, listed, inquire, wrong]) {
      assert.ok(!run.stdout.includes(db.password) && !run.stderr.includes(db.password));
    }
  });

  it('an engine context opens a PostgreSQL catalog asynchronously and judges leases by its clock', async (t) => {
    if (!postgres.require(t)) return;
    const db = postgres.database();
    await (await PostgresCatalog.create(configOf(db))).close();
    const config = parseConfig(
      [
        'vcenter: { url: https://vc.example/sdk, user: u, passwordEnv: VC_PASSWORD }',
        'arrays: [{ name: a1, type: fs, path: /srv/a1 }]',
        `catalog: { url: "${db.url}", passwordEnv: CATALOG_PASSWORD }`,
        '',
      ].join('\n'),
      join(postgres.server().dataDir, '..', 'ctx.yaml'),
      { VC_PASSWORD: 'vc', CATALOG_PASSWORD: db.password },
    );
    // A context whose clock is a day off: leases are judged by the server's clock all the same.
    const skewed = () => new Date(Date.now() + 86_400_000);
    const ctx = new EngineContext({ config, now: skewed });
    assert.throws(() => ctx.catalog, /await ctx\.openCatalog\(\)/);
    const catalog = await ctx.openCatalog();
    assert.equal(ctx.catalog, catalog, 'opened once');
    assert.equal(await ctx.openCatalog(), catalog);
    assert.equal(catalog.dialect, 'postgres');
    const clock = await ctx.catalogNow();
    assert.ok(Math.abs(clock.getTime() - Date.now()) < 60_000, 'the server clock, not the context one');
    await catalog.beginOperation({ id: 'op-1', kind: 'backup' });
    const op = await catalog.getOperation('op-1');
    assert.ok(Math.abs(Date.parse(op.heartbeatAt!) - clock.getTime()) < 60_000);

    // A context sharing the catalog (the daemon's jobs) leaves it open when it closes.
    const shared = new EngineContext({ config, catalog, ownsCatalog: false });
    assert.equal(shared.catalog, catalog);
    await shared.close();
    assert.equal((await catalog.getOperation('op-1')).state, 'running', 'still open');
    await ctx.close();
    await assert.rejects(catalog.getOperation('op-1'), /pool|end/i, 'the owner closed it');
  });

  it('gives up on a lock another connection keeps too long (CATALOG_BUSY), taking nothing', async (t) => {
    if (!postgres.require(t)) return;
    const db = postgres.database();
    const c = await PostgresCatalog.create(configOf(db), { lockTimeoutMs: 200 });
    const u = new URL(db.url);
    const holder = new pg.Client({
      host: u.hostname,
      port: Number(u.port),
      user: decodeURIComponent(u.username),
      database: u.pathname.slice(1),
      password: db.password,
    });
    await holder.connect();
    try {
      await c.beginOperation({ id: 'op-1', kind: 'backup' });
      // Another process in the middle of a write on the operation's row (as a hung client would be).
      await holder.query('BEGIN');
      await holder.query("SELECT 1 FROM operations WHERE id = 'op-1' FOR UPDATE");
      await assert.rejects(c.acquireLocks('op-1', ['vm:1']), (e: unknown) => {
        assert.equal((e as { code?: string }).code, 'CATALOG_BUSY');
        assert.match((e as Error).message, /locked too long/);
        return true;
      });
      await assert.rejects(c.finishOperation('op-1', 'done'), { code: 'CATALOG_BUSY' });
      assert.deepEqual(await c.locksOf('op-1'), [], 'nothing taken');
      await holder.query('ROLLBACK');
      await c.acquireLocks('op-1', ['vm:1']);
      assert.deepEqual(await c.locksOf('op-1'), ['vm:1']);
    } finally {
      await holder.end();
      await c.close();
    }
  });
});
