import { SnapkeeperError } from '../errors.js';
import type { PowerState } from '../model/inventory.js';
import { isFault } from './faults.js';
import { type CapturedDevice, isScsiController, parseVirtualDisk } from './inventory.js';
import { arrayValue, type CallOptions, type Invoker, retrieveOne } from './property.js';
import type { CreateVmSpec, DiskAttachment, OperationOptions, VmDevices } from './session.js';
import { asObject, el, type MoRef, moRef, moRefXml, num, text, type XmlNode, xmlEscape } from './xml.js';

/**
 * The vSphere operations restore, mount and attach need, built on the client's low-level surface
 * (`call` / `runTask`). Callers speak of VMs, disks, hosts, folders and datastores by the opaque ids the
 * inventory returns; the managed object types, `_Task` methods and the XML of config specs stay here.
 *
 * Written against what vCenter documents and what govmomi's simulator 0.24 really does (see SPEC 7):
 * - CreateVM_Task adds an existing disk when the device's backing names a file that exists and no
 *   `fileOperation` is given; it refuses to create a VM whose .vmx file exists (FileAlreadyExists).
 * - Destroy_Task on a VM removes its home directory (all of it, in the simulator; disks elsewhere stay).
 * - The simulator has no HostDatastoreSystem.RemoveDatastore: `removeDatastore` falls back to Destroy_Task
 *   on the datastore, which the simulator implements.
 * - vCenter refuses to remove a datastore a VM still has a disk on (ResourceInUse), and so does the lab (it
 *   guards the simulator's Destroy_Task, lab/simulator/datastores.go): callers detach such disks first.
 * - A datastore a VM's host does not mount makes the simulator fail the request: callers check hosts first.
 */

/** The low-level surface these operations are built on: `Vcenter` (client.ts) passes itself. */
export interface VsphereCaller extends Invoker {
  runTask(
    method: string,
    thisRef: MoRef,
    body?: string,
    options?: OperationOptions,
  ): Promise<XmlNode | XmlNode[] | undefined>;
}

const vmRef = (id: string): MoRef => ({ type: 'VirtualMachine', value: id });
const hostRef = (id: string): MoRef => ({ type: 'HostSystem', value: id });

/** Controllers every new VM gets by default (vCenter and the simulator): never added again. */
const DEFAULT_CONTROLLERS = new Set(['VirtualIDEController', 'VirtualPS2Controller', 'VirtualSIOController']);

function controllerXml(d: Extract<CapturedDevice, { kind: 'controller' }>): string {
  const scsi = isScsiController(d.type);
  return (
    `<device xsi:type="${xmlEscape(d.type)}">${el('key', d.key)}${el('busNumber', d.busNumber)}` +
    (scsi ? el('sharedBus', d.sharedBus ?? 'noSharing') : '') +
    '</device>'
  );
}

function nicXml(d: Extract<CapturedDevice, { kind: 'nic' }>, key: number, keepMac: boolean): string {
  let backing = '';
  if (d.portgroupKey !== undefined && d.switchUuid !== undefined) {
    backing =
      '<backing xsi:type="VirtualEthernetCardDistributedVirtualPortBackingInfo"><port>' +
      `${el('switchUuid', d.switchUuid)}${el('portgroupKey', d.portgroupKey)}</port></backing>`;
  } else if (d.network !== undefined) {
    backing = `<backing xsi:type="VirtualEthernetCardNetworkBackingInfo">${el('deviceName', d.network)}</backing>`;
  }
  const mac =
    keepMac && d.macAddress !== undefined
      ? `${el('addressType', 'manual')}${el('macAddress', d.macAddress)}`
      : el('addressType', 'generated');
  return (
    `<device xsi:type="${xmlEscape(d.type)}">${el('key', key)}${backing}` +
    `<connectable>${el('startConnected', d.startConnected)}${el('allowGuestControl', true)}${el('connected', false)}</connectable>` +
    `${mac}</device>`
  );
}

function diskXml(d: DiskAttachment, key: number): string {
  return (
    `<device xsi:type="VirtualDisk">${el('key', key)}` +
    (d.label === undefined
      ? ''
      : `<deviceInfo>${el('label', d.label)}${el('summary', d.label)}</deviceInfo>`) +
    `<backing xsi:type="VirtualDiskFlatVer2BackingInfo">${el('fileName', d.file)}${el('diskMode', d.diskMode)}` +
    `${el('thinProvisioned', true)}</backing>` +
    `${el('controllerKey', d.controllerKey)}${el('unitNumber', d.unitNumber)}` +
    `${el('capacityInKB', Math.ceil(d.capacityBytes / 1024))}${el('capacityInBytes', d.capacityBytes)}</device>`
  );
}

