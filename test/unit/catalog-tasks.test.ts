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
  it('creates, reads, lists, updates and deletes tasks', () => {
    catalog.createTask(web);
    catalog.createTask({ name: 'db', select: { datastores: ['ds-b'] } });
    assert.deepEqual(catalog.getTask('web'), web);
    assert.deepEqual(
      catalog.listTasks().map((t) => t.name),
      ['db', 'web'],
    );

    const changed: TaskConfig = { ...web, mode: 'ASIS', retention: { versions: 3 } };
    catalog.updateTask(changed);
    assert.deepEqual(catalog.getTask('web'), changed);

    catalog.deleteTask('db');
    assert.equal(catalog.findTask('db'), undefined);
    assert.deepEqual(
      catalog.listTasks().map((t) => t.name),
      ['web'],
    );
  });

  it('refuses duplicates and unknown names with stable codes', () => {
    catalog.createTask(web);
    assert.throws(
      () => catalog.createTask({ ...web, description: 'again' }),
      (e: unknown) => e instanceof ConflictError && e.code === 'TASK_EXISTS',
    );
    assert.equal(catalog.getTask('web').description, web.description);
    for (const call of [
      () => catalog.getTask('nope'),
      () => catalog.deleteTask('nope'),
      () => catalog.updateTask({ name: 'nope', select: {} }),
    ]) {
      assert.throws(call, (e: unknown) => e instanceof NotFoundError && e.code === 'TASK_NOT_FOUND');
    }
  });

  it('validates with the task schema on write, saying what is wrong', () => {
    const bad = [
      { name: '../etc', select: {} },
      { name: 'x', select: { vms: [''] } },
      { name: 'x', select: {}, mode: 'FAST' },
      { name: 'x', select: {}, retention: { versions: -1 } },
      { name: 'x', select: {}, colour: 'blue' },
    ] as unknown as TaskConfig[];
    for (const task of bad) {
      assert.throws(
        () => catalog.createTask(task),
        (e: unknown) => e instanceof UsageError && e.code === 'TASK_INVALID',
        JSON.stringify(task),
      );
    }
    assert.throws(() => catalog.createTask(bad[2]!), /mode/);
    catalog.createTask({ name: 'x', select: {} });
    assert.throws(() => catalog.updateTask(bad[3]!), /retention\.versions/);
    assert.deepEqual(catalog.getTask('x'), { name: 'x', select: {} });
    assert.deepEqual(
      catalog.listTasks().map((t) => t.name),
      ['x'],
    );
  });

  it('validates on read: a task damaged in the file is reported, not returned', () => {
    catalog.createTask(web);
    const raw = new Database(catalog.path);
    raw
      .prepare('UPDATE tasks SET config = ? WHERE name = ?')
      .run(JSON.stringify({ name: 'web', mode: 'FAST' }), 'web');
    raw.close();
    assert.throws(
      () => catalog.getTask('web'),
      (e: unknown) =>
        e instanceof SnapkeeperError && e.code === 'TASK_INVALID' && e.message.includes(catalog.path),
    );
    assert.throws(() => catalog.listTasks(), { code: 'TASK_INVALID' });
  });
});

describe('catalog mounts', () => {
  it('records mounts per backup and refuses to delete a mounted backup', () => {
    catalog.insertBackup(backup('b-1'));
    catalog.insertBackup(backup('b-2'));
    const m1 = catalog.addMount({
      id: 'm-1',
      backupId: 'b-1',
      kind: 'datastore',
      data: { host: 'esx01', ds: 'snap-ds-a' },
    });
    catalog.addMount({ id: 'm-2', backupId: 'b-1', kind: 'attach', data: { vm: 'vm-9' } });
    catalog.addMount({ id: 'm-3', backupId: 'b-2', kind: 'datastore' });
    assert.deepEqual(catalog.getMount('m-1'), m1);
    assert.deepEqual(m1.data, { host: 'esx01', ds: 'snap-ds-a' });
    assert.deepEqual(
      catalog.mountsOf('b-1').map((m) => m.id),
      ['m-1', 'm-2'],
    );
    assert.deepEqual(
      catalog.listMounts().map((m) => [m.id, m.backupId, m.kind]),
      [
        ['m-1', 'b-1', 'datastore'],
        ['m-2', 'b-1', 'attach'],
        ['m-3', 'b-2', 'datastore'],
      ],
    );

    assert.throws(
      () => catalog.deleteBackup('b-1'),
      (e: unknown) => {
        assert.ok(e instanceof ConflictError);
        assert.equal(e.code, 'BACKUP_MOUNTED');
        assert.match(e.message, /m-1/);
        assert.match(e.message, /m-2/);
        return true;
      },
    );
    assert.ok(catalog.findBackup('b-1'));

    catalog.removeMount('m-1');
    assert.throws(() => catalog.deleteBackup('b-1'), { code: 'BACKUP_MOUNTED' });
    catalog.removeMount('m-2');
    catalog.deleteBackup('b-1');
    assert.equal(catalog.findBackup('b-1'), undefined);
    assert.deepEqual(
      catalog.listMounts().map((m) => m.id),
      ['m-3'],
    );
  });

  it('refuses mounts of unknown backups, duplicate ids and unknown mount ids', () => {
    catalog.insertBackup(backup('b-1'));
    assert.throws(() => catalog.addMount({ id: 'm-1', backupId: 'ghost', kind: 'datastore' }), {
      code: 'BACKUP_NOT_FOUND',
    });
    catalog.addMount({ id: 'm-1', backupId: 'b-1', kind: 'datastore' });
    assert.throws(() => catalog.addMount({ id: 'm-1', backupId: 'b-1', kind: 'attach' }), {
      code: 'MOUNT_EXISTS',
    });
    assert.equal(catalog.getMount('m-1').kind, 'datastore');
    assert.throws(() => catalog.removeMount('m-9'), { code: 'MOUNT_NOT_FOUND' });
    assert.throws(() => catalog.getMount('m-9'), { code: 'MOUNT_NOT_FOUND' });
  });
});
