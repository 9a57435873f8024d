import { randomBytes, scrypt as scryptCb } from 'node:crypto';
import { hostname } from 'node:os';
import { promisify } from 'node:util';
import { compress, decompress } from 'zstd-napi';
import { ConflictError, NotFoundError, UsageError } from '../errors.js';
import {
  AAD,
  type ChunkIdAlgorithm,
  FLAG_RAW,
  FLAG_ZSTD,
  type HashAlgorithms,
  type Hashes,
  knownSha256,
  type ObjectNameAlgorithm,
  open,
  seal,
} from './crypto.js';
import { RepositoryError } from './errors.js';
import type { RepositoryBackend } from './types.js';

/**
 * The repository's objects other than chunks: the config object, key files, and the sealed JSON documents
 * (indexes, manifests, pack headers). docs/repository-format.md is the reference; keep the two in step.
 */

export const FORMAT_NAME = 'snapkeeper-repository';
/** The version `init` writes. */
export const FORMAT_VERSION = 2;
/** The versions this code reads and writes. */
export const FORMAT_VERSIONS = [1, 2] as const;
export type FormatVersion = (typeof FORMAT_VERSIONS)[number];

/**
 * The hash functions of each version: version 1 (HMAC-SHA256 ids, SHA-256 names) is kept as it was for
 * repositories made before version 2 (keyed BLAKE3 ids, BLAKE3 names; docs/repository-format.md).
 */
const ALGORITHMS: Record<FormatVersion, HashAlgorithms> = {
  1: { chunkId: 'hmac-sha256', objectName: 'sha256' },
  2: { chunkId: 'blake3-keyed', objectName: 'blake3' },
};

/** Chunk sizes a repository may be created with (powers of two, 64 KiB..4 MiB). */
export const CHUNK_SIZES = [1 << 16, 1 << 18, 1 << 20, 1 << 22] as const;
/** Chosen by measurement on the reference image (docs/repository-format.md, "Choice of chunk size"). */
export const DEFAULT_CHUNK_SIZE = 1 << 16;
export const DEFAULT_PACK_SIZE = 16 << 20;
export const DEFAULT_ZSTD_LEVEL = 2;

export interface KdfParams {
  name: 'scrypt';
  /** Cost (power of two, 2^15..2^17 for new keys). */
  N: number;
  r: number;
  p: number;
}
export const DEFAULT_KDF: KdfParams = { name: 'scrypt', N: 1 << 16, r: 8, p: 1 };
/** What a key file may name; below or above is refused as not ours (or not safe). */
const KDF_N_MIN = 1 << 14;
const KDF_N_MAX = 1 << 20;

export interface RepositoryConfig {
  format: typeof FORMAT_NAME;
  version: FormatVersion;
  id: string;
  created: string;
  chunker: { kind: 'fixed'; size: number };
  compression: { kind: 'zstd'; level: number };
  encryption: 'aes-256-gcm';
  chunkId: ChunkIdAlgorithm;
  /** Version 2 on; version 1 has none and names objects by SHA-256. */
  objectName?: ObjectNameAlgorithm;
  packSize: number;
  /** Parameters for new key files (each key file carries its own). */
  kdf: KdfParams;
}

export interface MasterKeys {
  encKey: Buffer;
  macKey: Buffer;
}

export const CONFIG_KEY = 'config';

