/** Public surface of the vSphere layer; see README.md. */
export { type ConnectOptions, connect, Vcenter } from './client.js';
export { type FakeSpec, FakeVcenter, type FakeVcenterOptions, type FaultableMethod } from './fake/index.js';
export { isFault, VcenterUnreachableError, VsphereFault } from './faults.js';
export { type CapturedDevice, fetchInventory } from './inventory.js';
export type { CallOptions, Invoker, ObjectContent, PropertySpec, ServiceContent } from './property.js';
export { retrieveFromContainer, retrieveOne } from './property.js';
export type {
  CreateVmSnapshotOptions,
  CreateVmSpec,
  DiskAttachment,
  DiskChanges,
  OperationOptions,
  VcenterSession,
  VmDevices,
} from './session.js';
export {
  HttpTransport,
  type SoapRequest,
  type SoapResponse,
  type Transport,
  TransportError,
} from './transport.js';
export {
  asCaller,
  createDatastore,
  createVm,
  detachDiskFiles,
  freeScsiSlots,
  isGone,
  powerOff,
  powerOn,
  reconfigureDisks,
  removeDatastore,
  unregisterVm,
  type VsphereCaller,
  vmDevices,
} from './vm-ops.js';
export {
  asArray,
  el,
  type MoRef,
  moRef,
  moRefXml,
  text,
  type XmlNode,
  type XmlObject,
  xmlEscape,
} from './xml.js';
