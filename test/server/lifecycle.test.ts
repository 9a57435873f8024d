import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { runCli, runJson } from '../helpers/cli.js';
import { STANDARD_SPEC, startLab, type TestLab } from '../helpers/lab.js';
import { api, freePort, jobEvents, makeToken, type Served, serve } from './helpers.js';

/** VM names with a snapkeeper VM snapshot, and those not powered on, of the VMs named. */
async function leftovers(configPath: string, names: string[]) {
  const inv = await runJson(configPath, 'inventory');
  assert.equal(inv.code, 0, inv.stderr);
  const vms = inv.json.vms.filter((v: { name: string }) => names.includes(v.name));
  assert.equal(vms.length, names.length);
  return {
    withSnapshot: vms
      .filter((v: { snapshots: { name: string }[] }) =>
        v.snapshots.some((s) => s.name.startsWith('snapkeeper-')),
      )
      .map((v: { name: string }) => v.name),
    notOn: vms
      .filter((v: { powerState: string }) => v.powerState !== 'poweredOn')
      .map((v: { name: string }) => v.name),
  };
}

describe('snapkeeper serve: one daemon per catalog, SIGTERM, a crash', { timeout: 300_000 }, () => {
  let lab: TestLab;
  let token: string;
  const daemons: Served[] = [];

  before(async () => {
    // Suspending takes 2.5 s: a SIGTERM lands while the VMs are being held.
    lab = await startLab(STANDARD_SPEC, { delays: { SuspendVM_Task: 2500 } });
    token = await makeToken(lab.configPath, 'ops', 'operator');
  });

  after(async () => {
    for (const d of daemons) await d.stop('SIGKILL');
    await lab?.stop();
  });

  it('a second daemon on the same catalog is refused (exit 3), naming the first', async () => {
    const first = await serve(lab.configPath);
    daemons.push(first);
    const port = await freePort();
    const second = await runCli([
      '--config',
      lab.configPath,
      '--json',
      'serve',
      '--listen',
      `127.0.0.1:${port}`,
    ]);
    assert.equal(second.code, 3, second.stdout + second.stderr);
    assert.equal(second.json.error.code, 'DAEMON_RUNNING');
    assert.match(second.json.error.message, new RegExp(`pid ${first.child.pid} `));
    assert.match(second.json.error.message, new RegExp(`127\\.0\\.0\\.1:${first.port}`));
    // Nothing changed: the first still serves, and the second never listened.
    assert.equal((await api(first.url, 'GET', '/healthz')).status, 200);
    await assert.rejects(fetch(`http://127.0.0.1:${port}/healthz`));
    const badListen = await runCli(['--config', lab.configPath, '--json', 'serve', '--listen', 'localhost']);
    assert.equal(badListen.code, 3);
    assert.equal(badListen.json.error.code, 'LISTEN_INVALID');
  });

  it('one daemon on a SQLite catalog leads; a job cancelled stops at its next safe point and releases its VMs', async () => {
    const daemon = daemons[0]!;
    const view = await api(daemon.url, 'GET', '/api/v1/daemons', { token });
    assert.equal(view.status, 200, view.text);
    assert.equal(view.json.shared, false);
    assert.deepEqual(
      view.json.daemons.map((d: { pid: number; leader: boolean; self: boolean }) => [
        d.pid,
        d.leader,
        d.self,
      ]),
      [[daemon.child.pid, true, true]],
    );
    assert.match((await api(daemon.url, 'GET', '/metrics')).text, /^snapkeeper_schedule_leader\{[^}]*\} 1$/m);

    const started = await api(daemon.url, 'POST', '/api/v1/backups', {
      token,
      body: { vms: ['web01', 'app01'], mode: 'SUSPEND' },
    });
    assert.equal(started.status, 202, started.text);
    const id: string = started.json.job.id;
    const cancels: number[] = [];
    const events = await jobEvents(daemon.url, id, token, (e) => {
      if (cancels.length === 0 && e.event === 'progress' && e.data.status === 'suspending') {
        cancels.push(0);
        void api(daemon.url, 'POST', `/api/v1/jobs/${id}/cancel`, { token }).then((r) =>
          cancels.push(r.status),
        );
      }
    });
    assert.ok(cancels.length > 0, `no VM was being suspended: ${JSON.stringify(events)}`);
    assert.equal(cancels[1], 202);
    const job = await api(daemon.url, 'GET', `/api/v1/jobs/${id}`, { token });
    assert.notEqual(job.json.state, 'running');
    assert.deepEqual(await leftovers(lab.configPath, ['web01', 'app01']), { withSnapshot: [], notOn: [] });
    const again = await api(daemon.url, 'POST', `/api/v1/jobs/${id}/cancel`, { token });
    assert.equal(again.status, 409);
    assert.equal(again.json.error.code, 'JOB_FINISHED');
    const unknown = await api(daemon.url, 'POST', '/api/v1/jobs/job-nope/cancel', { token });
    assert.equal(unknown.status, 404);
    assert.equal(unknown.json.error.code, 'JOB_NOT_FOUND');
  });

  let jobId = '';

  it('SIGTERM during a backup: exit 0, no VM left suspended, no VM snapshot, nothing for recover', async () => {
    const daemon = daemons[0]!;
    const started = await api(daemon.url, 'POST', '/api/v1/backups', {
      token,
      body: { vms: ['web01', 'app01'], mode: 'SUSPEND' },
    });
    assert.equal(started.status, 202, started.text);
    jobId = started.json.job.id;
    let signalled = false;
    const events = await jobEvents(daemon.url, jobId, token, (e) => {
      if (!signalled && e.event === 'progress' && e.data.status === 'suspending') {
        signalled = true;
        daemon.child.kill('SIGTERM');
      }
    });
    assert.ok(signalled, `no VM was being suspended: ${JSON.stringify(events)}`);
    const exit = await daemon.exited;
    assert.deepEqual(exit, { code: 0, signal: null }, daemon.stderr());
    assert.ok(daemon.logs().some((l) => l.msg === 'stopped'));
    assert.deepEqual(await leftovers(lab.configPath, ['web01', 'app01']), { withSnapshot: [], notOn: [] });
    const recover = await runJson(lab.configPath, 'recover', '--dry-run');
    assert.deepEqual(recover.json.operations, []);
    assert.deepEqual(recover.json.removedVmSnapshots, []);
    assert.deepEqual(recover.json.poweredOnVms, []);
    const running = await runJson(lab.configPath, 'inquire', '--state', 'running');
    assert.deepEqual(running.json, []);
  });

  it('a daemon killed in a backup: the next one repairs what it left and shows the job failed', async () => {
    const restarted = await serve(lab.configPath);
    daemons.push(restarted);
    // The job of the daemon stopped with SIGTERM finished before it exited.
    const earlier = await api(restarted.url, 'GET', `/api/v1/jobs/${jobId}`, { token });
    assert.notEqual(earlier.json.state, 'running');
    assert.equal((await restarted.stop()).code, 0);

    // This one dies (SIGKILL) right after web01's VM snapshot is made, before it is removed.
    const doomed = await serve(lab.configPath, { env: { SNAPKEEPER_CRASH_AT: 'prepared' } });
    daemons.push(doomed);
    const started = await api(doomed.url, 'POST', '/api/v1/backups', {
      token,
      body: { vms: ['web01'], mode: 'SNAPSHOT_EXCL_MEM' },
    });
    assert.equal(started.status, 202);
    const died = await doomed.exited;
    assert.equal(died.signal, 'SIGKILL');
    assert.deepEqual((await leftovers(lab.configPath, ['web01'])).withSnapshot, ['web01']);

    const next = await serve(lab.configPath);
    daemons.push(next);
    const recovered = await next.waitForLog((l) => l.msg === 'recover at start');
    assert.equal(recovered.removedVmSnapshots, 1);
    assert.deepEqual(await leftovers(lab.configPath, ['web01']), { withSnapshot: [], notOn: [] });
    const job = await api(next.url, 'GET', `/api/v1/jobs/${started.json.job.id}`, { token });
    assert.equal(job.json.state, 'failed');
    assert.equal(job.json.error.code, 'INTERRUPTED');
    const failedJobs = await api(next.url, 'GET', '/api/v1/jobs?state=failed', { token });
    assert.ok(failedJobs.json.some((j: { id: string }) => j.id === started.json.job.id));
    assert.equal((await next.stop()).code, 0);
  });

  it('SIGTERM while a hook runs: the hook is killed, the daemon still stops cleanly (exit 0)', async () => {
    const admin = await makeToken(lab.configPath, 'admin', 'admin');
    const daemon = await serve(lab.configPath);
    daemons.push(daemon);
    const task = {
      name: 'hooked',
      select: { vms: ['web01'] },
      hooks: [{ phase: 'before-prepare', run: ['/bin/sleep', '60'], timeoutSeconds: 120, onError: 'fail' }],
    };
    assert.equal((await api(daemon.url, 'POST', '/api/v1/tasks', { token: admin, body: task })).status, 201);
    const started = await api(daemon.url, 'POST', '/api/v1/tasks/hooked/run', { token });
    assert.equal(started.status, 202, started.text);
    let signalled = false;
    await jobEvents(daemon.url, started.json.job.id, token, (e) => {
      if (!signalled && e.event === 'progress' && e.data.phase === 'hook before-prepare') {
        signalled = true;
        daemon.child.kill('SIGTERM');
      }
    });
    assert.ok(signalled);
    assert.deepEqual(await daemon.exited, { code: 0, signal: null }, daemon.stderr());
    assert.deepEqual(await leftovers(lab.configPath, ['web01']), { withSnapshot: [], notOn: [] });
    const after = await serve(lab.configPath);
    daemons.push(after);
    const job = await api(after.url, 'GET', `/api/v1/jobs/${started.json.job.id}`, { token });
    assert.equal(job.json.state, 'failed', JSON.stringify(job.json));
    assert.equal((await after.stop()).code, 0);
  });
});
