import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { BackupState } from '../../src/model/backup.js';
import { RuleError } from '../../src/rules/errors.js';
import { expiredBackups, type RetentionCandidate, type RetentionPolicy } from '../../src/rules/retention.js';

const NOW = new Date('2026-03-10T12:00:00.000Z');
const DAY = 24 * 60 * 60 * 1000;

/** A backup of task `t` started `age` ms before NOW. */
function b(id: string, state: BackupState, ageMs: number, pinned?: boolean): RetentionCandidate {
  const c: RetentionCandidate = {
    id,
    task: 't',
    state,
    startedAt: new Date(NOW.getTime() - ageMs).toISOString(),
  };
  if (pinned !== undefined) c.pinned = pinned;
  return c;
}

const ids = (e: { id: string }[]) => e.map((x) => x.id);

describe('expiredBackups: table', () => {
  // title, backups, policy, expired ids (oldest first)
  const rows: [string, RetentionCandidate[], RetentionPolicy, string[]][] = [
    ['no backups', [], { versions: 1, days: 1 }, []],
    ['no policy keeps everything', [b('a', 'complete', 100 * DAY), b('b', 'failed', 200 * DAY)], {}, []],
    [
      'versions 2 of 4',
      [
        b('c4', 'complete', 1 * DAY),
        b('c3', 'complete', 2 * DAY),
        b('c2', 'complete', 3 * DAY),
        b('c1', 'complete', 4 * DAY),
      ],
      { versions: 2 },
      ['c1', 'c2'],
    ],
    [
      'versions equal to count',
      [b('c2', 'complete', DAY), b('c1', 'complete', 2 * DAY)],
      { versions: 2 },
      [],
    ],
    [
      'versions count partial, not failed or running',
      [
        b('r', 'running', 0),
        b('f2', 'failed', 0.5 * DAY),
        b('p', 'partial', DAY),
        b('c', 'complete', 2 * DAY),
        b('c0', 'complete', 3 * DAY),
      ],
      { versions: 2 },
      ['c0'],
    ],
    [
      'days: just under, exactly, just over',
      [
        b('new', 'complete', 0),
        b('under', 'complete', 7 * DAY - 1),
        b('exact', 'complete', 7 * DAY),
        b('over', 'complete', 7 * DAY + 1),
      ],
      { days: 7 },
      ['over'],
    ],
    [
      'fractional days',
      [b('n', 'complete', 0), b('h11', 'complete', 11 * 3600e3), b('h13', 'complete', 13 * 3600e3)],
      { days: 0.5 },
      ['h13'],
    ],
    [
      'future start is young',
      [b('f', 'complete', -DAY), b('old', 'complete', 30 * DAY)],
      { days: 1 },
      ['old'],
    ],
    [
      'days expires the newest successful backup too (SPEC: at most D days)',
      [b('f', 'failed', 40 * DAY), b('p', 'partial', 50 * DAY), b('c', 'complete', 60 * DAY)],
      { days: 7 },
      ['c', 'p', 'f'],
    ],
    [
      'days: a lone backup older than D expires; exactly D days old is kept',
      [b('only', 'complete', 7 * DAY + 1)],
      { days: 7 },
      ['only'],
    ],
    [
      'days: the newest backup exactly D days old is kept',
      [b('only', 'complete', 7 * DAY), b('older', 'complete', 8 * DAY)],
      { days: 7 },
      ['older'],
    ],
    [
      'days: pinned and running backups older than D survive, the rest expire',
      [b('r', 'running', 100 * DAY), b('p', 'partial', 50 * DAY, true), b('c', 'complete', 60 * DAY)],
      { days: 7 },
      ['c'],
    ],
    [
      'no successful backup: days expires failed ones, newer failed kept',
      [b('f1', 'failed', DAY), b('f2', 'failed', 10 * DAY)],
      { days: 7 },
      ['f2'],
    ],
    [
      'failed older than the newest successful expire; newer failed kept',
      [
        b('f-new', 'failed', 0.1 * DAY),
        b('c', 'complete', DAY),
        b('f-old', 'failed', 2 * DAY),
        b('c-old', 'complete', 3 * DAY),
      ],
      { versions: 5 },
      ['f-old'],
    ],
    [
      'both set: either rule expires',
      [
        b('c5', 'complete', 1 * DAY),
        b('c4', 'complete', 2 * DAY),
        b('c3', 'complete', 9 * DAY),
        b('c2', 'complete', 10 * DAY),
        b('c1', 'complete', 11 * DAY),
      ],
      { versions: 4, days: 7 },
      ['c1', 'c2', 'c3'],
    ],
    [
      'both set: versions do not keep anything older than days, the newest included',
      [b('c2', 'complete', 20 * DAY), b('c1', 'complete', 30 * DAY)],
      { versions: 5, days: 7 },
      ['c1', 'c2'],
    ],
    [
      'running is never expired, even ancient',
      [b('r', 'running', 100 * DAY), b('c', 'complete', 0)],
      { versions: 1, days: 1 },
      [],
    ],
    [
      'pinned is never expired but counts as a version',
      [b('c3', 'complete', DAY), b('c2', 'complete', 2 * DAY, true), b('c1', 'complete', 3 * DAY)],
      { versions: 1 },
      ['c1'],
    ],
    [
      'pinned old failed backup survives the failed rule',
      [b('c', 'complete', DAY), b('f', 'failed', 2 * DAY, true)],
      { versions: 3 },
      [],
    ],
    [
      'tie on startedAt: the greater id is newer',
      [b('b-2', 'complete', DAY), b('b-1', 'complete', DAY), b('b-3', 'complete', DAY)],
      { versions: 2 },
      ['b-1'],
    ],
    [
      'tie between failed and successful: decided by id',
      [b('m', 'complete', DAY), b('a', 'failed', DAY), b('z', 'failed', DAY)],
      { versions: 3 },
      ['a'],
    ],
  ];
  for (const [title, backups, policy, expected] of rows) {
    it(title, () => {
      assert.deepEqual(ids(expiredBackups(backups, policy, NOW)), expected);
      // The input order must not matter.
      assert.deepEqual(ids(expiredBackups([...backups].reverse(), policy, NOW)), expected);
    });
  }
});

