import { access, constants } from 'node:fs/promises';
import { execFile } from '../../util/exec.js';
import { mergeRanges } from '../checks.js';
import type { ByteRange } from '../types.js';

/**
 * Changed ranges from extent maps (FIEMAP), for file systems that share extents between a file and its
 * snapshots (btrfs snapshots, reflinks). A shared extent is never written in place (copy on write), so a byte
 * that both files map to the same physical byte is the same byte. FIEMAP is read through e2fsprogs' `filefrag`
 * (no native addon).
 */

export interface Extent {
  logical: number;
  physical: number;
  length: number;
  /** False when the physical location does not identify the data (delalloc, unwritten, inline, encoded ...). */
  trusted: boolean;
}

/** Flags under which the physical offset is not a stable identity of the bytes: such extents count as changed. */
const UNTRUSTED_FLAGS = new Set([
  'unknown_loc',
  'delalloc',
  'unwritten',
  'inline',
  'data_inline',
  'tail_packed',
  'encoded',
  'encrypted',
  'not_aligned',
  'unknown',
]);
const KNOWN_FLAGS = new Set(['last', 'eof', 'shared', 'merged']);

// `   1:   409600..  413695:   63963136..  63967231:   4096:   14041088: shared`
const EXTENT_LINE = /^\s*\d+:\s*(\d+)\.\.\s*(\d+):\s*(\d+)\.\.\s*(\d+):\s*(\d+):\s*(?:\d+:)?\s*(.*)$/;

/** Extents from `filefrag -v -b1` output, in logical order. A flag we do not know makes an extent untrusted. */
export function parseFilefrag(stdout: string): Extent[] {
  const out: Extent[] = [];
  for (const line of stdout.split('\n')) {
    const m = EXTENT_LINE.exec(line);
    if (!m) continue;
    const flags = m[6]!
      .split(',')
      .map((f) => f.trim())
      .filter((f) => f !== '');
    out.push({
      logical: Number(m[1]),
      physical: Number(m[3]),
      length: Number(m[5]),
      trusted: flags.every((f) => KNOWN_FLAGS.has(f) && !UNTRUSTED_FLAGS.has(f)),
    });
  }
  return out.sort((a, b) => a.logical - b.logical);
}

let filefragPath: Promise<string | undefined> | undefined;

/** Where filefrag is: on PATH, or in the sbin directories a non-root PATH often lacks. */
function findFilefrag(): Promise<string | undefined> {
  filefragPath ??= (async () => {
    const dirs = [...(process.env.PATH ?? '').split(':'), '/usr/sbin', '/sbin'];
    for (const d of dirs.filter((x) => x !== '')) {
      const p = `${d}/filefrag`;
      if (
        await access(p, constants.X_OK).then(
          () => true,
          () => false,
        )
      )
        return p;
    }
    return undefined;
  })();
  return filefragPath;
}

/** The extent map of a file, or undefined when filefrag is missing or fails (the file system has no FIEMAP). */
export async function readExtents(path: string, signal?: AbortSignal): Promise<Extent[] | undefined> {
  const filefrag = await findFilefrag();
  if (filefrag === undefined) return undefined;
  try {
    const { stdout } = await execFile(filefrag, ['-v', '-b1', path], { signal });
    return parseFilefrag(stdout);
  } catch {
    // No FIEMAP on this file system, or filefrag failed: the caller reads the whole file.
    if (signal?.aborted) throw signal.reason;
    return undefined;
  }
}

/**
 * The ranges of a file (`next`, `nextSize` bytes) that may differ from its base (`base`, `baseSize`): a byte
 * is unchanged when it lies within the base's size and both map it the same way, to the same physical byte
 * of a trusted extent or to a hole in both (zeros). Everything else, growth past the base size included, is
 * changed.
 */
export function changedByExtents(
  base: Extent[],
  baseSize: number,
  next: Extent[],
  nextSize: number,
): ByteRange[] {
  const points = new Set<number>([0, nextSize, Math.min(baseSize, nextSize)]);
  for (const e of [...base, ...next]) {
    for (const p of [e.logical, e.logical + e.length]) if (p < nextSize) points.add(p);
  }
  const cuts = [...points].sort((a, b) => a - b);
  const changed: ByteRange[] = [];
  let bi = 0;
  let ni = 0;
  for (let i = 0; i + 1 < cuts.length; i++) {
    const from = cuts[i]!;
    const to = cuts[i + 1]!;
    while (bi < base.length && base[bi]!.logical + base[bi]!.length <= from) bi++;
    while (ni < next.length && next[ni]!.logical + next[ni]!.length <= from) ni++;
    const b = base[bi] !== undefined && base[bi]!.logical <= from ? base[bi] : undefined;
    const n = next[ni] !== undefined && next[ni]!.logical <= from ? next[ni] : undefined;
    const same =
      to <= baseSize &&
      (b === undefined
        ? n === undefined
        : n !== undefined && b.trusted && n.trusted && b.physical - b.logical === n.physical - n.logical);
    if (!same) changed.push({ offset: from, length: to - from });
  }
  return mergeRanges(changed);
}
