import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { labDiskChunk } from '../../src/lab/diskdata.js';
import { fillLabDisks } from '../../src/lab/fill-disks.js';
import type { LabVm } from '../../src/lab/index.js';
import { pathExists } from '../../src/util/fs.js';

const MIB = 1024 * 1024;

describe('lab disk filling', () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'snapkeeper-fill-'));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  test('fills flat and independent disks with their own data, leaves RDMs alone and counts progress', async () => {
    const vm: LabVm = {
      name: 'web 01',
      id: 'vm-1',
      disks: [
        { index: 0, path: join(dir, 'flat.vmdk'), sizeMB: 1, kind: 'flat' },
        { index: 1, path: join(dir, 'rdm.vmdk'), sizeMB: 4, kind: 'rdm-physical' },
        { index: 2, path: join(dir, 'independent.vmdk'), sizeMB: 2, kind: 'independent' },
      ],
    };
    const steps: string[] = [];
    await fillLabDisks([vm], (step) => steps.push(step));
    assert.deepEqual(await readFile(join(dir, 'flat.vmdk')), labDiskChunk('web 01', 0, 0, MIB));
    assert.deepEqual(await readFile(join(dir, 'independent.vmdk')), labDiskChunk('web 01', 2, 0, 2 * MIB));
    assert.equal(await pathExists(join(dir, 'rdm.vmdk')), false);
    assert.deepEqual(steps, ['filling disks 1/2', 'filling disks 2/2']);
  });

  test('a failed fill is thrown only once every other fill has ended, so an undo never races them', async () => {
    const others = Array.from({ length: 5 }, (_, i) => ({
      index: i + 1,
      path: join(dir, `other-${i}.vmdk`),
      sizeMB: 16,
      kind: 'flat' as const,
    }));
    const vm: LabVm = {
      name: 'db01',
      id: 'vm-2',
      disks: [{ index: 0, path: join(dir, 'no-such-dir', 'x.vmdk'), sizeMB: 1, kind: 'flat' }, ...others],
    };
    await assert.rejects(
      fillLabDisks([vm], () => {}),
      { code: 'ENOENT' },
    );
    for (const disk of others) {
      const data = await readFile(disk.path);
      assert.equal(data.length, 16 * MIB, `${disk.path} was still being filled`);
      assert.ok(data.equals(labDiskChunk('db01', disk.index, 0, 16 * MIB)));
    }
  });
});
