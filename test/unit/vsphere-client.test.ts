import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { VcenterConfig } from '../../src/config/load.js';
import { AuthenticationError, ExitCode } from '../../src/errors.js';
import { Secret } from '../../src/util/secret.js';
import { connect } from '../../src/vsphere/client.js';
import { VcenterUnreachableError, VsphereFault } from '../../src/vsphere/faults.js';
import { startScriptedServer } from '../fixtures/vsphere/scripted-server.js';

const PASSWORD = 'Sup3r$ecret<&>';

function config(url: string): VcenterConfig {
  return {
    url,
    user: 'backup@vsphere.local',
    password: new Secret(PASSWORD),
    insecure: false,
    maxConcurrentRequests: 4,
    timeoutSeconds: 5,
  };
}

const BASE = {
  RetrieveServiceContent: ['service-content.xml'],
  Login: ['login.xml'],
  Logout: ['logout.xml'],
  CreateContainerView: ['create-view.xml'],
  DestroyView: ['destroy-view.xml'],
};

test('inventory from recorded vCenter XML: paging, RDM kinds by deviceName and by LUN uuid, folders, extents', async (t) => {
  const server = await startScriptedServer({
    ...BASE,
    RetrievePropertiesEx: ['inventory-page1.xml', 'host-scsilun.xml'],
    ContinueRetrievePropertiesEx: ['inventory-page2.xml'],
  });
  t.after(() => server.close());
  const vc = await connect(config(server.url));
  const inv = await vc.inventory();
  await vc.logout();

  // The paging token of page 1 is sent back; one extra view resolves the RDM known only by LUN uuid.
  assert.deepEqual(server.methods(), [
    'RetrieveServiceContent',
    'Login',
    'CreateContainerView',
    'RetrievePropertiesEx',
    'ContinueRetrievePropertiesEx',
    'DestroyView',
    'CreateContainerView',
    'RetrievePropertiesEx',
    'DestroyView',
    'Logout',
  ]);
  const cont = server.requests.find((r) => r.method === 'ContinueRetrievePropertiesEx')!;
  assert.match(cont.body, /<token>1<\/token>/);
  // The session cookie from Login goes out on every later call; the SOAPAction carries the server's version.
  assert.equal(server.requests.at(-1)?.cookie, 'vmware_soap_session=52a5c3d1-0d3a');
  assert.equal(server.requests.at(-1)?.action, 'urn:vim25/8.0.2.0');
  assert.ok(!server.requests.some((r) => r.method !== 'Login' && r.body.includes('Sup3r')));

  assert.deepEqual(inv.datacenters, [{ id: 'datacenter-2', name: 'DC1' }]);
  assert.deepEqual(inv.clusters, [{ id: 'domain-c7', name: 'Prod', datacenter: 'DC1' }]);
  assert.deepEqual(
    inv.hosts.map((h) => [h.name, h.cluster ?? '-']),
    [
      ['esx01.lab.local', 'Prod'],
      ['esx-standalone.lab.local', '-'],
    ],
  );
  assert.deepEqual(inv.folders.map((f) => f.path).sort(), ['', 'prod', 'prod/web & app']);

  const dsA = inv.datastores.find((d) => d.name === 'ds-a')!;
  assert.equal(dsA.type, 'VMFS');
  assert.equal(dsA.capacityBytes, 53687091200);
  assert.deepEqual(dsA.extents, [
    { lun: 'naa.600a0980383030534a3f4630457200a1', partition: 1 },
    { lun: 'naa.600a0980383030534a3f4630457200a2', partition: 1 },
  ]);
  assert.deepEqual(dsA.hosts, ['esx01.lab.local', 'esx-standalone.lab.local']);
  const dsB = inv.datastores.find((d) => d.name === 'ds-b')!;
  assert.equal(dsB.type, 'NFS');
  assert.deepEqual(dsB.extents, []);

  const db01 = inv.vms.find((v) => v.name === 'db01')!;
  assert.equal(db01.id, 'vm-42');
  assert.equal(db01.cluster, 'Prod');
  assert.equal(db01.host, 'esx01.lab.local');
  assert.equal(db01.folder, '');
  assert.deepEqual(
    db01.disks.map((d) => [d.label, d.kind, d.lun ?? '-', d.capacityBytes]),
    [
      ['Hard disk 1', 'flat', '-', 17179869184],
      ['Hard disk 2', 'rdm-physical', 'naa.600a0980383030534a3f463045727a71', 1099511627776],
      ['Hard disk 3', 'rdm-virtual', 'naa.600a0980383030534a3f463045727a72', 1073741824],
    ],
  );
  assert.equal(db01.hardware?.numCpu, 4);
  assert.equal(db01.hardware?.memoryMB, 8192);
  assert.deepEqual(db01.hardware?.devices, [
    {
      kind: 'controller',
      type: 'VirtualLsiLogicSASController',
      key: 1000,
      busNumber: 0,
      sharedBus: 'physicalSharing',
    },
    {
      kind: 'nic',
      type: 'VirtualVmxnet3',
      key: 4000,
      label: 'Network adapter 1',
      addressType: 'assigned',
      macAddress: '00:50:56:aa:bb:cc',
      network: 'VM Network',
      startConnected: true,
    },
  ]);

  const web01 = inv.vms.find((v) => v.name === 'web01')!;
  assert.equal(web01.powerState, 'suspended');
  assert.equal(web01.folder, 'prod/web & app');
  assert.equal(web01.cluster, undefined);
  assert.deepEqual(web01.datastores, ['ds-a', 'ds-b']);
  assert.deepEqual(
    web01.disks.map((d) => [d.kind, d.datastore, d.diskMode]),
    [
      ['flat', 'ds-a', 'persistent'],
      ['independent', 'ds-b', 'independent_persistent'],
    ],
  );
  assert.deepEqual(web01.snapshots, [
    { id: 'snapshot-55', name: 'before-upgrade', createdAt: '2026-11-20T10:00:00.000Z' },
    { id: 'snapshot-57', name: 'snapkeeper-b-1', createdAt: '2026-11-21T10:00:00.000Z' },
  ]);
});

