import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { DiskExclusionRule } from '../../src/config/schema.js';
import { taskSchema } from '../../src/config/schema.js';
import type { DiskExclusion } from '../../src/model/backup.js';
import type { DiskKind, VirtualDisk } from '../../src/model/inventory.js';
import {
  applyDiskExclusions,
  describeUnmatchedDiskExclusions,
  unmatchedDiskExclusions,
} from '../../src/rules/disk-exclusions.js';
import { classifyDisks } from '../../src/rules/disks.js';

function disk(n: number, kind: DiskKind): VirtualDisk {
  return {
    key: 2000 + n,
    label: `Hard disk ${n}`,
    kind,
    capacityBytes: 64 * 1024 * 1024,
    file: `[ds-a] db01/db01_${n}.vmdk`,
    datastore: 'ds-a',
    diskMode: kind === 'independent' ? 'independent_persistent' : 'persistent',
    ...(kind.startsWith('rdm') ? { lun: `naa.60${n}` } : {}),
  };
}

const DISKS = [disk(1, 'flat'), disk(2, 'flat'), disk(3, 'independent'), disk(4, 'rdm-physical')];

/** What each disk of DISKS becomes: included, or excluded and why. */
type Outcome = 'in' | DiskExclusion;

function outcomes(vmName: string, rules: DiskExclusionRule[]): Outcome[] {
  const records = applyDiskExclusions(vmName, classifyDisks(DISKS, 'ASIS', 'crash'), rules, 'nightly');
  return records.map((r) => {
    if (r.included) {
      assert.equal(r.exclusion, undefined);
      return 'in';
    }
    assert.ok(r.exclusion, `${r.label} excluded without a reason`);
    return r.exclusion;
  });
}

describe('applyDiskExclusions: which disks a backup carries and why', () => {
  const rows: [string, string, DiskExclusionRule[], Outcome[]][] = [
    ['no rules', 'db01', [], ['in', 'in', 'in', 'rdm']],
    ['exact VM, one label', 'db01', [{ vm: 'db01', disks: ['Hard disk 2'] }], ['in', 'task', 'in', 'rdm']],
    ['glob VM', 'db01', [{ vm: 'db*', disks: ['Hard disk 2'] }], ['in', 'task', 'in', 'rdm']],
    ['glob not matching the VM', 'db01', [{ vm: 'web*', disks: ['Hard disk 2'] }], ['in', 'in', 'in', 'rdm']],
    ['independent disk', 'db01', [{ vm: '*', disks: ['Hard disk 3'] }], ['in', 'in', 'task', 'rdm']],
    ['RDM keeps its own reason', 'db01', [{ vm: 'db01', disks: ['Hard disk 4'] }], ['in', 'in', 'in', 'rdm']],
    ['unknown label', 'db01', [{ vm: 'db01', disks: ['Hard disk 9'] }], ['in', 'in', 'in', 'rdm']],
    [
      'labels are exact (no glob)',
      'db01',
      [{ vm: 'db01', disks: ['Hard disk *'] }],
      ['in', 'in', 'in', 'rdm'],
    ],
    [
      'two rules add up',
      'db01',
      [
        { vm: 'db01', disks: ['Hard disk 1'] },
        { vm: 'd*', disks: ['Hard disk 2', 'Hard disk 3'] },
      ],
      ['task', 'task', 'task', 'rdm'],
    ],
    [
      'labels are case-sensitive',
      'db01',
      [{ vm: 'db01', disks: ['hard disk 2'] }],
      ['in', 'in', 'in', 'rdm'],
    ],
    [
      'VM names are case-sensitive',
      'db01',
      [{ vm: 'DB01', disks: ['Hard disk 2'] }],
      ['in', 'in', 'in', 'rdm'],
    ],
  ];
  for (const [name, vm, rules, expected] of rows) {
    it(name, () => assert.deepEqual(outcomes(vm, rules), expected));
  }

  it('an excluded disk names its task and loses its consistency (its data is not part of the backup)', () => {
    const [, excluded] = applyDiskExclusions(
      'db01',
      classifyDisks(DISKS, 'ASIS', 'crash'),
      [{ vm: 'db01', disks: ['Hard disk 2'] }],
      'nightly',
    );
    assert.deepEqual(
      { included: excluded?.included, note: excluded?.note, consistency: excluded?.consistency },
      { included: false, note: 'excluded by task nightly', consistency: undefined },
    );
    assert.equal(excluded?.file, '[ds-a] db01/db01_2.vmdk');
  });

  it('an RDM is recorded with exclusion rdm by classifyDisks', () => {
    assert.equal(classifyDisks([disk(4, 'rdm-virtual')], 'ASIS', 'crash')[0]?.exclusion, 'rdm');
  });
});