function change(operation: 'add' | 'remove', device: string): string {
  return `<deviceChange>${el('operation', operation)}${device}</deviceChange>`;
}

/** The deviceChange elements that give a new VM its controllers, NICs and disks. */
function configXml(spec: CreateVmSpec): { devices: string } {
  let nextKey = -100;
  const devices: string[] = [];
  for (const d of spec.devices) {
    if (d.kind === 'controller') {
      if (!DEFAULT_CONTROLLERS.has(d.type)) devices.push(change('add', controllerXml(d)));
    } else devices.push(change('add', nicXml(d, nextKey--, spec.keepMacAddresses)));
  }
  for (const disk of spec.disks) devices.push(change('add', diskXml(disk, nextKey--)));
  return { devices: devices.join('') };
}

/** The resource pool VMs on a host go to: that of its cluster or standalone compute resource. */
async function resourcePoolOf(vc: VsphereCaller, hostId: string, options: CallOptions): Promise<MoRef> {
  const parent = moRef((await retrieveOne(vc, hostRef(hostId), ['parent'], options)).get('parent'));
  if (!parent) throw new SnapkeeperError('VSPHERE_HOST_NOT_FOUND', `host ${hostId} not found in vCenter`);
  const pool = moRef((await retrieveOne(vc, parent, ['resourcePool'], options)).get('resourcePool'));
  if (!pool) throw new SnapkeeperError('VSPHERE_NO_POOL', `host ${hostId} has no resource pool`);
  return pool;
}

/**
 * Creates a VM from a captured configuration with existing disk files (no disk is created or copied) and
 * returns its id. The VM is powered off.
 */
export async function createVm(
  vc: VsphereCaller,
  spec: CreateVmSpec,
  options: OperationOptions = {},
): Promise<string> {
  const pool = await resourcePoolOf(vc, spec.hostId, options);
  const config =
    `<config>${el('name', spec.name)}` +
    (spec.instanceUuid ? el('instanceUuid', spec.instanceUuid) : '') +
    `${el('guestId', spec.guestId)}<files>${el('vmPathName', spec.vmxFile)}</files>` +
    `${el('numCPUs', Math.max(1, spec.numCpu))}${el('memoryMB', Math.max(4, spec.memoryMB))}` +
    `${configXml(spec).devices}</config>`;
  const body = `${config}${moRefXml('pool', pool)}${moRefXml('host', hostRef(spec.hostId))}`;
  const result = moRef(
    await vc.runTask('CreateVM_Task', { type: 'Folder', value: spec.folderId }, body, options),
  );
  if (!result) throw new SnapkeeperError('VCENTER_BAD_RESPONSE', 'CreateVM_Task returned no VM');
  return result.value;
}

/**
 * Registers an existing VM again from its .vmx (after `unregisterVm`) and returns its id. vCenter reads the
 * .vmx; the simulator does not (SPEC 7) and gives a VM without devices, so when the registered VM has no
 * disks, the captured configuration is applied with one reconfiguration.
 */
export async function registerVm(
  vc: VsphereCaller,
  spec: CreateVmSpec,
  options: OperationOptions = {},
): Promise<string> {
  const pool = await resourcePoolOf(vc, spec.hostId, options);
  const body =
    `${el('path', spec.vmxFile)}${el('name', spec.name)}${el('asTemplate', false)}` +
    `${moRefXml('pool', pool)}${moRefXml('host', hostRef(spec.hostId))}`;
  const result = moRef(
    await vc.runTask('RegisterVM_Task', { type: 'Folder', value: spec.folderId }, body, options),
  );
  if (!result) throw new SnapkeeperError('VCENTER_BAD_RESPONSE', 'RegisterVM_Task returned no VM');
  const now = await vmDevices(vc, result.value, options);
  if (now.disks.length === 0 && spec.disks.length > 0) {
    const { devices } = configXml(spec);
    const config =
      (spec.instanceUuid ? el('instanceUuid', spec.instanceUuid) : '') +
      `${el('guestId', spec.guestId)}${el('numCPUs', Math.max(1, spec.numCpu))}` +
      `${el('memoryMB', Math.max(4, spec.memoryMB))}${devices}`;
    await vc.runTask('ReconfigVM_Task', vmRef(result.value), `<spec>${config}</spec>`, options);
  }
  return result.value;
}

