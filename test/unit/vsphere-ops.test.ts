import assert from 'node:assert/strict';
import { EventEmitter } from 'node:events';
import type http from 'node:http';
import { test } from 'node:test';
import type { VcenterConfig } from '../../src/config/load.js';
import { Secret } from '../../src/util/secret.js';
import { connect } from '../../src/vsphere/client.js';
import { isScsiController } from '../../src/vsphere/inventory.js';
import { TransportError } from '../../src/vsphere/transport.js';
import { reconfigureDisks, vmDevices } from '../../src/vsphere/vm-ops.js';
import { fixture, listenSoap, startScriptedServer } from '../fixtures/vsphere/scripted-server.js';

function config(url: string, timeoutSeconds = 5): VcenterConfig {
  return {
    url,
    user: 'backup@vsphere.local',
    password: new Secret('pw'),
    insecure: false,
    maxConcurrentRequests: 4,
    timeoutSeconds,
  };
}

const BASE = {
  RetrieveServiceContent: ['service-content.xml'],
  Login: ['login.xml'],
  Logout: ['logout.xml'],
  CreateContainerView: ['create-view.xml'],
  DestroyView: ['destroy-view.xml'],
};

const envelope = (inner: string) =>
  '<?xml version="1.0" encoding="UTF-8"?><soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" ' +
  'xmlns:xsd="http://www.w3.org/2001/XMLSchema" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">' +
  `<soapenv:Body>${inner}</soapenv:Body></soapenv:Envelope>`;

const FIXTURE_OF: Record<string, string> = {
  RetrieveServiceContent: 'service-content.xml',
  Login: 'login.xml',
  Logout: 'logout.xml',
  CreateContainerView: 'create-view.xml',
  DestroyView: 'destroy-view.xml',
};

/**
 * A local vCenter stand-in answering the base methods from the recorded fixtures and the others from
 * `answer` (inline XML inside soapenv:Body); `answer` returning undefined, or a method in `hang`, means
 * never answer. `arrived(method, n)` resolves once `n` requests of `method` came in.
 */
async function startXmlServer(
  answer: (method: string, body: string) => string | undefined,
  hang: string[] = [],
) {
  const methods: string[] = [];
  const events = new EventEmitter();
  const count = (m: string) => methods.filter((x) => x === m).length;
  const listener = await listenSoap((method, body, _req, res) => {
    methods.push(method);
    events.emit('request');
    if (hang.includes(method)) return;
    const headers: http.OutgoingHttpHeaders = { 'content-type': 'text/xml; charset=utf-8' };
    if (method === 'Login') headers['set-cookie'] = 'vmware_soap_session="abc"; Path=/';
    const file = FIXTURE_OF[method];
    if (file) return res.writeHead(200, headers).end(fixture(file));
    const inner = answer(method, body);
    if (inner === undefined) return; // never answers
    res.writeHead(200, headers).end(envelope(inner));
  });
  return {
    ...listener,
    methods,
    arrived: (method: string, n: number) =>
      new Promise<void>((resolve) => {
        const check = () => {
          if (count(method) < n) return;
          events.off('request', check);
          resolve();
        };
        events.on('request', check);
        check();
      }),
  };
}

const prop = (name: string, val: string) => `<propSet><name>${name}</name>${val}</propSet>`;
const str = (v: string) => `<val xsi:type="xsd:string">${v}</val>`;
const retrieved = (objects: string) =>
  `<RetrievePropertiesExResponse xmlns="urn:vim25"><returnval>${objects}</returnval></RetrievePropertiesExResponse>`;
const datastoreObj = (id: string, name: string) =>
  `<objects><obj type="Datastore">${id}</obj>${prop('name', str(name))}</objects>`;
const diskXml = (key: number, backing: string, file: string, ds: string, unit: number) =>
  `<VirtualDevice xsi:type="VirtualDisk"><key>${key}</key><deviceInfo><label>Hard disk ${key - 1999}</label></deviceInfo>` +
  `<backing xsi:type="${backing}"><fileName>${file}</fileName><datastore type="Datastore">${ds}</datastore>` +
  '<deviceName>/vmfs/devices/disks/naa.600a0980383030534a3f463045727a71</deviceName>' +
  '<compatibilityMode>physicalMode</compatibilityMode><diskMode>persistent</diskMode></backing>' +
  `<controllerKey>1000</controllerKey><unitNumber>${unit}</unitNumber><capacityInKB>1024</capacityInKB></VirtualDevice>`;