describe('expiredBackups: golden', () => {
  it('a month of daily backups with failures, pins and a running one', () => {
    const backups: RetentionCandidate[] = [];
    for (let day = 0; day < 12; day++) {
      const state: BackupState =
        day === 0 ? 'running' : day % 5 === 0 ? 'failed' : day === 3 ? 'partial' : 'complete';
      backups.push(b(`d${String(day).padStart(2, '0')}`, state, day * DAY + 3600e3, day === 9));
    }
    const out = expiredBackups(backups, { versions: 5, days: 8 }, NOW);
    assert.deepEqual(out, [
      { id: 'd11', reason: 'beyond the newest 5 versions; older than 8 days' },
      { id: 'd10', reason: 'older than 8 days; failed, and a newer backup succeeded (d01)' },
      { id: 'd08', reason: 'beyond the newest 5 versions; older than 8 days' },
      { id: 'd07', reason: 'beyond the newest 5 versions' },
      { id: 'd05', reason: 'failed, and a newer backup succeeded (d01)' },
    ]);
  });

  it('singular wording', () => {
    const out = expiredBackups(
      [b('new', 'complete', 0), b('old', 'complete', 2 * DAY)],
      { versions: 1, days: 1 },
      NOW,
    );
    assert.deepEqual(out, [{ id: 'old', reason: 'beyond the newest 1 version; older than 1 day' }]);
  });
});

describe('expiredBackups: refused input', () => {
  const rows: [string, () => unknown, string][] = [
    [
      'mixed tasks',
      () =>
        expiredBackups(
          [b('a', 'complete', 0), { ...b('b', 'complete', 0), task: 'u' }],
          { versions: 1 },
          NOW,
        ),
      'RETENTION_MIXED_TASKS',
    ],
    [
      'bad startedAt',
      () => expiredBackups([{ ...b('a', 'complete', 0), startedAt: 'yesterday' }], { days: 1 }, NOW),
      'BAD_TIMESTAMP',
    ],
    ['bad now', () => expiredBackups([], { days: 1 }, new Date('nope')), 'BAD_TIMESTAMP'],
    ['versions 0', () => expiredBackups([], { versions: 0 }, NOW), 'BAD_RETENTION'],
    ['versions fractional', () => expiredBackups([], { versions: 1.5 }, NOW), 'BAD_RETENTION'],
    ['days negative', () => expiredBackups([], { days: -1 }, NOW), 'BAD_RETENTION'],
  ];
  for (const [title, fn, code] of rows) {
    it(title, () => assert.throws(fn, (err: unknown) => err instanceof RuleError && err.code === code));
  }
});