export function newConfig(options: {
  chunkSize?: number;
  packSize?: number;
  zstdLevel?: number;
  kdf?: Partial<KdfParams>;
  formatVersion?: number;
}): RepositoryConfig {
  const version = options.formatVersion ?? FORMAT_VERSION;
  if (!(FORMAT_VERSIONS as readonly number[]).includes(version)) {
    throw new UsageError(
      'REPOSITORY_OPTIONS',
      `format version ${version} is not one of ${FORMAT_VERSIONS.join(', ')}`,
    );
  }
  const algorithms = ALGORITHMS[version as FormatVersion];
  const size = options.chunkSize ?? DEFAULT_CHUNK_SIZE;
  if (!(CHUNK_SIZES as readonly number[]).includes(size)) {
    throw new UsageError('REPOSITORY_OPTIONS', `chunk size ${size} is not one of ${CHUNK_SIZES.join(', ')}`);
  }
  const kdf = { ...DEFAULT_KDF, ...options.kdf, name: 'scrypt' as const };
  checkKdf(kdf, 'new key', true);
  const level = options.zstdLevel ?? DEFAULT_ZSTD_LEVEL;
  if (!Number.isInteger(level) || level < 1 || level > 19) {
    throw new UsageError('REPOSITORY_OPTIONS', `zstd level ${level} is not an integer 1..19`);
  }
  const packSize = options.packSize ?? DEFAULT_PACK_SIZE;
  if (!Number.isInteger(packSize) || packSize < 1 << 20 || packSize > 1 << 30) {
    throw new UsageError('REPOSITORY_OPTIONS', `pack size ${packSize} is not between 1 MiB and 1 GiB`);
  }
  return {
    format: FORMAT_NAME,
    version: version as FormatVersion,
    id: randomBytes(16).toString('hex'),
    created: new Date().toISOString(),
    chunker: { kind: 'fixed', size },
    compression: { kind: 'zstd', level },
    encryption: 'aes-256-gcm',
    chunkId: algorithms.chunkId,
    // Written from version 2 on only: a version-1 config stays byte for byte what it always was.
    ...(version === 1 ? {} : { objectName: algorithms.objectName }),
    packSize,
    kdf,
  };
}

/** The hash functions a repository's config names (version 1 names no object-name hash: SHA-256). */
export function hashAlgorithmsOf(config: RepositoryConfig): HashAlgorithms {
  return { chunkId: config.chunkId, objectName: config.objectName ?? 'sha256' };
}

function checkKdf(kdf: KdfParams, where: string, strict: boolean): void {
  const lo = strict ? 1 << 15 : KDF_N_MIN;
  const hi = strict ? 1 << 17 : KDF_N_MAX;
  const pow2 = Number.isInteger(kdf.N) && kdf.N > 0 && (kdf.N & (kdf.N - 1)) === 0;
  if (!pow2 || kdf.N < lo || kdf.N > hi || !Number.isInteger(kdf.r) || kdf.r < 1 || kdf.r > 32) {
    throw new (strict ? UsageError : RepositoryError)(
      strict ? 'REPOSITORY_OPTIONS' : 'KEY_CORRUPT',
      `${where}: scrypt N=${kdf.N} r=${kdf.r} p=${kdf.p} is outside N=2^${Math.log2(lo)}..2^${Math.log2(hi)}, r 1..32`,
    );
  }
  if (!Number.isInteger(kdf.p) || kdf.p < 1 || kdf.p > 16) {
    throw new (strict ? UsageError : RepositoryError)(
      strict ? 'REPOSITORY_OPTIONS' : 'KEY_CORRUPT',
      `${where}: scrypt p=${kdf.p} is outside 1..16`,
    );
  }
}

/**
 * Reads and checks the config object. Anything but our format and version is refused with
 * `REPOSITORY_FORMAT` naming what was found, before any key is tried.
 */
