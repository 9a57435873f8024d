import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { NewBackupCopy } from '../../src/catalog/index.js';
import { ConflictError, NotFoundError } from '../../src/errors.js';
import { emptyBackup } from '../helpers/catalog.js';
import { type CatalogFactory, catalogPerCase } from './harness.js';

function copy(backupId: string, repository = 'offsite', fields: Partial<NewBackupCopy> = {}): NewBackupCopy {
  return {
    backupId,
    task: 'nightly',
    repository,
    repositoryId: `id-${repository}`,
    manifestId: `m-${backupId}-${repository}`,
    bytes: 1000,
    bytesAdded: 300,
    vms: [{ name: 'web01', disks: 1, excludedDisks: 0, bytes: 1000 }],
    ...fields,
  };
}

export function copyCases(factory: CatalogFactory): void {
  const t = catalogPerCase(factory);
  describe('catalog copies', () => {
    it('records copies, lists them by backup, repository and task, oldest first', async () => {
      await t.catalog.insertBackup(emptyBackup('b1'));
      await t.catalog.insertBackup(emptyBackup('b2', { task: 'other' }));
      const first = await t.catalog.addCopy(copy('b1'));
      assert.equal(first.offloadedAt, t.clock.now().toISOString());
      assert.equal(first.arrayCopy, true);
      assert.deepEqual(first.vms, copy('b1').vms);
      t.clock.advance(1000);
      await t.catalog.addCopy(copy('b1', 'onsite'));
      t.clock.advance(1000);
      await t.catalog.addCopy(copy('b2', 'offsite', { task: 'other' }));

      assert.deepEqual(
        (await t.catalog.copiesOf('b1')).map((c) => c.repository),
        ['offsite', 'onsite'],
      );
      assert.deepEqual(
        (await t.catalog.listCopies({ repository: 'offsite' })).map((c) => c.backupId),
        ['b1', 'b2'],
      );
      assert.deepEqual(
        (await t.catalog.listCopies({ task: 'other' })).map((c) => c.backupId),
        ['b2'],
      );
      assert.equal((await t.catalog.listCopies()).length, 3);
      assert.equal((await t.catalog.findCopy('b1', 'id-onsite'))?.manifestId, 'm-b1-onsite');
      assert.equal(await t.catalog.findCopy('b2', 'id-onsite'), undefined);
      // Several backups at once (a page of the daemon's list): each with its copies, oldest first.
      const many = await t.catalog.copiesOfBackups(['b2', 'b1', 'b3']);
      assert.deepEqual(
        [...many].map(([id, cs]) => [id, cs.map((c) => c.repository)]),
        [
          ['b2', ['offsite']],
          ['b1', ['offsite', 'onsite']],
          ['b3', []],
        ],
      );
      assert.equal((await t.catalog.copiesOfBackups([])).size, 0);
    });

    it('refuses a second copy of a backup in one repository, changing nothing', async () => {
      await t.catalog.insertBackup(emptyBackup('b1'));
      await t.catalog.addCopy(copy('b1'));
      await assert.rejects(
        async () => t.catalog.addCopy(copy('b1', 'offsite', { manifestId: 'other' })),
        (e: unknown) => e instanceof ConflictError && e.code === 'COPY_EXISTS',
      );
      assert.equal((await t.catalog.copiesOf('b1'))[0]?.manifestId, 'm-b1-offsite');
    });

    it('keeps copies when the backup record is deleted, saying the array copy is gone', async () => {
      await t.catalog.insertBackup(emptyBackup('b1'));
      await t.catalog.addCopy(copy('b1'));
      await t.catalog.deleteBackup('b1');
      const [kept] = await t.catalog.copiesOf('b1');
      assert.equal(kept?.arrayCopy, false);
      assert.equal(kept?.manifestId, 'm-b1-offsite');
    });

    it('removes a copy; an unknown one is COPY_NOT_FOUND', async () => {
      await t.catalog.insertBackup(emptyBackup('b1'));
      await t.catalog.addCopy(copy('b1'));
      await t.catalog.removeCopy('b1', 'id-offsite');
      assert.deepEqual(await t.catalog.copiesOf('b1'), []);
      await assert.rejects(
        async () => t.catalog.removeCopy('b1', 'id-offsite'),
        (e: unknown) => e instanceof NotFoundError && e.code === 'COPY_NOT_FOUND',
      );
    });

    it('shows a copy recorded by one connection to another', async () => {
      await t.catalog.insertBackup(emptyBackup('b1'));
      const other = await t.connect();
      await other.addCopy(copy('b1'));
      assert.equal((await t.catalog.copiesOf('b1')).length, 1);
    });
  });
}
