import assert from 'node:assert/strict';
import { readdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { XMLParser } from 'fast-xml-parser';
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
  type XmlNode,
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
      wrap(
        `xmlns:${prefix}="${uri}"`,
        `<R><val ${prefix}:type="VirtualDisk" type="not-xsi"><key>1</key></val></R>`,
      ),
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
    wrap(
      'xmlns:other="urn:other"',
      `<R><a xmlns:XMLSchema-instance="${uri}" XMLSchema-instance:type="A">1</a><b other:type="B">2</b></R>`,
    ),
  );
  const r = asObject(soapBody(doc)?.R)!;
  assert.equal(asObject(r.a)?.$xsiType, 'A');
  assert.equal(r.b, '2');
  // Outside its element the prefix is unbound: not namespace-well-formed XML, refused with its position.
  assert.throws(
    () => parseXml(wrap('', `<R><a xmlns:p="${uri}" p:type="A">1</a><b p:type="B">2</b></R>`)),
    /unbound namespace prefix: "p"/,
  );
});

test('malformed XML and DTDs are refused with a reason', () => {
  assert.throws(() => parseXml('<E><a>2</E>'), /1:\d+: unexpected close tag/);
  assert.throws(() => parseXml('<!DOCTYPE x [<!ENTITY a "b">]><E>&a;</E>'), /DTDs are not accepted/);
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
  const xml = envelope(
    'Login',
    { type: 'SessionManager', value: 'SessionManager' },
    `<userName>${xmlEscape('a<b>&"c\'')}</userName>`,
  );
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
  assert.match(
    f.message,
    /PowerOnVM_Task: .*ManagedObjectNotFound.*'vim.VirtualMachine:vm-999' has already been deleted/,
  );
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

/**
 * The reference reading of the same XML with fast-xml-parser (a general, well-tested parser), mapped to the
 * XmlNode shape by the simplest code possible. The fast scanner in xml.ts must agree with it on every fixture.
 */
function referenceParse(xml: string): XmlObject {
  const parser = new XMLParser({
    ignoreAttributes: false,
    attributeNamePrefix: '@',
    removeNSPrefix: false,
    parseTagValue: false,
    parseAttributeValue: false,
    ignoreDeclaration: true,
    trimValues: false,
    htmlEntities: true,
  });
  const local = (n: string) => n.slice(n.indexOf(':') + 1);
  const norm = (raw: unknown, scope: Map<string, string>): XmlNode => {
    if (typeof raw !== 'object' || raw === null) return raw === undefined || raw === null ? '' : String(raw);
    const r = raw as Record<string, unknown>;
    const inner = new Map(scope);
    for (const k of Object.keys(r)) if (k.startsWith('@xmlns:')) inner.set(k.slice(7), String(r[k]));
    const out: XmlObject = {};
    let children = false;
    for (const [k, v] of Object.entries(r)) {
      if (k === '@type') out.$type = String(v);
      else if (
        k.startsWith('@') &&
        k.endsWith(':type') &&
        inner.get(k.slice(1, -5)) === 'http://www.w3.org/2001/XMLSchema-instance'
      ) {
        out.$xsiType = local(String(v));
      } else if (k === '#text') out.$text = String(v);
      else if (!k.startsWith('@')) {
        children = true;
        out[local(k)] = Array.isArray(v) ? v.map((x) => norm(x, inner)) : norm(v, inner);
      }
    }
    if (children) delete out.$text;
    if (out.$type === undefined && out.$xsiType === undefined && !children) return out.$text ?? '';
    if (!children && out.$type !== undefined) out.$text ??= '';
    return out;
  };
  return norm(parser.parse(xml), new Map()) as XmlObject;
}

test('the saxes-based reading agrees with fast-xml-parser on every recorded answer', () => {
  const dir = join(dirname(fileURLToPath(import.meta.url)), '../../../test/fixtures/vsphere');
  const files = readdirSync(dir).filter((f) => f.endsWith('.xml'));
  assert.ok(files.length >= 10);
  for (const f of files) {
    const xml = fixture(f);
    assert.deepEqual(parseXml(xml), referenceParse(xml), f);
  }
});

test('odd but legal XML: CDATA, comments, references, quoted >, single quotes; DTDs refused', () => {
  const doc = parseXml(
    `<?xml version="1.0"?><!-- c --><a xmlns:i='http://www.w3.org/2001/XMLSchema-instance'><b i:type='T' type="x>y">v&#x41;&#66;</b><c><![CDATA[<raw>&amp;]]></c><d/><d>2</d></a>`,
  );
  const a = asObject(doc.a)!;
  assert.deepEqual(a.b, { $xsiType: 'T', $type: 'x>y', $text: 'vAB' });
  assert.equal(a.c, '<raw>&amp;');
  assert.deepEqual(a.d, ['', '2']);
  assert.throws(() => parseXml('<!DOCTYPE x [<!ENTITY e "boom">]><x>&e;</x>'), /DTD/);
  assert.throws(() => parseXml('<a><b></a>'), /unexpected/);
  assert.throws(() => parseXml('<a>'), /unclosed/);
});
