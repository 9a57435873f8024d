import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { silentEvents } from '../../src/engine/context.js';
import {
  type DiskJobOutput,
  type DiskJobPayload,
  diskJobs,
  followDiskJobs,
} from '../../src/engine/offload-disk.js';
import type { SnapshotFile, VmFiles } from '../../src/engine/steps/offload-files.js';
import { InProcessJobQueue, startJobWorker } from '../../src/jobs/index.js';

/**
 * The coordinator's side of per-disk offload on the in-process queue, with a stand-in handler: how a backup's
 * files become jobs, the seed run alone first, outputs in job order, progress summed, a job failed for good
 * failing the offload and cancelling the rest.
 */

function file(path: string, size: number, disk?: string): SnapshotFile {
  return {
    path,
    datastorePath: `[ds] vm/${path}`,
    array: 'a',
    snapshotId: 's1',
    volume: 'v',
    relativePath: `vm/${path}`,
    size,
    ...(disk !== undefined ? { disk } : {}),
  };
}

function job(unit: string, size: number, previous = false): DiskJobPayload {
  return {
    v: 1,
    backupId: 'b1',
    repository: 'r',
    repositoryId: 'rid',
    vmId: 'vm-1',
    vmName: 'vm',
    unit,
    files: [file(`${unit}-flat.vmdk`, size, unit)],
    ...(previous ? { previous: { backupId: 'b0', manifestId: 'm0', snapshots: [] } } : {}),
  };
}

function outputOf(p: DiskJobPayload): DiskJobOutput {
  return {
    files: p.files.map((f) => ({ path: f.path, size: f.size, chunkSize: 65536, chunks: [] })),
    details: p.files.map((f) => ({ path: f.path, bytes: f.size, bytesToRead: f.size })),
    bytesRead: p.files[0]!.size,
    bytesAdded: 1,
    ms: 1,
    worker: 'test',
  };
}

describe('offload per disk: the coordinator', () => {
  it("makes one job per included disk, the VM's home files with its first disk", () => {
    const vm = { id: 'vm-1', name: 'web' } as VmFiles['vm'];
    const files = [
      file('web.vmx', 10),
      file('a.vmdk', 1, 'd1'),
      file('a-flat.vmdk', 100, 'd1'),
      file('b.vmdk', 1, 'd2'),
    ];
    const jobs = diskJobs(
      'b1',
      { name: 'r', id: 'rid' },
      [{ vm, files, excluded: [], image: 'disks' }],
      new Map(),
    );
    assert.deepEqual(
      jobs.map((j) => [j.unit, j.files.map((f) => f.path)]),
      [
        ['d1', ['web.vmx', 'a.vmdk', 'a-flat.vmdk']],
        ['d2', ['b.vmdk']],
      ],
    );
    const bare = diskJobs(
      'b1',
      { name: 'r', id: 'rid' },
      [{ vm, files: [file('web.vmx', 10)], excluded: [], image: 'disks' }],
      new Map(),
    );
    assert.deepEqual(
      bare.map((j) => j.unit),
      ['home'],
    );
  });

  for (const seedFirst of [true, false]) {
    it(`runs the jobs and returns their outputs in order (seedFirst ${seedFirst})`, async () => {
      const queue = new InProcessJobQueue();
      const order: string[] = [];
      let running = 0;
      let most = 0;
      let seedDoneAt = -1;
      const worker = startJobWorker(queue, {
        queues: [{ name: 'offload-disk.r' }],
        concurrency: 3,
        pollMs: 50,
        handler: async (j) => {
          const p = j.payload as DiskJobPayload;
          order.push(p.unit);
          running++;
          most = Math.max(most, running);
          await queue.wait(30);
          running--;
          if (p.unit === 'big') seedDoneAt = order.length;
          return outputOf(p);
        },
      });
      const jobs = [job('small', 10), job('big', 30), job('mid', 20), job('incr', 50, true)];
      let last = { bytesDone: 0, bytesTotal: 0, bytesRead: 0, bytesAdded: 0 };
      try {
        const outputs = await followDiskJobs({
          queue,
          opId: `op-${seedFirst}`,
          jobs,
          leaseMs: 10_000,
          retries: 0,
          events: silentEvents,
          onProgress: (p) => {
            last = p;
          },
          seedFirst,
        });
        assert.deepEqual(
          outputs.map((o) => o.files[0]!.path),
          jobs.map((j) => j.files[0]!.path),
        );
      } finally {
        await worker.stop();
      }
      assert.deepEqual(last, { bytesDone: 110, bytesTotal: 110, bytesRead: 110, bytesAdded: 4 });
      if (seedFirst) {
        assert.equal(
          order[0],
          'big',
          'the largest full read goes first (an incremental one is never the seed)',
        );
        assert.equal(seedDoneAt, 1, 'nothing else started before the seed was stored');
        assert.ok(most <= 3);
      } else {
        assert.equal(most, 3, 'all at once, up to the concurrency');
      }
    });
  }

  it('a job failed for good fails the offload naming the VM and the disk', async () => {
    const queue = new InProcessJobQueue();
    const worker = startJobWorker(queue, {
      queues: [{ name: 'offload-disk.r' }],
      concurrency: 1,
      pollMs: 50,
      handler: async (j) => {
        const p = j.payload as DiskJobPayload;
        if (p.unit === 'bad') throw new Error('read error at 4096');
        return outputOf(p);
      },
    });
    const jobs = [job('bad', 30), job('b', 10), job('c', 10)];
    try {
      await assert.rejects(
        followDiskJobs({
          queue,
          opId: 'op-fail',
          jobs,
          leaseMs: 10_000,
          retries: 0,
          seedFirst: false,
          events: silentEvents,
          onProgress: () => {},
        }),
        (err: Error & { code?: string }) => {
          assert.equal(err.code, 'JOB_FAILED');
          assert.match(err.message, /vm bad failed after 1 attempt\(s\): read error at 4096/);
          return true;
        },
      );
    } finally {
      await worker.stop();
    }
  });
});
