import type { Datastore } from '../model/inventory.js';
import { RuleError } from './errors.js';

/**
 * A volume as the mapping needs it. Structurally the arrays layer's ArrayVolume, restated so that the rules
 * depend on no other layer.
 */
export interface VolumeRef {
  name: string;
  /** Absolute path a datastore on the volume points at. */
  path: string;
  /** SCSI canonical name, matched against VMFS extents. */
  lun: string;
}

/** One array as the mapping sees it: its volumes and the configured explicit datastore -> volumes entries. */
export interface ArrayVolumes {
  name: string;
  volumes: VolumeRef[];
  /** Datastore name -> volume names of this array (config `arrays[].datastores`). */
  explicit?: Record<string, string[]>;
}

/** Where a datastore lives: volumes of one array, and the datastore's directory below the volume root. */
export interface DatastoreLocation {
  array: string;
  volumes: string[];
  /** Path of the datastore below the (single) volume's path, '' when the datastore is the whole volume. */
  subPath: string;
}

export interface DatastoreMapping {
  /** Datastore name -> location. */
  mapped: Map<string, DatastoreLocation>;
  /** Names of datastores no array holds, in input order. */
  unmapped: string[];
}

/**
 * Places each datastore on the volumes of one array, in this order:
 * 1. explicit configuration (`arrays[].datastores`) wins; a datastore configured on two arrays, or configured
 *    on a volume the array does not have, throws RuleError `DATASTORE_MAPPING_INVALID` (a configuration
 *    mistake must not silently change what is snapshotted);
 * 2. datastores with extents (VMFS) by the extents' LUN canonical names, compared case-insensitively with the
 *    volumes' LUNs. Every extent must land on a volume of one and the same array: a datastore partly on
 *    unknown LUNs or spread over arrays cannot be captured at one point in time and is left unmapped. When
 *    no extent matches any volume, the URL rule below is tried (the lab injects LUN data from its own side);
 * 3. by URL: the datastore URL without its `ds://` or `file://` scheme, equal to a volume path or inside it.
 *    The deepest volume path wins when volume paths nest.
 * Pure: the volumes are passed in, nothing is read.
 */
export function mapDatastoresToVolumes(
  datastores: readonly Datastore[],
  arrays: readonly ArrayVolumes[],
): DatastoreMapping {
  const explicit = explicitEntries(arrays);
  const byLun = new Map<string, { array: string; volume: string }>();
  const byPath: { array: string; volume: string; path: string }[] = [];
  for (const array of arrays) {
    for (const v of array.volumes) {
      const lun = v.lun.toLowerCase();
      if (lun !== '' && !byLun.has(lun)) byLun.set(lun, { array: array.name, volume: v.name });
      byPath.push({ array: array.name, volume: v.name, path: normalizePath(v.path) });
    }
  }
  // Deepest first, so that nested volume paths resolve to the innermost volume.
  byPath.sort((a, b) => b.path.length - a.path.length);

  const mapped = new Map<string, DatastoreLocation>();
  const unmapped: string[] = [];
  for (const ds of datastores) {
    const location =
      explicit.get(ds.name) ?? (ds.extents.length > 0 ? byExtents(ds, byLun, byPath) : byUrl(ds.url, byPath));
    if (location === undefined) unmapped.push(ds.name);
    else {
      if (location.subPath === '' && location.volumes.length === 1) {
        // An explicit entry may still point inside its volume; the URL tells where.
        const inside = byUrl(ds.url, byPath);
        if (
          inside !== undefined &&
          inside.array === location.array &&
          inside.volumes[0] === location.volumes[0]
        ) {
          location.subPath = inside.subPath;
        }
      }
      mapped.set(ds.name, location);
    }
  }
  return { mapped, unmapped };
}