test('a refused login is AuthenticationError (exit 3) and never shows the password', async (t) => {
  const server = await startScriptedServer({ ...BASE, Login: ['login-fault.xml'] });
  t.after(() => server.close());
  await assert.rejects(connect(config(server.url)), (err: unknown) => {
    assert.ok(err instanceof AuthenticationError);
    assert.equal(err.code, 'VCENTER_LOGIN_FAILED');
    assert.equal(err.exitCode, ExitCode.usage);
    assert.match(err.message, /backup@vsphere.local.*incorrect user name or password/);
    assert.ok(!err.message.includes(PASSWORD) && !JSON.stringify(err.details).includes(PASSWORD));
    return true;
  });
  // The password went out escaped, once, in the Login body only.
  const login = server.requests.find((r) => r.method === 'Login')!;
  assert.match(login.body, /<password>Sup3r\$ecret&lt;&amp;&gt;<\/password>/);
});

test('an expired session is renewed once, transparently, and the call repeated', async (t) => {
  const server = await startScriptedServer({
    ...BASE,
    Login: ['login.xml', 'login.xml'],
    CreateContainerView: ['fault-not-authenticated.xml', 'create-view.xml'],
    RetrievePropertiesEx: ['inventory-page1.xml', 'host-scsilun.xml'],
    ContinueRetrievePropertiesEx: ['inventory-page2.xml'],
  });
  t.after(() => server.close());
  const vc = await connect(config(server.url));
  const inv = await vc.inventory();
  assert.equal(inv.vms.length, 2);
  assert.deepEqual(server.methods().slice(0, 5), [
    'RetrieveServiceContent',
    'Login',
    'CreateContainerView',
    'Login',
    'CreateContainerView',
  ]);
});

