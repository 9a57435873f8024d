import type {
  Cluster,
  Datacenter,
  Datastore,
  DatastoreExtent,
  DiskKind,
  Folder,
  Host,
  Inventory,
  PowerState,
  ToolsState,
  VirtualDisk,
  Vm,
  VmSnapshotRef,
} from '../model/inventory.js';
import {
  type CallOptions,
  type Invoker,
  type ObjectContent,
  type PropertySpec,
  propArray,
  propObject,
  retrieveFromContainer,
} from './property.js';
import {
  asArray,
  asObject,
  bool,
  type MoRef,
  moRef,
  num,
  text,
  type XmlNode,
  type XmlObject,
} from './xml.js';

/**
 * Reads the whole inventory with a constant number of round trips: one container view over the root folder,
 * one RetrievePropertiesEx asking only the property paths mapped below (plus paging), and at most one more
 * view when an RDM disk names its LUN only by UUID. Never a call per VM.
 */

/** A controller or NIC as captured for re-creating a VM; opaque above the vSphere layer. */
export type CapturedDevice =
  | {
      kind: 'controller';
      /** vim25 device type, e.g. `ParaVirtualSCSIController`, `VirtualIDEController`. */
      type: string;
      key: number;
      busNumber: number;
      /** SCSI bus sharing (`noSharing`, `virtualSharing`, `physicalSharing`). */
      sharedBus?: string;
    }
  | {
      kind: 'nic';
      /** vim25 device type, e.g. `VirtualVmxnet3`, `VirtualE1000e`. */
      type: string;
      key: number;
      label: string;
      addressType?: string;
      macAddress?: string;
      /** Standard port group name (network backing). */
      network?: string;
      /** Distributed port group key and switch UUID (DVS backing). */
      portgroupKey?: string;
      switchUuid?: string;
      startConnected: boolean;
    };

const SPECS: PropertySpec[] = [
  { type: 'Datacenter', paths: ['name', 'parent', 'vmFolder'] },
  { type: 'Folder', paths: ['name', 'parent'] },
  { type: 'ComputeResource', paths: ['name', 'parent'] },
  { type: 'ClusterComputeResource', paths: ['name', 'parent'] },
  { type: 'HostSystem', paths: ['name', 'parent'] },
  { type: 'Datastore', paths: ['name', 'parent', 'summary', 'info', 'host'] },
  {
    type: 'VirtualMachine',
    paths: [
      'name',
      'parent',
      'runtime.powerState',
      'runtime.host',
      'guest.toolsStatus',
      'guest.toolsRunningStatus',
      'config.instanceUuid',
      'config.files.vmPathName',
      'config.guestId',
      'config.hardware.numCPU',
      'config.hardware.memoryMB',
      'config.hardware.device',
      'datastore',
      'snapshot',
    ],
  },
];

/** Flattens VirtualMachineSnapshotTree nodes (rootSnapshotList) into a list, parents before children. */
export function flattenSnapshots(list: XmlNode | XmlNode[] | undefined): VmSnapshotRef[] {
  const out: VmSnapshotRef[] = [];
  const walk = (nodes: XmlNode | XmlNode[] | undefined) => {
    for (const n of asArray(nodes)) {
      const o = asObject(n);
      if (!o) continue;
      const ref = moRef(o.snapshot);
      const createdAt = text(o.createTime);
      if (ref) out.push({ id: ref.value, name: text(o.name) ?? '', ...(createdAt ? { createdAt } : {}) });
      walk(o.childSnapshotList);
    }
  };
  walk(list);
  return out;
}

/** The datastore name in a datastore path `[ds-a] dir/file.vmdk`. */
export function datastoreOfPath(path: string): string {
  const m = /^\[([^\]]*)\]/.exec(path);
  return m ? m[1]! : '';
}

/** LUN canonical name from an RDM deviceName such as `/vmfs/devices/disks/naa.600a...`; a `vml.` id is not one. */
export function lunFromDeviceName(deviceName: string | undefined): string | undefined {
  if (!deviceName) return undefined;
  const base = deviceName.split('/').pop() ?? '';
  return /^(naa|eui|t10|mpx)\./.test(base) ? base : undefined;
}

interface Named {
  ref: MoRef;
  name: string;
  parent?: MoRef;
}

