import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { DaemonStore, ScheduleState, TaskStore } from '../../src/catalog/index.js';
import type { Config } from '../../src/config/load.js';
import type { TaskConfig } from '../../src/config/schema.js';
import type { Logger } from '../../src/server/log.js';
import { Scheduler } from '../../src/server/scheduler.js';

/** The scheduler on an in-memory catalog and a clock the test moves: every decision without waiting. */
function harness(tasks: TaskConfig[], options: { running?: boolean } = {}) {
  const states = new Map<string, ScheduleState>();
  const runs: string[] = [];
  const lines: { level: string; msg: string; fields: Record<string, unknown> }[] = [];
  let now = new Date('2026-05-10T12:00:00Z');
  const log =
    (level: string): Logger[keyof Logger] =>
    (msg, fields = {}) => {
      lines.push({ level, msg, fields });
    };
  const catalog = {
    listTasks: async () => [],
    scheduleState: async (task: string) => states.get(task),
    saveScheduleStateAsLeader: async (s: ScheduleState) => {
      states.set(s.task, { ...s });
      return true;
    },
  } as unknown as TaskStore & Pick<DaemonStore, 'scheduleState' | 'saveScheduleStateAsLeader'>;
  const scheduler = new Scheduler({
    config: { tasks, file: '/etc/snapkeeper.yaml' } as unknown as Config,
    catalog,
    log: { info: log('info'), warn: log('warn'), error: log('error') },
    leader: () => ({ instanceId: 'this-daemon', term: 1 }),
    taskRunning: () => options.running === true,
    runTask: async (task) => {
      runs.push(task);
      return `job-${runs.length}`;
    },
    now: () => now,
  });
  return {
    scheduler,
    states,
    runs,
    lines,
    at(iso: string) {
      now = new Date(iso);
    },
  };
}

const nightly: TaskConfig = {
  name: 'nightly',
  select: { vms: ['*'] },
  schedule: '0 2 * * *',
  timezone: 'UTC',
};
const manual: TaskConfig = { name: 'manual', select: { vms: ['*'] } };

describe('Scheduler', () => {
  it('first sight records a baseline and runs nothing; the due time runs once; the next tick does not repeat it', async () => {
    const h = harness([nightly, manual]);
    await h.scheduler.tick();
    assert.deepEqual(h.runs, []);
    assert.equal(h.states.get('nightly')?.handledAt, '2026-05-10T12:00:00.000Z');
    assert.equal(h.states.has('manual'), false, 'a task without a schedule has no state');
    h.at('2026-05-11T02:00:00.300Z');
    await h.scheduler.tick();
    assert.deepEqual(h.runs, ['nightly']);
    assert.deepEqual(h.states.get('nightly'), {
      task: 'nightly',
      handledAt: '2026-05-11T02:00:00.300Z',
      lastRunAt: '2026-05-11T02:00:00.300Z',
      lastJobId: 'job-1',
    });
    h.at('2026-05-11T02:00:01.300Z');
    await h.scheduler.tick();
    assert.deepEqual(h.runs, ['nightly']);
  });

  it('three due times missed: one run, the missed count logged', async () => {
    const h = harness([nightly]);
    h.states.set('nightly', { task: 'nightly', handledAt: '2026-05-07T12:00:00.000Z' });
    await h.scheduler.tick();
    assert.deepEqual(h.runs, ['nightly']);
    const folded = h.lines.find((l) => l.msg.startsWith('schedule: due times missed'));
    assert.equal(folded?.fields.missed, 2);
  });

  it('a task still running when due is skipped (logged) and not owed later', async () => {
    const h = harness([nightly], { running: true });
    h.states.set('nightly', { task: 'nightly', handledAt: '2026-05-10T01:00:00.000Z', lastJobId: 'job-0' });
    await h.scheduler.tick();
    assert.deepEqual(h.runs, []);
    const skipped = h.lines.find((l) => l.msg.startsWith('schedule: run skipped'));
    assert.equal(skipped?.level, 'warn');
    assert.equal(skipped?.fields.dueAt, '2026-05-10T02:00:00.000Z');
    assert.equal(h.states.get('nightly')?.handledAt, '2026-05-10T12:00:00.000Z');
    assert.equal(h.states.get('nightly')?.lastJobId, 'job-0');
  });

  it('nextRun is the next due time in the task’s zone; none without a schedule', () => {
    const h = harness([]);
    assert.equal(h.scheduler.nextRun(nightly)?.toISOString(), '2026-05-11T02:00:00.000Z');
    assert.equal(
      h.scheduler.nextRun({ ...nightly, timezone: 'Asia/Tokyo' })?.toISOString(),
      '2026-05-10T17:00:00.000Z',
    );
    assert.equal(h.scheduler.nextRun(manual), undefined);
  });
});
