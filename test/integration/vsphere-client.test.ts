import assert from 'node:assert/strict';
import { existsSync, rmSync } from 'node:fs';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, type TestContext, test } from 'node:test';
import tls from 'node:tls';
import { type Config, loadConfig } from '../../src/config/load.js';
import { ExitCode, UsageError } from '../../src/errors.js';
import { Secret } from '../../src/util/secret.js';
import { parseStatsLine } from '../../src/util/stats.js';
import { connect, type Vcenter } from '../../src/vsphere/client.js';
import { VcenterUnreachableError, VsphereFault } from '../../src/vsphere/faults.js';
import { type Transport, TransportError } from '../../src/vsphere/transport.js';
import { el } from '../../src/vsphere/xml.js';
import { runCli } from '../helpers/cli.js';
import { startFaultProxy } from '../helpers/fault-proxy.js';
import { STANDARD_SPEC, startLab, type TestLab } from '../helpers/lab.js';

/** The peer certificate's fingerprints, read the way an administrator would (openssl s_client). */
function peerFingerprints(url: string): Promise<{ sha256: string; sha1: string }> {
  const u = new URL(url);
  return new Promise((resolve, reject) => {
    const s = tls.connect({ host: u.hostname, port: Number(u.port), rejectUnauthorized: false }, () => {
      const c = s.getPeerX509Certificate()!;
      resolve({ sha256: c.fingerprint256, sha1: c.fingerprint });
      s.end();
    });
    s.on('error', reject);
  });
}

