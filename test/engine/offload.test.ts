import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { runBackup } from '../../src/engine/backup.js';
import { runOffload } from '../../src/engine/offload.js';
import { recover } from '../../src/engine/recover.js';
import { deleteBackup } from '../../src/engine/retention.js';
import { ExitCode, SnapkeeperError } from '../../src/errors.js';
import type { StoredFile } from '../../src/repository/index.js';
import { FLAT_BYTES, type OffloadLab, offloadLabPerTest, PASSPHRASE_ENV, stoppedAt } from './offload-lab.js';

const start = offloadLabPerTest();
const LATER = { laterMs: 120_000 };

async function backup(l: OffloadLab, mode = 'SNAPSHOT_EXCL_MEM' as const) {
  const record = await runBackup(l.ctx, { vmPatterns: ['web01', 'db01', 'off01'], mode });
  assert.equal(record.state, 'complete');
  return record;
}

/** A stored file's bytes, as the repository restores them. */
async function restored(l: OffloadLab, file: StoredFile): Promise<Buffer> {
  const ctx = l.offloadContext();
  const { openConfiguredRepository } = await import('../../src/engine/repository-access.js');
  const { repository } = await openConfiguredRepository(ctx, 'mem');
  try {
    const out = Buffer.alloc(file.size);
    await repository.restoreFile(file, { write: async (o, d) => void d.copy(out, o) });
    return out;
  } finally {
    await repository.close();
  }
}

async function manifestFiles(l: OffloadLab, backupId: string, vm: string): Promise<Map<string, StoredFile>> {
  const { openConfiguredRepository } = await import('../../src/engine/repository-access.js');
  const { repository } = await openConfiguredRepository(l.offloadContext(), 'mem');
  try {
    const m = await repository.loadManifest(backupId);
    return new Map(m.body.vms.find((v) => v.name === vm)!.files.map((f) => [f.path, f]));
  } finally {
    await repository.close();
  }
}

async function checkClean(l: OffloadLab, name = 'mem'): Promise<void> {
  const { openConfiguredRepository } = await import('../../src/engine/repository-access.js');
  const { repository } = await openConfiguredRepository(l.offloadContext(), name);
  try {
    const report = await repository.check({ readData: true });
    assert.deepEqual(report.issues, []);
    assert.equal(report.ok, true);
  } finally {
    await repository.close();
  }
}

/** The bytes of a file inside an array snapshot. */
async function snapshotBytes(
  l: OffloadLab,
  snapshotId: string,
  volume: string,
  path: string,
): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const c of await l.array.readFile(snapshotId, volume, path)) parts.push(c as Buffer);
  return Buffer.concat(parts);
}

