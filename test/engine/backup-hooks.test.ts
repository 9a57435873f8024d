import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import type { HookConfig } from '../../src/config/schema.js';
import { runBackup } from '../../src/engine/backup.js';
import { recover } from '../../src/engine/recover.js';
import { groupAlive } from '../../src/engine/steps/hooks.js';
import type { BackupRecord } from '../../src/model/backup.js';
import { arraySnapshotIds, assertReleased, BEFORE, start } from './backup-lab.js';
import { crashedAt, type EngineLab, LATER } from './harness.js';

const root = mkdtempSync(join(tmpdir(), 'snapkeeper-engine-hooks-'));
after(() => rmSync(root, { recursive: true, force: true }));
let n = 0;

/** A hook running `script` in sh, which appends its phase and the backup's VMs to `log` first. */
function hook(
  phase: HookConfig['phase'],
  log: string,
  script: string,
  more: Partial<HookConfig> = {},
): HookConfig {
  return {
    phase,
    run: ['/bin/sh', '-c', `echo "$SNAPKEEPER_PHASE $SNAPKEEPER_VMS" >> '${log}'; ${script}`],
    onError: 'fail',
    ...more,
  };
}

/** Runs a backup of web01 and db01 as a task with `hooks`; returns the record and the phases that ran. */
async function backUpWith(
  l: EngineLab,
  makeHooks: (log: string) => HookConfig[],
): Promise<{ record: BackupRecord; ran: string[] }> {
  const log = join(root, `log-${++n}`);
  const name = `hooked${n}`;
  await l.ctx.catalog.createTask({ name, select: { vms: ['web01', 'db01'] }, hooks: makeHooks(log) });
  const record = await runBackup(l.ctx, { taskName: name });
  let ran: string[] = [];
  try {
    ran = readFileSync(log, 'utf8').trim().split('\n');
  } catch {
    // No hook ran.
  }
  return { record, ran };
}

async function vmSnapshotsTaken(l: EngineLab, id: string): Promise<number> {
  const journal = await l.ctx.catalog.journalEntries(id);
  return journal.filter((e) => e.action === 'vm-snapshot' || e.action === 'suspend').length;
}

