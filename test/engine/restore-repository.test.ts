import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { buffer } from 'node:stream/consumers';
import { afterEach, describe, it } from 'node:test';
import { Catalog } from '../../src/catalog/index.js';
import { parseConfig } from '../../src/config/load.js';
import { EngineContext } from '../../src/engine/context.js';
import { recover } from '../../src/engine/recover.js';
import type { RepositoryFactory } from '../../src/engine/repository-access.js';
import { runRestore } from '../../src/engine/restore.js';
import type { RestoreRequest } from '../../src/engine/restore-plan.js';
import { deleteBackup } from '../../src/engine/retention.js';
import { manifestPath } from '../../src/engine/steps/offload-files.js';
import { NotFoundError, SnapkeeperError } from '../../src/errors.js';
import type { BackupRecord } from '../../src/model/backup.js';
import {
  initRepository,
  type Manifest,
  MemoryBackend,
  openRepository,
  type Repository,
  type RepositoryBackend,
  type StoredFile,
} from '../../src/repository/index.js';
import { datastorePathToRelative } from '../../src/rules/datastores.js';
import {
  ARRAY,
  backUpWeb01,
  diskBytes,
  type EngineLab,
  engineLabPerTest,
  LATER,
  memoryExportFiles,
  web01Spec,
  world,
} from './harness.js';

/**
 * Restore from a repository on the fakes: the engine's second restore source. The repository here is a small
 * in-memory one built to the contract of src/repository/types.ts (chunks named by their hash and verified
 * before a byte is written; CHUNK_CORRUPT / CHUNK_MISSING naming the chunk and its pack), filled from the
 * backup's array snapshot as an offload would. The real repository, with packs on disk, is covered by
 * test/integration/restore-repository.test.ts on the lab.
 */

const SPEC = web01Spec({
  name: 'app01',
  host: 'esx01',
  power: 'poweredOff',
  disks: [{ datastore: 'ds-a', sizeMB: 8 }],
});
const startLab = engineLabPerTest();
const CHUNK = 1024;

class MemoryRepository implements Repository {
  readonly id = 'memory-repository';
  readonly chunks = new Map<string, Buffer>();
  readonly manifests: Manifest[] = [];
  closed = 0;
  get backend(): never {
    throw new Error('not used by restore');
  }

  async store(path: string, data: Buffer): Promise<StoredFile> {
    const ids: string[] = [];
    for (let off = 0; off < data.length; off += CHUNK) {
      const chunk = data.subarray(off, off + CHUNK);
      if (chunk.every((b) => b === 0)) {
        ids.push('zero');
        continue;
      }
      const id = createHash('sha256').update(chunk).digest('hex');
      this.chunks.set(id, Buffer.from(chunk));
      ids.push(id);
    }
    return { path, size: data.length, chunks: ids, chunkSize: CHUNK };
  }

  async loadManifest(idOrBackupId: string): Promise<Manifest> {
    const m = this.manifests.find((x) => x.id === idOrBackupId || x.backupId === idOrBackupId);
    if (!m) throw new NotFoundError('REPOSITORY_BACKUP_NOT_FOUND', `no manifest ${idOrBackupId}`);
    return m;
  }

  async restoreFile(
    file: StoredFile,
    sink: { write(offset: number, data: Buffer): Promise<void> },
    options: { onProgress?: (done: number, total: number) => void } = {},
  ): Promise<void> {
    for (const [i, id] of file.chunks.entries()) {
      if (id === 'zero') continue;
      const data = this.chunks.get(id);
      if (!data)
        throw new SnapkeeperError('CHUNK_MISSING', `chunk ${id} (pack p-${id.slice(0, 4)}) is missing`);
      if (createHash('sha256').update(data).digest('hex') !== id) {
        throw new SnapkeeperError('CHUNK_CORRUPT', `chunk ${id} in pack p-${id.slice(0, 4)} is corrupt`);
      }
      await sink.write(i * file.chunkSize, data);
      options.onProgress?.((i + 1) * file.chunkSize, file.size);
    }
  }

  async close(): Promise<void> {
    this.closed++;
  }

  writer(): never {
    throw new Error('not used by restore');
  }
  async listManifests(): Promise<never[]> {
    return [];
  }
  async forget(): Promise<void> {}
  check(): never {
    throw new Error('not used by restore');
  }
  prune(): never {
    throw new Error('not used by restore');
  }
  changePassphrase(): never {
    throw new Error('not used by restore');
  }
}

