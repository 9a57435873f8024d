import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { parseDelay, parseSize } from '../../src/cli/commands/lab.js';
import { UsageError } from '../../src/errors.js';

describe('lab CLI option parsing', () => {
  test('sizes use binary units', () => {
    assert.equal(parseSize('4G'), 4 * 1024 ** 3);
    assert.equal(parseSize('512M'), 512 * 1024 ** 2);
    assert.equal(parseSize('1.5GiB'), 1.5 * 1024 ** 3);
    assert.equal(parseSize('4096'), 4096);
    for (const bad of ['', 'G', '4X', '-1G', '0']) assert.throws(() => parseSize(bad), UsageError, bad);
  });

  test('delays are Method=ms', () => {
    assert.deepEqual(parseDelay('CreateSnapshot_Task=500'), ['CreateSnapshot_Task', 500]);
    for (const bad of ['CreateSnapshot_Task', '=5', 'A=-1', 'A=1.5', 'A B=1'])
      assert.throws(() => parseDelay(bad), UsageError, bad);
  });
});