const scsiXml =
  '<VirtualDevice xsi:type="ParaVirtualSCSIController"><key>1000</key><busNumber>0</busNumber><sharedBus>noSharing</sharedBus></VirtualDevice>';

test('abandoned paging cancels the open token, then destroys the view', async (t) => {
  const server = await startScriptedServer({
    ...BASE,
    RetrievePropertiesEx: ['inventory-page1.xml'],
    ContinueRetrievePropertiesEx: ['fault-not-found.xml'],
    CancelRetrievePropertiesEx: ['destroy-view.xml'],
  });
  t.after(() => server.close());
  const vc = await connect(config(server.url));
  await assert.rejects(vc.inventory(), { faultType: 'ManagedObjectNotFound' });
  assert.deepEqual(server.methods().slice(2), [
    'CreateContainerView',
    'RetrievePropertiesEx',
    'ContinueRetrievePropertiesEx',
    'CancelRetrievePropertiesEx',
    'DestroyView',
  ]);
  const cancel = server.requests.find((r) => r.method === 'CancelRetrievePropertiesEx')!;
  assert.match(cancel.body, /<token>1<\/token>/);
});

test('no DestroyView after vCenter stopped answering or the caller aborted', async (t) => {
  const server = await startXmlServer(() => undefined, ['RetrievePropertiesEx']);
  t.after(() => server.close());
  const vc = await connect(config(server.url, 0.3));
  await assert.rejects(vc.inventory(), (err: unknown) => {
    assert.ok(err instanceof TransportError);
    assert.equal(err.code, 'VCENTER_TIMEOUT');
    return true;
  });
  const slow = await connect(config(server.url, 60));
  const ac = new AbortController();
  const pending = slow.inventory({ signal: ac.signal });
  await server.arrived('RetrievePropertiesEx', 2);
  ac.abort(new Error('stop'));
  await assert.rejects(pending, /stop/);
  assert.deepEqual(
    server.methods.filter((m) => m !== 'RetrieveServiceContent' && m !== 'Login'),
    ['CreateContainerView', 'RetrievePropertiesEx', 'CreateContainerView', 'RetrievePropertiesEx'],
  );
});

test('a DestroyView that is never answered is bounded (5 s), not the full request timeout', async (t) => {
  const server = await startXmlServer(
    (method) =>
      method === 'RetrievePropertiesEx' ? retrieved(datastoreObj('datastore-1', 'ds-a')) : undefined,
    ['DestroyView'],
  );
  t.after(() => server.close());
  const vc = await connect(config(server.url, 60));
  const start = Date.now();
  const inv = await vc.inventory();
  assert.equal(inv.datastores.length, 1);
  const took = Date.now() - start;
  assert.ok(took >= 4000 && took < 30_000, `inventory took ${took} ms`);
  assert.equal(server.methods.at(-1), 'DestroyView');
});

