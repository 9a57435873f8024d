import picomatch from 'picomatch';
import type { Selection } from '../config/schema.js';
import type { Inventory, Vm } from '../model/inventory.js';

/**
 * Glob options for names that are not file paths: `*` also matches names that start with a dot, and the
 * pattern means the same on every platform.
 */
const GLOB_OPTIONS: picomatch.PicomatchOptions = { dot: true, windows: false };

/**
 * VM, host, cluster, datastore and datacenter names are not paths: a `/` in them (vCenter shows it as `%2f`,
 * but a caller may pass it decoded) is an ordinary character, and so are names made only of dots. picomatch
 * treats `/` as a separator and never lets `*` match `.` or `..`, so both are swapped for private-use
 * characters in the name and the pattern alike before matching; a literal `/` or `.` in a pattern still only
 * matches itself.
 */
const SLASH_STANDIN = '\uE000';
const DOT_STANDIN = '\uE001';
const ONLY_DOTS = /^\.+$/;

const nameMatchers = new Map<string, (name: string) => boolean>();
const pathMatchers = new Map<string, (path: string) => boolean>();

function nameMatcher(pattern: string): (name: string) => boolean {
  let m = nameMatchers.get(pattern);
  if (m === undefined) {
    const glob = picomatch(pattern.replaceAll('/', SLASH_STANDIN), GLOB_OPTIONS);
    // A literal name always matches itself, even one with glob characters such as `web[1]` or `db(old)`.
    m = (name: string) =>
      name === pattern ||
      glob(name.replaceAll('/', SLASH_STANDIN)) ||
      (ONLY_DOTS.test(name) && glob(name.replaceAll('.', DOT_STANDIN)));
    nameMatchers.set(pattern, m);
  }
  return m;
}

/** Folder paths keep `/` as their separator: `prod/*` is one level below prod. */
function pathMatcher(pattern: string): (path: string) => boolean {
  let m = pathMatchers.get(pattern);
  if (m === undefined) {
    const glob = picomatch(pattern, GLOB_OPTIONS);
    m = (path: string) => path === pattern || glob(path);
    pathMatchers.set(pattern, m);
  }
  return m;
}

/**
 * True when `name` equals `pattern` or matches it as a case-sensitive glob (picomatch; `*` matches every name,
 * whatever characters it holds).
 */
export function matchesPattern(name: string, pattern: string): boolean {
  return nameMatcher(pattern)(name);
}

/** The names matching `pattern`, in input order, without duplicates (for the CLI's `--vm GLOB`). */
export function matchGlob(names: readonly string[], pattern: string): string[] {
  const m = nameMatcher(pattern);
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
  const m = pathMatcher(p);
  return folderAndAncestors(vmFolder).some((f) => f !== '' && m(f));
}

function vmDatastores(vm: Vm): string[] {
  return [vm.homeDatastore, ...vm.datastores, ...vm.disks.map((d) => d.datastore)].filter((d) => d !== '');
}

function vmCluster(vm: Vm, inventory: Inventory): string | undefined {
  if (vm.cluster !== undefined) return vm.cluster;
  return inventory.hosts.find((h) => h.name === vm.host && h.datacenter === vm.datacenter)?.cluster;
}

const CRITERIA = ['vms', 'folders', 'hosts', 'clusters', 'datastores', 'datacenters'] as const;
export type SelectionCriterion = (typeof CRITERIA)[number];

/** Whether one pattern of one criterion holds for a VM. */
function criterionMatches(
  criterion: SelectionCriterion,
  pattern: string,
  vm: Vm,
  inventory: Inventory,
): boolean {
  switch (criterion) {
    case 'vms':
      return matchesPattern(vm.name, pattern);
    case 'folders':
      return matchesFolder(vm.folder, pattern);
    case 'hosts':
      return matchesPattern(vm.host, pattern);
    case 'clusters': {
      const cluster = vmCluster(vm, inventory);
      return cluster !== undefined && matchesPattern(cluster, pattern);
    }
    case 'datastores':
      return vmDatastores(vm).some((d) => matchesPattern(d, pattern));
    case 'datacenters':
      return matchesPattern(vm.datacenter, pattern);
  }
}

/** True when the VM meets any criterion of the selection; an empty selection matches nothing. */
export function vmMatches(vm: Vm, select: Selection, inventory: Inventory): boolean {
  return CRITERIA.some((c) => (select[c] ?? []).some((p) => criterionMatches(c, p, vm, inventory)));
}

/** A pattern of a selection that holds for no VM of the inventory. */
export interface UnmatchedCriterion {
  criterion: SelectionCriterion;
  pattern: string;
}

/**
 * Every pattern of `select` that matches no VM at all (exclusions aside: a name that exists but is excluded
 * did match), in criterion order then pattern order, each once. A mistyped name shows up here instead of
 * silently shrinking the backup; whether it is an error or a warning is the caller's decision.
 */
export function unmatchedCriteria(inventory: Inventory, select: Selection): UnmatchedCriterion[] {
  return CRITERIA.flatMap((criterion) =>
    [...new Set(select[criterion] ?? [])]
      .filter((pattern) => !inventory.vms.some((vm) => criterionMatches(criterion, pattern, vm, inventory)))
      .map((pattern) => ({ criterion, pattern })),
  );
}

/** One line for messages: `vms webO1, db02; hosts esx9`. */
export function describeUnmatched(unmatched: readonly UnmatchedCriterion[]): string {
  return CRITERIA.flatMap((c) => {
    const patterns = unmatched.filter((u) => u.criterion === c).map((u) => u.pattern);
    return patterns.length === 0 ? [] : [`${c} ${patterns.join(', ')}`];
  }).join('; ');
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
