import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { request } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { parseConfig } from '../../src/config/load.js';
import { UsageError } from '../../src/errors.js';
import { runCli } from '../helpers/cli.js';
import { requireCapability } from '../helpers/require.js';
import { freePort, serve } from './helpers.js';

const BASE = [
  'vcenter: { url: "https://127.0.0.1:9/sdk", user: u, passwordEnv: SK_TEST_PW }',
  'arrays: [{ name: a1, type: fs, path: ./array }]',
].join('\n');
const ENV = { SK_TEST_PW: 'vcenter-secret-for-tests' };

describe('the server section of the configuration', () => {
  it('defaults: 127.0.0.1:8470, open health and metrics, no webhooks', () => {
    const c = parseConfig(BASE, '/etc/sk/snapkeeper.yaml', ENV);
    assert.equal(c.server.listen, '127.0.0.1:8470');
    assert.equal(c.server.metricsAuth, false);
    assert.equal(c.server.healthAuth, false);
    assert.deepEqual(c.server.webhooks, []);
    assert.deepEqual(c.server.loginRateLimit, { attempts: 5, windowSeconds: 300 });
    assert.equal(c.server.sessionHours, 12);
    assert.equal(c.server.leaseSeconds, 60);
  });

  it('paths are relative to the configuration file', () => {
    const c = parseConfig(
      `${BASE}\nserver: { tls: { cert: tls/c.pem, key: /abs/k.pem }, logFile: log/d.log, webhooks: [{ url: "https://h.example/x", secretFile: wh.secret }] }`,
      '/etc/sk/snapkeeper.yaml',
      ENV,
    );
    assert.deepEqual(c.server.tls, { cert: '/etc/sk/tls/c.pem', key: '/abs/k.pem' });
    assert.equal(c.server.logFile, '/etc/sk/log/d.log');
    assert.equal(c.server.webhooks[0]?.secretFile, '/etc/sk/wh.secret');
    assert.deepEqual(c.server.webhooks[0]?.events, ['failure', 'warning']);
  });

  const refused: [string, RegExp][] = [
    ['server: { listen: "localhost" }', /server\.listen: listen address "localhost" is not HOST:PORT/],
    ['server: { listen: "127.0.0.1:99999" }', /server\.listen/],
    ['server: { port: 80 }', /server: Unrecognized key: "port"/],
    ['server: { webhooks: [{ url: "ftp://x/y", secretFile: s }] }', /server\.webhooks\[0\]\.url/],
    [
      'server: { webhooks: [{ url: "https://x/y", secretFile: s, events: [success] }] }',
      /server\.webhooks\[0\]\.events\[0\]/,
    ],
    ['server: { sessionHours: 0 }', /server\.sessionHours/],
    ['server: { loginRateLimit: { attempts: 0 } }', /server\.loginRateLimit\.attempts/],
    ['server: { tls: { cert: c.pem } }', /server\.tls\.key/],
    ['server: { leaseSeconds: 2 }', /server\.leaseSeconds: .*>=3/],
    ['server: { leaseSeconds: 4.5 }', /server\.leaseSeconds/],
  ];
  for (const [yaml, message] of refused) {
    it(`refuses ${yaml}`, () => {
      assert.throws(
        () => parseConfig(`${BASE}\n${yaml}`, '/etc/sk/snapkeeper.yaml', ENV),
        (err: unknown) =>
          err instanceof UsageError && err.code === 'CONFIG_INVALID' && message.test(err.message),
      );
    });
  }
});