/** What an offload stores: every VM's .vmx and its included disks' descriptors and extents. */
async function offload(l: EngineLab, backupId: string, repo: MemoryRepository): Promise<void> {
  const backup = await l.ctx.catalog.getBackup(backupId);
  const snap = backup.snapshots[0]!;
  const read = async (datastorePath: string) => {
    const rel = datastorePathToRelative(datastorePath);
    return buffer(await l.array.readFile(snap.snapshotId, snap.datastores[rel.datastore]![0]!, rel.path));
  };
  const vms: Manifest['body']['vms'] = [];
  for (const vm of backup.vms) {
    const files: StoredFile[] = [await repo.store(manifestPath(vm, vm.vmxFile), await read(vm.vmxFile))];
    for (const d of vm.disks.filter((x) => x.included)) {
      files.push(await repo.store(manifestPath(vm, d.file), await read(d.file)));
      const flat = d.file.replace(/\.vmdk$/, '-flat.vmdk');
      files.push(await repo.store(manifestPath(vm, flat), await read(flat)));
    }
    vms.push({ vmId: vm.id, name: vm.name, files });
  }
  repo.manifests.push({
    id: `m-${backupId}`,
    backupId,
    catalogId: l.ctx.catalog.id,
    task: backup.task,
    startedAt: backup.startedAt,
    offloadedAt: new Date().toISOString(),
    vms: vms.map((v) => ({ vmId: v.vmId, name: v.name, bytes: 0 })),
    body: {
      backupId,
      catalogId: l.ctx.catalog.id,
      task: backup.task,
      startedAt: backup.startedAt,
      record: structuredClone(backup) as BackupRecord,
      vms,
    },
  });
}

/**
 * What an offload stores, written through a real repository's writer (the repository API): each file read
 * in ranges from the array snapshot, then the manifest.
 */
async function writeThrough(l: EngineLab, backupId: string, repo: Repository): Promise<void> {
  const backup = await l.ctx.catalog.getBackup(backupId);
  const snap = backup.snapshots[0]!;
  const writer = await repo.writer();
  const add = async (vm: BackupRecord['vms'][number], datastorePath: string) => {
    const rel = datastorePathToRelative(datastorePath);
    const volume = snap.datastores[rel.datastore]![0]!;
    const { size } = await l.array.statFile(snap.snapshotId, volume, rel.path);
    return writer.addFile({
      path: manifestPath(vm, datastorePath),
      size,
      read: (offset, length, signal) =>
        l.array.readFile(snap.snapshotId, volume, rel.path, {
          offset,
          length,
          ...(signal ? { signal } : {}),
        }),
    });
  };
  const vms: Manifest['body']['vms'] = [];
  for (const vm of backup.vms) {
    const files = [await add(vm, vm.vmxFile)];
    for (const d of vm.disks.filter((x) => x.included)) {
      files.push(await add(vm, d.file), await add(vm, d.file.replace(/\.vmdk$/, '-flat.vmdk')));
    }
    vms.push({ vmId: vm.id, name: vm.name, files });
  }
  await writer.commit({
    backupId,
    catalogId: l.ctx.catalog.id,
    task: backup.task,
    startedAt: backup.startedAt,
    record: backup,
    vms,
  });
}

/** A lab with a backup of web01 offloaded to the repository `lab`; the context restores through it. */
async function offloaded(): Promise<{
  l: EngineLab;
  backupId: string;
  repo: MemoryRepository;
  ctx: EngineContext;
}> {
  const { l, backupId } = await backUpWeb01(await startLab(SPEC), 'SNAPSHOT_EXCL_MEM');
  const repo = new MemoryRepository();
  await offload(l, backupId, repo);
  return { l, backupId, repo, ctx: withRepositories(l, { lab: repo }) };
}

/** The passphrase the test configuration names (a memory repository asks for none). */
process.env.SNAPKEEPER_TEST_REPOSITORY_PASSPHRASE = 'not a secret here';

const contexts: EngineContext[] = [];
afterEach(async () => {
  // close() closes only what the context opened (a catalog never used is not opened to close it).
  for (const c of contexts.splice(0)) await c.close();
});

/**
 * A context on the lab's peers and catalog whose configuration has the repositories `repos` (in that order),
 * each reached through a factory that hands out the memory repository of its name.
 */
function withRepositories(
  l: EngineLab,
  repos: Record<string, MemoryRepository>,
  extra: { crashAt?: (point: string) => boolean; laterMs?: number } = {},
): EngineContext {
  return contextWith(
    l,
    Object.keys(repos),
    {
      backend: (c) => ({ description: c.name }) as RepositoryBackend,
      init: () => Promise.reject(new Error('not used by restore')),
      open: async (backend) => repos[backend.description]!,
    },
    extra,
  );
}

