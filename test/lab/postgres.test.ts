import assert from 'node:assert/strict';
import { test } from 'node:test';
import pg from 'pg';
import { filePostgres } from '../helpers/postgres.js';

const postgres = filePostgres();

/** pg lets a URL's (absent) password override the `password` option, so the URL is taken apart here. */
function client(url: string, password: string): pg.Client {
  const u = new URL(url);
  return new pg.Client({
    host: u.hostname,
    port: Number(u.port),
    user: decodeURIComponent(u.username),
    database: u.pathname.slice(1),
    password,
  });
}

test('a test PostgreSQL server takes the password, refuses a wrong one, and gives each test its own database', async (t) => {
  if (!postgres.require(t)) return;
  const a = postgres.database();
  const b = postgres.database();
  assert.notEqual(a.url, b.url);
  const c = client(a.url, a.password);
  await c.connect();
  try {
    const r = await c.query<{ db: string }>('select current_database() as db');
    assert.equal(`/${r.rows[0]?.db}`, new URL(a.url).pathname);
  } finally {
    await c.end();
  }
  const wrong = client(b.url, 'not-the-password');
  await assert.rejects(wrong.connect(), /password authentication failed/);
});