describe('vSphere client against the lab simulator', () => {
  let lab: TestLab;
  let config: Config;
  const sessions: Vcenter[] = [];
  const open = async (overrides: Partial<Config['vcenter']> = {}, wrap?: Parameters<typeof connect>[1]) => {
    const vc = await connect({ ...config.vcenter, ...overrides }, wrap);
    sessions.push(vc);
    return vc;
  };
  /** A fault proxy in front of the simulator (closed after the test) and a session opened through it. */
  const throughProxy = async (t: TestContext, wrap?: Parameters<typeof connect>[1]) => {
    const proxy = await startFaultProxy(config.vcenter.url);
    t.after(() => proxy.close());
    const vc = await open({ url: proxy.url, insecure: true, thumbprint: undefined }, wrap);
    return { proxy, vc };
  };
  /** Ends the session of `vc` as an administrator would; returns the key it had. */
  const terminate = async (vc: Vcenter) => {
    const key = await vc.sessionKey();
    const admin = await open();
    await admin.call('TerminateSession', admin.serviceContent.sessionManager, el('sessionId', key));
    return key;
  };

  before(async () => {
    lab = await startLab(STANDARD_SPEC);
    config = loadConfig(lab.configPath);
  });
  after(async () => {
    for (const s of sessions) await s.logout();
    await lab?.stop();
  });

  test('inventory of the standard lab: disk kinds, power states, datastores', async () => {
    const vc = await open();
    const inv = await vc.inventory();
    const byName = new Map(inv.vms.map((v) => [v.name, v]));
    assert.deepEqual([...byName.keys()].sort(), ['app01', 'db01', 'off01', 'susp01', 'web01']);
    assert.equal(byName.get('off01')?.powerState, 'poweredOff');
    assert.equal(byName.get('susp01')?.powerState, 'suspended');
    assert.equal(byName.get('web01')?.powerState, 'poweredOn');
    assert.equal(byName.get('web01')?.cluster, 'Prod');
    assert.equal(byName.get('off01')?.cluster, undefined);
    assert.equal(byName.get('off01')?.host, 'esx-standalone');

    const web01 = byName.get('web01')!;
    assert.deepEqual([...web01.datastores].sort(), ['ds-a', 'ds-b']);
    assert.deepEqual(
      web01.disks.map((d) => [d.kind, d.datastore]),
      [
        ['flat', 'ds-a'],
        ['flat', 'ds-b'],
      ],
    );
    const db01 = byName.get('db01')!;
    assert.deepEqual(
      db01.disks.map((d) => [d.kind, d.lun ?? '-']),
      [
        ['flat', '-'],
        ['rdm-physical', 'naa.600a0980383030534a3f463045727a71'],
        ['rdm-virtual', 'naa.600a0980383030534a3f463045727a72'],
      ],
    );
    const app01 = byName.get('app01')!;
    assert.deepEqual(
      app01.disks.map((d) => [d.kind, d.diskMode]),
      [
        ['flat', 'persistent'],
        ['independent', 'independent_persistent'],
      ],
    );
    assert.ok(db01.hardware && db01.hardware.devices.length > 0);
    assert.equal(web01.id, lab.state.vms.find((v) => v.name === 'web01')?.id);

    assert.deepEqual(inv.datastores.map((d) => d.name).sort(), ['ds-a', 'ds-b']);
    for (const ds of inv.datastores) {
      assert.ok(ds.capacityBytes > 0, ds.name);
      assert.ok(ds.url !== '', ds.name);
      // The lab lays each datastore on one array volume exported as a LUN: one VMFS extent.
      assert.equal(ds.type, 'VMFS', ds.name);
      assert.equal(ds.extents.length, 1, ds.name);
      assert.match(ds.extents[0]!.lun, /^naa\.[0-9a-f]{32}$/, ds.name);
      assert.ok(ds.hosts.length > 0, ds.name);
    }
    assert.deepEqual(
      inv.clusters.map((c) => c.name),
      ['Prod'],
    );
    assert.deepEqual(inv.hosts.map((h) => h.name).sort(), ['esx-standalone', 'esx01', 'esx02']);
  });

  test('inventory round trips do not depend on the number of VMs', async () => {
    const vc = await open();
    const before = vc.roundTrips;
    await vc.inventory();
    // CreateContainerView, RetrievePropertiesEx, DestroyView (+ one more view when an RDM needs its LUN looked up).
    assert.ok(vc.roundTrips - before <= 6, `round trips: ${vc.roundTrips - before}`);
  });

  test('VM snapshot create and remove, power operations and a task error', async () => {
    const vc = await open();
    const id = lab.vm('app01').id;
    const snap = await vc.createVmSnapshot(id, { name: 'snapkeeper-test', memory: false, quiesce: true });
    assert.match(snap, /^snapshot-/);
    assert.deepEqual(
      (await vc.vmState(id)).snapshots.map((s) => [s.id, s.name]),
      [[snap, 'snapkeeper-test']],
    );
    const inv = await vc.inventory();
    assert.deepEqual(
      inv.vms.find((v) => v.id === id)?.snapshots.map((s) => s.name),
      ['snapkeeper-test'],
    );
    await vc.removeVmSnapshot(snap);
    assert.deepEqual((await vc.vmState(id)).snapshots, []);

    await assert.rejects(vc.powerOnVm(id), (err: unknown) => {
      assert.ok(err instanceof VsphereFault);
      assert.equal(err.faultType, 'InvalidPowerState');
      return true;
    });
    await vc.suspendVm(id);
    assert.equal((await vc.vmState(id)).powerState, 'suspended');
    await vc.powerOnVm(id);
    assert.equal((await vc.vmState(id)).powerState, 'poweredOn');
  });

  test('a bad managed object is a ManagedObjectNotFound fault', async () => {
    const vc = await open();
    await assert.rejects(vc.powerOffVm('vm-424242'), (err: unknown) => {
      assert.ok(err instanceof VsphereFault);
      assert.equal(err.faultType, 'ManagedObjectNotFound');
      assert.equal(err.managedObject, 'VirtualMachine:vm-424242');
      return true;
    });
    await assert.rejects(vc.vmState('vm-424242'), { faultType: 'ManagedObjectNotFound' });
  });

  test('a terminated session is renewed transparently', async (t) => {
    const { proxy, vc } = await throughProxy(t);
    const key = await terminate(vc);
    assert.ok(key !== '');
    const inv = await vc.inventory();
    assert.equal(inv.vms.length, 5);
    assert.equal(proxy.methods().filter((m) => m === 'Login').length, 2);
    assert.notEqual(await vc.sessionKey(), key);
  });

  test('a property read on a terminated session renews it too (the simulator answers with missingSet)', async (t) => {
    const { proxy, vc } = await throughProxy(t);
    const vmId = (await vc.inventory()).vms.find((v) => v.name === 'web01')!.id;
    await terminate(vc);
    const state = await vc.vmState(vmId);
    assert.equal(state.powerState, 'poweredOn', 'not reported missing because the session expired');
    assert.equal(proxy.methods().filter((m) => m === 'Login').length, 2);
  });

  test('a read dropped once on a kept-alive connection is sent again; other drops surface', async (t) => {
    const proxy = await startFaultProxy(config.vcenter.url, {
      rules: [{ method: 'RetrievePropertiesEx', nth: 1, action: 'drop' }],
    });
    t.after(() => proxy.close());
    const vc = await open({ url: proxy.url, insecure: true, thumbprint: undefined });
    assert.equal((await vc.inventory()).vms.length, 5);
    assert.deepEqual(
      proxy.seen.filter((s) => s.method === 'RetrievePropertiesEx').map((s) => s.injected ?? 'forwarded'),
      ['drop', 'forwarded'],
    );
    // Not a read method: the drop surfaces, nothing is sent twice.
    proxy.rules = [{ method: 'CreateContainerView', nth: 1, action: 'drop' }];
    const before = proxy.seen.length;
    await assert.rejects(vc.inventory(), (err: unknown) => {
      assert.ok(err instanceof TransportError);
      assert.equal(err.code, 'VCENTER_CONNECTION_FAILED');
      assert.match(err.message, /CreateContainerView/);
      return true;
    });
    assert.deepEqual(
      proxy.seen.slice(before).map((s) => s.method),
      ['CreateContainerView'],
    );
  });

  test('concurrent calls after a session termination make one Login, even an answer that comes late', async (t) => {
    // Once armed, the first CreateContainerView is held back until the re-login has come back: its
    // NotAuthenticated answer (for the old cookie) then arrives after the new session exists. (The simulator
    // answers reads without a session with a missingSet, not a fault: the calls here are inventories.)
    let armed = false;
    let held = false;
    let relogged!: () => void;
    const reloggedIn = new Promise<void>((resolve) => (relogged = resolve));
    const wrap =
      (inner: Transport): Transport =>
      async (request) => {
        if (armed && !held && request.method === 'CreateContainerView') {
          held = true;
          await reloggedIn;
        }
        const res = await inner(request);
        if (armed && request.method === 'Login') relogged();
        return res;
      };
    const { proxy, vc } = await throughProxy(t, { transportWrapper: wrap });
    const key = await terminate(vc);
    armed = true;
    const all = await Promise.all([1, 2, 3, 4].map(() => vc.inventory()));
    assert.equal(held, true);
    assert.ok(all.every((inv) => inv.vms.length === 5));
    assert.notEqual(await vc.sessionKey(), key);
    assert.equal(
      proxy.methods().filter((m) => m === 'Login').length,
      2,
      'the connect-time Login and one more',
    );
  });

  test('the shared re-login does not fail when the caller that started it gives up', async (t) => {
    // Once armed: count NotAuthenticated answers, hold the re-login until the test releases it.
    let armed = false;
    let notAuthenticated = 0;
    let bothRefused!: () => void;
    const refused = new Promise<void>((resolve) => (bothRefused = resolve));
    let loginSeen!: () => void;
    const loginArrived = new Promise<void>((resolve) => (loginSeen = resolve));
    let release!: () => void;
    const released = new Promise<void>((resolve) => (release = resolve));
    const wrap =
      (inner: Transport): Transport =>
      async (request) => {
        if (armed && request.method === 'Login') {
          loginSeen();
          await released;
        }
        const res = await inner(request);
        if (armed && res.body.includes('NotAuthenticated') && ++notAuthenticated === 2) bothRefused();
        return res;
      };
    const { proxy, vc } = await throughProxy(t, { transportWrapper: wrap });
    await terminate(vc);
    armed = true;
    const ac = new AbortController();
    const first = vc.inventory({ signal: ac.signal });
    const second = vc.inventory();
    await Promise.all([refused, loginArrived]);
    ac.abort(new Error('first caller gave up'));
    release();
    await assert.rejects(first, /first caller gave up/);
    assert.equal((await second).vms.length, 5);
    assert.equal(proxy.methods().filter((m) => m === 'Login').length, 2);
  });

  test('a dropped connection is an error, not a hang', async (t) => {
    const proxy = await startFaultProxy(config.vcenter.url, {
      rules: [{ method: 'RetrievePropertiesEx', action: 'drop' }],
    });
    t.after(() => proxy.close());
    const vc = await open({ url: proxy.url, insecure: true, thumbprint: undefined });
    await assert.rejects(vc.inventory(), (err: unknown) => {
      assert.ok(err instanceof TransportError);
      assert.equal(err.code, 'VCENTER_CONNECTION_FAILED');
      assert.match(err.message, /RetrievePropertiesEx/);
      return true;
    });
    // One retry only; after a connection failure no DestroyView waits on a vCenter that may be gone.
    assert.equal(proxy.methods().filter((m) => m === 'RetrievePropertiesEx').length, 2);
    assert.ok(!proxy.methods().includes('DestroyView'));
    // The next call works on a fresh connection.
    proxy.rules = [];
    assert.equal((await vc.inventory()).vms.length, 5);
    // At connect time the same drop means vCenter is unreachable: bad input, exit 3.
    proxy.rules = [{ method: 'RetrieveServiceContent', action: 'drop' }];
    await assert.rejects(open({ url: proxy.url, insecure: true, thumbprint: undefined }), (err: unknown) => {
      assert.ok(err instanceof VcenterUnreachableError);
      assert.equal(err.exitCode, ExitCode.usage);
      return true;
    });
  });

  test('an injected SOAP fault surfaces as VsphereFault', async (t) => {
    const proxy = await startFaultProxy(config.vcenter.url, {
      rules: [{ method: 'CreateSnapshot_Task', match: 'vm-', action: 'fault', faultType: 'SystemError' }],
    });
    t.after(() => proxy.close());
    const vc = await open({ url: proxy.url, insecure: true, thumbprint: undefined });
    const id = lab.vm('web01').id;
    await assert.rejects(vc.createVmSnapshot(id, { name: 'x', memory: false, quiesce: false }), {
      faultType: 'SystemError',
    });
    assert.deepEqual((await vc.vmState(id)).snapshots, []);
  });

  test('certificate pinning: a matching thumbprint is accepted, another refused', async () => {
    assert.match(config.vcenter.url, /^https:/);
    const fp = await peerFingerprints(config.vcenter.url);
    const bare = (s: string) => s.replace(/:/g, '').toLowerCase();
    await open({ thumbprint: bare(fp.sha256), insecure: false });
    await open({ thumbprint: fp.sha1, insecure: false });
    const wrong = 'AA:'.repeat(31).concat('AA');
    await assert.rejects(open({ thumbprint: wrong, insecure: false }), (err: unknown) => {
      assert.ok(err instanceof UsageError);
      assert.equal(err.code, 'TLS_THUMBPRINT_MISMATCH');
      assert.ok(err.message.includes(wrong) && err.message.includes(fp.sha256));
      return true;
    });
    // No pin, not insecure: the self-signed certificate is refused with a hint, nothing sent.
    await assert.rejects(open({ thumbprint: undefined, insecure: false }), (err: unknown) => {
      assert.ok(err instanceof VcenterUnreachableError);
      assert.match(err.message, /thumbprint/);
      return true;
    });
  });

  test('CLI: inventory --json and table; wrong password exits 3 without showing it', async () => {
    // lab up makes a catalog; without one, inventory still works and makes none.
    rmSync(loadConfig(lab.configPath).catalog.path, { force: true });
    const json = await runCli(['--config', lab.configPath, 'inventory', '--json'], {
      env: { SNAPKEEPER_STATS: '1' },
    });
    assert.equal(json.code, 0, json.stderr);
    assert.deepEqual(
      json.json.vms.map((v: { name: string }) => v.name),
      ['app01', 'db01', 'off01', 'susp01', 'web01'],
    );
    const db01 = json.json.vms.find((v: { name: string }) => v.name === 'db01');
    assert.deepEqual(
      db01.disks.map((d: { kind: string }) => d.kind),
      ['flat', 'rdm-physical', 'rdm-virtual'],
    );
    assert.deepEqual(
      json.json.datastores.map((d: { name: string; volumes: string[] }) => [d.name, d.volumes]),
      [
        ['ds-a', ['lab/ds-a']],
        ['ds-b', ['lab/ds-b']],
      ],
      'each datastore with the array volume it lives on',
    );
    assert.equal(existsSync(loadConfig(lab.configPath).catalog.path), false, 'inventory creates no catalog');
    const stats = parseStatsLine(json.stderr);
    assert.ok(stats !== undefined && stats.soapRoundTrips > 0 && stats.soapRoundTrips < 20, json.stderr);

    const text = await runCli(['--config', lab.configPath, 'inventory', '--vm', 'db*']);
    assert.equal(text.code, 0, text.stderr);
    assert.match(text.stdout, /db01 .*1 flat, 1 rdm-physical!, 1 rdm-virtual!/);
    assert.doesNotMatch(text.stdout, /web01/);
    assert.match(text.stdout, /ds-a/);

    const wrongPassword = 'not-the-Pa55word';
    const pwFile = join(lab.dir, 'wrong.password');
    await writeFile(pwFile, wrongPassword);
    const yaml = (await readFile(lab.configPath, 'utf8')).replace(
      /passwordFile: .*/,
      `passwordFile: ${pwFile}`,
    );
    const badConfig = join(lab.dir, 'wrong.yaml');
    await writeFile(badConfig, yaml);
    const bad = await runCli(['--config', badConfig, 'inventory']);
    assert.equal(bad.code, ExitCode.usage);
    assert.match(bad.stderr, /refused the login/);
    assert.ok(!bad.stderr.includes(wrongPassword) && !bad.stdout.includes(wrongPassword));
    const badJson = await runCli(['--config', badConfig, 'inventory', '--json']);
    assert.equal(badJson.json.error.code, 'VCENTER_LOGIN_FAILED');
  });

  test('a wrong password at the API is AuthenticationError', async () => {
    await assert.rejects(open({ password: new Secret('wrong') }), { code: 'VCENTER_LOGIN_FAILED' });
  });
});
