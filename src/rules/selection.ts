import picomatch from 'picomatch';
import type { Selection } from '../config/schema.js';
import type { Inventory, Vm } from '../model/inventory.js';

/**
 * Glob options for names that are not file paths: `*` also matches names that start with a dot, and the
 * pattern means the same on every platform.
 */
const GLOB_OPTIONS: picomatch.PicomatchOptions = { dot: true, windows: false };

const matcherCache = new Map<string, (name: string) => boolean>();

function matcher(pattern: string): (name: string) => boolean {
  let m = matcherCache.get(pattern);
  if (m === undefined) {
    const glob = picomatch(pattern, GLOB_OPTIONS);
    // A literal name always matches itself, even one with glob characters such as `web[1]` or `db(old)`.
    m = (name: string) => name === pattern || glob(name);
    matcherCache.set(pattern, m);
  }
  return m;
}

/** True when `name` equals `pattern` or matches it as a case-sensitive glob (picomatch; `*` matches all). */
export function matchesPattern(name: string, pattern: string): boolean {
  return matcher(pattern)(name);
}

/** The names matching `pattern`, in input order, without duplicates (for the CLI's `--vm GLOB`). */
export function matchGlob(names: readonly string[], pattern: string): string[] {
  const m = matcher(pattern);
  return [...new Set(names)].filter((n) => m(n));
}

/** Folder paths are written without leading or trailing slashes; `/` alone means the root VM folder. */
function normalizeFolder(path: string): string {
  return path
    .split('/')
    .filter((s) => s !== '')
    .join('/');
}

/** The folder itself and each of its ancestors except the root: `a/b/c` -> `a`, `a/b`, `a/b/c`. */
function folderAndAncestors(path: string): string[] {
  const segments = normalizeFolder(path).split('/');
  if (segments.length === 1 && segments[0] === '') return [''];
  return segments.map((_, i) => segments.slice(0, i + 1).join('/'));
}

/** A folder pattern matches a VM in that folder or anywhere below it. */
function matchesFolder(vmFolder: string, pattern: string): boolean {
  const p = normalizeFolder(pattern);
  if (p === '') return true; // the root VM folder holds everything
  const m = matcher(p);
  return folderAndAncestors(vmFolder).some((f) => f !== '' && m(f));
}

function vmDatastores(vm: Vm): string[] {
  return [vm.homeDatastore, ...vm.datastores, ...vm.disks.map((d) => d.datastore)].filter((d) => d !== '');
}

function vmCluster(vm: Vm, inventory: Inventory): string | undefined {
  if (vm.cluster !== undefined) return vm.cluster;
  return inventory.hosts.find((h) => h.name === vm.host && h.datacenter === vm.datacenter)?.cluster;
}

function anyMatch(values: readonly string[], patterns: readonly string[] | undefined): boolean {
  if (patterns === undefined || patterns.length === 0) return false;
  return patterns.some((p) => values.some((v) => matchesPattern(v, p)));
}

/** True when the VM meets any criterion of the selection; an empty selection matches nothing. */
export function vmMatches(vm: Vm, select: Selection, inventory: Inventory): boolean {
  if (anyMatch([vm.name], select.vms)) return true;
  if (select.folders?.some((p) => matchesFolder(vm.folder, p))) return true;
  if (anyMatch([vm.host], select.hosts)) return true;
  const cluster = vmCluster(vm, inventory);
  if (cluster !== undefined && anyMatch([cluster], select.clusters)) return true;
  if (anyMatch(vmDatastores(vm), select.datastores)) return true;
  return anyMatch([vm.datacenter], select.datacenters);
}

/**
 * The VMs of a task (SPEC section 1): those matching any criterion of `select` and none of `exclude`.
 * Criteria: VM names, folder paths (the folder or anything below it), host, cluster (the VM's own, else its
 * host's), datastore (any file of the VM there), datacenter; each a name or a case-sensitive glob.
 * Sorted by name (then datacenter, then id), each VM once. An empty result is returned as such: whether
 * that is an error is the caller's decision.
 */
export function selectVms(inventory: Inventory, select: Selection, exclude?: Selection): Vm[] {
  const seen = new Set<string>();
  const out: Vm[] = [];
  for (const vm of inventory.vms) {
    if (seen.has(vm.id)) continue;
    if (!vmMatches(vm, select, inventory)) continue;
    if (exclude !== undefined && vmMatches(vm, exclude, inventory)) continue;
    seen.add(vm.id);
    out.push(vm);
  }
  return out.sort(
    (a, b) =>
      compareStrings(a.name, b.name) ||
      compareStrings(a.datacenter, b.datacenter) ||
      compareStrings(a.id, b.id),
  );
}

const CRITERIA = ['vms', 'folders', 'hosts', 'clusters', 'datastores', 'datacenters'] as const;

/** One line for messages: `vms web*, db01; folders prod; excluding hosts esx02`. */
export function describeSelection(select: Selection, exclude?: Selection): string {
  const part = (s: Selection) =>
    CRITERIA.flatMap((k) => {
      const values = s[k];
      return values === undefined || values.length === 0 ? [] : [`${k} ${values.join(', ')}`];
    }).join('; ');
  const included = part(select) || 'nothing';
  const excluded = exclude === undefined ? '' : part(exclude);
  return excluded === '' ? included : `${included}; excluding ${excluded}`;
}

function compareStrings(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