/** A context on the lab's peers and catalog configuring repositories `names`, reached through `factory`. */
function contextWith(
  l: EngineLab,
  names: string[],
  factory: RepositoryFactory,
  extra: { crashAt?: (point: string) => boolean; laterMs?: number } = {},
): EngineContext {
  const entries = names.map(
    (n) =>
      `  - { name: ${n}, type: local, path: /nonexistent/${n}, passphraseEnv: SNAPKEEPER_TEST_REPOSITORY_PASSPHRASE }`,
  );
  const config = parseConfig(
    `
vcenter: { url: https://vcenter.invalid/sdk, user: u, passwordEnv: P }
arrays: [{ name: ${ARRAY}, type: fs, path: /nonexistent/array }]
catalog: { path: ${l.catalogPath} }
${entries.length > 0 ? `repositories:\n${entries.join('\n')}` : ''}
`,
    '/nonexistent/snapkeeper.yaml',
    { P: 'x' },
  );
  const ctx = new EngineContext({
    config,
    catalog: () => Catalog.open(l.catalogPath),
    vcenter: l.vc,
    arrays: new Map([[ARRAY, l.array]]),
    files: memoryExportFiles(l.array),
    repositories: factory,
    now: () => new Date(Date.now() + (extra.laterMs ?? 0)),
    ...(extra.crashAt ? { crashAt: extra.crashAt } : {}),
  });
  contexts.push(ctx);
  return ctx;
}

/** A restore through `repos` that stops for good at `point`, as if its process died there. */
async function crashedAt(
  l: EngineLab,
  repos: Record<string, MemoryRepository>,
  point: string,
  request: RestoreRequest,
): Promise<void> {
  let reached!: () => void;
  const stopped = new Promise<void>((resolve) => {
    reached = resolve;
  });
  const ctx = withRepositories(l, repos, {
    crashAt: (p) => {
      if (p !== point) return false;
      reached();
      return true;
    },
  });
  runRestore(ctx, request).then(
    () => reached(),
    () => reached(),
  );
  await stopped;
  assert.notDeepEqual(await l.ctx.catalog.unfinishedOperations(), [], `the run did not reach ${point}`);
}

function assertBytes(l: EngineLab, descriptorPath: string, sourceFile: string): void {
  const flat = descriptorPath.replace(/\.vmdk$/, '-flat.vmdk');
  assert.deepEqual(l.array.readPath(flat), diskBytes(sourceFile));
}

const fromRepo = (backupId: string, more: Partial<RestoreRequest>): RestoreRequest => ({
  backupId,
  vm: 'web01',
  source: 'repository',
  ...more,
});