export async function readConfig(
  backend: RepositoryBackend,
  signal?: AbortSignal,
): Promise<RepositoryConfig> {
  let raw: Buffer;
  try {
    raw = await backend.load(CONFIG_KEY, { signal });
  } catch (err) {
    if (err instanceof NotFoundError) {
      throw new RepositoryError(
        'REPOSITORY_NOT_FOUND',
        `${backend.description}: no repository here (no config object; run repo init)`,
        { cause: err },
      );
    }
    throw err;
  }
  let doc: unknown;
  try {
    doc = JSON.parse(raw.toString('utf8'));
  } catch {
    throw new RepositoryError(
      'REPOSITORY_FORMAT',
      `${backend.description}: the config object is not JSON (${raw.length} bytes): not a ${FORMAT_NAME}`,
    );
  }
  const c = (typeof doc === 'object' && doc !== null ? doc : {}) as Record<string, unknown>;
  if (c.format !== FORMAT_NAME || !(FORMAT_VERSIONS as readonly unknown[]).includes(c.version)) {
    throw new RepositoryError(
      'REPOSITORY_FORMAT',
      `${backend.description}: found format ${JSON.stringify(c.format)} version ${JSON.stringify(c.version)}; ` +
        `this snapkeeper reads only ${FORMAT_NAME} versions ${FORMAT_VERSIONS.join(' and ')}`,
      { details: { format: c.format, version: c.version } },
    );
  }
  const version = c.version as FormatVersion;
  const chunker = c.chunker as RepositoryConfig['chunker'] | undefined;
  const compression = c.compression as RepositoryConfig['compression'] | undefined;
  const bad = (what: string) =>
    new RepositoryError('REPOSITORY_FORMAT', `${backend.description}: config: ${what} is not valid`);
  if (typeof c.id !== 'string' || !/^[0-9a-f]{32}$/.test(c.id)) throw bad('id');
  if (chunker?.kind !== 'fixed' || !(CHUNK_SIZES as readonly number[]).includes(chunker.size)) {
    throw bad(`chunker ${JSON.stringify(chunker)}`);
  }
  if (compression?.kind !== 'zstd' || !Number.isInteger(compression.level)) {
    throw bad(`compression ${JSON.stringify(compression)}`);
  }
  if (c.encryption !== 'aes-256-gcm') throw bad(`encryption ${JSON.stringify(c.encryption)}`);
  // Each version has exactly one pair of hash functions: anything else is a repository this code would
  // misread (every id and name would fail its check), refused before any key is tried.
  const expected = ALGORITHMS[version];
  const objectName = version === 1 ? (c.objectName ?? 'sha256') : c.objectName;
  if (c.chunkId !== expected.chunkId || objectName !== expected.objectName) {
    throw new RepositoryError(
      'REPOSITORY_FORMAT',
      `${backend.description}: config: version ${version} with chunk id algorithm ${JSON.stringify(c.chunkId)} ` +
        `and object name algorithm ${JSON.stringify(objectName)}; this snapkeeper knows version ${version} only ` +
        `with ${JSON.stringify(expected.chunkId)} and ${JSON.stringify(expected.objectName)}`,
      { details: { version, chunkId: c.chunkId, objectName } },
    );
  }
  if (typeof c.packSize !== 'number' || !Number.isInteger(c.packSize) || c.packSize <= 0)
    throw bad('packSize');
  return c as unknown as RepositoryConfig;
}

export async function writeConfig(backend: RepositoryBackend, config: RepositoryConfig): Promise<void> {
  try {
    await backend.save(CONFIG_KEY, Buffer.from(`${JSON.stringify(config, null, 2)}\n`));
  } catch (err) {
    if (err instanceof ConflictError) {
      throw new RepositoryError('REPOSITORY_EXISTS', `${backend.description}: a repository exists here`, {
        cause: err,
      });
    }
    throw err;
  }
}

// ---------------------------------------------------------------------------------------------------------
// Key files

interface KeyFile {
  version: 1;
  created: string;
  host: string;
  kdf: KdfParams & { salt: string };
  /** Sealed JSON {encKey, macKey} (base64), AAD `snapkeeper/key/<repository id>`. */
  data: string;
}

const scrypt = promisify(scryptCb) as (
  password: string,
  salt: Buffer,
  keylen: number,
  options: { N: number; r: number; p: number; maxmem: number },
) => Promise<Buffer>;

async function deriveKey(passphrase: string, kdf: KdfParams, salt: Buffer): Promise<Buffer> {
  // maxmem above 128 * N * r, the memory scrypt needs, or node refuses.
  return scrypt(passphrase, salt, 32, {
    N: kdf.N,
    r: kdf.r,
    p: kdf.p,
    maxmem: 256 * kdf.N * kdf.r + (32 << 20),
  });
}

export function newMasterKeys(): MasterKeys {
  return { encKey: randomBytes(32), macKey: randomBytes(32) };
}

/** Writes a new key file wrapping `keys` under `passphrase`; returns its object key. */
export async function writeKeyFile(
  backend: RepositoryBackend,
  config: RepositoryConfig,
  keys: MasterKeys,
  passphrase: string,
): Promise<string> {
  checkPassphrase(passphrase);
  const salt = randomBytes(32);
  const wrapKey = await deriveKey(passphrase, config.kdf, salt);
  const plain = Buffer.from(
    JSON.stringify({ encKey: keys.encKey.toString('base64'), macKey: keys.macKey.toString('base64') }),
  );
  const file: KeyFile = {
    version: 1,
    created: new Date().toISOString(),
    host: hostname(),
    kdf: { ...config.kdf, salt: salt.toString('base64') },
    data: seal(wrapKey, [plain], AAD.key(config.id)).toString('base64'),
  };
  const name = `keys/${randomBytes(16).toString('hex')}`;
  await backend.save(name, Buffer.from(`${JSON.stringify(file, null, 2)}\n`));
  return name;
}

