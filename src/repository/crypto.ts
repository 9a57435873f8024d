import { createCipheriv, createDecipheriv, createHash, createHmac, randomBytes } from 'node:crypto';

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

/** A chunk's id: HMAC-SHA256 under the repository's chunk-id key, hex. Never a plain hash of the plaintext. */
export function chunkId(macKey: Buffer, plaintext: Uint8Array): string {
  return createHmac('sha256', macKey).update(plaintext).digest('hex');
}

/** Object names of packs, indexes and manifests: SHA-256 of the stored bytes (one buffer or pieces), hex. */
export function contentName(data: Uint8Array | readonly Uint8Array[]): string {
  const h = createHash('sha256');
  for (const piece of data instanceof Uint8Array ? [data] : data) h.update(piece);
  return h.digest('hex');
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
