import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  type ConcurrencyLimits,
  greedySchedule,
  idealMakespan,
  type Job,
  makespanLowerBound,
  type Priority,
} from '../../src/rules/concurrency.js';
import { RuleError } from '../../src/rules/errors.js';

const jobs = (spec: Record<string, number[]>): Job[] =>
  Object.entries(spec).flatMap(([host, durations]) => durations.map((durationMs) => ({ host, durationMs })));

describe('idealMakespan and makespanLowerBound: table', () => {
  // title, jobs, limits, ideal, lower bound
  const rows: [string, Job[], ConcurrencyLimits, number, number][] = [
    ['no jobs', [], { global: 4, perHost: 2 }, 0, 0],
    ['one job', jobs({ a: [7] }), { global: 4, perHost: 2 }, 7, 7],
    ['global 1 serialises', jobs({ a: [1, 2], b: [3] }), { global: 1, perHost: 4 }, 6, 6],
    ['perHost 1 on one host serialises', jobs({ a: [1, 2, 3] }), { global: 8, perHost: 1 }, 6, 6],
    ['perHost above global is capped by global', jobs({ a: [1, 1, 1, 1] }), { global: 2, perHost: 8 }, 2, 2],
    ['everything in parallel', jobs({ a: [5, 4], b: [3, 5] }), { global: 4, perHost: 2 }, 5, 5],
    [
      'longest first beats input order',
      [
        { host: 'a', durationMs: 1 },
        { host: 'b', durationMs: 1 },
        { host: 'c', durationMs: 2 },
      ],
      { global: 2, perHost: 2 },
      2,
      2,
    ],
    // Longest-first starts b and c and leaves a's chain for later (9); busiest host first reaches the bound.
    [
      'busiest host first beats longest first',
      jobs({ b: [3], c: [3], a: [2, 2, 2] }),
      { global: 2, perHost: 1 },
      6,
      6,
    ],
    ['zero-length jobs', jobs({ a: [0, 0, 0], b: [0] }), { global: 1, perHost: 1 }, 0, 0],
    ['lower bound not reachable', jobs({ a: [2], b: [2], c: [2] }), { global: 2, perHost: 1 }, 4, 3],
  ];
  for (const [title, js, limits, ideal, bound] of rows) {
    it(title, () => {
      assert.equal(idealMakespan(js, limits), ideal);
      assert.equal(makespanLowerBound(js, limits), bound);
    });
  }

  it('the busiest-host case really needs that priority', () => {
    const js = jobs({ b: [3], c: [3], a: [2, 2, 2] });
    const limits = { global: 2, perHost: 1 };
    assert.equal(greedySchedule(js, limits, 'input-order').makespan, 9);
    assert.equal(greedySchedule(js, limits, 'longest-first').makespan, 9);
    assert.equal(greedySchedule(js, limits, 'busiest-host-first').makespan, 6);
  });

  it('start times of a small schedule', () => {
    const js = jobs({ a: [4, 1], b: [2] });
    assert.deepEqual(greedySchedule(js, { global: 2, perHost: 1 }, 'input-order'), {
      makespan: 5,
      starts: [0, 4, 0],
    });
    assert.deepEqual(greedySchedule(js, { global: 1, perHost: 1 }, 'longest-first'), {
      makespan: 7,
      starts: [0, 6, 4],
    });
  });
});

/** Deterministic PRNG (mulberry32) so a failure reproduces. */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

describe('greedySchedule: properties on random workloads', () => {
  const priorities: Priority[] = ['input-order', 'longest-first', 'busiest-host-first'];
  for (let seed = 1; seed <= 40; seed++) {
    it(`seed ${seed}`, () => {
      const r = rng(seed);
      const hosts = 1 + Math.floor(r() * 6);
      const n = Math.floor(r() * 60);
      const js: Job[] = Array.from({ length: n }, () => ({
        host: `h${Math.floor(r() * hosts)}`,
        durationMs: Math.floor(r() * 1000),
      }));
      const limits = { global: 1 + Math.floor(r() * 8), perHost: 1 + Math.floor(r() * 4) };
      const bound = makespanLowerBound(js, limits);
      const results = priorities.map((p) => greedySchedule(js, limits, p));
      for (const { makespan, starts } of results) {
        assert.equal(starts.length, n);
        const ends = js.map((j, i) => starts[i]! + j.durationMs);
        assert.equal(makespan, Math.max(0, ...ends));
        assert.ok(makespan >= bound - 1e-9, `makespan ${makespan} below bound ${bound}`);
        // At every start instant the limits hold (the running set only changes at starts and ends).
        for (const t of new Set(starts)) {
          const running = js.filter((j, i) => starts[i]! <= t && t < ends[i]! && j.durationMs > 0);
          assert.ok(running.length <= limits.global, `global limit at ${t}`);
          for (const h of new Set(running.map((j) => j.host))) {
            assert.ok(
              running.filter((j) => j.host === h).length <= limits.perHost,
              `host ${h} limit at ${t}`,
            );
          }
        }
        // Greedy: the total work never exceeds what the slots could do, and no schedule is worse than serial.
        assert.ok(makespan <= js.reduce((s, j) => s + j.durationMs, 0));
      }
      assert.equal(idealMakespan(js, limits), Math.min(...results.map((x) => x.makespan)));
    });
  }
});

describe('refused input', () => {
  const rows: [string, Job[], ConcurrencyLimits, string][] = [
    ['global 0', [], { global: 0, perHost: 1 }, 'BAD_LIMITS'],
    ['perHost fractional', [], { global: 1, perHost: 1.5 }, 'BAD_LIMITS'],
    ['negative duration', [{ host: 'a', durationMs: -1 }], { global: 1, perHost: 1 }, 'BAD_JOB'],
    ['NaN duration', [{ host: 'a', durationMs: Number.NaN }], { global: 1, perHost: 1 }, 'BAD_JOB'],
  ];
  for (const [title, js, limits, code] of rows) {
    it(title, () => {
      const isCode = (err: unknown) => err instanceof RuleError && err.code === code;
      assert.throws(() => idealMakespan(js, limits), isCode);
      assert.throws(() => makespanLowerBound(js, limits), isCode);
    });
  }
});