export function checkPassphrase(passphrase: string): void {
  if (typeof passphrase !== 'string' || passphrase.length === 0) {
    throw new UsageError('REPOSITORY_PASSPHRASE_EMPTY', 'the repository passphrase is empty');
  }
}

/**
 * Tries every key file with the passphrase; the first that opens gives the master keys. None:
 * `REPOSITORY_PASSPHRASE` (the message never holds the passphrase).
 */
export async function unlock(
  backend: RepositoryBackend,
  config: RepositoryConfig,
  passphrase: string,
  signal?: AbortSignal,
): Promise<{ keys: MasterKeys; keyName: string }> {
  checkPassphrase(passphrase);
  const names: string[] = [];
  for await (const o of backend.list('keys/', { signal })) names.push(o.key);
  if (names.length === 0) {
    throw new RepositoryError('KEY_CORRUPT', `${backend.description}: the repository has no key file`);
  }
  names.sort();
  const problems: string[] = [];
  for (const name of names) {
    let file: KeyFile;
    try {
      file = JSON.parse((await backend.load(name, { signal })).toString('utf8')) as KeyFile;
    } catch (err) {
      if (err instanceof NotFoundError) continue; // removed by a passwd meanwhile
      problems.push(`${name} does not parse`);
      continue;
    }
    if (file?.version !== 1 || file.kdf?.name !== 'scrypt' || typeof file.kdf.salt !== 'string') {
      problems.push(`${name} is not a version 1 scrypt key file`);
      continue;
    }
    try {
      checkKdf(file.kdf, name, false);
    } catch (err) {
      problems.push((err as Error).message);
      continue;
    }
    const wrapKey = await deriveKey(passphrase, file.kdf, Buffer.from(file.kdf.salt, 'base64'));
    const plain = open(wrapKey, Buffer.from(file.data ?? '', 'base64'), AAD.key(config.id));
    if (plain === undefined) continue;
    const k = JSON.parse(plain.toString('utf8')) as { encKey: string; macKey: string };
    const keys = { encKey: Buffer.from(k.encKey, 'base64'), macKey: Buffer.from(k.macKey, 'base64') };
    if (keys.encKey.length !== 32 || keys.macKey.length !== 32) {
      throw new RepositoryError(
        'KEY_CORRUPT',
        `${backend.description}: ${name} holds keys of the wrong size`,
      );
    }
    return { keys, keyName: name };
  }
  throw new RepositoryError(
    'REPOSITORY_PASSPHRASE',
    `${backend.description}: wrong passphrase (no key file of ${names.length} opens with it` +
      `${problems.length > 0 ? `; ${problems.join('; ')}` : ''})`,
  );
}

// ---------------------------------------------------------------------------------------------------------
// Sealed documents: flag byte + (zstd) JSON, sealed under the encryption key.

export function sealDocument(encKey: Buffer, doc: unknown, aad: Buffer, level = DEFAULT_ZSTD_LEVEL): Buffer {
  const json = Buffer.from(JSON.stringify(doc));
  const z = compress(json, { compressionLevel: level });
  return z.length < json.length
    ? seal(encKey, [Buffer.from([FLAG_ZSTD]), z], aad)
    : seal(encKey, [Buffer.from([FLAG_RAW]), json], aad);
}

/** The document, or undefined when it does not authenticate or parse. */
export function openDocument(encKey: Buffer, sealed: Uint8Array, aad: Buffer): unknown {
  const plain = open(encKey, sealed, aad);
  if (plain === undefined || plain.length === 0) return undefined;
  try {
    const body = plain[0] === FLAG_ZSTD ? decompress(plain.subarray(1)) : plain.subarray(1);
    if (plain[0] !== FLAG_ZSTD && plain[0] !== FLAG_RAW) return undefined;
    return JSON.parse(body.toString('utf8'));
  } catch {
    return undefined;
  }
}

/** Saves a sealed document under `<prefix><content name>`; returns the id (the name). */
export async function saveContentNamed(
  backend: RepositoryBackend,
  hashes: Hashes,
  prefix: string,
  data: Buffer,
  signal?: AbortSignal,
): Promise<string> {
  const id = hashes.contentName(data);
  try {
    await backend.save(`${prefix}${id}`, data, { signal, ...knownSha256(hashes, id) });
  } catch (err) {
    // Same content, same name: someone stored exactly these bytes already.
    if (!(err instanceof ConflictError)) throw err;
  }
  return id;
}