describe('restore from a repository on the fakes', () => {
  it('as a new VM: every disk byte for byte, copied (not cloned), the repository named in the result', async () => {
    const { l, backupId, repo, ctx } = await offloaded();
    const r = await runRestore(ctx, fromRepo(backupId, { as: 'web01-r' }));
    assert.equal(r.mode, 'new');
    assert.equal(r.source, 'repository');
    assert.equal(r.repository, 'lab');
    assert.equal(r.cloned, false);
    assert.deepEqual(
      l.vc.vm('web01-r')!.disks.map((d) => d.file),
      ['[ds-a] web01-r/web01-r_0.vmdk', '[ds-b] web01-r/web01-r_1.vmdk'],
    );
    const source = l.vc.vm('web01')!.disks;
    for (const [i, d] of r.disks.entries()) assertBytes(l, d.path, source[i]!.file);
    assert.equal(r.bytes, 2 * 8192);
    assert.equal(repo.closed, 1, 'the repository is closed after the restore');
    assert.deepEqual(await l.ctx.catalog.unfinishedOperations(), []);
  });

  it('after its array snapshot is deleted and the backup marked lost: from the catalog record', async () => {
    const { l, backupId, ctx } = await offloaded();
    const snap = (await l.ctx.catalog.getBackup(backupId)).snapshots[0]!;
    await l.array.deleteSnapshot(snap.snapshotId);
    await assert.rejects(runRestore(ctx, { backupId, vm: 'web01', as: 'web01-x' }), {
      code: 'SNAPSHOT_MISSING',
    });
    // recover marks it lost in the catalog: lost on the array, not in the repository.
    await recover(l.context());
    assert.equal((await l.ctx.catalog.getBackup(backupId)).state, 'lost');
    const dry = await runRestore(ctx, fromRepo(backupId, { as: 'web01-r', dryRun: true }));
    assert.equal(dry.dryRun, true);
    assert.equal(dry.cloned, false);
    const r = await runRestore(ctx, fromRepo(backupId, { as: 'web01-r' }));
    const source = l.vc.vm('web01')!.disks;
    for (const [i, d] of r.disks.entries()) assertBytes(l, d.path, source[i]!.file);
  });

  it('after the backup is deleted from the catalog: the record comes from the manifest', async () => {
    const { l, backupId, ctx } = await offloaded();
    await deleteBackup(l.ctx, backupId, { dryRun: false });
    assert.deepEqual(await l.array.listSnapshots(), []);
    assert.equal(await l.ctx.catalog.findBackup(backupId), undefined);
    const r = await runRestore(ctx, fromRepo(backupId, { as: 'web01-r' }));
    assert.equal(r.backupId, backupId);
    const source = l.vc.vm('web01')!.disks;
    for (const [i, d] of r.disks.entries()) assertBytes(l, d.path, source[i]!.file);
    await assert.rejects(runRestore(ctx, { backupId, vm: 'web01', as: 'web01-x' }), {
      code: 'BACKUP_NOT_FOUND',
    });
  });

  it('by manifest id; single disk into a VM; files only', async () => {
    const { l, backupId, ctx } = await offloaded();
    const one = await runRestore(ctx, fromRepo(`m-${backupId}`, { disks: ['Hard disk 2'], to: 'app01' }));
    assert.equal(one.mode, 'disks');
    assert.equal(l.vc.vm('app01')!.disks[1]!.file, one.disks[0]!.target);
    assertBytes(l, one.disks[0]!.path, l.vc.vm('web01')!.disks[1]!.file);
    const files = await runRestore(
      ctx,
      fromRepo(backupId, { disks: ['Hard disk 1'], filesOnly: true, datastore: 'ds-b' }),
    );
    assert.equal(files.mode, 'files');
    assert.match(files.disks[0]!.target, /^\[ds-b\] web01-restore-/);
    assertBytes(l, files.disks[0]!.path, l.vc.vm('web01')!.disks[0]!.file);
  });

  it('to the original place: the live VM replaced by the backed-up bytes', async () => {
    const { l, backupId, ctx } = await offloaded();
    l.array.writeFile('ds-a', 'web01/web01_0-flat.vmdk', Buffer.alloc(8192, 7));
    await runRestore(ctx, fromRepo(backupId, { original: true, confirmed: true }));
    const vol = (await l.array.listVolumes()).find((v) => v.name === 'ds-a')!;
    assert.deepEqual(
      l.array.readPath(`${vol.path}/web01/web01_0-flat.vmdk`),
      diskBytes('[ds-a] web01/web01_0.vmdk'),
    );
  });

  it('a corrupt chunk stops the restore naming it; what was written is undone', async () => {
    const { l, backupId, repo, ctx } = await offloaded();
    // The last chunk of the second disk's extent: the first disk is written completely before it fails.
    const m = await repo.loadManifest(backupId);
    const flat = m.body.vms
      .find((v) => v.name === 'web01')!
      .files.find((f) => f.path.endsWith('web01_1-flat.vmdk'))!;
    const id = flat.chunks.at(-1)!;
    repo.chunks.get(id)![10]! ^= 0x01;
    const before = await world(l);
    await assert.rejects(runRestore(ctx, fromRepo(backupId, { as: 'web01-r' })), (err: SnapkeeperError) => {
      assert.equal(err.code, 'CHUNK_CORRUPT');
      assert.match(err.message, new RegExp(`chunk ${id}`));
      assert.match(err.message, /everything it did was undone/);
      return true;
    });
    assert.deepEqual(await world(l), before);
    assert.equal(l.vc.vm('web01-r'), undefined);
  });

  it('a missing chunk: CHUNK_MISSING, nothing left behind', async () => {
    const { l, backupId, repo, ctx } = await offloaded();
    const m = await repo.loadManifest(backupId);
    const flat = m.body.vms
      .find((v) => v.name === 'web01')!
      .files.find((f) => f.path.endsWith('web01_0-flat.vmdk'))!;
    repo.chunks.delete(flat.chunks[3]!);
    const before = await world(l);
    await assert.rejects(runRestore(ctx, fromRepo(backupId, { disks: ['Hard disk 1'], to: 'app01' })), {
      code: 'CHUNK_MISSING',
    });
    assert.deepEqual(await world(l), before);
  });

  it('which repository: named, the only holder, refused when ambiguous or unknown', async () => {
    const { l, backupId, repo } = await offloaded();
    const empty = new MemoryRepository();
    const ctx = withRepositories(l, { empty, lab: repo });
    const r = await runRestore(ctx, fromRepo(backupId, { as: 'web01-a', dryRun: true }));
    assert.equal(r.repository, 'lab');
    const twice = withRepositories(l, { lab: repo, other: repo });
    await assert.rejects(runRestore(twice, fromRepo(backupId, { as: 'web01-a' })), {
      code: 'REPOSITORY_AMBIGUOUS',
      message: /lab, other: choose one with --repository/,
    });
    const named = await runRestore(
      twice,
      fromRepo(backupId, { as: 'web01-a', repository: 'other', dryRun: true }),
    );
    assert.equal(named.repository, 'other');
    await assert.rejects(runRestore(ctx, fromRepo(backupId, { as: 'web01-a', repository: 'nope' })), {
      code: 'REPOSITORY_UNKNOWN',
      message: /repository nope is not configured in .*\(repositories: empty, lab\)/,
    });
    await assert.rejects(runRestore(ctx, fromRepo(backupId, { as: 'web01-a', repository: 'empty' })), {
      code: 'REPOSITORY_BACKUP_NOT_FOUND',
    });
    await assert.rejects(runRestore(ctx, { backupId, vm: 'web01', as: 'web01-a', repository: 'lab' }), {
      code: 'RESTORE_MODE',
    });
    await assert.rejects(runRestore(withRepositories(l, { empty }), fromRepo(backupId, { as: 'web01-a' })), {
      code: 'REPOSITORY_BACKUP_NOT_FOUND',
      message: /no configured repository holds backup .* \(searched empty\)/,
    });
    assert.equal(l.vc.vm('web01-a'), undefined);
  });

  for (const point of ['restore-files-placed', 'restore-vm-created']) {
    it(`stopped at ${point}: recover removes the files written from the repository`, async () => {
      const { l, backupId, repo } = await offloaded();
      const before = await world(l);
      await crashedAt(l, { lab: repo }, point, fromRepo(backupId, { as: 'web01-r' }));
      const vol = (await l.array.listVolumes()).find((v) => v.name === 'ds-a')!;
      assert.notEqual(
        l.array.statPath(`${vol.path}/web01-r/web01-r_0-flat.vmdk`),
        undefined,
        'the crash left files',
      );
      const report = await recover(l.context(LATER));
      assert.deepEqual(report.errors, []);
      assert.deepEqual(await world(l), before);
    });
  }
});

