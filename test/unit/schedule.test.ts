import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { MISSED_COUNT_CAP, nextRunAfter, RuleError, scheduleDecision } from '../../src/rules/index.js';

const t = (iso: string) => new Date(iso);

interface Case {
  name: string;
  pattern: string;
  timezone?: string;
  lastHandled?: string;
  now: string;
  want:
    | { action: 'baseline'; next: string | undefined }
    | { action: 'wait'; next: string | undefined }
    | { action: 'run'; dueAt: string; missed: number; next: string | undefined };
}

/** Every case the scheduler meets: first sight, nothing due, due now, missed during downtime, clocks, zones. */
const CASES: Case[] = [
  {
    name: 'first sight: nothing owed, wait for the next due time',
    pattern: '0 2 * * *',
    timezone: 'UTC',
    now: '2026-05-10T12:00:00Z',
    want: { action: 'baseline', next: '2026-05-11T02:00:00.000Z' },
  },
  {
    name: 'first sight exactly on a due time: still only a baseline',
    pattern: '0 2 * * *',
    timezone: 'UTC',
    now: '2026-05-10T02:00:00Z',
    want: { action: 'baseline', next: '2026-05-11T02:00:00.000Z' },
  },
  {
    name: 'nothing due since the last handled time',
    pattern: '0 2 * * *',
    timezone: 'UTC',
    lastHandled: '2026-05-10T02:00:00Z',
    now: '2026-05-10T23:59:59Z',
    want: { action: 'wait', next: '2026-05-11T02:00:00.000Z' },
  },
  {
    name: 'due exactly now: runs',
    pattern: '0 2 * * *',
    timezone: 'UTC',
    lastHandled: '2026-05-10T02:00:00Z',
    now: '2026-05-11T02:00:00Z',
    want: { action: 'run', dueAt: '2026-05-11T02:00:00.000Z', missed: 0, next: '2026-05-12T02:00:00.000Z' },
  },
  {
    name: 'handled up to the due time itself: not run again',
    pattern: '0 2 * * *',
    timezone: 'UTC',
    lastHandled: '2026-05-11T02:00:00Z',
    now: '2026-05-11T02:00:00.900Z',
    want: { action: 'wait', next: '2026-05-12T02:00:00.000Z' },
  },
  {
    name: 'one due time passed while the daemon was down: runs once, nothing missed',
    pattern: '0 2 * * *',
    timezone: 'UTC',
    lastHandled: '2026-05-10T12:00:00Z',
    now: '2026-05-11T09:00:00Z',
    want: { action: 'run', dueAt: '2026-05-11T02:00:00.000Z', missed: 0, next: '2026-05-12T02:00:00.000Z' },
  },
  {
    name: 'three days down: runs once, the two older due times are counted as missed',
    pattern: '0 2 * * *',
    timezone: 'UTC',
    lastHandled: '2026-05-10T12:00:00Z',
    now: '2026-05-13T09:00:00Z',
    want: { action: 'run', dueAt: '2026-05-13T02:00:00.000Z', missed: 2, next: '2026-05-14T02:00:00.000Z' },
  },
  {
    name: 'every second (six fields): due',
    pattern: '* * * * * *',
    lastHandled: '2026-05-10T12:00:00Z',
    now: '2026-05-10T12:00:01Z',
    want: { action: 'run', dueAt: '2026-05-10T12:00:01.000Z', missed: 0, next: '2026-05-10T12:00:02.000Z' },
  },
  {
    name: 'every second, ten seconds down: one run, nine missed',
    pattern: '* * * * * *',
    lastHandled: '2026-05-10T12:00:00Z',
    now: '2026-05-10T12:00:10.500Z',
    want: { action: 'run', dueAt: '2026-05-10T12:00:10.000Z', missed: 9, next: '2026-05-10T12:00:11.000Z' },
  },
  {
    name: 'every second between two ticks: nothing due',
    pattern: '* * * * * *',
    lastHandled: '2026-05-10T12:00:10.000Z',
    now: '2026-05-10T12:00:10.999Z',
    want: { action: 'wait', next: '2026-05-10T12:00:11.000Z' },
  },
  {
    name: 'the time zone moves the due time (Paris, summer: UTC+2)',
    pattern: '0 2 * * *',
    timezone: 'Europe/Paris',
    lastHandled: '2026-07-01T12:00:00Z',
    now: '2026-07-02T00:00:00Z',
    want: { action: 'run', dueAt: '2026-07-02T00:00:00.000Z', missed: 0, next: '2026-07-03T00:00:00.000Z' },
  },
  {
    name: 'a zone west of UTC (New York, winter: UTC-5)',
    pattern: '30 23 * * *',
    timezone: 'America/New_York',
    lastHandled: '2026-01-10T12:00:00Z',
    now: '2026-01-11T04:30:00Z',
    want: { action: 'run', dueAt: '2026-01-11T04:30:00.000Z', missed: 0, next: '2026-01-12T04:30:00.000Z' },
  },
  {
    name: 'spring forward: 02:00 does not exist in Paris that night, the run comes at 03:00 local',
    pattern: '0 2 * * *',
    timezone: 'Europe/Paris',
    lastHandled: '2026-03-28T12:00:00Z',
    now: '2026-03-29T06:00:00Z',
    want: { action: 'run', dueAt: '2026-03-29T01:00:00.000Z', missed: 0, next: '2026-03-30T00:00:00.000Z' },
  },
  {
    name: 'fall back: 02:30 happens twice in Paris, the task runs once',
    pattern: '30 2 * * *',
    timezone: 'Europe/Paris',
    lastHandled: '2026-10-24T12:00:00Z',
    now: '2026-10-25T12:00:00Z',
    want: { action: 'run', dueAt: '2026-10-25T00:30:00.000Z', missed: 0, next: '2026-10-26T01:30:00.000Z' },
  },
  {
    name: 'the clock went back before the last handled time: no run, wait for the next after it',
    pattern: '0 * * * *',
    timezone: 'UTC',
    lastHandled: '2026-05-10T12:30:00Z',
    now: '2026-05-10T11:10:00Z',
    want: { action: 'wait', next: '2026-05-10T13:00:00.000Z' },
  },
  {
    name: 'weekdays only: Saturday and Sunday passed while down, one run on Monday',
    pattern: '0 6 * * 1-5',
    timezone: 'UTC',
    lastHandled: '2026-05-08T07:00:00Z',
    now: '2026-05-11T06:00:05Z',
    want: { action: 'run', dueAt: '2026-05-11T06:00:00.000Z', missed: 0, next: '2026-05-12T06:00:00.000Z' },
  },
  {
    name: 'monthly, two months down: one run, one missed',
    pattern: '0 0 1 * *',
    timezone: 'UTC',
    lastHandled: '2026-02-15T00:00:00Z',
    now: '2026-04-02T00:00:00Z',
    want: { action: 'run', dueAt: '2026-04-01T00:00:00.000Z', missed: 1, next: '2026-05-01T00:00:00.000Z' },
  },
];

