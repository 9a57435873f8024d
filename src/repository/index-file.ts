import { AAD, SEAL_OVERHEAD } from './crypto.js';
import { openDocument, sealDocument } from './format.js';

/**
 * Pack headers and index files (docs/repository-format.md, "Packs" and "Indexes"), and the in-memory union of
 * the indexes that readers and writers use.
 */

export interface BlobEntry {
  id: string;
  /** Where the sealed blob starts in its pack, and its sealed length. */
  offset: number;
  length: number;
  /** Length of the chunk's plaintext. */
  rawLength: number;
}

export interface PackEntry {
  id: string;
  size: number;
  created: string;
  blobs: BlobEntry[];
}

export interface IndexDocument {
  version: 1;
  created: string;
  packs: PackEntry[];
}

export interface PackHeader {
  version: 1;
  created: string;
  blobs: BlobEntry[];
}

export function packKey(id: string): string {
  return `packs/${id.slice(0, 2)}/${id}`;
}

export function packIdOf(key: string): string {
  return key.slice(key.lastIndexOf('/') + 1);
}

/**
 * Pack bytes: the sealed blobs, the sealed header, then the header's sealed length (u32 little-endian). In
 * pieces, not joined: blobs that lie end to end in one buffer (a worker's sealed batch) are one piece, and the
 * backend writes the pieces as they are.
 */
export function buildPack(
  encKey: Buffer,
  blobs: Buffer[],
  header: PackHeader,
): { pieces: Buffer[]; size: number } {
  const sealed = sealDocument(encKey, header, AAD.packHeader);
  const tail = Buffer.alloc(4);
  tail.writeUInt32LE(sealed.length);
  const pieces: Buffer[] = [];
  let size = 0;
  for (const b of [...blobs, sealed, tail]) {
    size += b.length;
    const last = pieces.at(-1);
    if (last !== undefined && last.buffer === b.buffer && last.byteOffset + last.length === b.byteOffset) {
      pieces[pieces.length - 1] = Buffer.from(last.buffer, last.byteOffset, last.length + b.length);
    } else {
      pieces.push(b);
    }
  }
  return { pieces, size };
}

/** Reads a pack's header from its tail, or undefined when it does not authenticate. */
export function parsePackHeader(encKey: Buffer, pack: Buffer): PackHeader | undefined {
  if (pack.length < 4 + SEAL_OVERHEAD) return undefined;
  const len = pack.readUInt32LE(pack.length - 4);
  if (len < SEAL_OVERHEAD || len > pack.length - 4) return undefined;
  const doc = openDocument(encKey, pack.subarray(pack.length - 4 - len, pack.length - 4), AAD.packHeader);
  return isPackHeader(doc) ? doc : undefined;
}

function isPackHeader(doc: unknown): doc is PackHeader {
  const d = doc as PackHeader | undefined;
  return d?.version === 1 && typeof d.created === 'string' && Array.isArray(d.blobs);
}

export function sealIndex(encKey: Buffer, doc: IndexDocument): Buffer {
  return sealDocument(encKey, doc, AAD.index);
}

export function openIndex(encKey: Buffer, data: Buffer): IndexDocument | undefined {
  const doc = openDocument(encKey, data, AAD.index) as IndexDocument | undefined;
  if (doc?.version !== 1 || !Array.isArray(doc.packs)) return undefined;
  for (const p of doc.packs) {
    if (typeof p?.id !== 'string' || typeof p.size !== 'number' || !Array.isArray(p.blobs)) return undefined;
  }
  return doc;
}

export interface ChunkLocation extends BlobEntry {
  pack: string;
}

export interface PackInfo {
  id: string;
  size: number;
  created: string;
}

const EMPTY = 0xffffffff;
const ID_BYTES = 32;

/**
 * The union of index files, compact: chunk ids as 32 binary bytes in an open-addressing table of typed arrays
 * (70 to 140 bytes a chunk, where a Map of hex strings and objects takes over 250), so that a writer can hold
 * the index of a large repository within its memory bound. A chunk stored in several packs has an entry for
 * each (check reads them all); lookups return the first.
 */
export class ChunkIndex {
  private readonly packInfo: PackInfo[] = [];
  private readonly packNo = new Map<string, number>();
  private cap = 1 << 10;
  private used = 0;
  private unique = 0;
  private ids = new Uint8Array(this.cap * ID_BYTES);
  private packs = new Uint32Array(this.cap).fill(EMPTY);
  private offsets = new Uint32Array(this.cap);
  private lengths = new Uint32Array(this.cap);
  private raws = new Uint32Array(this.cap);

  add(doc: IndexDocument): void {
    for (const pack of doc.packs) this.addPack(pack);
  }

  /** Adds a pack's blobs; a pack already added (named by two index files) is not added again. */
  addPack(pack: PackEntry): void {
    if (this.packNo.has(pack.id)) return;
    const no = this.packInfo.length;
    this.packInfo.push({ id: pack.id, size: pack.size, created: pack.created });
    this.packNo.set(pack.id, no);
    for (const b of pack.blobs) {
      const key = keyOf(b.id);
      if (key !== undefined) this.insert(key, no, b);
    }
  }