/** Builds the domain inventory from the raw objects; exported for the recorded-XML tests. */
export function mapInventory(
  objects: ObjectContent[],
  lunByUuid: Map<string, string> = new Map(),
): Inventory {
  const byId = new Map<string, { oc: ObjectContent; named: Named }>();
  for (const oc of objects) {
    // A cluster matches both the ComputeResource and the ClusterComputeResource spec; keep one.
    const prev = byId.get(oc.obj.value);
    if (prev) {
      for (const [k, v] of oc.props) prev.oc.props.set(k, v);
      continue;
    }
    const parent = moRef(oc.props.get('parent'));
    byId.set(oc.obj.value, {
      oc,
      named: { ref: oc.obj, name: text(oc.props.get('name')) ?? oc.obj.value, ...(parent ? { parent } : {}) },
    });
  }
  const of = (type: string) => [...byId.values()].filter((e) => e.oc.obj.type === type);
  const nameOf = (ref: MoRef | undefined) => (ref ? (byId.get(ref.value)?.named.name ?? ref.value) : '');

  const datacenterOf = (ref: MoRef | undefined): string => {
    let cur = ref;
    for (let guard = 0; cur && guard < 64; guard++) {
      const e = byId.get(cur.value);
      if (!e) return '';
      if (e.oc.obj.type === 'Datacenter') return e.named.name;
      cur = e.named.parent;
    }
    return '';
  };

  const datacenters: Datacenter[] = of('Datacenter').map((e) => ({ id: e.oc.obj.value, name: e.named.name }));
  const vmFolders = new Set(of('Datacenter').map((e) => moRef(e.oc.props.get('vmFolder'))?.value ?? ''));

  /** Folder path below the datacenter's VM folder, or undefined when `ref` is not inside one. */
  const folderPath = (ref: MoRef | undefined): string | undefined => {
    const parts: string[] = [];
    let cur = ref;
    for (let guard = 0; cur && guard < 256; guard++) {
      if (vmFolders.has(cur.value)) return parts.reverse().join('/');
      const e = byId.get(cur.value);
      if (e?.oc.obj.type !== 'Folder') return undefined;
      // Names stay as vCenter escapes them (`/` as %2f), so a path splits unambiguously on `/`.
      parts.push(e.named.name);
      cur = e.named.parent;
    }
    return undefined;
  };

  const folders: Folder[] = [];
  for (const e of of('Folder')) {
    const path = folderPath(e.oc.obj);
    if (path !== undefined) folders.push({ id: e.oc.obj.value, path, datacenter: datacenterOf(e.oc.obj) });
  }

  const clusters: Cluster[] = of('ClusterComputeResource').map((e) => ({
    id: e.oc.obj.value,
    name: e.named.name,
    datacenter: datacenterOf(e.oc.obj),
  }));

  const clusterOfHost = new Map<string, string>();
  const hosts: Host[] = of('HostSystem').map((e) => {
    const parent = e.named.parent;
    const cluster = parent?.type === 'ClusterComputeResource' ? nameOf(parent) : undefined;
    if (cluster !== undefined) clusterOfHost.set(e.oc.obj.value, cluster);
    return {
      id: e.oc.obj.value,
      name: e.named.name,
      datacenter: datacenterOf(e.oc.obj),
      ...(cluster === undefined ? {} : { cluster }),
    };
  });

  const datastores: Datastore[] = of('Datastore').map((e) =>
    mapDatastore(e.oc, e.named.name, nameOf, datacenterOf),
  );

  const unreadableVms: string[] = [];
  const vms: Vm[] = of('VirtualMachine').map((e) => {
    const oc = e.oc;
    const host = moRef(oc.props.get('runtime.host'));
    // A VM whose configuration cannot be read (inaccessible, being created, a permission missing: `config`
    // unset or in missingSet) would look like a VM without disks: it is listed so the engine can refuse it.
    const configUnreadable =
      !oc.props.has('config.files.vmPathName') ||
      [...(oc.missing?.keys() ?? [])].some((p) => p === 'config' || p.startsWith('config.'));
    if (configUnreadable) unreadableVms.push(e.named.name);
    const vmxFile = configUnreadable ? '' : (text(oc.props.get('config.files.vmPathName')) ?? '');
    const homeDatastore = datastoreOfPath(vmxFile);
    const devices = propArray(oc, 'config.hardware.device').map((d) => asObject(d) ?? {});
    const disks = devices
      .filter((d) => d.$xsiType === 'VirtualDisk')
      .map((d) => parseVirtualDisk(d, nameOf, lunByUuid));
    // A VM can keep a reference to a datastore that no longer exists (the simulator does after a detach and
    // unmount): only datastores that are in the inventory count.
    const liveDatastoreRefs = propArray(oc, 'datastore')
      .map((r) => moRef(r))
      .filter((r) => r !== undefined && byId.has(r.value));
    // Every datastore holding a file of the VM: home, the disks' files, and an RDM's mapping file too.
    const datastoreNames = [
      homeDatastore,
      ...liveDatastoreRefs.map((r) => nameOf(r)),
      ...disks.map((d) => d.datastore),
    ];
    const cluster = host ? clusterOfHost.get(host.value) : undefined;
    const hardware = {
      numCpu: num(oc.props.get('config.hardware.numCPU')) ?? 0,
      memoryMB: num(oc.props.get('config.hardware.memoryMB')) ?? 0,
      guestId: text(oc.props.get('config.guestId')) ?? '',
      devices: devices.map(captureDevice).filter((d): d is CapturedDevice => d !== undefined),
    };
    return {
      id: oc.obj.value,
      name: e.named.name,
      instanceUuid: text(oc.props.get('config.instanceUuid')) ?? '',
      powerState: (text(oc.props.get('runtime.powerState')) ?? 'poweredOff') as PowerState,
      ...toolsOf(oc.props),
      datacenter: datacenterOf(oc.obj),
      host: nameOf(host),
      ...(cluster === undefined ? {} : { cluster }),
      folder: folderPath(e.named.parent) ?? '',
      vmxFile,
      homeDatastore,
      datastores: [...new Set(datastoreNames.filter((n) => n !== ''))],
      disks,
      snapshots: flattenSnapshots(propObject(oc, 'snapshot')?.rootSnapshotList),
      hardware,
    };
  });

  return {
    datacenters,
    clusters,
    hosts,
    folders,
    datastores,
    vms,
    ...(unreadableVms.length > 0 ? { unreadableVms } : {}),
  };
}

