import { mergeRanges } from '../checks.js';
import type { ByteRange } from '../types.js';

/**
 * The memory array's file tree. A file is a sparse map of fixed blocks; a block buffer is never changed once
 * stored (a write stores new buffers), so snapshots and clones share files and blocks, and a write to a
 * shared file first copies its block map (copy on write): a big file stays cheap to snapshot.
 */

export const BLOCK_SIZE = 4096;

export class MemFile {
  readonly kind = 'file';
  /** Set once a snapshot, clone or restored copy refers to this file too: writers must copy it first. */
  shared = false;

  constructor(
    public size = 0,
    readonly blocks: Map<number, Buffer> = new Map(),
  ) {}

  /** An unshared copy: the block map is copied, the blocks themselves are shared (they never change). */
  copy(): MemFile {
    return new MemFile(this.size, new Map(this.blocks));
  }

  write(data: Uint8Array, offset: number): void {
    let pos = 0;
    while (pos < data.length) {
      const at = offset + pos;
      const index = Math.floor(at / BLOCK_SIZE);
      const within = at - index * BLOCK_SIZE;
      const n = Math.min(BLOCK_SIZE - within, data.length - pos);
      const block = Buffer.alloc(BLOCK_SIZE);
      this.blocks.get(index)?.copy(block);
      block.set(data.subarray(pos, pos + n), within);
      this.blocks.set(index, block);
      pos += n;
    }
    this.size = Math.max(this.size, offset + data.length);
  }

  truncate(size: number): void {
    if (size < this.size) {
      const keep = Math.ceil(size / BLOCK_SIZE);
      for (const index of [...this.blocks.keys()]) if (index >= keep) this.blocks.delete(index);
      const tail = size % BLOCK_SIZE;
      const last = this.blocks.get(keep - 1);
      // Bytes past the new end must read as zeros if the file grows again.
      if (tail !== 0 && last) {
        const block = Buffer.alloc(BLOCK_SIZE);
        last.copy(block, 0, 0, tail);
        this.blocks.set(keep - 1, block);
      }
    }
    this.size = size;
  }

  /** `length` bytes from `offset` (within the size), holes as zeros. */
  read(offset: number, length: number): Buffer {
    const out = Buffer.alloc(length);
    let pos = 0;
    while (pos < length) {
      const at = offset + pos;
      const index = Math.floor(at / BLOCK_SIZE);
      const within = at - index * BLOCK_SIZE;
      const n = Math.min(BLOCK_SIZE - within, length - pos);
      this.blocks.get(index)?.copy(out, pos, within, within + n);
      pos += n;
    }
    return out;
  }

  /** Exactly the blocks this file holds differently from `base` (written since), and any growth. */
  changedSince(base: MemFile): ByteRange[] {
    if (base === this) return [];
    const ranges: ByteRange[] = [];
    const blocks = Math.ceil(this.size / BLOCK_SIZE);
    for (let i = 0; i < blocks; i++) {
      const end = Math.min(this.size, (i + 1) * BLOCK_SIZE);
      if (end > base.size || this.blocks.get(i) !== base.blocks.get(i)) {
        ranges.push({ offset: i * BLOCK_SIZE, length: end - i * BLOCK_SIZE });
      }
    }
    return mergeRanges(ranges);
  }
}

export class MemDir {
  readonly kind = 'directory';
  constructor(readonly entries: Map<string, MemNode> = new Map()) {}

  /** A copy of the tree sharing every file (now marked shared). */
  share(): MemDir {
    const out = new MemDir();
    for (const [name, node] of this.entries) {
      if (node.kind === 'directory') out.entries.set(name, node.share());
      else {
        node.shared = true;
        out.entries.set(name, node);
      }
    }
    return out;
  }

  /** Every file under this directory. */
  *files(): Generator<MemFile> {
    for (const node of this.entries.values()) {
      if (node.kind === 'file') yield node;
      else yield* node.files();
    }
  }
}

export type MemNode = MemFile | MemDir;

/** The node at `parts` below `dir`, or undefined. */
export function lookup(dir: MemDir, parts: string[]): MemNode | undefined {
  let node: MemNode = dir;
  for (const p of parts) {
    if (node.kind !== 'directory') return undefined;
    const next: MemNode | undefined = node.entries.get(p);
    if (next === undefined) return undefined;
    node = next;
  }
  return node;
}
