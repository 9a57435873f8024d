import assert from 'node:assert/strict';
import { chmod, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { inspect } from 'node:util';
import { maskUrlPassword, parsePostgresUrl } from '../../src/config/catalog.js';
import { parseConfig } from '../../src/config/load.js';
import { ExitCode, UsageError } from '../../src/errors.js';

// The `catalog:` block: a SQLite path or a PostgreSQL URL with its password from a file or the environment,
// never inside the URL; what is refused names the key and never shows a password.
let dir: string;
before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'snapkeeper-catalog-config-'));
});
after(() => rm(dir, { recursive: true, force: true }));

const BASE = [
  'vcenter:',
  '  url: https://vc.example/sdk',
  '  user: u',
  '  passwordEnv: VC_PASSWORD',
  'arrays:',
  '  - { name: array1, type: fs, path: /srv/array1 }',
];

const text = (catalog: string[]) => [...BASE, 'catalog:', ...catalog.map((l) => `  ${l}`), ''].join('\n');

function load(catalog: string[], env: NodeJS.ProcessEnv = {}) {
  return parseConfig(text(catalog), join(dir, 'snapkeeper.yaml'), { VC_PASSWORD: 'pw', ...env });
}

function refused(catalog: string[], env: NodeJS.ProcessEnv = {}): string {
  let caught: unknown;
  try {
    load(catalog, env);
  } catch (err) {
    caught = err;
  }
  assert.ok(caught instanceof UsageError, `expected a UsageError, got ${String(caught)}`);
  assert.equal(caught.code, 'CONFIG_INVALID');
  assert.equal(caught.exitCode, ExitCode.usage);
  return caught.message;
}

describe('catalog configuration', () => {
  it('keeps the SQLite default and an explicit path', () => {
    const noBlock = parseConfig(`${BASE.join('\n')}\n`, join(dir, 'snapkeeper.yaml'), { VC_PASSWORD: 'pw' });
    assert.deepEqual(noBlock.catalog, { path: join(dir, 'snapkeeper.db') });
    assert.deepEqual(load(['path: cat/c.db']).catalog, { path: join(dir, 'cat/c.db') });
  });

  it('reads a PostgreSQL URL with its password from a file or the environment, never showing it', async () => {
    const pwFile = join(dir, 'catalog.password');
    await writeFile(pwFile, 's3cret-from-file\n');
    await chmod(pwFile, 0o600);
    const fromFile = load(['url: postgres://snap@db1.example:5433/snapdb', `passwordFile: ${pwFile}`]);
    assert.equal(fromFile.catalog.url, 'postgres://snap@db1.example:5433/snapdb');
    assert.equal(fromFile.catalog.path, 'postgres://snap@db1.example:5433/snapdb');
    assert.equal(
      fromFile.catalog.url !== undefined && fromFile.catalog.password?.reveal(),
      's3cret-from-file',
    );
    assert.deepEqual(fromFile.warnings, []);
    for (const shown of [
      JSON.stringify(fromFile),
      inspect(fromFile, { depth: 10 }),
      String(fromFile.catalog),
    ]) {
      assert.ok(!shown.includes('s3cret-from-file'), 'the password is never printed');
    }
    const fromEnv = load(['url: postgresql://snap@db1/snapdb', 'passwordEnv: CAT_PW'], { CAT_PW: 'env-pw' });
    assert.equal(fromEnv.catalog.url !== undefined && fromEnv.catalog.password?.reveal(), 'env-pw');
    const none = load(['url: postgres://snap@db1/snapdb']);
    assert.equal(none.catalog.url !== undefined && none.catalog.password, undefined);

    await chmod(pwFile, 0o644);
    const readable = load(['url: postgres://snap@db1/snapdb', `passwordFile: ${pwFile}`]);
    assert.equal(readable.warnings[0]?.code, 'PASSWORD_FILE_READABLE');
  });

  it('refuses a password inside the URL, masked, telling where it belongs', () => {
    const message = refused(['url: postgres://snap:hunter2@db1:5432/snapdb']);
    assert.match(message, /catalog\.url/);
    assert.match(message, /postgres:\/\/snap:\*\*\*@db1:5432\/snapdb/);
    assert.match(message, /passwordFile/);
    assert.match(message, /passwordEnv/);
    assert.ok(!message.includes('hunter2'));
  });

  it('refuses both path and url, a password key without url, two password sources, and bad URLs', () => {
    assert.match(
      refused(['path: c.db', 'url: postgres://u@h/d']),
      /exactly one of path \(a SQLite file\) and url/,
    );
    assert.match(refused(['path: c.db', 'passwordEnv: X']), /go with url/);
    assert.match(
      refused(['url: postgres://u@h/d', 'passwordEnv: X', 'passwordFile: f'], { X: 'x' }),
      /at most one of passwordFile and passwordEnv/,
    );
    assert.match(refused(['url: postgres://u@h/d', 'passwordEnv: NOPE']), /NOPE is not set/);
    assert.match(refused(['url: postgres://u@h/d', `passwordFile: ${join(dir, 'missing')}`]), /ENOENT/);
    assert.match(refused(['url: mysql://u@h/d']), /not a postgres:\/\/ URL/);
    assert.match(refused(['url: postgres://h/d']), /names no user/);
    assert.match(refused(['url: postgres://u@h/']), /names no database/);
    assert.match(refused(['url: postgres://u@h/d?sslmode=maybe']), /sslmode must be/);
    assert.match(refused(['url: postgres://u@h/d?application_name=x']), /unknown parameter application_name/);
    assert.match(refused(['url: postgres://u@h/d', 'host: h']), /host/);
  });

  it('takes a URL apart', () => {
    assert.deepEqual(parsePostgresUrl('postgres://snap%40corp@[::1]:6543/my%20db?sslmode=verify-full'), {
      host: '::1',
      port: 6543,
      database: 'my db',
      user: 'snap@corp',
      sslmode: 'verify-full',
    });
    assert.equal(maskUrlPassword('postgres://u:p%40ss@h/d'), 'postgres://u:***@h/d');
    assert.equal(maskUrlPassword('postgres://u@h/d'), 'postgres://u@h/d');
  });
});