test('an RDM mapping file counts among the VM datastores; an unreadable config is reported', async (t) => {
  const vm =
    '<objects><obj type="VirtualMachine">vm-7</obj>' +
    prop('name', str('db02')) +
    prop('config.files.vmPathName', str('[ds-a] db02/db02.vmx')) +
    prop(
      'config.hardware.device',
      `<val xsi:type="ArrayOfVirtualDevice">${scsiXml}` +
        diskXml(2000, 'VirtualDiskFlatVer2BackingInfo', '[ds-a] db02/db02.vmdk', 'datastore-1', 0) +
        diskXml(2001, 'VirtualDiskRawDiskMappingVer1BackingInfo', '[ds-b] db02/rdm.vmdk', 'datastore-2', 1) +
        '</val>',
    ) +
    prop(
      'datastore',
      '<val xsi:type="ArrayOfManagedObjectReference"><ManagedObjectReference type="Datastore" xsi:type="ManagedObjectReference">datastore-1</ManagedObjectReference></val>',
    ) +
    prop('runtime.powerState', '<val xsi:type="VirtualMachinePowerState">poweredOn</val>') +
    '</objects>';
  const broken =
    '<objects><obj type="VirtualMachine">vm-8</obj>' +
    prop('name', str('lost01')) +
    prop('runtime.powerState', '<val xsi:type="VirtualMachinePowerState">poweredOff</val>') +
    '<missingSet><path>config.files.vmPathName</path><fault><fault xsi:type="NoPermission"><privilegeId>System.Read</privilegeId></fault></fault></missingSet>' +
    '<missingSet><path>config.hardware.device</path><fault><fault xsi:type="NoPermission"><privilegeId>System.Read</privilegeId></fault></fault></missingSet>' +
    '</objects>';
  const server = await startXmlServer((method) =>
    method === 'RetrievePropertiesEx'
      ? retrieved(datastoreObj('datastore-1', 'ds-a') + datastoreObj('datastore-2', 'ds-b') + vm + broken)
      : undefined,
  );
  t.after(() => server.close());
  const vc = await connect(config(server.url));
  const inv = await vc.inventory();
  const db02 = inv.vms.find((v) => v.name === 'db02')!;
  assert.deepEqual(
    db02.disks.map((d) => [d.kind, d.datastore]),
    [
      ['flat', 'ds-a'],
      ['rdm-physical', 'ds-b'],
    ],
  );
  assert.deepEqual([...db02.datastores].sort(), ['ds-a', 'ds-b']);
  const lost = inv.vms.find((v) => v.name === 'lost01')!;
  assert.equal(lost.vmxFile, '');
  assert.deepEqual(lost.disks, []);
  assert.deepEqual(inv.unreadableVms, ['lost01']);
});

test('reconfigureDisks: an added disk that does not show up is a bad response, not key 0', async (t) => {
  const server = await startXmlServer((method, body) => {
    if (method === 'ReconfigVM_Task') {
      return '<ReconfigVM_TaskResponse xmlns="urn:vim25"><returnval type="Task">task-9</returnval></ReconfigVM_TaskResponse>';
    }
    if (method !== 'RetrievePropertiesEx') return undefined;
    if (body.includes('type="Task"')) {
      return retrieved(
        `<objects><obj type="Task">task-9</obj>${prop('info.state', '<val xsi:type="TaskInfoState">success</val>')}</objects>`,
      );
    }
    return retrieved(
      '<objects><obj type="VirtualMachine">vm-7</obj>' +
        prop('name', str('db02')) +
        prop('runtime.powerState', '<val xsi:type="VirtualMachinePowerState">poweredOff</val>') +
        prop(
          'config.hardware.device',
          `<val xsi:type="ArrayOfVirtualDevice">${scsiXml}${diskXml(2000, 'VirtualDiskFlatVer2BackingInfo', '[ds-a] db02/db02.vmdk', 'datastore-1', 0)}</val>`,
        ) +
        '</objects>',
    );
  });
  t.after(() => server.close());
  const vc = await connect(config(server.url));
  const devices = await vmDevices(vc, 'vm-7');
  assert.deepEqual(devices.scsiControllers, [{ key: 1000, busNumber: 0 }]);
  assert.deepEqual(
    devices.disks.map((d) => [d.key, d.file, d.capacityBytes, d.label]),
    [[2000, '[ds-a] db02/db02.vmdk', 1024 * 1024, 'Hard disk 1']],
  );
  const add = {
    file: '[ds-b] restore/db02.vmdk',
    capacityBytes: 1024,
    diskMode: 'persistent',
    controllerKey: 1000,
    unitNumber: 1,
  };
  await assert.rejects(reconfigureDisks(vc, 'vm-7', { add: [add] }), (err: unknown) => {
    assert.equal((err as { code?: string }).code, 'VCENTER_BAD_RESPONSE');
    assert.match((err as Error).message, /restore\/db02\.vmdk/);
    return true;
  });
});

test('one SCSI controller test for inventory and vm-ops', () => {
  for (const t of [
    'VirtualLsiLogicController',
    'VirtualLsiLogicSASController',
    'VirtualBusLogicController',
    'ParaVirtualSCSIController',
  ]) {
    assert.ok(isScsiController(t), t);
  }
  for (const t of ['VirtualIDEController', 'VirtualAHCIController', 'VirtualNVMEController', undefined]) {
    assert.ok(!isScsiController(t), String(t));
  }
});
