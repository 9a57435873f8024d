import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { Ajv2020 } from 'ajv/dist/2020.js';
import { Catalog } from '../../src/catalog/index.js';
import type { BackupRecord } from '../../src/model/backup.js';
import { runCli, runJson } from '../helpers/cli.js';
import { editConfig, STANDARD_SPEC, startLab, type TestLab } from '../helpers/lab.js';
import { type ApiResponse, api, finishedJob, jobEvents, makeToken, type Served, serve } from './helpers.js';

/** Every route of the API contract (README "REST API"): the OpenAPI document must describe each. */
const CONTRACT: [string, string][] = [
  ['get', '/openapi.json'],
  ['get', '/healthz'],
  ['get', '/metrics'],
  ['post', '/api/v1/session'],
  ['get', '/api/v1/session'],
  ['delete', '/api/v1/session'],
  ['get', '/api/v1/dashboard'],
  ['get', '/api/v1/inventory'],
  ['get', '/api/v1/tasks'],
  ['get', '/api/v1/tasks/{name}'],
  ['post', '/api/v1/tasks'],
  ['put', '/api/v1/tasks/{name}'],
  ['delete', '/api/v1/tasks/{name}'],
  ['post', '/api/v1/tasks/{name}/run'],
  ['get', '/api/v1/backups'],
  ['get', '/api/v1/backups/{id}'],
  ['delete', '/api/v1/backups/{id}'],
  ['post', '/api/v1/backups'],
  ['post', '/api/v1/restores'],
  ['post', '/api/v1/mounts'],
  ['delete', '/api/v1/mounts/{id}'],
  ['post', '/api/v1/attaches'],
  ['delete', '/api/v1/attaches/{id}'],
  ['get', '/api/v1/jobs'],
  ['get', '/api/v1/jobs/{id}'],
  ['get', '/api/v1/jobs/{id}/events'],
  ['get', '/api/v1/events'],
  ['get', '/api/v1/stats/backups'],
  ['post', '/api/v1/offloads'],
  ['get', '/api/v1/repositories'],
  ['get', '/api/v1/tokens'],
  ['post', '/api/v1/tokens'],
  ['delete', '/api/v1/tokens/{id}'],
];

const WEBHOOK_SECRET = 'whsec-test-4f1c2b9a7d';
const ALICE_PASSWORD = 'alice-correct-horse';
const BOB_PASSWORD = 'bob-battery-staple';

interface Received {
  headers: IncomingHttpHeaders;
  body: string;
  status: number;
}