/** The VM's power state and current disks and SCSI controllers. NotFound when the VM is gone. */
export async function vmDevices(
  vc: VsphereCaller,
  vmId: string,
  options: CallOptions = {},
): Promise<VmDevices> {
  const props = await retrieveOne(
    vc,
    vmRef(vmId),
    ['name', 'runtime.powerState', 'config.files.vmPathName', 'config.hardware.device'],
    options,
  );
  if (!props.has('runtime.powerState')) throw vmGone(vmId);
  const devices = arrayValue(props.get('config.hardware.device')).map((d) => asObject(d) ?? {});
  const disks: VmDevices['disks'] = [];
  const scsiControllers: VmDevices['scsiControllers'] = [];
  for (const d of devices) {
    if (d.$xsiType === 'VirtualDisk') {
      const disk = parseVirtualDisk(d);
      disks.push({
        key: disk.key,
        file: disk.file,
        diskMode: disk.diskMode,
        capacityBytes: disk.capacityBytes,
        controllerKey: disk.controllerKey ?? 0,
        unitNumber: disk.unitNumber ?? 0,
        label: disk.label,
      });
    } else if (isScsiController(d.$xsiType) && num(d.busNumber) !== undefined) {
      scsiControllers.push({ key: num(d.key) ?? 0, busNumber: num(d.busNumber)! });
    }
  }
  return {
    powerState: (text(props.get('runtime.powerState')) ?? 'poweredOff') as PowerState,
    name: text(props.get('name')) ?? '',
    vmxFile: text(props.get('config.files.vmPathName')) ?? '',
    disks,
    scsiControllers: scsiControllers.sort((a, b) => a.busNumber - b.busNumber),
  };
}

function vmGone(vmId: string): SnapkeeperError {
  return new SnapkeeperError('VM_NOT_FOUND', `VM ${vmId} does not exist in vCenter`, {
    details: { faultType: 'ManagedObjectNotFound' },
  });
}

/** True for errors that say the VM (or datastore) no longer exists. */
export function isGone(err: unknown): boolean {
  return (
    isFault(err, 'ManagedObjectNotFound') ||
    (err instanceof SnapkeeperError && (err.code === 'VM_NOT_FOUND' || err.code === 'DATASTORE_NOT_FOUND'))
  );
}

/**
 * The first free SCSI slots of a VM for `count` disks, in controller order (unit 7 is the controller's own).
 * Throws when the VM's SCSI controllers are full (adding controllers is out of scope).
 */
export function freeScsiSlots(
  devices: VmDevices,
  count: number,
  taken: { controllerKey: number; unitNumber: number }[] = [],
): { controllerKey: number; unitNumber: number }[] {
  const used = new Set([...devices.disks, ...taken].map((d) => `${d.controllerKey}:${d.unitNumber}`));
  const out: { controllerKey: number; unitNumber: number }[] = [];
  for (const c of devices.scsiControllers) {
    for (let unit = 0; unit < 16 && out.length < count; unit++) {
      if (unit === 7 || used.has(`${c.key}:${unit}`)) continue;
      out.push({ controllerKey: c.key, unitNumber: unit });
    }
  }
  if (out.length < count) {
    throw new SnapkeeperError(
      'VM_NO_FREE_SLOT',
      `VM ${devices.name} has no free SCSI slot for ${count} more disk(s) (add a SCSI controller first)`,
    );
  }
  return out;
}

/**
 * Adds existing disk files to a VM and removes disks (by device key) without deleting their files, in one
 * reconfiguration. Returns the device keys of the added disks, in order (read back by file name).
 */
