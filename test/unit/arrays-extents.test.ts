import assert from 'node:assert/strict';
import { test } from 'node:test';
import { mergeRanges, readRange, relativeComponents } from '../../src/arrays/checks.js';
import { changedByExtents, type Extent, parseFilefrag } from '../../src/arrays/fs/extents.js';
import { UsageError } from '../../src/errors.js';

// Output of `filefrag -v -b1` on btrfs, for a file rewritten in two 4 KiB blocks after a snapshot.
const FILEFRAG = `Filesystem type is: 9123683e
File size of /mnt/s2/f is 8388608 (8388608 blocks of 1 bytes)
 ext:     logical_offset:        physical_offset: length:   expected: flags:
   0:        0..  409599:   13631488..  14041087: 409600:             shared
   1:   409600..  413695:   63963136..  63967231:   4096:   14041088: shared
   2:   413696.. 4095999:   14045184..  17727487: 3682304:   63967232: shared
   3:  4096000.. 4100095:   63967232..  63971327:   4096:   17727488: unwritten
   4:  4100096.. 8388607:   17731584..  22020095: 4288512:   63971328: last,shared,eof
/mnt/s2/f: 5 extents found
`;

test('parseFilefrag reads every extent, and distrusts flags that hide where the data is', () => {
  assert.deepEqual(parseFilefrag(FILEFRAG), [
    { logical: 0, physical: 13631488, length: 409600, trusted: true },
    { logical: 409600, physical: 63963136, length: 4096, trusted: true },
    { logical: 413696, physical: 14045184, length: 3682304, trusted: true },
    { logical: 4096000, physical: 63967232, length: 4096, trusted: false },
    { logical: 4100096, physical: 17731584, length: 4288512, trusted: true },
  ]);
  for (const flag of ['delalloc', 'unknown_loc', 'inline', 'encoded', 'something_new']) {
    const [e] = parseFilefrag(
      `   0:        0..    4095:      8192..     12287:   4096:             last,${flag},eof`,
    );
    assert.equal(e?.trusted, false, flag);
  }
  assert.deepEqual(parseFilefrag('File size of x is 0 (0 blocks of 1 bytes)\nx: 0 extents found\n'), []);
});

const ext = (logical: number, physical: number, length: number, trusted = true): Extent => ({
  logical,
  physical,
  length,
  trusted,
});

test('changedByExtents: same physical place is unchanged; moved, untrusted, grown or hole-vs-data is changed', () => {
  const base = [ext(0, 1000, 4096), ext(4096, 9000, 8192)];
  const cases: [string, Extent[], number, number, { offset: number; length: number }[]][] = [
    ['identical', base, 12288, 12288, []],
    [
      'one block moved',
      [ext(0, 1000, 4096), ext(4096, 50_000, 4096), ext(8192, 13096, 4096)],
      12288,
      12288,
      [{ offset: 4096, length: 4096 }],
    ],
    [
      'an extent split but in place',
      [ext(0, 1000, 2048), ext(2048, 3048, 2048), ext(4096, 9000, 8192)],
      12288,
      12288,
      [],
    ],
    [
      'untrusted extent',
      [ext(0, 1000, 4096, false), ext(4096, 9000, 8192)],
      12288,
      12288,
      [{ offset: 0, length: 4096 }],
    ],
    [
      'growth past the base size',
      [...base, ext(12288, 70_000, 4096)],
      12288,
      14000,
      [{ offset: 12288, length: 14000 - 12288 }],
    ],
    ['a hole punched where data was', [ext(0, 1000, 4096)], 12288, 12288, [{ offset: 4096, length: 8192 }]],
    ['shrunk: only what is left counts', base, 12288, 5000, []],
  ];
  for (const [what, next, baseSize, nextSize, expected] of cases) {
    assert.deepEqual(changedByExtents(base, baseSize, next, nextSize), expected, what);
  }
  // Holes in both are zeros in both; data where the base had a hole is changed.
  assert.deepEqual(changedByExtents([ext(0, 1, 4096)], 1 << 20, [ext(0, 1, 4096)], 1 << 20), []);
  assert.deepEqual(changedByExtents([], 8192, [ext(4096, 5, 4096)], 8192), [{ offset: 4096, length: 4096 }]);
});

test('relative paths are confined to their volume; read ranges and merged ranges are checked', () => {
  assert.deepEqual(relativeComponents('a//b/./c', 'v'), ['a', 'b', 'c']);
  assert.deepEqual(relativeComponents('', 'v'), []);
  for (const bad of ['/abs', '../x', 'a/../b', 'a\\b', 'a\0b']) {
    assert.throws(
      () => relativeComponents(bad, 'v'),
      (err: unknown) => err instanceof UsageError && err.code === 'ARRAY_INVALID_PATH',
      bad,
    );
  }
  assert.deepEqual(readRange({}, 10), { offset: 0, length: 10 });
  assert.deepEqual(readRange({ offset: 4, length: 100 }, 10), { offset: 4, length: 6 });
  assert.deepEqual(readRange({ offset: 40 }, 10), { offset: 10, length: 0 });
  assert.throws(() => readRange({ offset: Number.NaN }, 10), UsageError);
  assert.deepEqual(
    mergeRanges([
      { offset: 10, length: 5 },
      { offset: 0, length: 10 },
      { offset: 30, length: 0 },
      { offset: 12, length: 1 },
      { offset: 20, length: 2 },
    ]),
    [
      { offset: 0, length: 15 },
      { offset: 20, length: 2 },
    ],
  );
});
