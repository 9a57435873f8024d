import { readFile } from 'node:fs/promises';
import { z } from 'zod';
import { safeName } from '../config/schema.js';
import { UsageError } from '../errors.js';
import { type DiskKind, type PowerState, TOOLS_STATES } from '../model/inventory.js';

/**
 * The lab spec of SPEC section 7: a contract other tools build on. Unknown fields and inconsistent references
 * are errors; everything is checked before the lab creates anything.
 */

export const POWER_STATES = ['poweredOn', 'poweredOff', 'suspended'] as const satisfies readonly PowerState[];

/** vSphere disk modes (VirtualDiskMode). */
export const DISK_MODES = [
  'persistent',
  'nonpersistent',
  'undoable',
  'independent_persistent',
  'independent_nonpersistent',
  'append',
] as const;
export type DiskMode = (typeof DISK_MODES)[number];

const lunName = z
  .string()
  .regex(
    /^naa\.([0-9a-f]{16}|[0-9a-f]{32})$/i,
    'must be an NAA canonical name: "naa." followed by 16 or 32 hex digits',
  );
const sizeMB = z
  .number()
  .int('must be a whole number of MB')
  .positive()
  .max(16 * 1024 * 1024);

const flatDiskSchema = z
  .object({
    datastore: safeName,
    sizeMB,
    mode: z.enum(DISK_MODES).optional(),
  })
  .strict();

const rdmDiskSchema = z
  .object({
    rdm: z.enum(['physical', 'virtual']),
    lun: lunName,
    sizeMB,
  })
  .strict();

export type LabFlatDisk = z.infer<typeof flatDiskSchema>;
export type LabRdmDisk = z.infer<typeof rdmDiskSchema>;
export type LabDisk = LabFlatDisk | LabRdmDisk;

// A plain union would report "invalid input" for any mistake; choosing the branch by the `rdm` key gives
// messages about the field that is actually wrong.
const diskSchema = z.unknown().transform((value, ctx): LabDisk => {
  const schema =
    typeof value === 'object' && value !== null && 'rdm' in value ? rdmDiskSchema : flatDiskSchema;
  const parsed = schema.safeParse(value);
  if (!parsed.success) {
    for (const issue of parsed.error.issues) ctx.addIssue({ ...issue, path: issue.path } as never);
    return z.NEVER;
  }
  return parsed.data;
});

/**
 * A VM name as vCenter takes it: up to 80 characters, any but control characters (spaces, `/`, `%`, `..` and a
 * leading dot included, so the lab can hold the names that trip up name handling). The simulator gets a
 * file-safe stand-in and the lab renames the VM once it runs.
 */
const vmName = z
  .string()
  .min(1)
  .max(80)
  // biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are exactly what is refused
  .regex(/^[^\u0000-\u001f\u007f]+$/, 'must not contain control characters');

const vmSchema = z
  .object({
    name: vmName,
    host: safeName,
    power: z.enum(POWER_STATES).default('poweredOn'),
    /** VMware Tools in the guest: the simulator reports it and fails a quiesced snapshot without them. */
    tools: z.enum(TOOLS_STATES).default('running'),
    datastore: safeName.optional(),
    disks: z.array(diskSchema),
  })
  .strict();

const datacenterSchema = z
  .object({
    name: safeName,
    clusters: z.array(z.object({ name: safeName, hosts: z.array(safeName) }).strict()).default([]),
    hosts: z.array(safeName).default([]),
    datastores: z
      .array(
        z
          .object({
            name: safeName,
            capacityGB: z
              .number()
              .positive()
              .max(1024 * 1024),
          })
          .strict(),
      )
      .default([]),
    vms: z.array(vmSchema).default([]),
  })
  .strict();

const labSpecShape = z.object({ datacenters: z.array(datacenterSchema).min(1) }).strict();

export const labSpecSchema = labSpecShape.superRefine((spec, ctx) =>
  checkReferences(spec, (path, message) => ctx.addIssue({ code: 'custom', path, message })),
);

type SpecPath = (string | number)[];
type ReportIssue = (path: SpecPath, message: string) => void;
type ShapedSpec = z.infer<typeof labSpecShape>;
type ShapedDatacenter = ShapedSpec['datacenters'][number];
type ShapedVm = ShapedDatacenter['vms'][number];

/** Reports a name seen before at another path, naming that first path. */
type NameRegister = (name: string, path: SpecPath) => void;

