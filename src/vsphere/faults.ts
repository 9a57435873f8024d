import { SnapkeeperError, UsageError } from '../errors.js';
import { asArray, asObject, moRef, text, type XmlNode, type XmlObject } from './xml.js';

/**
 * vSphere faults as typed errors. The vim25 fault type (e.g. `ManagedObjectNotFound`, `InvalidPowerState`,
 * `NotAuthenticated`) is kept in `faultType` so callers branch on it, as govmomi's `soap.IsSoapFault` does.
 */
export class VsphereFault extends SnapkeeperError {
  constructor(
    /** The vim25 fault type, e.g. `InvalidPowerState`; `SoapFault` when the server gave no detail. */
    readonly faultType: string,
    message: string,
    /** The managed object the fault names (`VirtualMachine:vm-42`), when it names one. */
    readonly managedObject?: string,
    /** The vim25 method that failed, when known. */
    readonly method?: string,
  ) {
    super('VSPHERE_FAULT', message, {
      details: {
        faultType,
        ...(managedObject === undefined ? {} : { managedObject }),
        ...(method === undefined ? {} : { method }),
      },
    });
  }
}

/** vCenter cannot be reached at connect time (wrong URL, down, refused). Nothing was changed: exit 3. */
export class VcenterUnreachableError extends UsageError {
  constructor(message: string, options: { cause?: unknown } = {}) {
    super('VCENTER_UNREACHABLE', message, options);
  }
}

/** True when `err` is a vSphere fault of one of the given types. */
export function isFault(err: unknown, ...types: string[]): err is VsphereFault {
  return err instanceof VsphereFault && (types.length === 0 || types.includes(err.faultType));
}

// Properties through which fault types name the object concerned.
const OBJECT_FIELDS = ['obj', 'object', 'entity', 'vm', 'host', 'datastore'];

function describeObject(fault: XmlObject): string | undefined {
  for (const f of OBJECT_FIELDS) {
    const ref = moRef(fault[f]);
    if (ref) return `${ref.type}:${ref.value}`;
  }
  return undefined;
}

/** Fault type of a `MethodFault` node: its xsi:type, or the detail element's name without `Fault`. */
function faultTypeOf(node: XmlObject, elementName?: string): string {
  if (node.$xsiType) return node.$xsiType;
  if (elementName) return elementName.replace(/Fault$/, '');
  return 'SoapFault';
}

/** Builds the VsphereFault for a SOAP `Fault` element (faultcode, faultstring, detail). */
export function faultFromSoap(fault: XmlObject, method?: string): VsphereFault {
  const faultString = text(fault.faultstring) ?? '';
  const detail = asObject(fault.detail);
  let type = 'SoapFault';
  let node: XmlObject | undefined;
  if (detail) {
    const name = Object.keys(detail).find((k) => !k.startsWith('$'));
    if (name !== undefined) {
      node = asObject(detail[name]);
      if (node) type = faultTypeOf(node, name);
    }
  }
  const managedObject = node ? describeObject(node) : undefined;
  const what = method === undefined ? '' : `${method}: `;
  const reason = faultString !== '' ? faultString : type;
  return new VsphereFault(
    type,
    `${what}vSphere fault ${type}${reason === type ? '' : `: ${reason}`}${managedObject && !reason.includes(managedObject.split(':')[1]!) ? ` (${managedObject})` : ''}`,
    managedObject,
    method,
  );
}

/** Builds the VsphereFault for a `LocalizedMethodFault` (TaskInfo.error). */
export function faultFromLocalized(error: XmlNode | XmlNode[] | undefined, method?: string): VsphereFault {
  const e = asObject(error) ?? {};
  const fault = asObject(e.fault) ?? {};
  const type = faultTypeOf(fault);
  const localized = text(e.localizedMessage) ?? '';
  const messages = asArray(fault.faultMessage)
    .map((m) => text(asObject(m)?.message))
    .filter((m): m is string => m !== undefined && m !== '');
  const reason = localized || messages[0] || type;
  const managedObject = describeObject(fault);
  const what = method === undefined ? '' : `${method}: `;
  return new VsphereFault(
    type,
    `${what}vSphere fault ${type}${reason === type ? '' : `: ${reason}`}`,
    managedObject,
    method,
  );
}
