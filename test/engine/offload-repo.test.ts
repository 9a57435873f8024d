import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { runBackup } from '../../src/engine/backup.js';
import { runOffload } from '../../src/engine/offload.js';
import {
  applyRepositoryRetention,
  repoBackups,
  repoCheck,
  repoForget,
  repoPrune,
} from '../../src/engine/repo.js';
import { deleteBackup } from '../../src/engine/retention.js';
import { ExitCode, SnapkeeperError } from '../../src/errors.js';
import { type OffloadLab, offloadLabPerTest } from './offload-lab.js';

const start = offloadLabPerTest();

/** Three backups of web01, each offloaded to `mem`, oldest first. */
async function threeCopies(l: OffloadLab): Promise<string[]> {
  const ids: string[] = [];
  for (let i = 0; i < 3; i++) {
    const b = await runBackup(l.ctx, { vmPatterns: ['web01'], mode: 'ASIS' });
    await runOffload(l.offloadContext(), { backupId: b.id, repository: 'mem' });
    ids.push(b.id);
  }
  return ids;
}

describe('repository maintenance on the in-memory peers', () => {
  it('repo backups lists every manifest and whether the catalog still has its backup', async () => {
    const l = await start();
    const ids = await threeCopies(l);
    await deleteBackup(l.ctx, ids[0]!, { dryRun: false });
    const listed = await repoBackups(l.offloadContext(), 'mem');
    assert.deepEqual(
      listed.map((b) => [b.backupId, b.thisCatalog, b.inCatalog]),
      [
        [ids[0], true, false],
        [ids[1], true, true],
        [ids[2], true, true],
      ],
    );
    assert.ok(listed.every((b) => b.bytes > 0 && b.vms[0]?.name === 'web01'));
  });

  it('retention keeps the newest versions, never the copy of a backup in use, and prune leaves check clean', async () => {
    const l = await start();
    const ids = await threeCopies(l);
    // The oldest backup is in use (a restore holds it shared).
    await l.ctx.catalog.beginOperation({ id: 'restore-holder', kind: 'restore' });
    await l.ctx.catalog.acquireLocks('restore-holder', [{ resource: `backup:${ids[0]}`, mode: 'shared' }]);

    const dry = await applyRepositoryRetention(l.offloadContext(), {
      task: 'adhoc',
      repository: 'mem',
      policy: { versions: 1 },
      dryRun: true,
    });
    assert.deepEqual(
      dry.forgotten.map((f) => f.backupId),
      [ids[1]],
    );
    assert.equal((await repoBackups(l.offloadContext(), 'mem')).length, 3, 'a dry run forgets nothing');

    const real = await applyRepositoryRetention(l.offloadContext(), {
      task: 'adhoc',
      repository: 'mem',
      policy: { versions: 1 },
    });
    assert.deepEqual(
      real.forgotten.map((f) => f.backupId),
      [ids[1]],
    );
    // The copy in use is pinned: the rule never expires it (it still counts as a version).
    assert.deepEqual(real.skipped, []);
    assert.deepEqual(
      (await repoBackups(l.offloadContext(), 'mem')).map((b) => b.backupId),
      [ids[0], ids[2]],
    );
    assert.deepEqual(await l.ctx.catalog.copiesOf(ids[1]!), [], 'the forgotten copy leaves the catalog');
    assert.equal((await l.ctx.catalog.copiesOf(ids[0]!)).length, 1);

    await l.ctx.catalog.finishOperation('restore-holder', 'done');
    const pruned = await repoPrune(l.offloadContext(), 'mem', { safetyDelayHours: 0 });
    assert.equal(pruned.safetyDelayHours, 0);
    const check = await repoCheck(l.offloadContext(), 'mem', { readData: true });
    assert.deepEqual(check.issues, []);
  });

  it('repo forget refuses an unknown id before forgetting anything (exit 3)', async () => {
    const l = await start();
    const ids = await threeCopies(l);
    await assert.rejects(
      () => repoForget(l.offloadContext(), 'mem', { ids: [ids[0]!, 'no-such-backup'] }),
      (e: unknown) =>
        e instanceof SnapkeeperError &&
        e.code === 'REPOSITORY_BACKUP_NOT_FOUND' &&
        e.exitCode === ExitCode.usage,
    );
    assert.equal((await repoBackups(l.offloadContext(), 'mem')).length, 3);
    const forgotten = await repoForget(l.offloadContext(), 'mem', { ids: [ids[0]!] });
    assert.deepEqual(
      forgotten.forgotten.map((f) => f.backupId),
      [ids[0]],
    );
    assert.equal((await repoBackups(l.offloadContext(), 'mem')).length, 2);
  });

  it('a negative safety delay is refused (exit 3)', async () => {
    const l = await start();
    await assert.rejects(
      () => repoPrune(l.offloadContext(), 'mem', { safetyDelayHours: -1 }),
      (e: unknown) => e instanceof SnapkeeperError && e.exitCode === ExitCode.usage,
    );
  });
});
