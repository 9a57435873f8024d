import { TransportError } from './transport.js';
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
  /** Paths the server could not read (missingSet), with the fault type it gave; absent when none. */
  missing?: Map<string, string>;
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
    const missing = new Map<string, string>();
    for (const m of asArray(oc.missingSet)) {
      const mo = asObject(m);
      const path = text(mo?.path);
      if (path !== undefined)
        missing.set(path, asObject(asObject(mo?.fault)?.fault)?.$xsiType ?? 'SystemError');
    }
    const obj = moRef(oc.obj) ?? { type: '', value: '' };
    return missing.size > 0 ? { obj, props, missing } : { obj, props };
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
  try {
    while (token !== undefined) {
      const next = parseResult(
        await client.call('ContinueRetrievePropertiesEx', pc, el('token', token), options),
      );
      for (const o of next.objects) all.push(o);
      token = next.token;
    }
  } catch (err) {
    // Paging abandoned: free the server-side result set (best effort, bounded, never masks the error).
    const open = token;
    if (open !== undefined && worthCleaningUp(err, options)) {
      await client
        .call('CancelRetrievePropertiesEx', pc, el('token', open), {
          signal: AbortSignal.timeout(CLEANUP_MS),
        })
        .catch(() => undefined);
    }
    throw err;
  }
  return all;
}

/** Bound on a clean-up call (DestroyView, CancelRetrievePropertiesEx) made after the real work. */
const CLEANUP_MS = 5000;

/**
 * Whether a clean-up call is worth sending after `err`: not when vCenter did not answer (a connection
 * failure or timeout would most likely repeat, doubling the wait) nor when the caller aborted.
 */
function worthCleaningUp(err: unknown, options: CallOptions): boolean {
  return !(err instanceof TransportError) && options.signal?.aborted !== true;
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
  let failure: { err: unknown } | undefined;
  try {
    const spec =
      propSetXml(specs) +
      `<objectSet>${moRefXml('obj', view)}<skip>true</skip>` +
      `<selectSet xsi:type="TraversalSpec"><name>view</name>${el('type', 'ContainerView')}${el('path', 'view')}<skip>false</skip></selectSet>` +
      '</objectSet>';
    return await retrieveAll(client, spec, options);
  } catch (err) {
    failure = { err };
    throw err;
  } finally {
    // A view left behind costs vCenter memory until the session ends; best effort, bounded, never masks the
    // result. Skipped when vCenter did not answer or the caller aborted: the session's end frees it.
    if (!failure || worthCleaningUp(failure.err, options)) {
      await client
        .call('DestroyView', view, '', { signal: AbortSignal.timeout(CLEANUP_MS) })
        .catch(() => undefined);
    }
  }
}

/** Reads `prop` of an ObjectContent as an object node. */
export function propObject(oc: ObjectContent, prop: string): XmlObject | undefined {
  return asObject(oc.props.get(prop));
}

/** A vim25 `ArrayOfX` property value as its elements. */
export function propArray(oc: ObjectContent, prop: string): XmlNode[] {
  return arrayValue(oc.props.get(prop));
}

/** The elements of a vim25 `ArrayOfX` value (e.g. `config.hardware.device`). */
export function arrayValue(node: XmlNode | XmlNode[] | undefined): XmlNode[] {
  const v = asObject(node);
  if (!v) return [];
  const key = Object.keys(v).find((k) => !k.startsWith('$'));
  return key === undefined ? [] : asArray(v[key]);
}
