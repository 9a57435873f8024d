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

/** Pack bytes: the sealed blobs, the sealed header, then the header's sealed length (u32 little-endian). */
export function buildPack(encKey: Buffer, blobs: Buffer[], header: PackHeader): Buffer {
  const sealed = sealDocument(encKey, header, AAD.packHeader);
  const tail = Buffer.alloc(4);
  tail.writeUInt32LE(sealed.length);
  return Buffer.concat([...blobs, sealed, tail]);
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

/** The union of index files: chunk id -> where one copy of it is; pack id -> its entry. */
export class ChunkIndex {
  readonly chunks = new Map<string, ChunkLocation>();
  readonly packs = new Map<string, PackEntry>();

  add(doc: IndexDocument): void {
    for (const pack of doc.packs) this.addPack(pack);
  }

  addPack(pack: PackEntry): void {
    if (!this.packs.has(pack.id)) this.packs.set(pack.id, pack);
    for (const b of pack.blobs) {
      if (!this.chunks.has(b.id)) this.chunks.set(b.id, { ...b, pack: pack.id });
    }
  }

  has(id: string): boolean {
    return this.chunks.has(id);
  }

  get(id: string): ChunkLocation | undefined {
    return this.chunks.get(id);
  }
}
