import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { runJson } from '../helpers/cli.js';
import { STANDARD_SPEC, startLab, type TestLab } from '../helpers/lab.js';
import { api, finishedJob, jobEvents, makeToken, type Served, serve } from './helpers.js';

/**
 * Offload and repositories in the daemon, on the lab and its local repository `lab` (which `lab up`
 * configures): an offload as a job with byte progress, the copy in the backup's detail and summary, the
 * repository's usage, a restore from the repository as a new VM after the backup (and its array snapshot)
 * was deleted, and a scheduled task with `offload:` whose run records a copy.
 */

/** A six-field cron pattern (seconds first, UTC) due once at `t`. */
function cronAt(t: Date): string {
  return `${t.getUTCSeconds()} ${t.getUTCMinutes()} ${t.getUTCHours()} ${t.getUTCDate()} ${t.getUTCMonth() + 1} *`;
}

describe('snapkeeper serve: offload and repositories on the lab', { timeout: 300_000 }, () => {
  let lab: TestLab;
  let daemon: Served;
  const tokens = { read: '', op: '', admin: '' };

  before(async () => {
    lab = await startLab(STANDARD_SPEC);
    tokens.read = await makeToken(lab.configPath, 'reader', 'read-only');
    tokens.op = await makeToken(lab.configPath, 'ops', 'operator');
    tokens.admin = await makeToken(lab.configPath, 'boss', 'admin');
    daemon = await serve(lab.configPath);
  });

  after(async () => {
    if (daemon) {
      const exit = await daemon.stop('SIGTERM');
      assert.equal(exit.code, 0, daemon.stderr());
    }
    await lab?.stop();
  });

  const get = async (path: string) => {
    const res = await api(daemon.url, 'GET', path, { token: tokens.read });
    assert.equal(res.status, 200, `${path}: ${res.text}`);
    return res.json;
  };

  it('the OpenAPI document describes the offload and repository routes', async () => {
    const doc = await get('/openapi.json');
    assert.ok(doc.paths['/api/v1/offloads']?.post, 'POST /api/v1/offloads');
    assert.ok(doc.paths['/api/v1/repositories']?.get, 'GET /api/v1/repositories');
    const repos = await get('/api/v1/repositories');
    assert.deepEqual(repos, [{ name: 'lab', type: 'local', backups: 0, bytes: 0, logicalBytes: 0 }]);
  });

  it('offload as a job with byte progress; the copy shows; restore from the repository as a new VM', async () => {
    const backup = await api(daemon.url, 'POST', '/api/v1/backups', {
      token: tokens.op,
      body: { vms: ['web01'] },
    });
    assert.equal(backup.status, 202, backup.text);
    const backedUp = await finishedJob(daemon.url, backup.json.job.id, tokens.read);
    assert.equal(backedUp.state, 'done', JSON.stringify(backedUp.error));
    const id = backedUp.backupId as string;

    // Bad input is refused before any job: an unknown repository, a read-only caller.
    const unknown = await api(daemon.url, 'POST', '/api/v1/offloads', {
      token: tokens.op,
      body: { backupId: id, repository: 'nowhere' },
    });
    assert.equal(unknown.status, 404, unknown.text);
    assert.equal(unknown.json.error.code, 'REPOSITORY_NOT_FOUND');
    assert.match(unknown.json.error.message, /configured: lab/);
    const reader = await api(daemon.url, 'POST', '/api/v1/offloads', {
      token: tokens.read,
      body: { backupId: id, repository: 'lab' },
    });
    assert.equal(reader.status, 403);

    const started = await api(daemon.url, 'POST', '/api/v1/offloads', {
      token: tokens.op,
      body: { backupId: id, repository: 'lab' },
    });
    assert.equal(started.status, 202, started.text);
    assert.equal(started.json.job.kind, 'offload');
    const events = await jobEvents(daemon.url, started.json.job.id, tokens.read);
    const last = events[events.length - 1]!;
    assert.equal(last.event, 'done', JSON.stringify(last.data));
    // web01 has 8 + 4 MiB of disks: the offload reports its bytes against a total that covers them.
    const byteEvents = events.filter((e) => e.event === 'progress' && e.data.bytesTotal !== undefined);
    assert.ok(byteEvents.length > 0, JSON.stringify(events));
    assert.ok(byteEvents.every((e) => e.data.bytesTotal >= 12 * 1024 * 1024));
    const job = await get(`/api/v1/jobs/${started.json.job.id}`);
    assert.equal(job.state, 'done');
    assert.equal(job.backupId, id);
    assert.equal(job.result.repository, 'lab');
    assert.ok(job.progress.bytesDone > 0 && job.progress.bytesDone <= job.progress.bytesTotal);

    // The copy, as inquire shows it, in the detail and in the summaries.
    const detail = await get(`/api/v1/backups/${id}`);
    const inquire = await runJson(lab.configPath, 'inquire', '--backup', id);
    assert.equal(inquire.code, 0, inquire.stderr);
    assert.deepEqual(detail.copies, inquire.json.copies);
    assert.deepEqual(
      detail.copies.map((c: { kind: string; name?: string }) => c.name ?? c.kind),
      ['array', 'lab'],
    );
    const copy = detail.copies[1];
    assert.equal(copy.bytes, job.result.bytes);
    assert.equal(detail.bytes, 12 * 1024 * 1024, 'the sum of the included disks of web01');
    const list = await get('/api/v1/backups?vm=web01');
    const summary = list.items.find((b: { id: string }) => b.id === id);
    assert.deepEqual(summary.copies, detail.copies);
    assert.equal(summary.bytes, detail.bytes);
    assert.equal(summary.bytesAdded, copy.bytesAdded);
    const stats = await get('/api/v1/stats/backups');
    const stat = stats.find((x: { backupId: string }) => x.backupId === id);
    assert.equal(stat.bytes, detail.bytes);
    assert.equal(stat.bytesAdded, copy.bytesAdded);

    // The repository's usage, here and on the dashboard.
    const repos = await get('/api/v1/repositories');
    assert.equal(repos.length, 1);
    assert.equal(repos[0].backups, 1);
    assert.equal(repos[0].bytes, copy.bytesAdded);
    assert.ok(repos[0].bytes > 0);
    const dashboard = await get('/api/v1/dashboard');
    assert.deepEqual(dashboard.repositories, repos);

    // The backup (record and array snapshot) goes; the copy restores web01 as a new VM.
    const deleted = await api(daemon.url, 'DELETE', `/api/v1/backups/${id}`, { token: tokens.admin });
    assert.equal(deleted.status, 200, deleted.text);
    const mixed = await api(daemon.url, 'POST', '/api/v1/restores', {
      token: tokens.op,
      body: { backupId: id, vm: 'web01', newName: 'web01-x', repository: 'lab' },
    });
    assert.equal(mixed.status, 400, mixed.text);
    assert.equal(mixed.json.error.code, 'SOURCE_INVALID');
    const fromArray = await api(daemon.url, 'POST', '/api/v1/restores', {
      token: tokens.op,
      body: { backupId: id, vm: 'web01', newName: 'web01-x' },
    });
    assert.equal(fromArray.status, 404, 'the array copy is gone');
    const restore = await api(daemon.url, 'POST', '/api/v1/restores', {
      token: tokens.op,
      body: { backupId: id, vm: 'web01', newName: 'web01-repo', source: 'repository', repository: 'lab' },
    });
    assert.equal(restore.status, 202, restore.text);
    const restored = await finishedJob(daemon.url, restore.json.job.id, tokens.read);
    assert.equal(restored.state, 'done', JSON.stringify(restored.error));
    assert.equal(restored.result.repository, 'lab');
    const inventory = await get('/api/v1/inventory');
    const vm = inventory.vms.find((v: { name: string }) => v.name === 'web01-repo');
    assert.ok(vm, 'web01-repo is in the inventory');
    assert.equal(vm.disks.length, 2);
  });

  it('a scheduled task with offload: runs the backup, then the offload; the copy is recorded', async () => {
    const offloaded = async () => {
      const text = await fetch(`${daemon.url}/metrics`).then((r) => r.text());
      const line = text
        .split('\n')
        .find((l) => l.startsWith('snapkeeper_bytes_offloaded_total{repository="lab"}'));
      return line === undefined ? 0 : Number(line.split(' ').pop());
    };
    const before = await offloaded();
    assert.ok(before > 0, 'the offload of the test before counted');
    const due = new Date(Math.ceil((Date.now() + 5000) / 1000) * 1000);
    const created = await api(daemon.url, 'POST', '/api/v1/tasks', {
      token: tokens.admin,
      body: {
        name: 'offsite',
        select: { vms: ['off01'] },
        schedule: cronAt(due),
        timezone: 'UTC',
        offload: { repository: 'lab', retention: { versions: 3 } },
      },
    });
    assert.equal(created.status, 201, created.text);
    const started = await daemon.waitForLog((l) => l.msg === 'schedule: run started' && l.task === 'offsite');
    const job = await finishedJob(daemon.url, started.job, tokens.read);
    assert.equal(job.state, 'done', JSON.stringify(job.error));
    assert.equal(job.result.offload.repository, 'lab');
    assert.equal(job.result.offload.result.backupId, job.backupId);
    assert.ok(job.result.offload.retention, 'the task’s repository retention ran');
    const detail = await get(`/api/v1/backups/${job.backupId}`);
    const copies = detail.copies.filter((c: { kind: string }) => c.kind === 'repository');
    assert.deepEqual(
      copies.map((c: { name: string }) => c.name),
      ['lab'],
    );
    assert.equal(await offloaded(), before + job.result.offload.result.bytesAdded);
    const repos = await get('/api/v1/repositories');
    assert.equal(repos[0].backups, 2);
  });
});