describe('restore from a repository in the real format (memory backend, written by its writer)', () => {
  /** A lab with web01 backed up and written into repository `mem` on a memory backend. */
  async function realOffload() {
    const { l, backupId } = await backUpWeb01(await startLab(SPEC), 'SNAPSHOT_EXCL_MEM');
    const backend = new MemoryBackend('mem');
    const pass = process.env.SNAPKEEPER_TEST_REPOSITORY_PASSPHRASE!;
    await (
      await initRepository(backend, pass, { chunkSize: 1 << 16, kdf: { N: 1 << 15 }, workers: 1 })
    ).close();
    const ctx = contextWith(l, ['mem'], {
      backend: () => backend,
      init: (b, p) => initRepository(b, p.reveal()),
      open: (b, p) => openRepository(b, p.reveal(), { workers: 1 }),
    });
    const repo = await openRepository(backend, pass, { workers: 1 });
    await writeThrough(l, backupId, repo);
    await repo.close();
    return { l, backupId, backend, ctx };
  }

  it('offloaded, then restored as a new VM byte for byte after the backup is deleted', async () => {
    const { l, backupId, ctx } = await realOffload();
    await deleteBackup(l.ctx, backupId, { dryRun: false });
    const r = await runRestore(ctx, fromRepo(backupId, { as: 'web01-r' }));
    assert.equal(r.repository, 'mem');
    const source = l.vc.vm('web01')!.disks;
    for (const [i, d] of r.disks.entries()) assertBytes(l, d.path, source[i]!.file);
  });

  it('a bit flipped in a pack: CHUNK_CORRUPT naming the chunk and its pack, the target holds nothing', async () => {
    const { l, backupId, backend, ctx } = await realOffload();
    for (const key of backend.keys('packs/'))
      backend.flipBit(key, Math.floor(backend.bytes(key)!.length / 2));
    const before = await world(l);
    await assert.rejects(runRestore(ctx, fromRepo(backupId, { as: 'web01-r' })), (err: SnapkeeperError) => {
      assert.equal(err.code, 'CHUNK_CORRUPT');
      assert.match(err.message, /pack/);
      return true;
    });
    assert.deepEqual(await world(l), before);
  });
});
