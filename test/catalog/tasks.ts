import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { TaskConfig } from '../../src/config/schema.js';
import { ConflictError, NotFoundError, UsageError } from '../../src/errors.js';
import { emptyBackup } from '../helpers/catalog.js';
import { type CatalogFactory, catalogPerCase } from './harness.js';

/** A task using every field; the SQLite-only task tests damage it in the file. */
export const web: TaskConfig = {
  name: 'web',
  description: 'web tier, nightly',
  select: { vms: ['web*'], folders: ['prod/web'] },
  exclude: { vms: ['web-test'] },
  mode: 'SNAPSHOT_INCL_MEM',
  retention: { versions: 7, days: 14 },
  offload: { repository: 'offsite' },
  schedule: '0 2 * * *',
};

const backup = (id: string) => emptyBackup(id, { task: 'web', startedAt: '2026-11-01T00:00:00Z' });

export function taskAndMountCases(factory: CatalogFactory): void {
  const t = catalogPerCase(factory);
  describe('catalog tasks', () => {
    it('creates, reads, lists, updates and deletes tasks', async () => {
      await t.catalog.createTask(web);
      await t.catalog.createTask({ name: 'db', select: { datastores: ['ds-b'] } });
      assert.deepEqual(await t.catalog.getTask('web'), web);
      assert.deepEqual(
        (await t.catalog.listTasks()).map((t) => t.name),
        ['db', 'web'],
      );

      const changed: TaskConfig = { ...web, mode: 'ASIS', retention: { versions: 3 } };
      await t.catalog.updateTask(changed);
      assert.deepEqual(await t.catalog.getTask('web'), changed);

      await t.catalog.deleteTask('db');
      assert.equal(await t.catalog.findTask('db'), undefined);
      assert.deepEqual(
        (await t.catalog.listTasks()).map((t) => t.name),
        ['web'],
      );
    });

    it('refuses duplicates and unknown names with stable codes', async () => {
      await t.catalog.createTask(web);
      await assert.rejects(
        async () => t.catalog.createTask({ ...web, description: 'again' }),
        (e: unknown) => e instanceof ConflictError && e.code === 'TASK_EXISTS',
      );
      assert.equal((await t.catalog.getTask('web')).description, web.description);
      for (const call of [
        () => t.catalog.getTask('nope'),
        () => t.catalog.deleteTask('nope'),
        () => t.catalog.updateTask({ name: 'nope', select: {} }),
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
          async () => t.catalog.createTask(task),
          (e: unknown) => e instanceof UsageError && e.code === 'TASK_INVALID',
          JSON.stringify(task),
        );
      }
      await assert.rejects(async () => t.catalog.createTask(bad[2]!), /mode/);
      await t.catalog.createTask({ name: 'x', select: {} });
      await assert.rejects(async () => t.catalog.updateTask(bad[3]!), /retention\.versions/);
      assert.deepEqual(await t.catalog.getTask('x'), { name: 'x', select: {} });
      assert.deepEqual(
        (await t.catalog.listTasks()).map((t) => t.name),
        ['x'],
      );
    });
  });

  describe('catalog mounts', () => {
    it('records mounts per backup and refuses to delete a mounted backup', async () => {
      await t.catalog.insertBackup(backup('b-1'));
      await t.catalog.insertBackup(backup('b-2'));
      const m1 = await t.catalog.addMount({
        id: 'm-1',
        backupId: 'b-1',
        kind: 'datastore',
        data: { host: 'esx01', ds: 'snap-ds-a' },
      });
      await t.catalog.addMount({ id: 'm-2', backupId: 'b-1', kind: 'attach', data: { vm: 'vm-9' } });
      await t.catalog.addMount({ id: 'm-3', backupId: 'b-2', kind: 'datastore' });
      assert.deepEqual(await t.catalog.getMount('m-1'), m1);
      assert.deepEqual(m1.data, { host: 'esx01', ds: 'snap-ds-a' });
      assert.deepEqual(
        (await t.catalog.mountsOf('b-1')).map((m) => m.id),
        ['m-1', 'm-2'],
      );
      assert.deepEqual(
        (await t.catalog.listMounts()).map((m) => [m.id, m.backupId, m.kind]),
        [
          ['m-1', 'b-1', 'datastore'],
          ['m-2', 'b-1', 'attach'],
          ['m-3', 'b-2', 'datastore'],
        ],
      );

      await assert.rejects(
        async () => t.catalog.deleteBackup('b-1'),
        (e: unknown) => {
          assert.ok(e instanceof ConflictError);
          assert.equal(e.code, 'BACKUP_MOUNTED');
          assert.match(e.message, /m-1/);
          assert.match(e.message, /m-2/);
          return true;
        },
      );
      assert.ok(await t.catalog.findBackup('b-1'));

      await t.catalog.removeMount('m-1');
      await assert.rejects(async () => t.catalog.deleteBackup('b-1'), { code: 'BACKUP_MOUNTED' });
      await t.catalog.removeMount('m-2');
      await t.catalog.deleteBackup('b-1');
      assert.equal(await t.catalog.findBackup('b-1'), undefined);
      assert.deepEqual(
        (await t.catalog.listMounts()).map((m) => m.id),
        ['m-3'],
      );
    });

    it('refuses mounts of unknown backups, duplicate ids and unknown mount ids', async () => {
      await t.catalog.insertBackup(backup('b-1'));
      await assert.rejects(
        async () => t.catalog.addMount({ id: 'm-1', backupId: 'ghost', kind: 'datastore' }),
        {
          code: 'BACKUP_NOT_FOUND',
        },
      );
      await t.catalog.addMount({ id: 'm-1', backupId: 'b-1', kind: 'datastore' });
      await assert.rejects(async () => t.catalog.addMount({ id: 'm-1', backupId: 'b-1', kind: 'attach' }), {
        code: 'MOUNT_EXISTS',
      });
      assert.equal((await t.catalog.getMount('m-1')).kind, 'datastore');
      await assert.rejects(async () => t.catalog.removeMount('m-9'), { code: 'MOUNT_NOT_FOUND' });
      await assert.rejects(async () => t.catalog.getMount('m-9'), { code: 'MOUNT_NOT_FOUND' });
    });
  });
}