  /** Adds one blob of a pack (registered, with no size, when new). An id that is not 64 hex is ignored. */
  addBlob(packId: string, blob: BlobEntry): void {
    let no = this.packNo.get(packId);
    if (no === undefined) {
      no = this.packInfo.length;
      this.packInfo.push({ id: packId, size: 0, created: '' });
      this.packNo.set(packId, no);
    }
    const key = keyOf(blob.id);
    if (key !== undefined) this.insert(key, no, blob);
  }

  /** Chunk ids found (each once, however many packs hold it). */
  get chunkCount(): number {
    return this.unique;
  }

  /** Bytes the table takes (48 a slot; between 0.35 and 0.7 of the slots are used). */
  get tableBytes(): number {
    return this.cap * (ID_BYTES + 16);
  }

  get packCount(): number {
    return this.packInfo.length;
  }

  has(id: string): boolean {
    const key = keyOf(id);
    return key !== undefined && this.find(key) >= 0;
  }

  get(id: string): ChunkLocation | undefined {
    const key = keyOf(id);
    const slot = key === undefined ? -1 : this.find(key);
    if (slot < 0) return undefined;
    return {
      id,
      pack: this.packInfo[this.packs[slot]!]!.id,
      offset: this.offsets[slot]!,
      length: this.lengths[slot]!,
      rawLength: this.raws[slot]!,
    };
  }

  pack(id: string): PackInfo | undefined {
    const no = this.packNo.get(id);
    return no === undefined ? undefined : this.packInfo[no];
  }

  packList(): PackInfo[] {
    return [...this.packInfo];
  }

  /** Every pack with all its blobs, in pack offset order (check --read-data and prune; not for the writer). */
  packEntries(): PackEntry[] {
    const out: PackEntry[] = this.packInfo.map((p) => ({ ...p, blobs: [] }));
    for (let slot = 0; slot < this.cap; slot++) {
      const no = this.packs[slot]!;
      if (no === EMPTY) continue;
      out[no]!.blobs.push({
        id: Buffer.from(this.ids.subarray(slot * ID_BYTES, (slot + 1) * ID_BYTES)).toString('hex'),
        offset: this.offsets[slot]!,
        length: this.lengths[slot]!,
        rawLength: this.raws[slot]!,
      });
    }
    for (const p of out) p.blobs.sort((a, b) => a.offset - b.offset);
    return out;
  }

  private hash(key: Uint8Array): number {
    // Ids are HMAC outputs: any 4 bytes are uniform.
    return ((key[0]! | (key[1]! << 8) | (key[2]! << 16) | (key[3]! << 24)) >>> 0) & (this.cap - 1);
  }

  private same(slot: number, key: Uint8Array): boolean {
    const base = slot * ID_BYTES;
    for (let i = 0; i < ID_BYTES; i++) if (this.ids[base + i] !== key[i]) return false;
    return true;
  }

  private find(key: Uint8Array): number {
    for (let slot = this.hash(key); ; slot = (slot + 1) & (this.cap - 1)) {
      if (this.packs[slot] === EMPTY) return -1;
      if (this.same(slot, key)) return slot;
    }
  }

  private insert(key: Uint8Array, no: number, b: BlobEntry): void {
    if ((this.used + 1) * 10 > this.cap * 7) this.grow();
    let slot = this.hash(key);
    let seen = false;
    while (this.packs[slot] !== EMPTY) {
      if (!seen && this.same(slot, key)) seen = true;
      slot = (slot + 1) & (this.cap - 1);
    }
    this.ids.set(key, slot * ID_BYTES);
    this.packs[slot] = no;
    this.offsets[slot] = b.offset;
    this.lengths[slot] = b.length;
    this.raws[slot] = b.rawLength;
    this.used++;
    if (!seen) this.unique++;
  }

  private grow(): void {
    const old = {
      cap: this.cap,
      ids: this.ids,
      packs: this.packs,
      offsets: this.offsets,
      lengths: this.lengths,
      raws: this.raws,
    };
    this.cap *= 2;
    this.ids = new Uint8Array(this.cap * ID_BYTES);
    this.packs = new Uint32Array(this.cap).fill(EMPTY);
    this.offsets = new Uint32Array(this.cap);
    this.lengths = new Uint32Array(this.cap);
    this.raws = new Uint32Array(this.cap);
    // Re-inserted in slot order: entries of one id keep their relative order (the first stays first).
    for (let s = 0; s < old.cap; s++) {
      if (old.packs[s] === EMPTY) continue;
      const key = old.ids.subarray(s * ID_BYTES, (s + 1) * ID_BYTES);
      let slot = this.hash(key);
      while (this.packs[slot] !== EMPTY) slot = (slot + 1) & (this.cap - 1);
      this.ids.set(key, slot * ID_BYTES);
      this.packs[slot] = old.packs[s]!;
      this.offsets[slot] = old.offsets[s]!;
      this.lengths[slot] = old.lengths[s]!;
      this.raws[slot] = old.raws[s]!;
    }
  }
}

/** A set of chunk ids, compact (the writer's record of what it stored before its index exists). */
export class ChunkIdSet {
  private readonly index = new ChunkIndex();

  add(id: string): void {
    this.index.addBlob('', { id, offset: 0, length: 0, rawLength: 0 });
  }

  has(id: string): boolean {
    return this.index.has(id);
  }
}

function keyOf(id: string): Uint8Array | undefined {
  if (id.length !== ID_BYTES * 2) return undefined;
  const key = Buffer.from(id, 'hex');
  return key.length === ID_BYTES ? key : undefined;
}