test('a session that stays unauthenticated after re-login fails with the fault (no loop)', async (t) => {
  const server = await startScriptedServer({
    ...BASE,
    CreateContainerView: ['fault-not-authenticated.xml'],
  });
  t.after(() => server.close());
  const vc = await connect(config(server.url));
  await assert.rejects(
    vc.inventory(),
    (err: unknown) => err instanceof VsphereFault && err.faultType === 'NotAuthenticated',
  );
  assert.equal(server.methods().filter((m) => m === 'Login').length, 2);
  assert.equal(server.methods().filter((m) => m === 'CreateContainerView').length, 2);
});

test('a task that runs then fails is polled and its error becomes a VsphereFault', async (t) => {
  const server = await startScriptedServer({
    ...BASE,
    PowerOnVM_Task: ['power-on-task.xml'],
    RetrievePropertiesEx: ['task-running.xml', 'task-error.xml'],
  });
  t.after(() => server.close());
  const vc = await connect(config(server.url));
  await assert.rejects(vc.powerOnVm('vm-42'), (err: unknown) => {
    assert.ok(err instanceof VsphereFault);
    assert.equal(err.faultType, 'InvalidPowerState');
    assert.equal(err.method, 'PowerOnVM_Task');
    return true;
  });
  assert.deepEqual(server.methods().slice(2), [
    'PowerOnVM_Task',
    'RetrievePropertiesEx',
    'RetrievePropertiesEx',
  ]);
  assert.match(server.requests[2]!.body, /<_this type="VirtualMachine">vm-42<\/_this>/);
});

test('a SOAP fault on a call names type and object', async (t) => {
  const server = await startScriptedServer({ ...BASE, PowerOffVM_Task: ['fault-not-found.xml'] });
  t.after(() => server.close());
  const vc = await connect(config(server.url));
  await assert.rejects(vc.powerOffVm('vm-999'), (err: unknown) => {
    assert.ok(err instanceof VsphereFault);
    assert.equal(err.faultType, 'ManagedObjectNotFound');
    assert.equal(err.managedObject, 'VirtualMachine:vm-999');
    return true;
  });
});

test('a task that never ends times out and aborting stops the wait', async (t) => {
  const server = await startScriptedServer({
    ...BASE,
    PowerOnVM_Task: ['power-on-task.xml'],
    RetrievePropertiesEx: ['task-running.xml'],
  });
  t.after(() => server.close());
  const vc = await connect({ ...config(server.url), timeoutSeconds: 0.3 });
  await assert.rejects(vc.powerOnVm('vm-42'), { code: 'VSPHERE_TASK_TIMEOUT' });
  const ac = new AbortController();
  const slow = await connect({ ...config(server.url), timeoutSeconds: 60 });
  const p = slow.powerOnVm('vm-42', { signal: ac.signal });
  ac.abort(new Error('stop now'));
  await assert.rejects(p, /stop now/);
});

test('connect-time failures are VcenterUnreachableError (exit 3): refused, not an SDK endpoint', async (t) => {
  await assert.rejects(connect(config('http://127.0.0.1:1/sdk')), (err: unknown) => {
    assert.ok(err instanceof VcenterUnreachableError);
    assert.equal(err.code, 'VCENTER_UNREACHABLE');
    assert.equal(err.exitCode, ExitCode.usage);
    assert.match(err.message, /127\.0\.0\.1:1.*ECONNREFUSED/);
    return true;
  });
  const server = await startScriptedServer({});
  t.after(() => server.close());
  // A bare host URL gets the standard /sdk path, then answers with something that is not SOAP.
  await assert.rejects(connect(config(server.url.replace('/sdk', ''))), (err: unknown) => {
    assert.ok(err instanceof VcenterUnreachableError);
    assert.match(err.message, /does not answer as a vCenter SDK endpoint/);
    return true;
  });
  assert.deepEqual(server.methods(), ['RetrieveServiceContent']);
});
