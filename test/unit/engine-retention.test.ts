import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { Catalog } from '../../src/catalog/index.js';
import { parseConfig } from '../../src/config/load.js';
import { EngineContext } from '../../src/engine/context.js';
import { deleteBackup, expireAll, expireTask } from '../../src/engine/retention.js';
import { ConflictError, NotFoundError } from '../../src/errors.js';
import type { BackupRecord } from '../../src/model/backup.js';

const root = mkdtempSync(join(tmpdir(), 'snapkeeper-engine-retention-'));
after(() => rmSync(root, { recursive: true, force: true }));
let n = 0;

/** A context over a fresh real catalog; retention of records without array snapshots touches no array. */
function context(retention: string): EngineContext {
  const dir = join(root, String(n++));
  const text = `
vcenter: { url: https://vcenter.invalid/sdk, user: u, passwordEnv: SNAPKEEPER_TEST_PASSWORD }
arrays: [{ name: a, type: fs, path: ${dir}/array }]
catalog: { path: ${dir}/catalog.db }
defaults: { retention: ${retention} }
tasks: [{ name: nightly, select: { vms: [web01] } }]
`;
  const config = parseConfig(text, join(dir, 'snapkeeper.yaml'), { SNAPKEEPER_TEST_PASSWORD: 'x' });
  void Catalog.create(config.catalog.path).close();
  return new EngineContext({ config, now: () => new Date('2026-01-10T00:00:00Z') });
}

/** Runs `use` on a context from `context(retention)` and closes it whatever happens. */
async function withContext(retention: string, use: (ctx: EngineContext) => Promise<void>): Promise<void> {
  const ctx = context(retention);
  try {
    await use(ctx);
  } finally {
    await ctx.close();
  }
}

function backup(id: string, task: string, vms: string[], day: number): BackupRecord {
  return {
    id,
    task,
    state: 'complete',
    startedAt: `2026-01-0${day}T00:00:00.000Z`,
    snapshots: [],
    vms: vms.map((name) => ({
      id: `vm-${name}`,
      name,
      instanceUuid: `uuid-${name}`,
      host: 'esx01',
      folder: 'vm',
      datacenter: 'DC1',
      vmxFile: `[ds-a] ${name}/${name}.vmx`,
      homeDatastore: 'ds-a',
      datastores: ['ds-a'],
      powerState: 'poweredOff',
      requestedMode: 'ASIS',
      effectiveMode: 'ASIS',
      consistency: 'powered-off',
      state: 'ok',
      disks: [],
      warnings: [],
    })),
    warnings: [],
  };
}

describe('retention of ad-hoc backups', () => {
  it('keeps versions per set of VMs, not across unrelated VMs', async () => {
    await withContext('{ versions: 1 }', async (ctx) => {
      await ctx.catalog.insertBackup(backup('20260101-000000-aaaaaa', 'adhoc', ['a'], 1));
      await ctx.catalog.insertBackup(backup('20260102-000000-bbbbbb', 'adhoc', ['b'], 2));
      await ctx.catalog.insertBackup(backup('20260103-000000-cccccc', 'adhoc', ['b', 'a'], 3));
      await ctx.catalog.insertBackup(backup('20260104-000000-dddddd', 'adhoc', ['a', 'b'], 4));
      await ctx.catalog.insertBackup(backup('20260105-000000-eeeeee', 'adhoc', ['a'], 5));
      const r = await expireTask(ctx, 'adhoc', { versions: 1 }, { dryRun: false });
      assert.deepEqual(r.errors, []);
      assert.deepEqual(r.deleted.map((d) => d.id).sort(), [
        '20260101-000000-aaaaaa',
        '20260103-000000-cccccc',
      ]);
      assert.deepEqual((await ctx.catalog.listBackups()).map((b) => b.id).sort(), [
        '20260102-000000-bbbbbb',
        '20260104-000000-dddddd',
        '20260105-000000-eeeeee',
      ]);
    });
  });

  it('a configured task still counts its backups together', async () => {
    await withContext('{ versions: 1 }', async (ctx) => {
      await ctx.catalog.insertBackup(backup('20260101-000000-aaaaaa', 'nightly', ['a'], 1));
      await ctx.catalog.insertBackup(backup('20260102-000000-bbbbbb', 'nightly', ['b'], 2));
      const r = await expireTask(ctx, 'nightly', { versions: 1 }, { dryRun: false });
      assert.deepEqual(
        r.deleted.map((d) => d.id),
        ['20260101-000000-aaaaaa'],
      );
    });
  });

  it('expire --task: an unknown name is refused; adhoc follows the default retention', async () => {
    await withContext('{ versions: 1 }', async (ctx) => {
      await assert.rejects(
        expireAll(ctx, { dryRun: true, task: 'NOSUCH' }),
        (err) => err instanceof NotFoundError && err.code === 'TASK_NOT_FOUND',
      );
      // A known task without backups is fine.
      assert.deepEqual((await expireAll(ctx, { dryRun: true, task: 'nightly' })).deleted, []);
      await ctx.catalog.insertBackup(backup('20260101-000000-aaaaaa', 'adhoc', ['a'], 1));
      await ctx.catalog.insertBackup(backup('20260102-000000-bbbbbb', 'adhoc', ['a'], 2));
      const r = await expireAll(ctx, { dryRun: false, task: 'adhoc' });
      assert.deepEqual(
        r.deleted.map((d) => d.id),
        ['20260101-000000-aaaaaa'],
      );
    });
  });
});