function mapDatastore(
  oc: ObjectContent,
  name: string,
  nameOf: (ref: MoRef | undefined) => string,
  datacenterOf: (ref: MoRef | undefined) => string,
): Datastore {
  const summary = propObject(oc, 'summary') ?? {};
  const info = propObject(oc, 'info') ?? {};
  const vmfs = asObject(info.vmfs);
  const extents: DatastoreExtent[] = asArray(vmfs?.extent).map((x) => {
    const o = asObject(x) ?? {};
    const partition = num(o.partition);
    return { lun: text(o.diskName) ?? '', ...(partition === undefined ? {} : { partition }) };
  });
  const hosts = propArray(oc, 'host')
    .map((m) => nameOf(moRef(asObject(m)?.key)))
    .filter((n) => n !== '');
  return {
    id: oc.obj.value,
    name,
    datacenter: datacenterOf(oc.obj),
    url: text(summary.url) ?? text(info.url) ?? '',
    type: text(summary.type) ?? '',
    capacityBytes: num(summary.capacity) ?? 0,
    freeBytes: num(summary.freeSpace) ?? 0,
    extents,
    hosts,
  };
}

function diskKind(
  backingType: string | undefined,
  diskMode: string,
  compatibilityMode: string | undefined,
): DiskKind {
  if (backingType === 'VirtualDiskRawDiskMappingVer1BackingInfo') {
    return compatibilityMode === 'physicalMode' ? 'rdm-physical' : 'rdm-virtual';
  }
  return diskMode.startsWith('independent') ? 'independent' : 'flat';
}

/**
 * One `VirtualDisk` device as the domain sees it (kind, capacity, file, datastore, mode, LUN, slot). The one
 * place disks are parsed: the inventory and vm-ops.ts use it. `nameOf` names a datastore reference (default:
 * the datastore in the file path); `lunByUuid` resolves RDM LUNs known only by UUID.
 */
export function parseVirtualDisk(
  d: XmlObject,
  nameOf?: (ref: MoRef | undefined) => string,
  lunByUuid: Map<string, string> = new Map(),
): VirtualDisk {
  const backing = asObject(d.backing) ?? {};
  const file = text(backing.fileName) ?? '';
  const diskMode = text(backing.diskMode) ?? 'persistent';
  const kind = diskKind(backing.$xsiType, diskMode, text(backing.compatibilityMode));
  const capacityBytes = num(d.capacityInBytes) ?? (num(d.capacityInKB) ?? 0) * 1024;
  const dsRef = moRef(backing.datastore);
  const controllerKey = num(d.controllerKey);
  const unitNumber = num(d.unitNumber);
  const disk: VirtualDisk = {
    key: num(d.key) ?? 0,
    label: text(asObject(d.deviceInfo)?.label) ?? '',
    kind,
    capacityBytes,
    file,
    datastore: dsRef && nameOf ? nameOf(dsRef) : datastoreOfPath(file),
    diskMode,
    ...(controllerKey === undefined ? {} : { controllerKey }),
    ...(unitNumber === undefined ? {} : { unitNumber }),
  };
  if (kind === 'rdm-physical' || kind === 'rdm-virtual') {
    const uuid = text(backing.lunUuid);
    const lun = lunFromDeviceName(text(backing.deviceName)) ?? (uuid ? lunByUuid.get(uuid) : undefined);
    if (lun) disk.lun = lun;
  }
  return disk;
}