function explicitEntries(arrays: readonly ArrayVolumes[]): Map<string, DatastoreLocation> {
  const out = new Map<string, DatastoreLocation>();
  for (const array of arrays) {
    const known = new Set(array.volumes.map((v) => v.name));
    for (const [datastore, volumes] of Object.entries(array.explicit ?? {})) {
      const other = out.get(datastore);
      if (other !== undefined) {
        throw new RuleError(
          'DATASTORE_MAPPING_INVALID',
          `datastore ${datastore} is configured on two arrays: ${other.array} and ${array.name}`,
        );
      }
      const missing = volumes.filter((v) => !known.has(v));
      if (missing.length > 0) {
        throw new RuleError(
          'DATASTORE_MAPPING_INVALID',
          `datastore ${datastore} is configured on volume(s) ${missing.join(', ')} that array ${array.name} does not have`,
        );
      }
      if (volumes.length === 0) {
        throw new RuleError(
          'DATASTORE_MAPPING_INVALID',
          `datastore ${datastore} is configured with no volumes`,
        );
      }
      out.set(datastore, { array: array.name, volumes: unique(volumes), subPath: '' });
    }
  }
  return out;
}

function byExtents(
  ds: Datastore,
  byLun: ReadonlyMap<string, { array: string; volume: string }>,
  byPath: readonly { array: string; volume: string; path: string }[],
): DatastoreLocation | undefined {
  const hits = ds.extents.map((e) => byLun.get(e.lun.toLowerCase()));
  if (hits.every((h) => h === undefined)) return byUrl(ds.url, byPath);
  const first = hits[0];
  if (first === undefined) return undefined;
  const volumes: string[] = [];
  for (const h of hits) {
    if (h === undefined || h.array !== first.array) return undefined;
    volumes.push(h.volume);
  }
  return { array: first.array, volumes: unique(volumes), subPath: '' };
}

function byUrl(
  url: string,
  byPath: readonly { array: string; volume: string; path: string }[],
): DatastoreLocation | undefined {
  if (url === '') return undefined;
  const dsPath = normalizePath(stripScheme(url));
  for (const v of byPath) {
    if (v.path === '' || v.path === '/') continue; // a volume at the root would swallow every datastore
    if (dsPath === v.path) return { array: v.array, volumes: [v.volume], subPath: '' };
    if (dsPath.startsWith(`${v.path}/`)) {
      return { array: v.array, volumes: [v.volume], subPath: dsPath.slice(v.path.length + 1) };
    }
  }
  return undefined;
}

function stripScheme(url: string): string {
  const m = /^(ds|file):\/\//i.exec(url);
  return m === null ? url : url.slice(m[0].length);
}

/** Collapses repeated slashes, drops `.` segments and trailing slashes; `..` is resolved lexically. */
export function normalizePath(path: string): string {
  const absolute = path.startsWith('/');
  const out: string[] = [];
  for (const seg of path.split('/')) {
    if (seg === '' || seg === '.') continue;
    if (seg === '..') {
      if (out.length > 0 && out[out.length - 1] !== '..') out.pop();
      else if (!absolute) out.push('..');
      continue;
    }
    out.push(seg);
  }
  const joined = out.join('/');
  return absolute ? `/${joined}` : joined;
}

function unique(values: readonly string[]): string[] {
  return [...new Set(values)];
}

/** A datastore path split into its parts. */
export interface DatastorePath {
  datastore: string;
  /** Relative path inside the datastore, '/'-separated, no leading slash; '' for the datastore root. */
  path: string;
}

/**
 * Splits a vSphere datastore path (`[ds-a] web01/web01.vmdk`) into datastore name and relative path.
 * Throws RuleError `BAD_DATASTORE_PATH` for anything else, including `..` segments and NUL bytes: the
 * result is joined to volume paths on the array, so it must never climb out of the datastore.
 */
export function datastorePathToRelative(datastorePath: string): DatastorePath {
  const m = /^\[([^\]]*)\]\s*(.*)$/s.exec(datastorePath);
  const bad = (why: string) =>
    new RuleError('BAD_DATASTORE_PATH', `malformed datastore path ${JSON.stringify(datastorePath)}: ${why}`);
  if (m === null) throw bad('expected "[datastore] relative/path"');
  const datastore = (m[1] ?? '').trim();
  if (datastore === '') throw bad('empty datastore name');
  const raw = m[2] ?? '';
  if (raw.includes('\0')) throw bad('contains a NUL byte');
  const segments = raw.split('/').filter((s) => s !== '' && s !== '.');
  if (segments.includes('..')) throw bad('contains ".."');
  return { datastore, path: segments.join('/') };
}

/** The inverse of datastorePathToRelative: `[ds] path`. */
export function formatDatastorePath(datastore: string, path: string): string {
  return path === '' ? `[${datastore}]` : `[${datastore}] ${path}`;
}