describe('snapkeeper serve: REST API on the lab', { timeout: 300_000 }, () => {
  let lab: TestLab;
  let daemon: Served;
  let receiver: Server;
  const received: Received[] = [];
  let thirdDelivery: Promise<void>;
  const receivedWaiters = new Set<() => void>();
  /** Resolves when the receiver has got a delivery that satisfies `test`. */
  const delivery = (test: (r: Received) => boolean) =>
    new Promise<Received>((resolve) => {
      const check = () => {
        const hit = received.find(test);
        if (hit) {
          receivedWaiters.delete(check);
          resolve(hit);
        }
      };
      receivedWaiters.add(check);
      check();
    });
  const tokens = { read: '', op: '', admin: '', made: '' };
  /** Every response body the tests saw, to look for secrets in. */
  const seen: string[] = [];
  const call = async (...args: Parameters<typeof api>): Promise<ApiResponse> => {
    const res = await api(...args);
    seen.push(res.text, JSON.stringify([...res.headers.entries()]));
    return res;
  };
  // biome-ignore lint/suspicious/noExplicitAny: the OpenAPI document is read loosely
  let openapi: any;

  before(async () => {
    // The snapshot takes 1.5 s: long enough for two clients' backups of one VM to meet.
    lab = await startLab(STANDARD_SPEC, { delays: { CreateSnapshot_Task: 1500 } });
    // A receiver that refuses the first two deliveries and accepts the third.
    let resolveThird: () => void = () => {};
    thirdDelivery = new Promise((r) => {
      resolveThird = r;
    });
    receiver = createServer((req, res) => {
      let body = '';
      req.on('data', (c: Buffer) => {
        body += c.toString('utf8');
      });
      req.on('end', () => {
        const status = received.length < 2 ? 503 : 200;
        received.push({ headers: req.headers, body, status });
        res.writeHead(status).end();
        if (received.length === 3) resolveThird();
        for (const w of [...receivedWaiters]) w();
      });
    });
    await new Promise<void>((r) => receiver.listen(0, '127.0.0.1', r));
    const port = (receiver.address() as { port: number }).port;
    const secretFile = join(lab.dir, 'webhook.secret');
    writeFileSync(secretFile, `${WEBHOOK_SECRET}\n`, { mode: 0o600 });
    await editConfig(lab.configPath, (doc) => {
      doc.server = {
        webhooks: [
          {
            url: `http://127.0.0.1:${port}/hook`,
            secretFile,
            events: ['warning', 'failure'],
            backoffSeconds: 0.2,
          },
        ],
        loginRateLimit: { attempts: 3, windowSeconds: 600 },
      };
    });
    tokens.read = await makeToken(lab.configPath, 'reader', 'read-only');
    tokens.op = await makeToken(lab.configPath, 'ops', 'operator');
    tokens.admin = await makeToken(lab.configPath, 'boss', 'admin');
    for (const [user, role, password] of [
      ['alice', 'operator', ALICE_PASSWORD],
      ['bob', 'operator', BOB_PASSWORD],
    ] as const) {
      const add = await runCli(['--config', lab.configPath, 'user', 'add', user, '--role', role], {
        input: `${password}\n`,
      });
      assert.equal(add.code, 0, add.stderr);
    }
    daemon = await serve(lab.configPath);
  });

  after(async () => {
    if (daemon) {
      const exit = await daemon.stop('SIGTERM');
      assert.equal(exit.code, 0, daemon.stderr());
    }
    await new Promise<void>((r) => (receiver ? receiver.close(() => r()) : r()));
    await lab?.stop();
  });

  it('health and metrics answer without a token; the API does not', async () => {
    const health = await call(daemon.url, 'GET', '/healthz');
    assert.equal(health.status, 200);
    assert.equal(health.json.status, 'ok');
    assert.match(health.json.version, /^\d+\.\d+\.\d+/);
    const metrics = await call(daemon.url, 'GET', '/metrics');
    assert.equal(metrics.status, 200);
    assert.match(metrics.headers.get('content-type') ?? '', /^text\/plain/);
    assert.match(metrics.text, /# TYPE snapkeeper_backups gauge/);
    const none = await call(daemon.url, 'GET', '/api/v1/backups');
    assert.equal(none.status, 401);
    assert.equal(none.json.error.code, 'UNAUTHENTICATED');
    const wrong = await call(daemon.url, 'GET', '/api/v1/backups', { token: 'skt_000000000000_nope' });
    assert.equal(wrong.status, 401);
    const read = await call(daemon.url, 'GET', '/api/v1/backups', { token: tokens.read });
    assert.equal(read.status, 200);
    assert.deepEqual(read.json, { items: [] });
    // The web UI (or the page saying it is not built) at /, and its client-side paths; JSON 404s under /api.
    for (const path of ['/', '/backups/some-id']) {
      const page = await call(daemon.url, 'GET', path);
      assert.equal(page.status, 200);
      assert.match(page.headers.get('content-type') ?? '', /text\/html/);
      assert.match(page.text, /snapkeeper/i);
    }
    const missing = await call(daemon.url, 'GET', '/api/v1/nothing-here', { token: tokens.read });
    assert.equal(missing.status, 404);
    assert.equal(missing.json.error.code, 'NOT_FOUND');
  });

  it('a read-only token cannot write (403); an operator cannot administer (403)', async () => {
    const write = await call(daemon.url, 'POST', '/api/v1/backups', {
      token: tokens.read,
      body: { vms: ['web01'] },
    });
    assert.equal(write.status, 403);
    assert.equal(write.json.error.code, 'FORBIDDEN');
    assert.match(write.json.error.message, /needs role operator/);
    const admin = await call(daemon.url, 'POST', '/api/v1/tokens', {
      token: tokens.op,
      body: { name: 'x', role: 'admin' },
    });
    assert.equal(admin.status, 403);
    const del = await call(daemon.url, 'DELETE', '/api/v1/backups/whatever', { token: tokens.op });
    assert.equal(del.status, 403);
    const bad = await call(daemon.url, 'POST', '/api/v1/backups', {
      token: tokens.op,
      body: { vms: ['web01'], task: 'lab-all' },
    });
    assert.equal(bad.status, 400);
    assert.equal(bad.json.error.code, 'BAD_REQUEST');
    assert.match(bad.json.error.message, /either task or vms/);
    const notJson = await call(daemon.url, 'POST', '/api/v1/backups', {
      token: tokens.op,
      headers: { 'content-type': 'application/json' },
      body: undefined,
    });
    assert.equal(notJson.status, 400);
  });

  it('the OpenAPI 3.1 document has every route of the contract and its schemas compile', async () => {
    const res = await call(daemon.url, 'GET', '/openapi.json');
    assert.equal(res.status, 200);
    openapi = res.json;
    assert.equal(openapi.openapi, '3.1.0');
    for (const [method, path] of CONTRACT) {
      assert.ok(openapi.paths[path]?.[method], `${method.toUpperCase()} ${path} is not in the document`);
    }
    const ajv = new Ajv2020({ strict: false, allErrors: true });
    ajv.addSchema(openapi.components.schemas.Error, '#/components/schemas/Error');
    let compiled = 0;
    for (const [path, ops] of Object.entries<Record<string, unknown>>(openapi.paths)) {
      for (const [method, op] of Object.entries(ops)) {
        // biome-ignore lint/suspicious/noExplicitAny: OpenAPI operation objects
        const o = op as any;
        assert.ok(o.operationId && o.summary, `${method} ${path} lacks operationId or summary`);
        const schemas = [
          o.requestBody?.content?.['application/json']?.schema,
          ...Object.values(
            o.responses as Record<string, { content?: Record<string, { schema?: object }> }>,
          ).map((r) => r.content?.['application/json']?.schema),
          ...(o.parameters ?? []).map((p: { schema: unknown }) => p.schema),
        ].filter((x) => x !== undefined && !('$ref' in x));
        for (const schema of schemas) {
          ajv.compile(schema);
          compiled++;
        }
      }
    }
    assert.ok(compiled >= 50, `only ${compiled} schemas compiled`);
  });

  /** The response schema of a route in the document, compiled. */
  const validator = (method: string, path: string, status: string) => {
    const check = new Ajv2020({ strict: false, allErrors: true }).compile(
      openapi.paths[path][method].responses[status].content['application/json'].schema,
    );
    const valid = (data: unknown): boolean => check(data) as boolean;
    valid.errors = () => check.errors;
    return valid;
  };

  let rdmBackup: BackupRecord & { copies: unknown[]; bytes?: number };
  let web01Backup: string | undefined;

  it('a backup through the API: a job with live progress (SSE), the record with its RDM warning', async () => {
    const started = await call(daemon.url, 'POST', '/api/v1/backups', {
      token: tokens.op,
      body: { vms: ['db01'] },
    });
    assert.equal(started.status, 202, started.text);
    assert.ok(validator('post', '/api/v1/backups', '202')(started.json));
    const jobId = started.json.job.id as string;
    assert.equal(started.json.job.state, 'running');
    const events = await jobEvents(daemon.url, jobId, tokens.read);
    assert.ok(
      events.some((e) => e.event === 'progress' && e.data.phase === 'prepare'),
      JSON.stringify(events),
    );
    assert.equal(events[events.length - 1]!.event, 'done');
    const job = await call(daemon.url, 'GET', `/api/v1/jobs/${jobId}`, { token: tokens.read });
    assert.ok(validator('get', '/api/v1/jobs/{id}', '200')(job.json));
    assert.equal(job.json.state, 'done');
    const id = job.json.backupId as string;
    const record = await call(daemon.url, 'GET', `/api/v1/backups/${id}`, { token: tokens.read });
    assert.equal(record.status, 200);
    const valid = validator('get', '/api/v1/backups/{id}', '200');
    assert.ok(valid(record.json), JSON.stringify(valid.errors()));
    rdmBackup = record.json;
    const db01 = rdmBackup.vms.find((v) => v.name === 'db01')!;
    assert.equal(db01.effectiveMode, 'ASIS');
    assert.ok(db01.warnings.some((w) => w.code === 'MODE_CHANGED_RDM'));
    // The CLI's inquire shows the same record.
    const cli = await runJson(lab.configPath, 'inquire', '--backup', id);
    const { bytes, ...asInquire } = rdmBackup;
    assert.deepEqual(cli.json, asInquire);
    // Its size: the included disk (the RDM disks are not in the backup).
    assert.equal(bytes, 4 * 1024 * 1024);
    const list = await call(daemon.url, 'GET', '/api/v1/backups?vm=db01', { token: tokens.read });
    assert.ok(validator('get', '/api/v1/backups', '200')(list.json));
    assert.deepEqual(list.json.items[0], {
      id,
      task: 'adhoc',
      state: 'complete',
      startedAt: rdmBackup.startedAt,
      finishedAt: rdmBackup.finishedAt,
      vms: ['db01'],
      warnings: new Set([...rdmBackup.warnings, ...db01.warnings].map((w) => `${w.code} ${w.message}`)).size,
      bytes,
      copies: rdmBackup.copies,
    });
  });

  it('webhook on the warning: signed with the secret file, retried until the receiver accepts', async () => {
    await thirdDelivery;
    assert.deepEqual(
      received.map((r) => r.status),
      [503, 503, 200],
    );
    const bodies = new Set(received.map((r) => r.body));
    assert.equal(bodies.size, 1, 'every attempt carries the same delivery');
    for (const r of received) {
      const expected = `sha256=${createHmac('sha256', WEBHOOK_SECRET).update(r.body).digest('hex')}`;
      assert.equal(r.headers['x-snapkeeper-signature'], expected);
      assert.equal(r.headers['x-snapkeeper-event'], 'warning');
    }
    const body = JSON.parse(received[0]!.body);
    assert.equal(body.event, 'warning');
    assert.equal(body.backup.id, rdmBackup.id);
    assert.ok(body.backup.warnings.some((w: { code: string }) => w.code === 'MODE_CHANGED_RDM'));
    await daemon.waitForLog((l) => l.msg === 'webhook delivered' && l.attempt === 3);
    assert.equal(daemon.logs().filter((l) => l.msg === 'webhook failed, retrying').length, 2);
  });

  it('two clients backing up the same VM at once never interleave: the second is refused (409 class)', async () => {
    const [a, b] = await Promise.all([
      call(daemon.url, 'POST', '/api/v1/backups', { token: tokens.op, body: { vms: ['web01'] } }),
      call(daemon.url, 'POST', '/api/v1/backups', { token: tokens.admin, body: { vms: ['web*'] } }),
    ]);
    assert.equal(a.status, 202);
    assert.equal(b.status, 202);
    const jobs = await Promise.all([
      finishedJob(daemon.url, a.json.job.id, tokens.read),
      finishedJob(daemon.url, b.json.job.id, tokens.read),
    ]);
    const done = jobs.filter((j) => j.state === 'done');
    web01Backup = done[0]?.backupId;
    const failed = jobs.filter((j) => j.state === 'failed');
    assert.ok(done.length >= 1, JSON.stringify(jobs));
    if (failed.length === 1) {
      // Refused by the engine's VM lock, naming the holder, before touching the VM.
      assert.equal(failed[0].error.code, 'RESOURCE_LOCKED');
      assert.match(failed[0].error.message, /locked by backup operation/);
      assert.equal(failed[0].backupId, undefined, 'the refused run made no backup');
      // A failed job is a `failure` webhook naming the job and its error.
      const hook = await delivery((r) => r.headers['x-snapkeeper-event'] === 'failure' && r.status === 200);
      const body = JSON.parse(hook.body);
      assert.equal(body.job.id, failed[0].id);
      assert.equal(body.job.error.code, 'RESOURCE_LOCKED');
    } else {
      // Both ran: one after the other, never overlapping.
      const records = await Promise.all(
        done.map(
          async (j) =>
            (await call(daemon.url, 'GET', `/api/v1/backups/${j.backupId}`, { token: tokens.read })).json,
        ),
      );
      const [x, y] = records.sort((p, q) => p.startedAt.localeCompare(q.startedAt));
      assert.ok(Date.parse(x.finishedAt) <= Date.parse(y.startedAt), 'the two backups overlapped');
    }
    const inventory = await runJson(lab.configPath, 'inventory', '--vm', 'web01');
    assert.deepEqual(inventory.json.vms[0].snapshots, []);
    assert.equal(inventory.json.vms[0].powerState, 'poweredOn');
  });

  it('restore as a new VM, mount and unmount, attach and detach: jobs calling the engine', async () => {
    assert.ok(web01Backup);
    const restore = await call(daemon.url, 'POST', '/api/v1/restores', {
      token: tokens.op,
      body: { backupId: web01Backup, vm: 'web01', newName: 'web01-api' },
    });
    assert.equal(restore.status, 202, restore.text);
    const restored = await finishedJob(daemon.url, restore.json.job.id, tokens.read);
    assert.equal(restored.state, 'done', JSON.stringify(restored.error));
    const inv = await runJson(lab.configPath, 'inventory', '--vm', 'web01-api');
    assert.equal(inv.json.vms.length, 1);
    const badRestore = await call(daemon.url, 'POST', '/api/v1/restores', {
      token: tokens.op,
      body: { backupId: 'no-such-backup', vm: 'web01', newName: 'x' },
    });
    assert.equal(badRestore.status, 404);
    assert.equal(badRestore.json.error.code, 'BACKUP_NOT_FOUND');

    const mount = await call(daemon.url, 'POST', '/api/v1/mounts', {
      token: tokens.op,
      body: { backupId: web01Backup },
    });
    assert.equal(mount.status, 202);
    assert.equal((await finishedJob(daemon.url, mount.json.job.id, tokens.read)).state, 'done');
    const mounts = await call(daemon.url, 'GET', '/api/v1/mounts', { token: tokens.read });
    const mounted = mounts.json.find((m: { kind: string; backupId: string }) => m.kind === 'datastore');
    assert.equal(mounted.backupId, web01Backup);
    // A mounted backup cannot be deleted: 409, as the CLI's exit 3 refusal.
    const held = await call(daemon.url, 'DELETE', `/api/v1/backups/${web01Backup}`, { token: tokens.admin });
    assert.equal(held.status, 409, held.text);
    const unmount = await call(daemon.url, 'DELETE', `/api/v1/mounts/${mounted.id}`, { token: tokens.op });
    assert.equal(unmount.status, 202);
    assert.equal((await finishedJob(daemon.url, unmount.json.job.id, tokens.read)).state, 'done');

    const attach = await call(daemon.url, 'POST', '/api/v1/attaches', {
      token: tokens.op,
      body: { backupId: web01Backup, vm: 'web01', targetVm: 'app01' },
    });
    assert.equal(attach.status, 202);
    const attached = await finishedJob(daemon.url, attach.json.job.id, tokens.read);
    assert.equal(attached.state, 'done', JSON.stringify(attached.error));
    const attachId = attached.result.attachId as string;
    const wrongKind = await call(daemon.url, 'DELETE', `/api/v1/mounts/${attachId}`, { token: tokens.op });
    assert.equal(wrongKind.status, 404);
    const detach = await call(daemon.url, 'DELETE', `/api/v1/attaches/${attachId}`, { token: tokens.op });
    assert.equal(detach.status, 202);
    assert.equal((await finishedJob(daemon.url, detach.json.job.id, tokens.read)).state, 'done');
    assert.deepEqual((await call(daemon.url, 'GET', '/api/v1/mounts', { token: tokens.read })).json, []);
  });

  it('pages through backups newest first without repeats; a bad cursor is refused', async () => {
    const catalog = Catalog.open(
      JSON.parse((await runJson(lab.configPath, 'catalog', 'create')).stdout).path,
    );
    try {
      for (let i = 0; i < 23; i++) {
        const at = new Date(Date.UTC(2026, 0, 1, 0, 0, i % 20)).toISOString();
        await catalog.insertBackup({
          id: `paged-${String(i).padStart(2, '0')}`,
          task: 'paged',
          state: 'complete',
          startedAt: at,
          finishedAt: at,
          snapshots: [],
          vms: [],
          warnings: [],
        });
      }
    } finally {
      await catalog.close();
    }
    const ids: string[] = [];
    let cursor: string | undefined;
    let pages = 0;
    do {
      const page = await call(
        daemon.url,
        'GET',
        `/api/v1/backups?task=paged&limit=5${cursor ? `&cursor=${cursor}` : ''}`,
        {
          token: tokens.read,
        },
      );
      assert.equal(page.status, 200, page.text);
      ids.push(...page.json.items.map((i: { id: string }) => i.id));
      cursor = page.json.nextCursor;
      pages++;
    } while (cursor !== undefined);
    assert.equal(pages, 5);
    assert.equal(ids.length, 23);
    assert.equal(new Set(ids).size, 23);
    const direct = await runJson(lab.configPath, 'inquire', '--task', 'paged');
    assert.deepEqual(
      ids,
      direct.json.map((r: { id: string }) => r.id),
    );
    const blanks = await call(daemon.url, 'GET', '/api/v1/backups?task=paged&vm=&state=&limit=&cursor=', {
      token: tokens.read,
    });
    assert.equal(blanks.status, 200, blanks.text);
    assert.equal(blanks.json.items.length, 23);
    const tooMany = await call(daemon.url, 'GET', '/api/v1/backups?limit=5000', { token: tokens.read });
    assert.equal(tooMany.status, 400);
    assert.match(tooMany.json.error.message, /query\.limit/);
    const bad = await call(daemon.url, 'GET', '/api/v1/backups?cursor=garbage', { token: tokens.read });
    assert.equal(bad.status, 400);
    assert.equal(bad.json.error.code, 'CURSOR_INVALID');
    const deleted = await call(daemon.url, 'DELETE', '/api/v1/backups/paged-00', { token: tokens.admin });
    assert.equal(deleted.status, 200, deleted.text);
    assert.equal(deleted.json.deleted.id, 'paged-00');
    assert.equal(
      (await call(daemon.url, 'GET', '/api/v1/backups/paged-00', { token: tokens.read })).status,
      404,
    );
    const badState = await call(daemon.url, 'GET', '/api/v1/backups?state=done', { token: tokens.read });
    assert.equal(badState.status, 400);
    assert.match(badState.json.error.message, /done/);
  });

  let sessionCookie = '';
  let csrf = '';

  it('web login: rate-limited per user, HttpOnly SameSite=Strict cookie, CSRF header, logout', async () => {
    for (let i = 0; i < 3; i++) {
      const wrong = await call(daemon.url, 'POST', '/api/v1/session', {
        body: { user: 'alice', password: 'not-it-at-all' },
      });
      assert.equal(wrong.status, 401);
      assert.equal(wrong.json.error.code, 'LOGIN_FAILED');
    }
    const limited = await call(daemon.url, 'POST', '/api/v1/session', {
      body: { user: 'alice', password: ALICE_PASSWORD },
    });
    assert.equal(limited.status, 429);
    assert.equal(limited.json.error.code, 'LOGIN_RATE_LIMITED');
    assert.ok(Number(limited.headers.get('retry-after')) > 0);

    const login = await call(daemon.url, 'POST', '/api/v1/session', {
      body: { user: 'bob', password: BOB_PASSWORD },
    });
    assert.equal(login.status, 200, login.text);
    const setCookie = login.headers.get('set-cookie') ?? '';
    assert.match(setCookie, /^snapkeeper_session=[^;]+;/);
    assert.match(setCookie, /HttpOnly/);
    assert.match(setCookie, /SameSite=Strict/);
    assert.doesNotMatch(setCookie, /Secure/, 'plain HTTP: no Secure flag');
    sessionCookie = setCookie.split(';')[0]!;
    // The login's Set-Cookie is the one place the session id is given out.
    seen.splice(seen.indexOf(JSON.stringify([...login.headers.entries()])), 1);
    csrf = login.json.csrfToken;
    assert.deepEqual({ user: login.json.user, role: login.json.role }, { user: 'bob', role: 'operator' });

    const me = await call(daemon.url, 'GET', '/api/v1/session', { cookie: sessionCookie });
    assert.equal(me.status, 200);
    assert.equal(me.json.csrfToken, csrf);
    const noCsrf = await call(daemon.url, 'POST', '/api/v1/backups', {
      cookie: sessionCookie,
      body: { vms: ['off01'] },
    });
    assert.equal(noCsrf.status, 403);
    assert.equal(noCsrf.json.error.code, 'CSRF_INVALID');
    const wrongCsrf = await call(daemon.url, 'POST', '/api/v1/backups', {
      cookie: sessionCookie,
      csrf: `${csrf}x`,
      body: { vms: ['off01'] },
    });
    assert.equal(wrongCsrf.status, 403);
    const withCsrf = await call(daemon.url, 'POST', '/api/v1/backups', {
      cookie: sessionCookie,
      csrf,
      body: { vms: ['off01'] },
    });
    assert.equal(withCsrf.status, 202, withCsrf.text);
    const job = await finishedJob(daemon.url, withCsrf.json.job.id, tokens.read);
    assert.equal(job.state, 'done');
    const tooLow = await call(daemon.url, 'GET', '/api/v1/tokens', { cookie: sessionCookie });
    assert.equal(tooLow.status, 403);

    const out = await call(daemon.url, 'DELETE', '/api/v1/session', { cookie: sessionCookie, csrf });
    assert.equal(out.status, 200);
    assert.match(out.headers.get('set-cookie') ?? '', /Max-Age=0/);
    const after = await call(daemon.url, 'GET', '/api/v1/session', { cookie: sessionCookie });
    assert.equal(after.status, 401);
  });

  it('tasks: an admin creates, edits and deletes catalog tasks; configuration tasks are read-only', async () => {
    const body = {
      name: 'api-task',
      select: { vms: ['web01'] },
      schedule: '0 3 * * *',
      timezone: 'Europe/Paris',
    };
    assert.equal((await call(daemon.url, 'POST', '/api/v1/tasks', { token: tokens.op, body })).status, 403);
    const created = await call(daemon.url, 'POST', '/api/v1/tasks', { token: tokens.admin, body });
    assert.equal(created.status, 201, created.text);
    const shown = await call(daemon.url, 'GET', '/api/v1/tasks/api-task', { token: tokens.read });
    assert.equal(shown.json.source, 'catalog');
    assert.equal(shown.json.config.schedule, '0 3 * * *');
    assert.ok(Date.parse(shown.json.nextRun) > Date.now());
    const edited = await call(daemon.url, 'PUT', '/api/v1/tasks/api-task', {
      token: tokens.admin,
      body: { ...body, mode: 'ASIS' },
    });
    assert.equal(edited.status, 200, edited.text);
    const cli = await runJson(lab.configPath, 'task', 'show', 'api-task');
    assert.match(cli.stdout, /ASIS/);
    const invalid = await call(daemon.url, 'POST', '/api/v1/tasks', {
      token: tokens.admin,
      body: { name: 'empty', select: {} },
    });
    assert.equal(invalid.status, 400);
    assert.match(invalid.json.error.message, /select/);
    const readOnly = await call(daemon.url, 'PUT', '/api/v1/tasks/lab-all', {
      token: tokens.admin,
      body: { name: 'lab-all', select: { vms: ['web01'] } },
    });
    assert.equal(readOnly.status, 409);
    assert.equal(readOnly.json.error.code, 'TASK_READ_ONLY');
    assert.equal(
      (await call(daemon.url, 'DELETE', '/api/v1/tasks/api-task', { token: tokens.admin })).status,
      200,
    );
    const gone = await call(daemon.url, 'GET', '/api/v1/tasks/api-task', { token: tokens.read });
    assert.equal(gone.status, 404);
    assert.equal(gone.json.error.code, 'TASK_NOT_FOUND');
    const runGone = await call(daemon.url, 'POST', '/api/v1/tasks/api-task/run', { token: tokens.op });
    assert.equal(runGone.status, 404);
    assert.equal(runGone.json.error.code, 'TASK_NOT_FOUND');
  });

  it('the inventory is the CLI’s, with the tree and the RDM disks', async () => {
    const res = await call(daemon.url, 'GET', '/api/v1/inventory', { token: tokens.read });
    assert.equal(res.status, 200, res.text);
    const cli = await runJson(lab.configPath, 'inventory');
    assert.deepEqual(res.json.vms, cli.json.vms);
    assert.deepEqual(res.json.datastores, cli.json.datastores);
    assert.deepEqual(
      res.json.vms
        .find((v: { name: string }) => v.name === 'db01')
        .disks.map((d: { kind: string }) => d.kind),
      ['flat', 'rdm-physical', 'rdm-virtual'],
    );
    assert.ok(
      res.json.hosts.some(
        (h: { name: string; cluster?: string }) => h.name === 'esx01' && h.cluster === 'Prod',
      ),
    );
  });

  it('dashboard, events, stats, tokens and metrics after the runs', async () => {
    const dash = await call(daemon.url, 'GET', '/api/v1/dashboard', { token: tokens.read });
    assert.equal(dash.status, 200, dash.text);
    assert.ok(validator('get', '/api/v1/dashboard', '200')(dash.json));
    assert.ok(dash.json.tasks.some((t: { name: string }) => t.name === 'lab-all'));
    assert.ok(
      dash.json.warnings.some(
        (w: { code: string; vm: string }) => w.code === 'MODE_CHANGED_RDM' && w.vm === 'db01',
      ),
    );
    assert.ok(dash.json.snapshotsHeld >= 2);
    const events = await call(daemon.url, 'GET', '/api/v1/events?limit=50', { token: tokens.read });
    assert.ok(
      events.json.some(
        (e: { type: string; code?: string }) => e.type === 'backup.warning' && e.code === 'MODE_CHANGED_RDM',
      ),
    );
    const stats = await call(daemon.url, 'GET', '/api/v1/stats/backups?task=adhoc', { token: tokens.read });
    assert.ok(stats.json.length >= 2);
    assert.ok(stats.json.every((s: { durationMs: number }) => s.durationMs >= 0));
    const jobs = await call(daemon.url, 'GET', '/api/v1/jobs?state=done', { token: tokens.read });
    assert.ok(jobs.json.length >= 3);
    assert.ok(jobs.json.every((j: { state: string }) => j.state === 'done'));

    const made = await call(daemon.url, 'POST', '/api/v1/tokens', {
      token: tokens.admin,
      body: { name: 'api-made', role: 'read-only' },
    });
    assert.equal(made.status, 201);
    const listed = await call(daemon.url, 'GET', '/api/v1/tokens', { token: tokens.admin });
    assert.ok(listed.json.some((t: { name: string }) => t.name === 'api-made'));
    assert.ok(!listed.text.includes(made.json.token));
    assert.equal((await call(daemon.url, 'GET', '/api/v1/backups', { token: made.json.token })).status, 200);
    assert.equal(
      (await call(daemon.url, 'DELETE', `/api/v1/tokens/${made.json.id}`, { token: tokens.admin })).status,
      200,
    );
    assert.equal((await call(daemon.url, 'GET', '/api/v1/backups', { token: made.json.token })).status, 401);
    tokens.made = made.json.token;
    // The response that showed the new token once is the only place it may appear.
    seen.splice(seen.indexOf(made.text), 1);

    const metrics = (await call(daemon.url, 'GET', '/metrics')).text;
    assert.match(metrics, /snapkeeper_backups\{task="adhoc",state="complete"\} [3-9]/);
    assert.match(metrics, /snapkeeper_backup_duration_seconds_count\{task="adhoc"\} [3-9]/);
    assert.match(metrics, /snapkeeper_quiesce_window_seconds_count\{task="adhoc"\} \d/);
    assert.match(metrics, /snapkeeper_last_success_timestamp_seconds\{task="adhoc"\} \d+/);
    assert.match(metrics, /snapkeeper_array_snapshots_held\{array="lab"\} \d/);
    assert.match(
      metrics,
      /snapkeeper_api_request_duration_seconds_bucket\{method="GET",route="\/api\/v1\/backups",code="2xx",le="0.1"\} \d/,
    );
    assert.match(metrics, /snapkeeper_webhook_deliveries_total\{outcome="delivered"\} [1-9]/);
    // One structured log line per request, none with a query string or a header.
    const requests = daemon.logs().filter((l) => l.msg === 'request');
    assert.ok(requests.length >= 30);
    assert.ok(requests.every((l) => !String(l.path).includes('?') && l.authorization === undefined));
  });

  it('no secret in any response, log line or the catalog', async () => {
    const secrets = [
      ...Object.values(tokens),
      ALICE_PASSWORD,
      BOB_PASSWORD,
      WEBHOOK_SECRET,
      sessionCookie.split('=')[1]!,
      readFileSync(join(lab.dir, 'vcenter.password'), 'utf8').trim(),
    ];
    const responses = seen.join('\n');
    const logs = daemon.stderr() + daemon.stdout();
    const catalogPath = join(lab.dir, 'snapkeeper.db');
    const files = ['', '-wal']
      .map((suffix) => {
        try {
          return readFileSync(catalogPath + suffix).toString('latin1');
        } catch {
          return '';
        }
      })
      .join('');
    for (const secret of secrets) {
      assert.ok(secret.length >= 8, 'a secret to look for');
      assert.ok(!responses.includes(secret), `a response holds a secret (${secret.slice(0, 4)}…)`);
      assert.ok(!logs.includes(secret), `the log holds a secret (${secret.slice(0, 4)}…)`);
      assert.ok(!files.includes(secret), `the catalog holds a secret (${secret.slice(0, 4)}…)`);
    }
  });
});
