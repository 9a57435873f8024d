import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { claimDecision, type LeadershipRow, leadershipAt } from '../../src/catalog/rows.js';

const NOW = '2026-12-02T10:00:00.000Z';
const LATER = '2026-12-02T10:00:30.000Z';
const EARLIER = '2026-12-02T09:59:30.000Z';
const TTL = 60_000;
const RENEWED = '2026-12-02T10:01:00.000Z';

describe('leadership rule (both dialects decide with it)', () => {
  const cases: {
    name: string;
    row: LeadershipRow;
    claimant: string;
    mine: boolean;
    holder: string;
    term: number;
    written: boolean;
  }[] = [
    {
      name: 'nobody holds it: taken, next term',
      row: { holder: null, term: 0, expires_at: null },
      claimant: 'a',
      mine: true,
      holder: 'a',
      term: 1,
      written: true,
    },
    {
      name: 'released (holder cleared): taken, next term',
      row: { holder: null, term: 4, expires_at: null },
      claimant: 'b',
      mine: true,
      holder: 'b',
      term: 5,
      written: true,
    },
    {
      name: 'its holder renews: same term',
      row: { holder: 'a', term: 3, expires_at: LATER },
      claimant: 'a',
      mine: true,
      holder: 'a',
      term: 3,
      written: true,
    },
    {
      name: 'another holds a live lease: refused',
      row: { holder: 'a', term: 3, expires_at: LATER },
      claimant: 'b',
      mine: false,
      holder: 'a',
      term: 3,
      written: false,
    },
    {
      name: "another's lease ran out: taken, next term",
      row: { holder: 'a', term: 3, expires_at: EARLIER },
      claimant: 'b',
      mine: true,
      holder: 'b',
      term: 4,
      written: true,
    },
    {
      name: 'a lease ending exactly now has run out',
      row: { holder: 'a', term: 3, expires_at: NOW },
      claimant: 'b',
      mine: true,
      holder: 'b',
      term: 4,
      written: true,
    },
    {
      name: 'its own lease ran out: taken again, next term (another may have led meanwhile)',
      row: { holder: 'a', term: 3, expires_at: EARLIER },
      claimant: 'a',
      mine: true,
      holder: 'a',
      term: 4,
      written: true,
    },
  ];
  for (const c of cases) {
    it(c.name, () => {
      const { leadership, write } = claimDecision(c.row, c.claimant, NOW, TTL);
      assert.equal(leadership.mine, c.mine);
      assert.equal(leadership.holder, c.holder);
      assert.equal(leadership.term, c.term);
      assert.equal(write !== undefined, c.written);
      if (write) assert.deepEqual(write, { holder: c.claimant, term: c.term, expiresAt: RENEWED });
    });
  }

  it('as it stands: a live holder is shown, an expired one is not, the term stays', () => {
    assert.deepEqual(leadershipAt({ holder: 'a', term: 2, expires_at: LATER }, NOW), {
      holder: 'a',
      term: 2,
      expiresAt: LATER,
      mine: false,
    });
    assert.deepEqual(leadershipAt({ holder: 'a', term: 2, expires_at: EARLIER }, NOW), {
      term: 2,
      mine: false,
    });
    assert.deepEqual(leadershipAt({ holder: null, term: 0, expires_at: null }, NOW), {
      term: 0,
      mine: false,
    });
  });
});
