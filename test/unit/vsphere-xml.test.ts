import assert from 'node:assert/strict';
import { test } from 'node:test';
import { faultFromLocalized, faultFromSoap } from '../../src/vsphere/faults.js';
import { datastoreOfPath, flattenSnapshots, lunFromDeviceName } from '../../src/vsphere/inventory.js';
import {
  asArray,
  asObject,
  envelope,
  moRef,
  parseXml,
  soapBody,
  text,
  type XmlObject,
  xmlEscape,
} from '../../src/vsphere/xml.js';
import { fixture } from '../fixtures/vsphere/scripted-server.js';

const wrap = (ns: string, inner: string) =>
  `<?xml version="1.0"?><soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" ${ns}><soapenv:Body>${inner}</soapenv:Body></soapenv:Envelope>`;

test('xsi:type is resolved by namespace URI, whatever the prefix', () => {
  const uri = 'http://www.w3.org/2001/XMLSchema-instance';
  for (const prefix of ['xsi', 'XMLSchema-instance', 'q1']) {
    const doc = parseXml(
      wrap(`xmlns:${prefix}="${uri}"`, `<R><val ${prefix}:type="VirtualDisk" type="not-xsi"><key>1</key></val></R>`),
    );
    const val = asObject(asObject(soapBody(doc)?.R)?.val)!;
    assert.equal(val.$xsiType, 'VirtualDisk', prefix);
    assert.equal(val.$type, 'not-xsi');
  }
  // A type attribute under some other namespace is not xsi:type.
  const other = parseXml(wrap('xmlns:foo="urn:other"', '<R><val foo:type="Nope">x</val></R>'));
  const val = asObject(soapBody(other)?.R)?.val;
  assert.equal(asObject(val)?.$xsiType, undefined);
  assert.equal(text(val), 'x');
});

test('a declaration on an inner element is in scope only there', () => {
  const uri = 'http://www.w3.org/2001/XMLSchema-instance';
  const doc = parseXml(
    wrap('', `<R><a xmlns:XMLSchema-instance="${uri}" XMLSchema-instance:type="A">1</a><b XMLSchema-instance:type="B">2</b></R>`),
  );
  const r = asObject(soapBody(doc)?.R)!;
  assert.equal(asObject(r.a)?.$xsiType, 'A');
  assert.equal(asObject(r.b)?.$xsiType, undefined);
});

test('managed object references keep type and value; arrays normalise', () => {
  const doc = parseXml(fixture('inventory-page2.xml'));
  const ret = asObject(asObject(soapBody(doc)?.ContinueRetrievePropertiesExResponse)?.returnval)!;
  const objects = asArray(ret.objects);
  assert.equal(objects.length, 5);
  assert.deepEqual(moRef(asObject(objects[0])?.obj), { type: 'Datastore', value: 'datastore-21' });
  assert.deepEqual(asArray(undefined), []);
  assert.deepEqual(asArray('x'), ['x']);
});

test('envelope escapes parameters and names the method in vim25', () => {
  const xml = envelope('Login', { type: 'SessionManager', value: 'SessionManager' }, `<userName>${xmlEscape('a<b>&"c\'')}</userName>`);
  assert.match(xml, /<Login xmlns="urn:vim25"><_this type="SessionManager">SessionManager<\/_this>/);
  assert.match(xml, /a&lt;b&gt;&amp;&quot;c&apos;/);
  const back = asObject(soapBody(parseXml(xml))?.Login) as XmlObject;
  assert.equal(text(back.userName), 'a<b>&"c\'');
});

test('SOAP faults become VsphereFault with type and object', () => {
  const body = soapBody(parseXml(fixture('fault-not-found.xml')))!;
  const f = faultFromSoap(asObject(body.Fault)!, 'PowerOnVM_Task');
  assert.equal(f.code, 'VSPHERE_FAULT');
  assert.equal(f.faultType, 'ManagedObjectNotFound');
  assert.equal(f.managedObject, 'VirtualMachine:vm-999');
  assert.match(f.message, /PowerOnVM_Task: .*ManagedObjectNotFound.*'vim.VirtualMachine:vm-999' has already been deleted/);
});

test('task errors (LocalizedMethodFault) become VsphereFault', () => {
  const body = soapBody(parseXml(fixture('task-error.xml')))!;
  const ret = asObject(asObject(body.RetrievePropertiesExResponse)?.returnval)!;
  const props = asArray(asObject(ret.objects)?.propSet).map((p) => asObject(p)!);
  const err = props.find((p) => text(p.name) === 'info.error')!;
  const f = faultFromLocalized(err.val, 'PowerOnVM_Task');
  assert.equal(f.faultType, 'InvalidPowerState');
  assert.match(f.message, /cannot be performed in the current state/);
});

test('snapshot trees flatten parents first; paths and LUN names parse', () => {
  const list = asObject(
    parseXml(
      '<r><rootSnapshotList><snapshot type="VirtualMachineSnapshot">snapshot-1</snapshot><name>a</name><childSnapshotList><snapshot type="VirtualMachineSnapshot">snapshot-2</snapshot><name>b</name></childSnapshotList><childSnapshotList><snapshot type="VirtualMachineSnapshot">snapshot-3</snapshot><name>c</name></childSnapshotList></rootSnapshotList><rootSnapshotList><snapshot type="VirtualMachineSnapshot">snapshot-4</snapshot><name>d</name></rootSnapshotList></r>',
    ).r,
  )!;
  assert.deepEqual(
    flattenSnapshots(list.rootSnapshotList).map((s) => `${s.id}:${s.name}`),
    ['snapshot-1:a', 'snapshot-2:b', 'snapshot-3:c', 'snapshot-4:d'],
  );
  assert.equal(datastoreOfPath('[ds a] vm/vm.vmdk'), 'ds a');
  assert.equal(lunFromDeviceName('/vmfs/devices/disks/naa.600a01'), 'naa.600a01');
  assert.equal(lunFromDeviceName('vml.0200010000600a'), undefined);
});