function uniqueNames(kind: string, report: ReportIssue): NameRegister {
  const names = new Map<string, string>();
  return (name, path) => {
    const where = names.get(name);
    if (where !== undefined) report(path, `duplicate ${kind} name ${name} (first at ${where})`);
    else names.set(name, formatPath(path));
  };
}

/** What the checks of one datacenter share with those of the whole lab. */
interface LabWide {
  report: ReportIssue;
  datacenterNames: NameRegister;
  hostNames: NameRegister;
  // Datastores become array volumes and VMs directories: their names must be unique across the lab.
  datastoreNames: NameRegister;
  vmNames: NameRegister;
  // A LUN has one size, wherever it is mapped (the simulator would silently keep the first).
  lunSizes: Map<string, { sizeMB: number; path: string }>;
}

/** What the checks of one VM need to know of its datacenter. */
interface InDatacenter {
  name: string;
  hosts: Set<string>;
  datastores: Set<string>;
  /** Flat and independent disks of every VM per datastore; RDMs are LUNs of their own. */
  usedMB: Map<string, number>;
}

/** The checks zod cannot express: unique names, references that resolve, sizes that fit. */
function checkReferences(spec: ShapedSpec, report: ReportIssue): void {
  const lab: LabWide = {
    report,
    datacenterNames: uniqueNames('datacenter', report),
    hostNames: uniqueNames('host', report),
    datastoreNames: uniqueNames('datastore', report),
    vmNames: uniqueNames('VM', report),
    lunSizes: new Map(),
  };
  for (const [d, dc] of spec.datacenters.entries()) checkDatacenter(dc, ['datacenters', d], lab);
}

function checkDatacenter(dc: ShapedDatacenter, base: SpecPath, lab: LabWide): void {
  lab.datacenterNames(dc.name, [...base, 'name']);
  const inDc: InDatacenter = {
    name: dc.name,
    hosts: datacenterHosts(dc, base, lab),
    datastores: new Set<string>(),
    usedMB: new Map(),
  };
  for (const [s, ds] of dc.datastores.entries()) {
    lab.datastoreNames(ds.name, [...base, 'datastores', s, 'name']);
    inDc.datastores.add(ds.name);
  }
  if (dc.datastores.length > 0 && inDc.hosts.size === 0) {
    lab.report([...base, 'hosts'], 'datastores need at least one host to be mounted on');
  }
  for (const [v, vm] of dc.vms.entries()) checkVm(vm, [...base, 'vms', v], inDc, lab);
  for (const [s, ds] of dc.datastores.entries()) {
    const used = inDc.usedMB.get(ds.name) ?? 0;
    if (used > ds.capacityGB * 1024) {
      lab.report(
        [...base, 'datastores', s, 'capacityGB'],
        `the disks on datastore ${ds.name} add up to ${used} MB, more than its ${ds.capacityGB} GB (${ds.capacityGB * 1024} MB)`,
      );
    }
  }
}

/** The hosts of a datacenter, in its clusters and standalone, checking cluster and host names. */
function datacenterHosts(dc: ShapedDatacenter, base: SpecPath, lab: LabWide): Set<string> {
  const clusterNames = uniqueNames('cluster', lab.report);
  const hosts = new Set<string>();
  for (const [c, cluster] of dc.clusters.entries()) {
    clusterNames(cluster.name, [...base, 'clusters', c, 'name']);
    for (const [h, host] of cluster.hosts.entries()) {
      lab.hostNames(host, [...base, 'clusters', c, 'hosts', h]);
      hosts.add(host);
    }
  }
  for (const [h, host] of dc.hosts.entries()) {
    lab.hostNames(host, [...base, 'hosts', h]);
    hosts.add(host);
  }
  return hosts;
}

