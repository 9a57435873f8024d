import assert from 'node:assert/strict';
import { test } from 'node:test';
import { isId, makeId, parseId, validateLabel } from '../../src/arrays/fs/ids.js';
import { UsageError } from '../../src/errors.js';

test('an id embeds the label and the UTC time, and parses back', () => {
  const id = makeId('bk-2026.11_25', new Date('2026-11-25T08:09:10.555Z'));
  assert.match(id, /^bk-2026\.11_25--20261125T080910-[0-9a-f]{4}$/);
  assert.deepEqual(parseId(id), { label: 'bk-2026.11_25', createdAt: '2026-11-25T08:09:10.000Z' });
  assert.ok(isId(id));
});

test('a label with "--" in it still parses: the time and suffix anchor the end', () => {
  const id = makeId('a--b');
  assert.equal(parseId(id)?.label, 'a--b');
});

test('two ids for the same label and second differ', () => {
  const now = new Date();
  const ids = new Set(Array.from({ length: 20 }, () => makeId('same', now)));
  assert.ok(ids.size > 1);
});

test('labels outside letters, digits, ".", "_", "-" are refused', () => {
  for (const bad of ['', 'a/b', '../x', 'a b', 'é', '.', '..', 'x'.repeat(161), 'a\nb']) {
    assert.throws(() => validateLabel(bad), UsageError, JSON.stringify(bad));
    assert.throws(() => makeId(bad), UsageError);
  }
  for (const good of ['a', 'A-1', 'backup_2026.11.25', '-lead', 'x'.repeat(160)]) validateLabel(good);
});

test('things that are not ids are not parsed as ids', () => {
  for (const s of [
    '../../etc',
    'x--20261125T080910-abcd.json',
    'x--20261125T080910-ABCD',
    'x--20261125T080910',
    '--20261125T080910-abcd',
    'x--20261399T080910-abcd',
    'a/b--20261125T080910-abcd',
  ]) {
    assert.equal(parseId(s), undefined, s);
    assert.equal(isId(s), false);
  }
});
