/**
 * One step of the offload benchmark in its own process (so that `/usr/bin/time` gives its peak RSS, as for
 * restic and borg): an offload of the disk in one array snapshot into a repository, a restore out of it, or
 * moto's own cost (raw PutObject / GetObject of the same bytes). Prints one JSON line. Driven by run.ts.
 */
import { randomBytes } from 'node:crypto';
import { open } from 'node:fs/promises';
import { openFsArray } from '../../src/arrays/fs/index.js';
import { SyncingFile } from '../../src/engine/export-files.js';
import {
  initRepository,
  LocalBackend,
  openRepository,
  type Repository,
  type RepositoryBackend,
  S3Backend,
  type StoredFile,
} from '../../src/repository/index.js';

export type BackendSpec = { type: 'local'; path: string } | { type: 's3'; endpoint: string; bucket: string };

export type StepSpec =
  | {
      op: 'offload';
      backend: BackendSpec;
      passphrase: string;
      init: boolean;
      array: string;
      volume: string;
      file: string;
      snapshot: string;
      backupId: string;
      /** The last offloaded backup of this disk and its snapshot: changed ranges and previous chunks. */
      previous?: { backupId: string; snapshot: string };
    }
  | {
      op: 'restore';
      backend: BackendSpec;
      passphrase: string;
      backupId: string;
      out: string;
      /** Bytes between background syncs of the restored file (SYNC_EVERY_BYTES when absent). */
      syncEvery?: number;
    }
  /** moto's own cost: `objects` PutObjects of `objectBytes` each (the repository's pack size), 4 in flight. */
  | { op: 'raw-put' | 'raw-get'; endpoint: string; bucket: string; objects: number; objectBytes: number };

export interface StepResult {
  seconds: number;
  bytesRead?: number;
  bytesAdded?: number;
  changedBytes?: number;
  /** Restore: the final sync's share of `seconds` (the product's restore syncs; restic's and borg's do not). */
  syncSeconds?: number;
}

// The S3 SDK and the lab's moto helpers are loaded only by the steps that use S3 (a process loading them pays
// about 0.3 s, which a local step must not: the repository itself loads the SDK on first use).
async function moto() {
  return import('../../src/lab/moto.js');
}

async function backendOf(spec: BackendSpec): Promise<RepositoryBackend> {
  if (spec.type === 'local') return new LocalBackend({ path: spec.path });
  const { MOTO_ACCESS_KEY, MOTO_SECRET_KEY } = await moto();
  return new S3Backend({
    endpoint: spec.endpoint,
    bucket: spec.bucket,
    pathStyle: true,
    credentials: { accessKeyId: MOTO_ACCESS_KEY, secretAccessKey: MOTO_SECRET_KEY },
  });
}

async function storedFile(repo: Repository, backupId: string): Promise<StoredFile> {
  const m = await repo.loadManifest(backupId);
  const file = m.body.vms[0]?.files[0];
  if (!file) throw new Error(`backup ${backupId} holds no file`);
  return file;
}

async function offload(spec: Extract<StepSpec, { op: 'offload' }>): Promise<StepResult> {
  const backend = await backendOf(spec.backend);
  const t0 = process.hrtime.bigint();
  const repo = spec.init
    ? await initRepository(backend, spec.passphrase)
    : await openRepository(backend, spec.passphrase);
  const array = await openFsArray({ name: 'bench', path: spec.array, driver: 'btrfs' });
  const { size } = await array.statFile(spec.snapshot, spec.volume, spec.file);
  let previous: StoredFile | undefined;
  let changedRanges: { offset: number; length: number }[] | undefined;
  if (spec.previous) {
    previous = await storedFile(repo, spec.previous.backupId);
    changedRanges = await array.changedRanges?.(
      spec.previous.snapshot,
      spec.snapshot,
      spec.volume,
      spec.file,
    );
  }
  let bytesAdded = 0;
  let bytesRead = 0;
  const writer = await repo.writer({
    onProgress: (p) => {
      bytesAdded = p.bytesAdded;
      bytesRead = p.bytesRead;
    },
  });
  const file = await writer.addFile({
    path: spec.file,
    size,
    read: (offset, length, signal) =>
      array.readFile(spec.snapshot, spec.volume, spec.file, {
        offset,
        length,
        ...(signal ? { signal } : {}),
      }),
    ...(previous && changedRanges ? { previous, changedRanges } : {}),
  });
  await writer.commit({
    backupId: spec.backupId,
    catalogId: '0123456789ab',
    task: 'bench',
    startedAt: new Date().toISOString(),
    record: {},
    vms: [{ vmId: 'vm-1', name: 'bench', files: [file] }],
  });
  await repo.close();
  const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
  if (backend instanceof S3Backend) backend.destroy();
  return {
    seconds,
    bytesRead,
    bytesAdded,
    ...(changedRanges ? { changedBytes: changedRanges.reduce((n, r) => n + r.length, 0) } : {}),
  };
}

async function restore(spec: Extract<StepSpec, { op: 'restore' }>): Promise<StepResult> {
  const backend = await backendOf(spec.backend);
  const t0 = process.hrtime.bigint();
  const repo = await openRepository(backend, spec.passphrase);
  const file = await storedFile(repo, spec.backupId);
  // The product's sink (hostExportFiles.createNewFile's), on a file the benchmark may overwrite.
  const out = new SyncingFile(await open(spec.out, 'w'), spec.syncEvery);
  try {
    await repo.restoreFile(file, out);
  } catch (err) {
    await out.abandon();
    throw err;
  }
  const t1 = process.hrtime.bigint();
  await out.finish(file.size);
  await repo.close();
  if (backend instanceof S3Backend) backend.destroy();
  const t2 = process.hrtime.bigint();
  return { seconds: Number(t2 - t0) / 1e9, syncSeconds: Number(t2 - t1) / 1e9 };
}

async function raw(spec: Extract<StepSpec, { op: 'raw-put' | 'raw-get' }>): Promise<StepResult> {
  const { motoClient } = await moto();
  const { GetObjectCommand, PutObjectCommand } = await import('@aws-sdk/client-s3');
  const client = motoClient(spec.endpoint);
  // Incompressible bytes, as packs are (encrypted).
  const data = randomBytes(spec.objectBytes);
  const t0 = process.hrtime.bigint();
  let next = 0;
  await Promise.all(
    Array.from({ length: 4 }, async () => {
      while (next < spec.objects) {
        const i = next++;
        const Key = `raw/${String(i).padStart(6, '0')}`;
        if (spec.op === 'raw-put') {
          await client.send(new PutObjectCommand({ Bucket: spec.bucket, Key, Body: data, IfNoneMatch: '*' }));
        } else {
          const r = await client.send(new GetObjectCommand({ Bucket: spec.bucket, Key }));
          await r.Body?.transformToByteArray();
        }
      }
    }),
  );
  const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
  client.destroy();
  return { seconds };
}

async function main(): Promise<void> {
  const spec = JSON.parse(process.argv[2] ?? '{}') as StepSpec;
  let result: StepResult;
  if (spec.op === 'offload') result = await offload(spec);
  else if (spec.op === 'restore') result = await restore(spec);
  else result = await raw(spec);
  process.stdout.write(`${JSON.stringify(result)}\n`);
}

await main();