export async function reconfigureDisks(
  vc: VsphereCaller,
  vmId: string,
  changes: { add?: DiskAttachment[]; remove?: (DiskAttachment & { key: number })[] },
  options: OperationOptions = {},
): Promise<number[]> {
  const parts: string[] = [];
  for (const d of changes.remove ?? []) parts.push(change('remove', diskXml(d, d.key)));
  let key = -200;
  for (const d of changes.add ?? []) parts.push(change('add', diskXml(d, key--)));
  if (parts.length === 0) return [];
  await vc.runTask('ReconfigVM_Task', vmRef(vmId), `<spec>${parts.join('')}</spec>`, options);
  if (!changes.add || changes.add.length === 0) return [];
  const now = await vmDevices(vc, vmId, options);
  return changes.add.map((a) => {
    const found = now.disks.find((d) => d.file === a.file);
    if (!found) {
      throw new SnapkeeperError(
        'VCENTER_BAD_RESPONSE',
        `ReconfigVM_Task on ${vmId} succeeded but the added disk ${a.file} is not among its devices`,
        { details: { vm: vmId, file: a.file } },
      );
    }
    return found.key;
  });
}

/** Removes every disk of the VM whose file is one of `files`, keeping the files. Returns how many. */
export async function detachDiskFiles(
  vc: VsphereCaller,
  vmId: string,
  files: string[],
  options: OperationOptions = {},
): Promise<number> {
  const devices = await vmDevices(vc, vmId, options);
  const remove = devices.disks.filter((d) => files.includes(d.file));
  await reconfigureDisks(vc, vmId, { remove }, options);
  return remove.length;
}

/** Removes a VM from the inventory, keeping its files. The VM must be off. */
export async function unregisterVm(
  vc: VsphereCaller,
  vmId: string,
  options: CallOptions = {},
): Promise<void> {
  await vc.call('UnregisterVM', vmRef(vmId), '', options);
}

/** Powers a VM off unless it is off already. */
async function powerOffIfOn(vc: VsphereCaller, vmId: string, options: OperationOptions): Promise<void> {
  const state = (await vmDevices(vc, vmId, options)).powerState;
  if (state === 'poweredOff') return;
  await vc.runTask('PowerOffVM_Task', vmRef(vmId), '', options);
}

/** Powers off (if needed) and destroys a VM with its home directory. Idempotent: a missing VM is done. */
export async function destroyVm(
  vc: VsphereCaller,
  vmId: string,
  options: OperationOptions = {},
): Promise<void> {
  try {
    await powerOffIfOn(vc, vmId, options);
    await vc.runTask('Destroy_Task', vmRef(vmId), '', options);
  } catch (err) {
    if (isGone(err)) return;
    throw err;
  }
}

/** The host's datastore system (HostSystem.configManager.datastoreSystem). */
async function datastoreSystemOf(vc: VsphereCaller, hostId: string, options: CallOptions): Promise<MoRef> {
  const props = await retrieveOne(vc, hostRef(hostId), ['configManager.datastoreSystem'], options);
  const ref = moRef(props.get('configManager.datastoreSystem'));
  if (!ref) throw new SnapkeeperError('VSPHERE_HOST_NOT_FOUND', `host ${hostId} has no datastore system`);
  return ref;
}

/**
 * Mounts a directory the host can reach (here: an array clone's volume path) as a datastore named `name`
 * on the host. Returns the new datastore's id.
 */
export async function createDatastore(
  vc: VsphereCaller,
  hostId: string,
  name: string,
  path: string,
  options: CallOptions = {},
): Promise<string> {
  const dss = await datastoreSystemOf(vc, hostId, options);
  const ref = moRef(
    await vc.call('CreateLocalDatastore', dss, `${el('name', name)}${el('path', path)}`, options),
  );
  if (!ref) throw new SnapkeeperError('VCENTER_BAD_RESPONSE', 'CreateLocalDatastore returned no datastore');
  return ref.value;
}

/**
 * Unmounts a datastore from a host (RemoveDatastore; the simulator lacks it, so Destroy_Task there). The
 * files stay. Idempotent: a datastore that is gone is done.
 */
export async function removeDatastore(
  vc: VsphereCaller,
  hostId: string,
  datastoreId: string,
  options: OperationOptions = {},
): Promise<void> {
  const ds: MoRef = { type: 'Datastore', value: datastoreId };
  try {
    try {
      const dss = await datastoreSystemOf(vc, hostId, options);
      await vc.call('RemoveDatastore', dss, moRefXml('datastore', ds), options);
    } catch (err) {
      if (!isFault(err, 'MethodNotFound', 'NotImplemented', 'NotSupported')) throw err;
      await vc.runTask('Destroy_Task', ds, '', options);
    }
  } catch (err) {
    if (isFault(err, 'ManagedObjectNotFound', 'NotFound')) return;
    throw err;
  }
}
