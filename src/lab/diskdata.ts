import { createCipheriv, createHash } from 'node:crypto';
import { open } from 'node:fs/promises';

/**
 * Deterministic lab disk content: the AES-256-CTR keystream (IV zero) under the key
 * sha256(`snapkeeper-lab:${vmName}:${diskIndex}`), i.e. the encryption of zeros. The same spec always yields
 * the same bytes, every disk differs from every other, and any range can be recomputed without reading the
 * file, so tests can check restored data byte for byte. `diskIndex` is the index in the VM's `disks` array.
 */

/** Bytes written per write call when filling a disk. */
export const LAB_DISK_CHUNK_BYTES = 4 * 1024 * 1024;

const BLOCK = 16;
let zeros: Buffer | undefined;

function labDiskKey(vmName: string, diskIndex: number): Buffer {
  return createHash('sha256').update(`snapkeeper-lab:${vmName}:${diskIndex}`).digest();
}

/** A CTR cipher whose counter starts at the 16-byte block `block` (big-endian 128-bit counter). */
function cipherAtBlock(key: Buffer, block: bigint) {
  const iv = Buffer.alloc(BLOCK);
  let b = block;
  for (let i = BLOCK - 1; i >= 0 && b > 0n; i--) {
    iv[i] = Number(b & 0xffn);
    b >>= 8n;
  }
  return createCipheriv('aes-256-ctr', key, iv);
}

/** The expected bytes of a lab disk at [offset, offset + length). */
export function labDiskChunk(vmName: string, diskIndex: number, offset: number, length: number): Buffer {
  if (!Number.isSafeInteger(offset) || offset < 0 || !Number.isSafeInteger(length) || length < 0) {
    throw new RangeError(`invalid range offset=${offset} length=${length}`);
  }
  const skip = offset % BLOCK;
  const cipher = cipherAtBlock(labDiskKey(vmName, diskIndex), BigInt(Math.floor(offset / BLOCK)));
  const out = cipher.update(Buffer.alloc(skip + length));
  return out.subarray(skip);
}

/**
 * Writes the deterministic content of a lab disk into `path` (created or overwritten) up to `sizeBytes`,
 * streaming in 4 MiB chunks so memory stays flat for large disks.
 */
export async function fillLabDisk(
  path: string,
  vmName: string,
  diskIndex: number,
  sizeBytes: number,
): Promise<void> {
  if (!Number.isSafeInteger(sizeBytes) || sizeBytes < 0)
    throw new RangeError(`invalid disk size ${sizeBytes}`);
  const cipher = cipherAtBlock(labDiskKey(vmName, diskIndex), 0n);
  // One shared, never written buffer: a lab with thousands of disks would otherwise zero 4 MiB per disk.
  zeros ??= Buffer.alloc(LAB_DISK_CHUNK_BYTES);
  const file = await open(path, 'w');
  try {
    let written = 0;
    while (written < sizeBytes) {
      const n = Math.min(LAB_DISK_CHUNK_BYTES, sizeBytes - written);
      const chunk = cipher.update(n === zeros.length ? zeros : zeros.subarray(0, n));
      await file.write(chunk, 0, chunk.length, written);
      written += n;
    }
    await file.truncate(sizeBytes);
  } finally {
    await file.close();
  }
}