describe('offload on the in-memory peers', () => {
  it('stores every VM: home files, base disks, RDM excluded; records the copy; check clean', async () => {
    const l = await start();
    const b = await backup(l);
    const result = await runOffload(l.offloadContext(), { backupId: b.id, repository: 'mem' });
    assert.equal(result.alreadyStored, false);
    assert.equal(result.vms.length, 3);
    const web = result.vms.find((v) => v.name === 'web01')!;
    assert.equal(web.image, 'base-disks');
    const paths = web.files.map((f) => f.path).sort();
    assert.ok(paths.includes('web01.vmx'), paths.join(', '));
    assert.ok(paths.includes('web01_0.vmdk') && paths.includes('web01_0-flat.vmdk'), paths.join(', '));
    // The second disk is on ds-b: named by its datastore path.
    assert.ok(
      paths.some((p) => p.startsWith('[ds-b] ')),
      paths.join(', '),
    );
    const db = result.vms.find((v) => v.name === 'db01')!;
    assert.deepEqual(
      db.excludedDisks.map((d) => d.reason),
      ['rdm'],
    );
    assert.deepEqual(result.warnings, []);
    assert.equal(result.vms.find((v) => v.name === 'off01')!.image, 'disks');
    assert.ok(result.bytesAdded > 0);

    // The copy is in the catalog, once.
    const copies = await l.ctx.catalog.copiesOf(b.id);
    assert.equal(copies.length, 1);
    assert.equal(copies[0]!.manifestId, result.manifestId);
    assert.equal(copies[0]!.repository, 'mem');
    assert.equal(copies[0]!.arrayCopy, true);
    assert.deepEqual(
      copies[0]!.vms.find((v) => v.name === 'db01'),
      { name: 'db01', disks: 1, excludedDisks: 1, bytes: db.bytes },
    );

    // The stored flat file restores the array snapshot's bytes.
    const files = await manifestFiles(l, b.id, 'web01');
    const flat = files.get('web01_0-flat.vmdk')!;
    assert.equal(flat.size, FLAT_BYTES);
    assert.ok(
      (await restored(l, flat)).equals(
        await snapshotBytes(l, b.snapshots[0]!.snapshotId, l.web01Flat.volume, l.web01Flat.path),
      ),
    );
    await checkClean(l);
    assert.deepEqual(await l.ctx.catalog.unfinishedOperations(), []);
  });

  it('offloads incrementally after a small change: only the changed chunk is read, same bytes as the snapshot', async () => {
    const l = await start();
    const first = await backup(l);
    const full = await runOffload(l.offloadContext(), { backupId: first.id, repository: 'mem' });
    // 4 KiB changed in the middle of web01's 4 MiB disk.
    l.array.writeFile(l.web01Flat.volume, l.web01Flat.path, Buffer.alloc(4096, 0x5a), 2 * 1024 * 1024 + 8192);
    const second = await backup(l);
    const inc = await runOffload(l.offloadContext(), { backupId: second.id, repository: 'mem' });
    const flat = inc.vms.find((v) => v.name === 'web01')!.files.find((f) => f.path === 'web01_0-flat.vmdk')!;
    assert.equal(flat.incrementalFrom, first.id);
    assert.equal(flat.bytesToRead, 4096);
    assert.ok(inc.bytesRead <= 1024 * 1024, `read ${inc.bytesRead} bytes after a 4 KiB change`);
    assert.ok(inc.bytesAdded < full.bytesAdded / 2, `added ${inc.bytesAdded} of ${full.bytesAdded}`);
    const stored = (await manifestFiles(l, second.id, 'web01')).get('web01_0-flat.vmdk')!;
    assert.ok(
      (await restored(l, stored)).equals(
        await snapshotBytes(l, second.snapshots[0]!.snapshotId, l.web01Flat.volume, l.web01Flat.path),
      ),
    );
    await checkClean(l);
  });

  it('a second offload of the same backup stores nothing and keeps one copy', async () => {
    const l = await start();
    const b = await backup(l);
    const first = await runOffload(l.offloadContext(), { backupId: b.id, repository: 'mem' });
    const again = await runOffload(l.offloadContext(), { backupId: b.id, repository: 'mem' });
    assert.equal(again.alreadyStored, true);
    assert.equal(again.manifestId, first.manifestId);
    assert.equal(again.bytesAdded, 0);
    assert.equal((await l.ctx.catalog.copiesOf(b.id)).length, 1);
    // Another repository gets its own copy.
    await runOffload(l.offloadContext(), { backupId: b.id, repository: 'other' });
    assert.deepEqual((await l.ctx.catalog.copiesOf(b.id)).map((c) => c.repository).sort(), ['mem', 'other']);
  });

  const refusals: [
    string,
    (l: OffloadLab, backupId: string) => { backupId: string; repository: string },
    string,
  ][] = [
    ['an unknown repository', (_l, id) => ({ backupId: id, repository: 'nowhere' }), 'REPOSITORY_UNKNOWN'],
    [
      'an unset passphrase variable',
      (_l, id) => ({ backupId: id, repository: 'nopass' }),
      'REPOSITORY_PASSPHRASE_UNAVAILABLE',
    ],
    ['an unknown backup', () => ({ backupId: 'nope', repository: 'mem' }), 'BACKUP_NOT_FOUND'],
  ];
  for (const [what, request, code] of refusals) {
    it(`refuses ${what} with exit 3, changing nothing`, async () => {
      const l = await start();
      const b = await backup(l);
      const before = await l.ctx.catalog.listOperations();
      await assert.rejects(
        () => runOffload(l.offloadContext(), request(l, b.id)),
        (e: unknown) => e instanceof SnapkeeperError && e.code === code && e.exitCode === ExitCode.usage,
      );
      assert.equal((await l.ctx.catalog.listOperations()).length, before.length);
      assert.deepEqual(await l.ctx.catalog.copiesOf(b.id), []);
    });
  }

  it('refuses a wrong passphrase with exit 3 and never shows it', async () => {
    const l = await start();
    const b = await backup(l);
    const saved = process.env[PASSPHRASE_ENV];
    process.env[PASSPHRASE_ENV] = 'not-the-passphrase-xyzzy';
    try {
      await assert.rejects(
        () => runOffload(l.offloadContext(), { backupId: b.id, repository: 'mem' }),
        (e: unknown) =>
          e instanceof SnapkeeperError &&
          e.code === 'REPOSITORY_PASSPHRASE' &&
          e.exitCode === ExitCode.usage &&
          !e.message.includes('xyzzy'),
      );
    } finally {
      process.env[PASSPHRASE_ENV] = saved;
    }
    assert.deepEqual(await l.ctx.catalog.copiesOf(b.id), []);
  });

  it('refuses a failed backup (BACKUP_NOT_OFFLOADABLE, exit 3)', async () => {
    const l = await start();
    const b = await backup(l);
    await l.ctx.catalog.updateBackup({ ...b, state: 'failed' });
    await assert.rejects(
      () => runOffload(l.offloadContext(), { backupId: b.id, repository: 'mem' }),
      (e: unknown) => e instanceof SnapkeeperError && e.code === 'BACKUP_NOT_OFFLOADABLE' && e.exitCode === 3,
    );
  });

  it('refuses a backup whose array snapshot vanished (SNAPSHOT_MISSING, exit 2), storing nothing', async () => {
    const l = await start();
    const b = await backup(l);
    await l.array.deleteSnapshot(b.snapshots[0]!.snapshotId);
    await assert.rejects(
      () => runOffload(l.offloadContext(), { backupId: b.id, repository: 'mem' }),
      (e: unknown) =>
        e instanceof SnapkeeperError && e.code === 'SNAPSHOT_MISSING' && e.exitCode === ExitCode.failed,
    );
    assert.deepEqual(await l.ctx.catalog.copiesOf(b.id), []);
    assert.deepEqual(await l.ctx.catalog.unfinishedOperations(), []);
    assert.deepEqual(l.backends.get('mem')!.keys('packs/'), []);
  });

  it('holds the backup: it cannot be deleted while an offload runs', async () => {
    const l = await start();
    const b = await backup(l);
    await stoppedAt(l, 'offload.stored', (ctx) => runOffload(ctx, { backupId: b.id, repository: 'mem' }));
    await assert.rejects(
      () => deleteBackup(l.ctx, b.id, { dryRun: false }),
      (e: unknown) => e instanceof SnapkeeperError && /offload/.test(e.message),
    );
    assert.equal((await l.ctx.catalog.getBackup(b.id)).state, 'complete');
  });

  it('deleting the backup afterwards keeps its copy, which says the array copy is gone', async () => {
    const l = await start();
    const b = await backup(l);
    await runOffload(l.offloadContext(), { backupId: b.id, repository: 'mem' });
    await deleteBackup(l.ctx, b.id, { dryRun: false });
    const [copy] = await l.ctx.catalog.copiesOf(b.id);
    assert.equal(copy?.arrayCopy, false);
  });

  it('recover closes an interrupted offload whose repository is no longer configured', async () => {
    const l = await start();
    const b = await backup(l);
    await stoppedAt(l, 'offload.committed', (ctx) => runOffload(ctx, { backupId: b.id, repository: 'mem' }));
    const report = await recover(l.offloadContext({ ...LATER, config: (c) => ({ ...c, repositories: [] }) }));
    assert.deepEqual(report.errors, []);
    assert.ok(
      report.actions.some((a) => /repository mem is no longer configured/.test(a)),
      report.actions.join('\n'),
    );
    assert.deepEqual(await l.ctx.catalog.unfinishedOperations(), []);
    // With the repository configured again, the next offload finds its manifest and records the copy.
    const again = await runOffload(l.offloadContext(LATER), { backupId: b.id, repository: 'mem' });
    assert.equal(again.alreadyStored, true);
    assert.equal((await l.ctx.catalog.copiesOf(b.id)).length, 1);
  });

  for (const point of ['offload.stored', 'offload.committed', 'offload.recorded']) {
    it(`stopped at ${point}: recover rolls forward, a new offload records the copy exactly once`, async () => {
      const l = await start();
      const b = await backup(l);
      await stoppedAt(l, point, (ctx) => runOffload(ctx, { backupId: b.id, repository: 'mem' }));
      const report = await recover(l.offloadContext(LATER));
      assert.deepEqual(report.errors, []);
      assert.deepEqual(await l.ctx.catalog.unfinishedOperations(), []);
      const recorded = await l.ctx.catalog.copiesOf(b.id);
      assert.equal(recorded.length, point === 'offload.stored' ? 0 : 1);
      await checkClean(l);

      const again = await runOffload(l.offloadContext(LATER), { backupId: b.id, repository: 'mem' });
      assert.equal(again.alreadyStored, point !== 'offload.stored');
      if (point !== 'offload.stored') assert.equal(again.bytesAdded, 0);
      const copies = await l.ctx.catalog.copiesOf(b.id);
      assert.equal(copies.length, 1);
      assert.equal(copies[0]!.manifestId, again.manifestId);
      await checkClean(l);
      // A second recover finds nothing to do.
      assert.deepEqual((await recover(l.offloadContext(LATER))).errors, []);
    });
  }
});
