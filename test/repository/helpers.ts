import { createHash, randomBytes } from 'node:crypto';
import { mkdir, open, readdir, readFile, rename, rm, stat, unlink, writeFile } from 'node:fs/promises';
import { dirname, join, relative } from 'node:path';
import { Readable } from 'node:stream';
import { ConflictError, NotFoundError } from '../../src/errors.js';
import type {
  BackendCapabilities,
  BackendObject,
  FileSource,
  RepositoryBackend,
  StoredFile,
} from '../../src/repository/index.js';

/** Cheapest scrypt the format allows for new keys: tests open many repositories. */
export const FAST = { kdf: { N: 1 << 15 }, workers: 2 } as const;
export const PASS = 'correct horse battery staple';

/** Deterministic pseudo-random bytes (sha256 in counter mode): the same seed gives the same data. */
export function pseudoRandom(size: number, seed: string): Buffer {
  const out = Buffer.alloc(size);
  let off = 0;
  for (let i = 0; off < size; i++) {
    const block = createHash('sha256').update(`${seed}/${i}`).digest();
    off += block.copy(out, off);
  }
  return out;
}

/** A FileSource over a buffer that counts the bytes it was asked to read. */
export function bufferSource(
  path: string,
  data: Buffer,
  extra: Partial<Pick<FileSource, 'previous' | 'changedRanges'>> = {},
): FileSource & { bytesRead: number } {
  const src = {
    path,
    size: data.length,
    bytesRead: 0,
    ...extra,
    async read(offset: number, length: number) {
      src.bytesRead += length;
      const slice = data.subarray(offset, offset + length);
      // Pieces of an odd size, as a file stream may give: chunk boundaries never line up with them.
      const pieces: Buffer[] = [];
      for (let o = 0; o < slice.length; o += 100_003) pieces.push(slice.subarray(o, o + 100_003));
      return Readable.from(pieces);
    },
  };
  return src;
}

/**
 * A FileSource over a buffer whose streams read at positions (as the fs array's do, writer.ts
 * `PositionalSource`): counts the streams opened and the bytes read through them.
 */
export function positionalSource(
  path: string,
  data: Buffer,
  extra: Partial<Pick<FileSource, 'previous' | 'changedRanges'>> = {},
): FileSource & { opens: number; bytesRead: number } {
  const src = {
    path,
    size: data.length,
    opens: 0,
    bytesRead: 0,
    ...extra,
    async read(offset: number, length: number) {
      src.opens++;
      const stream = Readable.from([]);
      const readAt = async (target: Uint8Array, position: number) => {
        if (position < offset || position > offset + length)
          throw new Error(`read at ${position} is outside the range`);
        const n = data.copy(target, 0, position, Math.min(offset + length, position + target.length));
        src.bytesRead += n;
        return n;
      };
      return Object.assign(stream, { readAt });
    },
  };
  return src;
}

/** A sink into a buffer of the file's size (zero chunks are left as the zeros it starts with). */
export function bufferSink(size: number): {
  data: Buffer;
  writes: number;
  write(o: number, d: Buffer): Promise<void>;
} {
  const sink = {
    data: Buffer.alloc(size),
    writes: 0,
    async write(offset: number, d: Buffer) {
      if (offset + d.length > size) throw new Error(`write past the end: ${offset}+${d.length} > ${size}`);
      d.copy(sink.data, offset);
      sink.writes++;
    },
  };
  return sink;
}

export function fileEntry(files: StoredFile[], backupId = 'b1') {
  return {
    backupId,
    catalogId: 'c0ffee000001',
    task: 'nightly',
    startedAt: new Date().toISOString(),
    record: { id: backupId },
    vms: [{ vmId: 'vm-1', name: 'web01', files }],
  };
}

/**
 * A minimal directory backend for the tests that need a repository shared between processes (the local
 * backend proper is src/repository/backends/local.ts). Write-once through link(2), which fails on an
 * existing name.
 */
export class TestDirBackend implements RepositoryBackend {
  readonly description: string;
  readonly capabilities: BackendCapabilities = { conditionalWrite: true, objectLock: false };
  constructor(readonly root: string) {
    this.description = `test-dir ${root}`;
  }

  async save(key: string, data: Uint8Array): Promise<void> {
    const path = join(this.root, key);
    await mkdir(dirname(path), { recursive: true });
    const tmp = join(this.root, `.tmp-${randomBytes(8).toString('hex')}`);
    const fh = await open(tmp, 'wx');
    try {
      await fh.writeFile(data);
      await fh.sync();
    } finally {
      await fh.close();
    }
    try {
      const { link } = await import('node:fs/promises');
      await link(tmp, path);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'EEXIST') {
        throw new ConflictError('OBJECT_EXISTS', `${key} exists`);
      }
      throw err;
    } finally {
      await unlink(tmp);
    }
  }

  async load(key: string, options: { offset?: number; length?: number } = {}): Promise<Buffer> {
    let buf: Buffer;
    try {
      buf = await readFile(join(this.root, key));
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') throw new NotFoundError('OBJECT_NOT_FOUND', key);
      throw err;
    }
    const offset = options.offset ?? 0;
    return buf.subarray(offset, options.length === undefined ? undefined : offset + options.length);
  }

  async stat(key: string): Promise<BackendObject | undefined> {
    try {
      return { key, size: (await stat(join(this.root, key))).size };
    } catch {
      return undefined;
    }
  }

  async *list(prefix: string): AsyncIterable<BackendObject> {
    const walk = async (dir: string): Promise<BackendObject[]> => {
      let entries: import('node:fs').Dirent[];
      try {
        entries = await readdir(dir, { withFileTypes: true });
      } catch {
        return [];
      }
      const out: BackendObject[] = [];
      for (const e of entries) {
        const p = join(dir, e.name);
        if (e.isDirectory()) out.push(...(await walk(p)));
        else if (!e.name.startsWith('.tmp-'))
          out.push({ key: relative(this.root, p), size: (await stat(p)).size });
      }
      return out;
    };
    for (const o of await walk(this.root)) if (o.key.startsWith(prefix)) yield o;
  }

  async remove(key: string): Promise<void> {
    await rm(join(this.root, key), { force: true });
  }
}

export async function writeBytes(path: string, data: Buffer): Promise<void> {
  await mkdir(dirname(path), { recursive: true });
  await writeFile(path, data);
}

export { rename };
