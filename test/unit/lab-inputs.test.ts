import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { UsageError } from '../../src/errors.js';
import { closestName, diskBytesByDatastore, labUp } from '../../src/lab/index.js';
import { canMountLoopBtrfs } from '../../src/lab/loop-btrfs.js';
import { parseLabSpec } from '../../src/lab/spec.js';
import { VIM25_METHODS } from '../../src/lab/vim25-methods.js';
import { pathExists } from '../../src/util/fs.js';
import { runCli } from '../helpers/cli.js';
import { STANDARD_SPEC } from '../helpers/lab.js';
import { requireCapability } from '../helpers/require.js';

/** A one-VM spec whose disks on ds-a add up to `sizeMB`. */
function spec(sizesMB: number[]) {
  return {
    datacenters: [
      {
        name: 'DC1',
        hosts: ['esx01'],
        datastores: [
          { name: 'ds-a', capacityGB: 1024 * 1024 },
          { name: 'ds-b', capacityGB: 1 },
        ],
        vms: [
          {
            name: 'big01',
            host: 'esx01',
            disks: [
              ...sizesMB.map((sizeMB) => ({ datastore: 'ds-a', sizeMB })),
              { datastore: 'ds-b', sizeMB: 3 },
              { rdm: 'physical', lun: 'naa.600a0980383030534a3f463045727a71', sizeMB: 1024 },
            ],
          },
        ],
      },
    ],
  };
}

async function withRoot(body: (root: string) => Promise<void>): Promise<void> {
  const root = await mkdtemp(join(tmpdir(), 'snapkeeper-lab-inputs-'));
  try {
    await body(root);
  } finally {
    await rm(root, { recursive: true, force: true });
  }
}

/** labUp's refusal: exit 3, the code given, and `dir` never created. */
async function refused(root: string, options: Omit<Parameters<typeof labUp>[0], 'dir'>, code: string) {
  const dir = join(root, 'lab');
  let caught: unknown;
  try {
    await labUp({ ...options, dir });
  } catch (err) {
    caught = err;
  }
  assert.ok(caught instanceof UsageError, String(caught));
  assert.equal(caught.code, code);
  assert.equal(caught.exitCode, 3);
  assert.equal(await pathExists(dir), false, 'nothing was created');
  return caught;
}

describe('lab up --delay', () => {
  it('knows the vim25 methods of the simulator', () => {
    for (const m of [
      'CreateSnapshot_Task',
      'RetrievePropertiesEx',
      'Login',
      'ReconfigVM_Task',
      'PowerOnVM_Task',
    ]) {
      assert.ok(VIM25_METHODS.has(m), m);
    }
    assert.ok(VIM25_METHODS.size > 800);
    assert.equal(VIM25_METHODS.has('CreateSnapshot'), false);
  });

  const hints: [string, string][] = [
    ['CreateSnapshot_Tsak', 'CreateSnapshot_Task'],
    ['createsnapshot_task', 'CreateSnapshot_Task'],
    ['RemoveSnapshot', 'RemoveSnapshot_Task'],
    ['Logn', 'Login'],
  ];
  for (const [typo, hint] of hints) {
    it(`${typo} is refused before anything is made, suggesting ${hint}`, () =>
      withRoot(async (root) => {
        assert.equal(closestName(typo, VIM25_METHODS), hint);
        const err = await refused(root, { specFile: STANDARD_SPEC, delays: { [typo]: 5 } }, 'LAB_INVALID');
        assert.match(
          err.message,
          new RegExp(`unknown SOAP method ${typo} in --delay \\(did you mean ${hint}\\?\\)`),
        );
      }));
  }

  it('from the CLI: exit 3 naming the method and the closest known one', () =>
    withRoot(async (root) => {
      const run = await runCli([
        '--json',
        'lab',
        'up',
        '--spec',
        STANDARD_SPEC,
        '--dir',
        join(root, 'lab'),
        '--delay',
        'PowerOnVM=10',
      ]);
      assert.equal(run.code, 3, run.stdout + run.stderr);
      assert.match(
        run.json.error.message,
        /unknown SOAP method PowerOnVM in --delay \(did you mean PowerOnVM_Task\?\)/,
      );
      assert.equal(await pathExists(join(root, 'lab')), false);
    }));
});

describe('lab up refuses disks that cannot fit the array, before writing anything', () => {
  it('counts the bytes each volume needs: flat and independent disks, not RDMs', () => {
    const bytes = diskBytesByDatastore(parseLabSpec(spec([5, 7]), 'spec.json'));
    assert.deepEqual(
      [...bytes],
      [
        ['ds-a', 12 * 1024 * 1024],
        ['ds-b', 3 * 1024 * 1024],
      ],
    );
  });

  it('more than the free space of the file system the array would live on', () =>
    withRoot(async (root) => {
      const specFile = join(root, 'spec.json');
      // 2 x 16 TiB: more than any test machine has free.
      await writeFile(specFile, JSON.stringify(spec([16 * 1024 * 1024, 16 * 1024 * 1024])));
      const err = await refused(root, { specFile }, 'LAB_TOO_BIG');
      assert.match(
        err.message,
        /the lab's disks need 33554435 MiB \(ds-a 33554432 MiB, ds-b 3 MiB\) but the array has \d+ MiB \(free on the file system of .+\)/,
      );
    }));

  it('more than the --btrfs-image size', (t) =>
    withRoot(async (root) => {
      const can = await canMountLoopBtrfs();
      if (!requireCapability(t, can.ok, `btrfs image: ${can.ok ? '' : can.reason}`)) return;
      const specFile = join(root, 'spec.json');
      await writeFile(specFile, JSON.stringify(spec([100, 100])));
      const err = await refused(root, { specFile, btrfsImageBytes: 128 * 1024 * 1024 }, 'LAB_TOO_BIG');
      assert.match(
        err.message,
        /need 203 MiB \(ds-a 200 MiB, ds-b 3 MiB\) but the array has 128 MiB \(the --btrfs-image size\)/,
      );
    }));
});