describe('token and user commands; serve over TLS', { timeout: 120_000 }, () => {
  let dir: string;
  let config: string;
  const cli = (args: string[], input?: string) =>
    runCli(['--config', config, ...args], { env: ENV, ...(input !== undefined ? { input } : {}) });

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'snapkeeper-server-cli-'));
    config = join(dir, 'snapkeeper.yaml');
    await writeFile(config, `${BASE}\n`);
    const made = await cli(['catalog', 'create']);
    assert.equal(made.code, 0, made.stderr);
  });

  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('token create prints the token once; list shows no token; revoke by name', async () => {
    const made = await cli(['--json', 'token', 'create', '--name', 'ci', '--role', 'operator']);
    assert.equal(made.code, 0, made.stderr);
    assert.match(made.json.token, /^skt_[0-9a-f]{12}_[A-Za-z0-9_-]{43}$/);
    const list = await cli(['--json', 'token', 'list']);
    assert.deepEqual(
      list.json.map((t: { name: string; role: string }) => [t.name, t.role]),
      [['ci', 'operator']],
    );
    assert.ok(!list.stdout.includes(made.json.token));
    const dup = await cli(['--json', 'token', 'create', '--name', 'ci', '--role', 'admin']);
    assert.equal(dup.code, 3);
    assert.equal(dup.json.error.code, 'TOKEN_EXISTS');
    const badRole = await cli(['token', 'create', '--name', 'x', '--role', 'root']);
    assert.equal(badRole.code, 3);
    const badName = await cli(['--json', 'token', 'create', '--name', 'a b', '--role', 'admin']);
    assert.equal(badName.json.error.code, 'NAME_INVALID');
    const revoked = await cli(['--json', 'token', 'revoke', 'ci']);
    assert.equal(revoked.code, 0);
    assert.equal(revoked.json.revoked.name, 'ci');
    assert.equal((await cli(['--json', 'token', 'revoke', 'ci'])).json.error.code, 'TOKEN_NOT_FOUND');
  });

  it('user add reads the password from a file or stdin, never shows it, refuses a short one', async () => {
    const pwFile = join(dir, 'pw');
    await writeFile(pwFile, 'first-password-1\n', { mode: 0o600 });
    const added = await cli(['--json', 'user', 'add', 'ann', '--role', 'admin', '--password-file', pwFile]);
    assert.equal(added.code, 0, added.stderr);
    assert.deepEqual({ name: added.json.name, role: added.json.role }, { name: 'ann', role: 'admin' });
    const short = await cli(['--json', 'user', 'add', 'ben', '--role', 'operator'], 'short\n');
    assert.equal(short.code, 3);
    assert.equal(short.json.error.code, 'PASSWORD_TOO_SHORT');
    assert.ok(!short.stdout.includes('short\n') && !short.stderr.includes('short'));
    const stdin = await cli(['user', 'add', 'ben', '--role', 'operator'], 'second-password-2\n');
    assert.equal(stdin.code, 0, stdin.stderr);
    const passwd = await cli(['user', 'passwd', 'ben'], 'third-password-3\n');
    assert.equal(passwd.code, 0, passwd.stderr);
    const list = await cli(['--json', 'user', 'list']);
    assert.deepEqual(
      list.json.map((u: { name: string }) => u.name),
      ['ann', 'ben'],
    );
    for (const run of [added, stdin, passwd, list]) {
      for (const pw of ['first-password-1', 'second-password-2', 'third-password-3']) {
        assert.ok(!run.stdout.includes(pw) && !run.stderr.includes(pw));
      }
    }
    const db = await readFile(join(dir, 'snapkeeper.db'));
    assert.ok(!db.includes('third-password-3'));
    assert.equal((await cli(['user', 'remove', 'ben'])).code, 0);
    assert.equal((await cli(['--json', 'user', 'remove', 'ben'])).json.error.code, 'USER_NOT_FOUND');
  });

  it('serve over TLS: HTTPS with the configured certificate, a Secure session cookie', async (t) => {
    const openssl = ['/usr/bin/openssl', '/bin/openssl'].some((p) => existsSync(p));
    if (!requireCapability(t, openssl, 'openssl is needed to make a test certificate')) return;
    const key = join(dir, 'tls.key');
    const cert = join(dir, 'tls.crt');
    execFileSync(
      'openssl',
      [
        'req',
        '-x509',
        '-newkey',
        'rsa:2048',
        '-nodes',
        '-keyout',
        key,
        '-out',
        cert,
        '-days',
        '1',
        '-subj',
        '/CN=127.0.0.1',
      ],
      { stdio: 'ignore' },
    );
    const port = await freePort();
    await writeFile(config, `${BASE}\nserver: { tls: { cert: tls.crt, key: tls.key } }\n`);
    const daemon = await serve(config, { port, env: ENV });
    try {
      const pem = await readFile(cert);
      const login = await new Promise<{ status: number; cookie: string; body: string }>((resolve, reject) => {
        const req = request(
          {
            host: '127.0.0.1',
            port,
            path: '/api/v1/session',
            method: 'POST',
            ca: pem,
            servername: '127.0.0.1',
            checkServerIdentity: () => undefined,
            headers: { 'content-type': 'application/json' },
          },
          (res) => {
            let body = '';
            res.on('data', (c: Buffer) => {
              body += c.toString();
            });
            res.on('end', () =>
              resolve({ status: res.statusCode ?? 0, cookie: String(res.headers['set-cookie'] ?? ''), body }),
            );
          },
        );
        req.on('error', reject);
        req.end(JSON.stringify({ user: 'ann', password: 'first-password-1' }));
      });
      assert.equal(login.status, 200, login.body);
      assert.match(login.cookie, /; Secure/);
      assert.match(daemon.logs().find((l) => l.msg === 'listening').url, /^https:\/\//);
      await assert.rejects(fetch(`http://127.0.0.1:${port}/healthz`));
    } finally {
      assert.equal((await daemon.stop()).code, 0, daemon.stderr());
    }
    await writeFile(config, `${BASE}\nserver: { tls: { cert: missing.crt, key: tls.key } }\n`);
    const refused = await cli(['--json', 'serve', '--listen', `127.0.0.1:${port}`]);
    assert.equal(refused.code, 3);
    assert.equal(refused.json.error.code, 'TLS_INVALID');
    await writeFile(
      config,
      `${BASE}\nserver: { webhooks: [{ url: "http://127.0.0.1:9/x", secretFile: nope.secret }] }\n`,
    );
    const noSecret = await cli(['--json', 'serve', '--listen', `127.0.0.1:${port}`]);
    assert.equal(noSecret.code, 3);
    assert.equal(noSecret.json.error.code, 'WEBHOOK_SECRET_INVALID');
    await writeFile(config, `${BASE}\n`);
  });
});
