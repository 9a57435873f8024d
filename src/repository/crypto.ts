import { createCipheriv, createDecipheriv, createHash, createHmac, randomBytes } from 'node:crypto';
import { Blake3Hasher } from '@napi-rs/blake-hash';
import { type ObjectData, piecesOf } from './types.js';

/**
 * The format's cryptographic primitives (docs/repository-format.md, "Encryption"). Kept free of I/O and of
 * the worker pool so both the main thread and the workers (worker.ts) use the same code.
 */

export const NONCE_BYTES = 12;
export const TAG_BYTES = 16;
/** A sealed object is nonce, ciphertext, tag: this many bytes longer than its plaintext. */
export const SEAL_OVERHEAD = NONCE_BYTES + TAG_BYTES;

/** Associated data: binds a sealed object to what it is (a chunk to its id, an index to being an index). */
export const AAD = {
  chunk: (id: string) => Buffer.from(`snapkeeper/chunk/${id}`, 'ascii'),
  index: Buffer.from('snapkeeper/index', 'ascii'),
  manifest: Buffer.from('snapkeeper/manifest', 'ascii'),
  packHeader: Buffer.from('snapkeeper/pack-header', 'ascii'),
  key: (repositoryId: string) => Buffer.from(`snapkeeper/key/${repositoryId}`, 'ascii'),
} as const;

/** Flag byte in front of a sealed payload's plaintext: how the rest is stored. */
export const FLAG_RAW = 0;
export const FLAG_ZSTD = 1;

/** aes-256-gcm with a random 12-byte nonce: nonce || ciphertext || tag. */
export function seal(key: Buffer, parts: Uint8Array[], aad: Buffer): Buffer {
  return Buffer.concat(sealParts(key, parts, aad));
}

/**
 * `seal`'s bytes as pieces to be laid end to end (a caller joining many blobs copies each byte once). `nonce`:
 * NONCE_BYTES fresh random bytes (from `Nonces`), or drawn here.
 */
export function sealParts(key: Buffer, parts: Uint8Array[], aad: Buffer, nonce?: Buffer): Buffer[] {
  if (nonce !== undefined && nonce.length !== NONCE_BYTES) throw new Error('a nonce is 12 bytes');
  nonce ??= randomBytes(NONCE_BYTES);
  const cipher = createCipheriv('aes-256-gcm', key, nonce);
  cipher.setAAD(aad);
  const out = [nonce];
  for (const p of parts) out.push(cipher.update(p));
  out.push(cipher.final(), cipher.getAuthTag());
  return out;
}

/**
 * Random nonces drawn from the system's CSPRNG 4096 at a time: one call per 12 bytes cost the workers ~5% of
 * an offload. Each nonce is handed out once; a new buffer is drawn when one is used up (never refilled in
 * place, so a nonce handed out stays as it was).
 */
export class Nonces {
  private buf = Buffer.alloc(0);
  private at = 0;

  next(): Buffer {
    if (this.at + NONCE_BYTES > this.buf.length) {
      this.buf = randomBytes(NONCE_BYTES * 4096);
      this.at = 0;
    }
    const n = this.buf.subarray(this.at, this.at + NONCE_BYTES);
    this.at += NONCE_BYTES;
    return n;
  }
}

/** The plaintext of a sealed object, or undefined when it does not authenticate (wrong key, AAD, a flipped bit). */
export function open(key: Buffer, sealed: Uint8Array, aad: Buffer): Buffer | undefined {
  if (sealed.length < SEAL_OVERHEAD) return undefined;
  const buf = Buffer.from(sealed.buffer, sealed.byteOffset, sealed.byteLength);
  try {
    const decipher = createDecipheriv('aes-256-gcm', key, buf.subarray(0, NONCE_BYTES));
    decipher.setAAD(aad);
    decipher.setAuthTag(buf.subarray(buf.length - TAG_BYTES));
    const plain = decipher.update(buf.subarray(NONCE_BYTES, buf.length - TAG_BYTES));
    const rest = decipher.final();
    // GCM's final() authenticates and adds no bytes: no copy of the plaintext for a join.
    return rest.length === 0 ? plain : Buffer.concat([plain, rest]);
  } catch {
    return undefined;
  }
}