/** vim25 SCSI controller types: VirtualSCSIController and its subtypes (LSI Logic, LSI SAS, BusLogic, PVSCSI). */
const SCSI_CONTROLLERS = new Set([
  'VirtualSCSIController',
  'ParaVirtualSCSIController',
  'VirtualLsiLogicController',
  'VirtualLsiLogicSASController',
  'VirtualBusLogicController',
]);

/** True for a SCSI controller device type (the one test: vm-ops.ts uses it too). */
export function isScsiController(type: string | undefined): boolean {
  return type !== undefined && SCSI_CONTROLLERS.has(type);
}

function captureDevice(d: XmlObject): CapturedDevice | undefined {
  const type = d.$xsiType ?? '';
  const key = num(d.key) ?? 0;
  if (
    /Controller$/.test(type) &&
    num(d.busNumber) !== undefined &&
    !/^Virtual(PCI|PS2|SIO|USB|Keyboard)/.test(type)
  ) {
    const sharedBus = text(d.sharedBus);
    return {
      kind: 'controller',
      type,
      key,
      busNumber: num(d.busNumber)!,
      ...(sharedBus ? { sharedBus } : {}),
    };
  }
  if (d.addressType !== undefined || d.macAddress !== undefined) {
    const backing = asObject(d.backing) ?? {};
    const port = asObject(backing.port);
    const conn = asObject(d.connectable);
    const opt = (k: string, v: string | undefined) => (v === undefined || v === '' ? {} : { [k]: v });
    return {
      kind: 'nic',
      type,
      key,
      label: text(asObject(d.deviceInfo)?.label) ?? '',
      ...opt('addressType', text(d.addressType)),
      ...opt('macAddress', text(d.macAddress)),
      ...opt('network', text(backing.deviceName)),
      ...opt('portgroupKey', text(port?.portgroupKey)),
      ...opt('switchUuid', text(port?.switchUuid)),
      startConnected: bool(conn?.startConnected) ?? true,
    };
  }
  return undefined;
}

/** RDM disks whose LUN is known only by UUID (no `/vmfs/devices/disks/<name>` device name). */
function needsLunLookup(objects: ObjectContent[]): boolean {
  for (const oc of objects) {
    if (oc.obj.type !== 'VirtualMachine') continue;
    for (const d of propArray(oc, 'config.hardware.device')) {
      const b = asObject(asObject(d)?.backing);
      if (
        b?.$xsiType === 'VirtualDiskRawDiskMappingVer1BackingInfo' &&
        !lunFromDeviceName(text(b.deviceName))
      ) {
        if (text(b.lunUuid)) return true;
      }
    }
  }
  return false;
}

/** Fetches and maps the inventory; see the module comment for the round-trip budget. */
export async function fetchInventory(client: Invoker, options: CallOptions = {}): Promise<Inventory> {
  const root = client.serviceContent.rootFolder;
  const objects = await retrieveFromContainer(client, root, SPECS, options);
  const lunByUuid = new Map<string, string>();
  if (needsLunLookup(objects)) {
    const hosts = await retrieveFromContainer(
      client,
      root,
      [{ type: 'HostSystem', paths: ['config.storageDevice.scsiLun'] }],
      options,
    );
    for (const h of hosts) {
      for (const l of propArray(h, 'config.storageDevice.scsiLun')) {
        const o = asObject(l);
        const uuid = text(o?.uuid);
        const name = text(o?.canonicalName);
        if (uuid && name) lunByUuid.set(uuid, name);
      }
    }
  }
  return mapInventory(objects, lunByUuid);
}

/**
 * VMware Tools from guest.toolsStatus (the one saying "not installed") and guest.toolsRunningStatus (the one
 * vSphere keeps current); nothing when vCenter reported neither, so the quiesce is tried and a fault decides.
 */
function toolsOf(props: ObjectContent['props']): { tools?: ToolsState } {
  const status = text(props.get('guest.toolsStatus'));
  const running = text(props.get('guest.toolsRunningStatus'));
  if (status === 'toolsNotInstalled') return { tools: 'notInstalled' };
  if (running === 'guestToolsRunning' || running === 'guestToolsExecutingScripts')
    return { tools: 'running' };
  if (running === 'guestToolsNotRunning' || status === 'toolsNotRunning') return { tools: 'notRunning' };
  if (status === 'toolsOk' || status === 'toolsOld') return { tools: 'running' };
  return {};
}