function checkVm(vm: ShapedVm, vmPath: SpecPath, dc: InDatacenter, lab: LabWide): void {
  lab.vmNames(vm.name, [...vmPath, 'name']);
  if (!dc.hosts.has(vm.host)) {
    lab.report([...vmPath, 'host'], `host ${vm.host} is not defined in datacenter ${dc.name}`);
  }
  if (vm.datastore !== undefined && !dc.datastores.has(vm.datastore)) {
    lab.report([...vmPath, 'datastore'], `datastore ${vm.datastore} is not defined in datacenter ${dc.name}`);
  }
  const lunsOfVm = new Map<string, number>();
  for (const [k, disk] of vm.disks.entries()) {
    const diskPath = [...vmPath, 'disks', k];
    if ('rdm' in disk) checkRdm(disk, k, diskPath, lunsOfVm, lab);
    else if (!dc.datastores.has(disk.datastore)) {
      lab.report(
        [...diskPath, 'datastore'],
        `datastore ${disk.datastore} is not defined in datacenter ${dc.name}`,
      );
    } else dc.usedMB.set(disk.datastore, (dc.usedMB.get(disk.datastore) ?? 0) + disk.sizeMB);
  }
  if (vm.disks.length > 60) lab.report([...vmPath, 'disks'], 'at most 60 disks per VM (4 SCSI controllers)');
  if (vm.datastore === undefined && !vm.disks.some((disk) => !('rdm' in disk))) {
    lab.report(vmPath, 'the VM needs a home datastore: set "datastore" or give it a disk on a datastore');
  }
}

/** An RDM's LUN has one size across the lab and is mapped at most once per VM (`lunsOfVm`: LUN -> disk index). */
function checkRdm(
  disk: LabRdmDisk,
  index: number,
  diskPath: SpecPath,
  lunsOfVm: Map<string, number>,
  lab: LabWide,
): void {
  const lun = disk.lun.toLowerCase();
  const sized = lab.lunSizes.get(lun);
  if (sized === undefined) lab.lunSizes.set(lun, { sizeMB: disk.sizeMB, path: formatPath(diskPath) });
  else if (sized.sizeMB !== disk.sizeMB) {
    lab.report(
      [...diskPath, 'sizeMB'],
      `LUN ${disk.lun} is ${sized.sizeMB} MB at ${sized.path}: a LUN has one size`,
    );
  }
  const first = lunsOfVm.get(lun);
  if (first !== undefined) {
    lab.report([...diskPath, 'lun'], `LUN ${disk.lun} is already mapped by disks[${first}] of this VM`);
  } else lunsOfVm.set(lun, index);
}

export type LabSpec = z.infer<typeof labSpecSchema>;
export type LabVmSpec = LabSpec['datacenters'][number]['vms'][number];

function formatPath(path: readonly PropertyKey[]): string {
  if (path.length === 0) return '(top level)';
  return path
    .map((p, i) => (typeof p === 'number' ? `[${p}]` : `${i === 0 ? '' : '.'}${String(p)}`))
    .join('');
}

/** Validates a parsed lab spec. Throws UsageError (exit 3) naming `file` and the JSON path of every problem. */
export function parseLabSpec(value: unknown, file: string): LabSpec {
  const parsed = labSpecSchema.safeParse(value);
  if (!parsed.success) {
    const lines = parsed.error.issues.map((issue) => `  ${formatPath(issue.path)}: ${issue.message}`);
    throw new UsageError('LAB_SPEC_INVALID', `invalid lab spec ${file}:\n${lines.join('\n')}`, {
      details: {
        file,
        issues: parsed.error.issues.map((i) => ({ path: formatPath(i.path), message: i.message })),
      },
    });
  }
  return parsed.data;
}

/** Reads and validates a lab spec file (JSON). */
export async function loadLabSpec(file: string): Promise<LabSpec> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? 'error';
    throw new UsageError('LAB_SPEC_INVALID', `cannot read lab spec ${file}: ${code}`);
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    throw new UsageError(
      'LAB_SPEC_INVALID',
      `invalid lab spec ${file}: not valid JSON (${(err as Error).message})`,
    );
  }
  return parseLabSpec(value, file);
}

/** The VM's home datastore: `datastore`, else its first disk on a datastore (the spec guarantees one). */
export function homeDatastore(vm: LabVmSpec): string {
  if (vm.datastore !== undefined) return vm.datastore;
  for (const disk of vm.disks) if (!('rdm' in disk)) return disk.datastore;
  throw new UsageError('LAB_SPEC_INVALID', `VM ${vm.name} has no home datastore`);
}

/** The disk kind (SPEC section 6) a spec disk becomes. */
export function labDiskKind(disk: LabDisk): DiskKind {
  if ('rdm' in disk) return disk.rdm === 'physical' ? 'rdm-physical' : 'rdm-virtual';
  return disk.mode === 'independent_persistent' || disk.mode === 'independent_nonpersistent'
    ? 'independent'
    : 'flat';
}

/** Every datastore name of the spec, in order. */
export function datastoreNames(spec: LabSpec): string[] {
  return spec.datacenters.flatMap((dc) => dc.datastores.map((ds) => ds.name));
}
