import assert from 'node:assert/strict';
import { createCipheriv, createHash } from 'node:crypto';
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { fillLabDisk, LAB_DISK_CHUNK_BYTES, labDiskChunk } from '../../src/lab/diskdata.js';

describe('lab disk data', () => {
  test('is the AES-256-CTR keystream under sha256("snapkeeper-lab:VM:INDEX") with a zero IV', () => {
    const key = createHash('sha256').update('snapkeeper-lab:web01:0').digest();
    // CTR block 0 is the encryption of the zero counter; block 1 that of counter 1.
    const ecb = createCipheriv('aes-256-ecb', key, null).setAutoPadding(false);
    const counter1 = Buffer.alloc(16);
    counter1[15] = 1;
    const expected = Buffer.concat([ecb.update(Buffer.alloc(16)), ecb.update(counter1)]);
    assert.deepEqual(labDiskChunk('web01', 0, 0, 32), expected);
  });

  test('the same VM and disk always give the same bytes; others differ', () => {
    const a = labDiskChunk('web01', 0, 0, 4096);
    assert.deepEqual(labDiskChunk('web01', 0, 0, 4096), a);
    assert.notDeepEqual(labDiskChunk('web01', 1, 0, 4096), a);
    assert.notDeepEqual(labDiskChunk('web02', 0, 0, 4096), a);
  });

  test('any range equals the same slice of the whole stream', () => {
    const whole = labDiskChunk('db01', 2, 0, 70_000);
    for (const [offset, length] of [
      [0, 1],
      [5, 11],
      [15, 2],
      [16, 16],
      [17, 1000],
      [65_535, 4465],
      [69_999, 1],
    ] as const) {
      assert.deepEqual(
        labDiskChunk('db01', 2, offset, length),
        whole.subarray(offset, offset + length),
        `${offset}+${length}`,
      );
    }
    assert.equal(labDiskChunk('db01', 2, 100, 0).length, 0);
    assert.throws(() => labDiskChunk('db01', 2, -1, 10), RangeError);
  });

  test('fillLabDisk writes exactly the expected bytes, across chunk boundaries, over existing content', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'lab-disk-'));
    try {
      const file = join(dir, 'disk-flat.vmdk');
      await writeFile(file, Buffer.alloc(LAB_DISK_CHUNK_BYTES * 3, 0xaa)); // longer than the disk: must be cut
      const size = LAB_DISK_CHUNK_BYTES + 1000;
      await fillLabDisk(file, 'app01', 1, size);
      assert.equal((await stat(file)).size, size);
      const data = await readFile(file);
      assert.deepEqual(data, labDiskChunk('app01', 1, 0, size));
      // Around the chunk boundary the stream continues rather than restarting.
      assert.notDeepEqual(
        data.subarray(LAB_DISK_CHUNK_BYTES, LAB_DISK_CHUNK_BYTES + 32),
        data.subarray(0, 32),
      );
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