describe('unmatchedDiskExclusions', () => {
  const vms = [
    { name: 'db01', disks: [{ label: 'Hard disk 1' }, { label: 'Hard disk 2' }] },
    { name: 'db02', disks: [{ label: 'Hard disk 1' }, { label: 'Hard disk 3' }] },
  ];
  const rows: [string, DiskExclusionRule[], ReturnType<typeof unmatchedDiskExclusions>][] = [
    ['no rules', [], []],
    ['all match', [{ vm: 'db01', disks: ['Hard disk 2'] }], []],
    ['a label one of the glob VMs has', [{ vm: 'db*', disks: ['Hard disk 3'] }], []],
    ['VM glob matches no VM', [{ vm: 'web*', disks: ['Hard disk 1'] }], [{ vm: 'web*', labels: [] }]],
    [
      'label no matching VM has',
      [{ vm: 'db01', disks: ['Hard disk 1', 'Hard disk 3'] }],
      [{ vm: 'db01', labels: ['Hard disk 3'] }],
    ],
    [
      'each rule on its own',
      [
        { vm: 'db02', disks: ['Hard disk 3'] },
        { vm: 'db02', disks: ['Hard disk 2'] },
      ],
      [{ vm: 'db02', labels: ['Hard disk 2'] }],
    ],
  ];
  for (const [name, rules, expected] of rows) {
    it(name, () => assert.deepEqual(unmatchedDiskExclusions(vms, rules), expected));
  }

  it('describes both kinds of miss', () => {
    assert.equal(
      describeUnmatchedDiskExclusions([
        { vm: 'web*', labels: [] },
        { vm: 'db01', labels: ['Hard disk 3', 'Hard disk 4'] },
      ]),
      'no VM of this run matches web*; no VM matching db01 has disk Hard disk 3, Hard disk 4',
    );
  });
});

describe('task exclude.disks schema', () => {
  const task = (disks: unknown) => ({ name: 'nightly', select: { vms: ['db*'] }, exclude: { disks } });
  it('accepts VM globs with labels, alongside VM exclusions', () => {
    const parsed = taskSchema.parse({
      ...task([{ vm: 'db*', disks: ['Hard disk 2'] }]),
      exclude: { vms: ['db09'], disks: [{ vm: 'db*', disks: ['Hard disk 2'] }] },
    });
    assert.deepEqual(parsed.exclude, { vms: ['db09'], disks: [{ vm: 'db*', disks: ['Hard disk 2'] }] });
  });
  const bad: [string, unknown, RegExp][] = [
    ['not a list', { vm: 'db*', disks: ['Hard disk 2'] }, /disks/],
    ['no labels', [{ vm: 'db*', disks: [] }], /disks/],
    ['empty label', [{ vm: 'db*', disks: [''] }], /a disk label must not be empty/],
    ['empty VM', [{ vm: '', disks: ['Hard disk 2'] }], /vm/],
    ['missing vm', [{ disks: ['Hard disk 2'] }], /vm/],
    ['unknown key', [{ vm: 'db*', disks: ['Hard disk 2'], label: 'x' }], /label/],
  ];
  for (const [name, disks, message] of bad) {
    it(`refuses ${name}`, () => {
      const parsed = taskSchema.safeParse(task(disks));
      assert.equal(parsed.success, false);
      assert.match(JSON.stringify(parsed.error?.issues), message);
    });
  }
});