describe('scheduleDecision', () => {
  for (const c of CASES) {
    it(c.name, () => {
      const got = scheduleDecision({
        pattern: c.pattern,
        ...(c.timezone ? { timezone: c.timezone } : {}),
        ...(c.lastHandled ? { lastHandled: t(c.lastHandled) } : {}),
        now: t(c.now),
      });
      const plain = {
        ...got,
        next: got.next?.toISOString(),
        ...('dueAt' in got ? { dueAt: got.dueAt.toISOString() } : {}),
      };
      assert.deepEqual(plain, c.want);
    });
  }

  it('a very long downtime of an every-second schedule is counted up to the cap, and still runs once', () => {
    const got = scheduleDecision({
      pattern: '* * * * * *',
      lastHandled: t('2026-05-10T00:00:00Z'),
      now: t('2026-05-11T00:00:00Z'),
    });
    assert.equal(got.action, 'run');
    assert.equal(got.action === 'run' && got.missed, MISSED_COUNT_CAP - 1);
  });

  it('a bad pattern or time zone is a RuleError BAD_SCHEDULE naming it', () => {
    assert.throws(
      () => scheduleDecision({ pattern: 'every night', now: t('2026-05-10T00:00:00Z') }),
      (err: unknown) =>
        err instanceof RuleError && err.code === 'BAD_SCHEDULE' && /every night/.test(err.message),
    );
    assert.throws(
      () =>
        scheduleDecision({ pattern: '0 2 * * *', timezone: 'Mars/Olympus', now: t('2026-05-10T00:00:00Z') }),
      (err: unknown) =>
        err instanceof RuleError && err.code === 'BAD_SCHEDULE' && /Mars\/Olympus/.test(err.message),
    );
  });

  it('an invalid time is a RuleError BAD_TIMESTAMP', () => {
    assert.throws(
      () => scheduleDecision({ pattern: '0 2 * * *', now: new Date('nope') }),
      (err: unknown) => err instanceof RuleError && err.code === 'BAD_TIMESTAMP',
    );
    assert.throws(
      () =>
        scheduleDecision({
          pattern: '0 2 * * *',
          lastHandled: new Date('nope'),
          now: t('2026-05-10T00:00:00Z'),
        }),
      (err: unknown) => err instanceof RuleError && err.code === 'BAD_TIMESTAMP',
    );
  });
});

describe('nextRunAfter', () => {
  it('is strictly after the given time, in the zone', () => {
    assert.equal(
      nextRunAfter('0 2 * * *', 'UTC', t('2026-05-10T02:00:00Z'))?.toISOString(),
      '2026-05-11T02:00:00.000Z',
    );
    assert.equal(
      nextRunAfter('0 2 * * *', 'Asia/Tokyo', t('2026-05-10T00:00:00Z'))?.toISOString(),
      '2026-05-10T17:00:00.000Z',
    );
  });

  it('is undefined for a pattern that never fires again', () => {
    assert.equal(nextRunAfter('0 0 0 1 1 * 2020', 'UTC', t('2026-05-10T00:00:00Z')), undefined);
  });
});