describe('backup hooks on the fakes', () => {
  it('runs each phase in order with the backup id, task and VMs, and records it', async () => {
    const l = await start();
    const { record, ran } = await backUpWith(l, (log) => [
      hook('after-release', log, 'echo released'),
      hook('before-prepare', log, 'echo "id=$SNAPKEEPER_BACKUP_ID task=$SNAPKEEPER_TASK"'),
      hook('after-snapshot', log, 'true'),
      hook('on-failure', log, 'true'),
    ]);
    assert.equal(record.state, 'complete');
    assert.deepEqual(record.warnings, []);
    assert.deepEqual(ran, [
      'before-prepare ["db01","web01"]',
      'after-snapshot ["db01","web01"]',
      'after-release ["db01","web01"]',
    ]);
    assert.deepEqual(
      record.hooks?.map((h) => [h.phase, h.ok, h.exitCode]),
      [
        ['before-prepare', true, 0],
        ['after-snapshot', true, 0],
        ['after-release', true, 0],
      ],
    );
    assert.equal(record.hooks?.[0]?.output, `id=${record.id} task=${record.task}\n`);
    assert.equal(record.hooks?.[2]?.output, 'released\n');
    const stored = await l.ctx.catalog.getBackup(record.id);
    assert.deepEqual(stored.hooks, record.hooks, 'the hooks are in the stored record');
    await assertReleased(l, BEFORE);
  });

  for (const [how, script, more] of [
    ['fails', 'echo cannot flush >&2; exit 3', {}],
    ['times out', 'sleep 60', { timeoutSeconds: 1 }],
  ] as const) {
    it(`a before-prepare hook that ${how} with onError fail stops the run before any VM is touched`, async () => {
      const l = await start();
      const { record, ran } = await backUpWith(l, (log) => [
        hook('before-prepare', log, script, more),
        hook('after-snapshot', log, 'true'),
        hook('after-release', log, 'true'),
        hook('on-failure', log, 'true'),
      ]);
      assert.equal(record.state, 'failed');
      assert.match(record.error ?? '', /^before-prepare hook "\/bin\/sh" failed: /);
      assert.ok(record.vms.every((vm) => vm.consistency === 'not-prepared' && vm.state === 'failed'));
      assert.deepEqual(
        ran.map((line) => line.split(' ')[0]),
        ['before-prepare', 'on-failure'],
      );
      assert.equal(await vmSnapshotsTaken(l, record.id), 0, 'no VM was held');
      assert.deepEqual(await arraySnapshotIds(l), []);
      assert.equal(record.hooks?.[0]?.timedOut, how === 'times out');
      if (how === 'fails') assert.match(record.hooks?.[0]?.output ?? '', /cannot flush/);
      await assertReleased(l, BEFORE);
      assert.deepEqual(await l.ctx.catalog.unfinishedOperations(), []);
    });
  }

  it('a before-prepare hook that fails with onError continue is a warning', async () => {
    const l = await start();
    const { record, ran } = await backUpWith(l, (log) => [
      hook('before-prepare', log, 'exit 1', { onError: 'continue' }),
    ]);
    assert.equal(record.state, 'complete');
    assert.equal(ran.length, 1);
    assert.deepEqual(
      record.warnings.map((w) => w.code),
      ['HOOK_FAILED'],
    );
    assert.match(record.warnings[0]!.message, /exited with code 1/);
    assert.ok((await vmSnapshotsTaken(l, record.id)) > 0);
  });

  for (const onError of ['fail', 'continue'] as const) {
    it(`after the snapshot a failing hook only warns (onError ${onError})`, async () => {
      const l = await start();
      const { record, ran } = await backUpWith(l, (log) => [
        hook('after-snapshot', log, 'exit 2', { onError }),
        hook('after-release', log, 'exit 4', { onError }),
        hook('on-failure', log, 'true'),
      ]);
      assert.equal(record.state, 'complete');
      assert.deepEqual(
        ran.map((line) => line.split(' ')[0]),
        ['after-snapshot', 'after-release'],
      );
      assert.deepEqual(
        record.warnings.map((w) => w.code),
        ['HOOK_FAILED', 'HOOK_FAILED'],
      );
      assert.equal(record.snapshots.length, 1, 'the backup keeps its snapshot');
      await assertReleased(l, BEFORE);
    });
  }

  it('an after-snapshot hook is killed at its timeout and the VMs released', async () => {
    const l = await start();
    const started = Date.now();
    const { record } = await backUpWith(l, (log) => [
      hook('after-snapshot', log, 'sleep 60', { timeoutSeconds: 1 }),
    ]);
    assert.ok(Date.now() - started < 20_000, 'the release did not wait for the hook');
    assert.equal(record.state, 'complete');
    assert.equal(record.hooks?.[0]?.timedOut, true);
    assert.deepEqual(
      record.warnings.map((w) => w.code),
      ['HOOK_FAILED'],
    );
    for (const vm of record.vms) assert.ok((vm.quiesce?.ms ?? 0) < 20_000, `${vm.name} held too long`);
    await assertReleased(l, BEFORE);
  });

  it('recover kills the hook of a run that died while it ran, and releases the VMs', async () => {
    const l = await start();
    const log = join(root, `crash-log-${++n}`);
    await l.ctx.catalog.createTask({
      name: 'crashing',
      select: { vms: ['web01', 'db01'] },
      hooks: [hook('after-snapshot', log, 'sleep 300', { timeoutSeconds: 600 })],
    });
    await crashedAt(l, 'hook-after-snapshot', (ctx) => runBackup(ctx, { taskName: 'crashing' }));
    const [op] = await l.ctx.catalog.unfinishedOperations();
    assert.ok(op);
    const entry = (await l.ctx.catalog.journalEntries(op.id)).find((e) => e.action === 'hook.run');
    const pgid = Number(entry?.data.pgid);
    assert.ok(pgid > 0, 'the hook is journaled with its process group');
    assert.equal(groupAlive(pgid), true);

    const report = await recover(l.context(LATER));
    assert.deepEqual(report.errors, []);
    assert.ok(report.actions.some((a) => a.includes(`process group ${pgid}`)));
    assert.equal(groupAlive(pgid), false, 'the hook is gone');
    await assertReleased(l, BEFORE);
    assert.equal((await l.ctx.catalog.getBackup(op.id)).state, 'failed');
    assert.deepEqual(await l.ctx.catalog.unfinishedOperations(), []);

    const again = await recover(l.context(LATER));
    assert.deepEqual(again.errors, []);
    assert.deepEqual(again.actions, [], 'a second recover finds nothing to do');
  });
});
