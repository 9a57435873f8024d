import { XMLParser } from 'fast-xml-parser';

/**
 * The SOAP/XML layer: building vim25 request envelopes and turning response XML into a small, namespace-free
 * tree. Nothing here knows about methods or managed objects beyond the `ManagedObjectReference` shape.
 */

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

const parser = new XMLParser({
  ignoreAttributes: false,
  attributeNamePrefix: '@',
  // Prefixes are resolved below against the declarations in scope, not stripped blindly: `xsi:type` and the
  // plain `type` of a managed object reference can sit on one element.
  removeNSPrefix: false,
  parseTagValue: false,
  parseAttributeValue: false,
  ignoreDeclaration: true,
  processEntities: true,
  htmlEntities: true,
});

type Raw = Record<string, unknown>;

function localName(name: string): string {
  const i = name.indexOf(':');
  return i < 0 ? name : name.slice(i + 1);
}

/**
 * Converts a fast-xml-parser element into an XmlNode, resolving `*:type` attributes by namespace URI: the
 * simulator declares the schema-instance namespace with the prefix `XMLSchema-instance`, a real vCenter with
 * `xsi`, and either is legal.
 */
function normalise(raw: unknown, scope: Map<string, string>): XmlNode {
  if (typeof raw !== 'object' || raw === null) return raw === undefined || raw === null ? '' : String(raw);
  const r = raw as Raw;
  let inner = scope;
  for (const key of Object.keys(r)) {
    if (key.startsWith('@xmlns:')) {
      if (inner === scope) inner = new Map(scope);
      inner.set(key.slice(7), String(r[key]));
    }
  }
  const out: XmlObject = {};
  let hasContent = false;
  for (const [key, value] of Object.entries(r)) {
    if (key.startsWith('@')) {
      const attr = key.slice(1);
      const colon = attr.indexOf(':');
      if (colon < 0) {
        if (attr === 'type') out.$type = String(value);
      } else if (attr.slice(colon + 1) === 'type' && inner.get(attr.slice(0, colon)) === XSI_NS) {
        out.$xsiType = localName(String(value));
      }
      continue;
    }
    if (key === '#text') {
      out.$text = String(value);
      hasContent = true;
      continue;
    }
    hasContent = true;
    const name = localName(key);
    const converted = Array.isArray(value) ? value.map((v) => normalise(v, inner)) : normalise(value, inner);
    const prev = out[name];
    // Two prefixes mapping to one local name would be unusual; merge rather than lose data.
    if (prev === undefined) out[name] = converted;
    else out[name] = [...asArray(prev), ...asArray(converted)];
  }
  if (out.$type === undefined && out.$xsiType === undefined) {
    const keys = Object.keys(out);
    if (keys.length === 0) return '';
    if (keys.length === 1 && out.$text !== undefined) return out.$text;
  }
  if (!hasContent && out.$text === undefined && out.$type !== undefined) out.$text = '';
  return out;
}

/** Parses a SOAP response into the namespace-free tree of its `Envelope`. */
export function parseXml(xml: string): XmlObject {
  const raw = parser.parse(xml) as Raw;
  const root = normalise(raw, new Map([['xml', 'http://www.w3.org/XML/1998/namespace']]));
  return typeof root === 'string' ? {} : root;
}

/** The Body of a SOAP envelope. */
export function soapBody(doc: XmlObject): XmlObject | undefined {
  const env = asObject(doc.Envelope);
  return asObject(env?.Body);
}