describe('retention and backups that are lost or in use', () => {
  it('a lost backup is never counted as a kept version', async () => {
    await withContext('{ versions: 1 }', async (ctx) => {
      await ctx.catalog.insertBackup(backup('20260101-000000-aaaaaa', 'nightly', ['a'], 1));
      await ctx.catalog.insertBackup({
        ...backup('20260102-000000-bbbbbb', 'nightly', ['a'], 2),
        state: 'lost',
      });
      const r = await expireTask(ctx, 'nightly', { versions: 1 }, { dryRun: false });
      assert.deepEqual(r.deleted, [], 'the only restorable backup is the kept version');
      assert.ok(await ctx.catalog.findBackup('20260101-000000-aaaaaa'));
    });
  });

  it('a held backup is skipped by expire and refused by delete, naming the holder', async () => {
    await withContext('{ versions: 1 }', async (ctx) => {
      await ctx.catalog.insertBackup(backup('20260101-000000-aaaaaa', 'nightly', ['a'], 1));
      await ctx.catalog.insertBackup(backup('20260102-000000-bbbbbb', 'nightly', ['a'], 2));
      await ctx.catalog.beginOperation({ id: 'restore-x', kind: 'restore' });
      await ctx.catalog.acquireLocks('restore-x', [
        { resource: 'backup:20260101-000000-aaaaaa', mode: 'shared' },
      ]);
      for (const dryRun of [true, false]) {
        const r = await expireTask(ctx, 'nightly', { versions: 1 }, { dryRun });
        assert.deepEqual(r.deleted, []);
        assert.deepEqual(
          r.skipped.map((s) => s.id),
          ['20260101-000000-aaaaaa'],
        );
        assert.match(r.skipped[0]!.reason, /restore operation restore-x \(pid \d+ on /);
      }
      await assert.rejects(deleteBackup(ctx, '20260101-000000-aaaaaa', { dryRun: false }), (err: unknown) => {
        assert.ok(err instanceof ConflictError);
        assert.equal(err.code, 'BACKUP_IN_USE');
        assert.equal(err.exitCode, 3);
        assert.match(err.message, /restore operation restore-x/);
        return true;
      });
      assert.ok(await ctx.catalog.findBackup('20260101-000000-aaaaaa'), 'nothing was deleted');
      await ctx.catalog.finishOperation('restore-x', 'done');
      const r = await expireTask(ctx, 'nightly', { versions: 1 }, { dryRun: false });
      assert.deepEqual(
        r.deleted.map((d) => d.id),
        ['20260101-000000-aaaaaa'],
      );
    });
  });
});
