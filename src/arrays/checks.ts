import { ConflictError, NotFoundError, UsageError } from '../errors.js';
import type { ByteRange, ReadFileOptions } from './types.js';

/** Rules every adapter applies the same way to what the engine hands it. */

/**
 * The components of a path relative to a volume (`''` and `.` name the volume itself: no components).
 * An absolute path, a `..` component, a backslash or a NUL is a UsageError (`ARRAY_INVALID_PATH`): a path
 * must never lead out of its volume, whatever the adapter.
 */
export function relativeComponents(relativePath: string, volume: string): string[] {
  const bad = (why: string) =>
    new UsageError(
      'ARRAY_INVALID_PATH',
      `invalid path ${JSON.stringify(relativePath)} inside volume ${volume}: ${why}`,
    );
  if (typeof relativePath !== 'string') throw bad('not a string');
  if (relativePath.startsWith('/')) throw bad('it is absolute');
  if (relativePath.includes('\0') || relativePath.includes('\\')) throw bad('it holds a NUL or a backslash');
  const parts = relativePath.split('/').filter((p) => p !== '' && p !== '.');
  if (parts.includes('..')) throw bad('it leads out of the volume');
  return parts;
}

/** Like relativeComponents, for a path that must name a file (not the volume itself). */
export function fileComponents(relativePath: string, volume: string): string[] {
  const parts = relativeComponents(relativePath, volume);
  if (parts.length === 0) {
    throw new UsageError(
      'ARRAY_INVALID_PATH',
      `invalid path ${JSON.stringify(relativePath)} inside volume ${volume}: it names no file`,
    );
  }
  return parts;
}

/** The range `readFile` options ask for within a file of `size` bytes (length 0 past the end). */
export function readRange(options: ReadFileOptions, size: number): ByteRange {
  const offset = options.offset ?? 0;
  for (const [what, v] of [
    ['offset', offset],
    ['length', options.length ?? 0],
  ] as const) {
    if (!Number.isSafeInteger(v) || v < 0) {
      throw new UsageError('ARRAY_INVALID_RANGE', `read ${what} must be a whole number >= 0, got ${v}`);
    }
  }
  const start = Math.min(offset, size);
  const end = options.length === undefined ? size : Math.min(size, start + options.length);
  return { offset: start, length: end - start };
}

/** Sorted ranges with touching or overlapping ones merged, empty ones dropped. */
export function mergeRanges(ranges: ByteRange[]): ByteRange[] {
  const sorted = ranges.filter((r) => r.length > 0).sort((a, b) => a.offset - b.offset);
  const out: ByteRange[] = [];
  for (const r of sorted) {
    const last = out.at(-1);
    if (last && r.offset <= last.offset + last.length) {
      last.length = Math.max(last.length, r.offset + r.length - last.offset);
    } else out.push({ ...r });
  }
  return out;
}

/** Sorted by name in code-unit order, the same on every adapter. */
export function byName(a: { name: string }, b: { name: string }): number {
  return a.name < b.name ? -1 : a.name > b.name ? 1 : 0;
}

/**
 * A snapshot group must name at least one volume, each once, each known to the array (`known`):
 * UsageError (`ARRAY_EMPTY_GROUP`, `ARRAY_DUPLICATE_VOLUME`) or NotFoundError (`VOLUME_NOT_FOUND`).
 */
export function checkGroup(arrayName: string, volumes: string[], known: Set<string>): void {
  if (volumes.length === 0)
    throw new UsageError('ARRAY_EMPTY_GROUP', `array "${arrayName}": no volumes to snapshot`);
  if (new Set(volumes).size !== volumes.length) {
    throw new UsageError(
      'ARRAY_DUPLICATE_VOLUME',
      `array "${arrayName}": a volume is named twice in ${volumes.join(', ')}`,
    );
  }
  for (const v of volumes) {
    if (!known.has(v)) throw unknownVolume(arrayName, v);
  }
}

/* The errors every adapter raises for the same fault, worded the same so callers and tests see one contract. */

export function unknownVolume(arrayName: string, volume: string): NotFoundError {
  return new NotFoundError('VOLUME_NOT_FOUND', `array "${arrayName}" has no volume ${volume}`);
}

export function noCompleteSnapshot(arrayName: string, id: string): NotFoundError {
  return new NotFoundError('SNAPSHOT_NOT_FOUND', `array "${arrayName}" has no complete snapshot ${id}`);
}

export function volumeNotInSnapshot(arrayName: string, id: string, volume: string): NotFoundError {
  return new NotFoundError(
    'VOLUME_NOT_FOUND',
    `array "${arrayName}": snapshot ${id} does not hold volume ${volume}`,
  );
}

export function noSuchEntry(
  arrayName: string,
  kind: 'file' | 'directory',
  relativePath: string,
  volume: string,
  snapshotId: string,
): NotFoundError {
  return new NotFoundError(
    'FILE_NOT_FOUND',
    `array "${arrayName}": no ${kind} ${relativePath} in volume ${volume} of snapshot ${snapshotId}`,
  );
}

/** `where` names the array's volumes for the reader (its root or pool), so the fix is plain. */
export function targetOutsideVolumes(arrayName: string, target: string, where: string): UsageError {
  return new UsageError(
    'ARRAY_INVALID_PATH',
    `array "${arrayName}": restore target ${target} is not inside a volume of the array (${where})`,
  );
}

export function targetExists(target: string, cause?: unknown): ConflictError {
  return new ConflictError('TARGET_EXISTS', `restore target ${target} already exists`, { cause });
}
