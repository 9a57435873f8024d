import {
  asArray,
  asObject,
  el,
  type MoRef,
  moRef,
  moRefXml,
  text,
  type XmlNode,
  type XmlObject,
} from './xml.js';

/**
 * The property collector layer: read only the property paths asked for, of one object or of every object in a
 * container view, following the paging token. Built on the one `call` method of the client.
 */

/** The managed objects a session needs (from RetrieveServiceContent). */
export interface ServiceContent {
  rootFolder: MoRef;
  propertyCollector: MoRef;
  viewManager: MoRef;
  sessionManager: MoRef;
  /** e.g. `6.5`, used in the SOAPAction header. */
  apiVersion: string;
  /** `VirtualCenter` or `HostAgent`. */
  apiType: string;
}

export interface CallOptions {
  signal?: AbortSignal;
}

/** What the property collector needs from a client: one vim25 call and the service content. */
export interface Invoker {
  /** Calls `method` on `thisRef`; `body` is the escaped parameter XML after `_this`. Returns `returnval`. */
  call(
    method: string,
    thisRef: MoRef,
    body?: string,
    options?: CallOptions,
  ): Promise<XmlNode | XmlNode[] | undefined>;
  readonly serviceContent: ServiceContent;
}

/** One object with the properties that were asked for (absent = unset in vSphere). */
export interface ObjectContent {
  obj: MoRef;
  props: Map<string, XmlNode | XmlNode[]>;
}

export interface PropertySpec {
  type: string;
  paths: string[];
}

/** Server-side page size; vCenter may choose a smaller one. Large pages keep round trips few. */
const PAGE_SIZE = 1000;

function propSetXml(specs: PropertySpec[]): string {
  return specs
    .map((s) => `<propSet>${el('type', s.type)}${s.paths.map((p) => el('pathSet', p)).join('')}</propSet>`)
    .join('');
}

function parseResult(node: XmlNode | XmlNode[] | undefined): { token?: string; objects: ObjectContent[] } {
  const r = asObject(node);
  if (!r) return { objects: [] };
  const objects = asArray(r.objects).map((o): ObjectContent => {
    const oc = asObject(o) ?? {};
    const props = new Map<string, XmlNode | XmlNode[]>();
    for (const p of asArray(oc.propSet)) {
      const po = asObject(p);
      const name = text(po?.name);
      if (po && name !== undefined && po.val !== undefined) props.set(name, po.val);
    }
    return { obj: moRef(oc.obj) ?? { type: '', value: '' }, props };
  });
  const token = text(r.token);
  return token ? { token, objects } : { objects };
}

/** RetrievePropertiesEx then ContinueRetrievePropertiesEx until no token is left. */
async function retrieveAll(
  client: Invoker,
  specSet: string,
  options: CallOptions = {},
): Promise<ObjectContent[]> {
  const pc = client.serviceContent.propertyCollector;
  const first = parseResult(
    await client.call(
      'RetrievePropertiesEx',
      pc,
      `<specSet>${specSet}</specSet><options>${el('maxObjects', PAGE_SIZE)}</options>`,
      options,
    ),
  );
  const all = first.objects;
  let token = first.token;
  while (token !== undefined) {
    const next = parseResult(
      await client.call('ContinueRetrievePropertiesEx', pc, el('token', token), options),
    );
    for (const o of next.objects) all.push(o);
    token = next.token;
  }
  return all;
}

/** Properties of one object; an unset property is absent from the map. */
export async function retrieveOne(
  client: Invoker,
  obj: MoRef,
  paths: string[],
  options: CallOptions = {},
): Promise<Map<string, XmlNode | XmlNode[]>> {
  const spec = `${propSetXml([{ type: obj.type, paths }])}<objectSet>${moRefXml('obj', obj)}<skip>false</skip></objectSet>`;
  const objects = await retrieveAll(client, spec, options);
  return objects[0]?.props ?? new Map();
}

/**
 * Properties of every object of the given types below `container` (recursively), read through one container
 * view: CreateContainerView, one RetrievePropertiesEx (+ paging), DestroyView. The number of round trips does
 * not depend on the number of objects.
 */
export async function retrieveFromContainer(
  client: Invoker,
  container: MoRef,
  specs: PropertySpec[],
  options: CallOptions = {},
): Promise<ObjectContent[]> {
  const sc = client.serviceContent;
  const types = specs.map((s) => el('type', s.type)).join('');
  const view = moRef(
    await client.call(
      'CreateContainerView',
      sc.viewManager,
      `${moRefXml('container', container)}${types}${el('recursive', true)}`,
      options,
    ),
  );
  if (!view) throw new Error('CreateContainerView returned no view');
  try {
    const spec =
      propSetXml(specs) +
      `<objectSet>${moRefXml('obj', view)}<skip>true</skip>` +
      `<selectSet xsi:type="TraversalSpec"><name>view</name>${el('type', 'ContainerView')}${el('path', 'view')}<skip>false</skip></selectSet>` +
      '</objectSet>';
    return await retrieveAll(client, spec, options);
  } finally {
    // A view left behind costs vCenter memory until the session ends; best effort, never masks the result.
    await client.call('DestroyView', view, '', {}).catch(() => undefined);
  }
}

/** Reads `prop` of an ObjectContent as an object node. */
export function propObject(oc: ObjectContent, prop: string): XmlObject | undefined {
  return asObject(oc.props.get(prop));
}

/** A vim25 `ArrayOfX` property value as its elements. */
export function propArray(oc: ObjectContent, prop: string): XmlNode[] {
  const v = asObject(oc.props.get(prop));
  if (!v) return [];
  const key = Object.keys(v).find((k) => !k.startsWith('$'));
  return key === undefined ? [] : asArray(v[key]);
}