/** How chunks are identified: the config's `chunkId` (docs/repository-format.md, "Chunks"). */
export type ChunkIdAlgorithm = 'hmac-sha256' | 'blake3-keyed';
/** How packs, indexes and manifests are named: the config's `objectName` (version 1: always SHA-256). */
export type ObjectNameAlgorithm = 'sha256' | 'blake3';
export interface HashAlgorithms {
  chunkId: ChunkIdAlgorithm;
  objectName: ObjectNameAlgorithm;
}

/**
 * BLAKE3 derive_key context of the chunk-id key of `blake3-keyed`. Never change it: every id of every
 * version-2 repository depends on it.
 */
export const BLAKE3_CHUNK_ID_CONTEXT = 'snapkeeper 2026-12-02 repository chunk id key';

/** A repository's two hash functions, both hex (64 digits). */
export interface Hashes {
  readonly algorithms: HashAlgorithms;
  /** A chunk's id: keyed by the repository's `macKey`, never a plain hash of the plaintext. */
  chunkId(plaintext: Uint8Array): string;
  /** The name of a pack, index or manifest: a plain hash of its stored (sealed) bytes, one buffer or pieces. */
  contentName(data: ObjectData): string;
}

/**
 * What a backend's save may be told of an object named `name` (types.ts `BackendSaveOptions.sha256`): its
 * SHA-256 where the name is one, so S3 signs the upload with it instead of hashing the bytes again.
 */
export function knownSha256(hashes: Hashes, name: string): { sha256?: string } {
  return hashes.algorithms.objectName === 'sha256' ? { sha256: name } : {};
}

/**
 * The one place that turns a repository's algorithms into functions (the main thread and every worker use
 * it). `blake3-keyed` keys BLAKE3 with derive_key(BLAKE3_CHUNK_ID_CONTEXT, macKey) rather than with macKey
 * itself, so that no key is ever used by two algorithms (HMAC-SHA256 of version 1 takes macKey as it is).
 */
export function hashes(algorithms: HashAlgorithms, macKey: Buffer): Hashes {
  let chunkId: (plaintext: Uint8Array) => string;
  switch (algorithms.chunkId) {
    case 'hmac-sha256':
      chunkId = (plaintext) => createHmac('sha256', macKey).update(plaintext).digest('hex');
      break;
    case 'blake3-keyed': {
      const key = Blake3Hasher.deriveKey(BLAKE3_CHUNK_ID_CONTEXT, macKey);
      // A keyed hasher per chunk, so no state passes from one chunk to the next. Making it costs about a
      // quarter of a 64 KiB chunk's time; reusing one through reset() would save that, but one early check
      // seemed to show reset() dropping the key (later checks did not), and unkeyed ids would still verify:
      // not relied on.
      chunkId = (plaintext) => Blake3Hasher.newKeyed(key).update(plaintext).digest('hex');
      break;
    }
    default:
      throw new Error(`unknown chunk id algorithm ${JSON.stringify(algorithms.chunkId)}`);
  }
  let contentName: (data: ObjectData) => string;
  switch (algorithms.objectName) {
    case 'sha256':
      contentName = (data) => {
        const h = createHash('sha256');
        for (const piece of piecesOf(data)) h.update(piece);
        return h.digest('hex');
      };
      break;
    case 'blake3':
      contentName = (data) => {
        const h = new Blake3Hasher();
        for (const piece of piecesOf(data)) h.update(piece);
        return h.digest('hex');
      };
      break;
    default:
      throw new Error(`unknown object name algorithm ${JSON.stringify(algorithms.objectName)}`);
  }
  return { algorithms, chunkId, contentName };
}

const ZEROS = Buffer.alloc(1 << 20);

/** True when every byte is zero (compared a MiB at a time against a zero buffer: memcmp speed). */
export function isAllZero(data: Uint8Array): boolean {
  const buf = Buffer.from(data.buffer, data.byteOffset, data.byteLength);
  for (let off = 0; off < buf.length; off += ZEROS.length) {
    const end = Math.min(buf.length, off + ZEROS.length);
    if (buf.compare(ZEROS, 0, end - off, off, end) !== 0) return false;
  }
  return true;
}

export const ZERO_CHUNK = 'zero';
