import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, beforeEach, describe, it } from 'node:test';
import Database from 'better-sqlite3';
import { Catalog } from '../../src/catalog/index.js';
import type { TaskConfig } from '../../src/config/schema.js';
import { ConflictError, NotFoundError, SnapkeeperError, UsageError } from '../../src/errors.js';
import type { BackupRecord } from '../../src/model/backup.js';

const root = mkdtempSync(join(tmpdir(), 'snapkeeper-catalog-tasks-'));
after(() => rmSync(root, { recursive: true, force: true }));
let n = 0;
let catalog: Catalog;
beforeEach(() => {
  catalog?.close();
  catalog = Catalog.create(join(root, `c${++n}.db`));
});
after(() => catalog?.close());

const web: TaskConfig = {
  name: 'web',
  description: 'web tier, nightly',
  select: { vms: ['web*'], folders: ['prod/web'] },
  exclude: { vms: ['web-test'] },
  mode: 'SNAPSHOT_INCL_MEM',
  retention: { versions: 7, days: 14 },
  offload: { repository: 'offsite' },
  schedule: '0 2 * * *',
};

function backup(id: string): BackupRecord {
  return {
    id,
    task: 'web',
    state: 'complete',
    startedAt: '2026-11-01T00:00:00Z',
    snapshots: [],
    vms: [],
    warnings: [],
  };
}

describe('catalog tasks', () => {
  it('creates, reads, lists, updates and deletes tasks', async () => {
    await catalog.createTask(web);
    await catalog.createTask({ name: 'db', select: { datastores: ['ds-b'] } });
    assert.deepEqual(await catalog.getTask('web'), web);
    assert.deepEqual(
      (await catalog.listTasks()).map((t) => t.name),
      ['db', 'web'],
    );

    const changed: TaskConfig = { ...web, mode: 'ASIS', retention: { versions: 3 } };
    await catalog.updateTask(changed);
    assert.deepEqual(await catalog.getTask('web'), changed);

    await catalog.deleteTask('db');
    assert.equal(await catalog.findTask('db'), undefined);
    assert.deepEqual(
      (await catalog.listTasks()).map((t) => t.name),
      ['web'],
    );
  });

  it('refuses duplicates and unknown names with stable codes', async () => {
    await catalog.createTask(web);
    await assert.rejects(
      async () => catalog.createTask({ ...web, description: 'again' }),
      (e: unknown) => e instanceof ConflictError && e.code === 'TASK_EXISTS',
    );
    assert.equal((await catalog.getTask('web')).description, web.description);
    for (const call of [
      () => catalog.getTask('nope'),
      () => catalog.deleteTask('nope'),
      () => catalog.updateTask({ name: 'nope', select: {} }),
    ]) {
      await assert.rejects(
        async () => call(),
        (e: unknown) => e instanceof NotFoundError && e.code === 'TASK_NOT_FOUND',
      );
    }
  });

  it('validates with the task schema on write, saying what is wrong', async () => {
    const bad = [
      { name: '../etc', select: {} },
      { name: 'x', select: { vms: [''] } },
      { name: 'x', select: {}, mode: 'FAST' },
      { name: 'x', select: {}, retention: { versions: -1 } },
      { name: 'x', select: {}, colour: 'blue' },
    ] as unknown as TaskConfig[];
    for (const task of bad) {
      await assert.rejects(
        async () => catalog.createTask(task),
        (e: unknown) => e instanceof UsageError && e.code === 'TASK_INVALID',
        JSON.stringify(task),
      );
    }
    await assert.rejects(async () => catalog.createTask(bad[2]!), /mode/);
    await catalog.createTask({ name: 'x', select: {} });
    await assert.rejects(async () => catalog.updateTask(bad[3]!), /retention\.versions/);
    assert.deepEqual(await catalog.getTask('x'), { name: 'x', select: {} });
    assert.deepEqual(
      (await catalog.listTasks()).map((t) => t.name),
      ['x'],
    );
  });

  it('validates on read: a task damaged in the file is reported, not returned', async () => {
    await catalog.createTask(web);
    const raw = new Database(catalog.path);
    raw
      .prepare('UPDATE tasks SET config = ? WHERE name = ?')
      .run(JSON.stringify({ name: 'web', mode: 'FAST' }), 'web');
    raw.close();
    await assert.rejects(
      async () => catalog.getTask('web'),
      (e: unknown) =>
        e instanceof SnapkeeperError && e.code === 'TASK_INVALID' && e.message.includes(catalog.path),
    );
    await assert.rejects(async () => catalog.listTasks(), { code: 'TASK_INVALID' });
  });
});

describe('catalog mounts', () => {
  it('records mounts per backup and refuses to delete a mounted backup', async () => {
    await catalog.insertBackup(backup('b-1'));
    await catalog.insertBackup(backup('b-2'));
    const m1 = await catalog.addMount({
      id: 'm-1',
      backupId: 'b-1',
      kind: 'datastore',
      data: { host: 'esx01', ds: 'snap-ds-a' },
    });
    await catalog.addMount({ id: 'm-2', backupId: 'b-1', kind: 'attach', data: { vm: 'vm-9' } });
    await catalog.addMount({ id: 'm-3', backupId: 'b-2', kind: 'datastore' });
    assert.deepEqual(await catalog.getMount('m-1'), m1);
    assert.deepEqual(m1.data, { host: 'esx01', ds: 'snap-ds-a' });
    assert.deepEqual(
      (await catalog.mountsOf('b-1')).map((m) => m.id),
      ['m-1', 'm-2'],
    );
    assert.deepEqual(
      (await catalog.listMounts()).map((m) => [m.id, m.backupId, m.kind]),
      [
        ['m-1', 'b-1', 'datastore'],
        ['m-2', 'b-1', 'attach'],
        ['m-3', 'b-2', 'datastore'],
      ],
    );

    await assert.rejects(
      async () => catalog.deleteBackup('b-1'),
      (e: unknown) => {
        assert.ok(e instanceof ConflictError);
        assert.equal(e.code, 'BACKUP_MOUNTED');
        assert.match(e.message, /m-1/);
        assert.match(e.message, /m-2/);
        return true;
      },
    );
    assert.ok(await catalog.findBackup('b-1'));

    await catalog.removeMount('m-1');
    await assert.rejects(async () => catalog.deleteBackup('b-1'), { code: 'BACKUP_MOUNTED' });
    await catalog.removeMount('m-2');
    await catalog.deleteBackup('b-1');
    assert.equal(await catalog.findBackup('b-1'), undefined);
    assert.deepEqual(
      (await catalog.listMounts()).map((m) => m.id),
      ['m-3'],
    );
  });

  it('refuses mounts of unknown backups, duplicate ids and unknown mount ids', async () => {
    await catalog.insertBackup(backup('b-1'));
    await assert.rejects(async () => catalog.addMount({ id: 'm-1', backupId: 'ghost', kind: 'datastore' }), {
      code: 'BACKUP_NOT_FOUND',
    });
    await catalog.addMount({ id: 'm-1', backupId: 'b-1', kind: 'datastore' });
    await assert.rejects(async () => catalog.addMount({ id: 'm-1', backupId: 'b-1', kind: 'attach' }), {
      code: 'MOUNT_EXISTS',
    });
    assert.equal((await catalog.getMount('m-1')).kind, 'datastore');
    await assert.rejects(async () => catalog.removeMount('m-9'), { code: 'MOUNT_NOT_FOUND' });
    await assert.rejects(async () => catalog.getMount('m-9'), { code: 'MOUNT_NOT_FOUND' });
  });
});
