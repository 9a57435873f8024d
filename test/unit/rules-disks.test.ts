import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { Consistency } from '../../src/model/backup.js';
import type { DiskKind, VirtualDisk } from '../../src/model/inventory.js';
import type { BackupMode } from '../../src/model/modes.js';
import { classifyDisks, hasRdm, isRdmKind } from '../../src/rules/disks.js';

function disk(key: number, kind: DiskKind, extra: Partial<VirtualDisk> = {}): VirtualDisk {
  return {
    key,
    label: `Hard disk ${key - 1999}`,
    kind,
    capacityBytes: 64 * 1024 * 1024,
    file: `[ds-a] web01/web01_${key}.vmdk`,
    datastore: 'ds-a',
    diskMode: kind === 'independent' ? 'independent_persistent' : 'persistent',
    ...extra,
  };
}

const FLAT = disk(2000, 'flat', { controllerKey: 1000, unitNumber: 0 });
const INDEP = disk(2001, 'independent', { datastore: 'ds-b', file: '[ds-b] web01/web01_1.vmdk' });
const RDM_P = disk(2002, 'rdm-physical', { lun: 'naa.600a0980383030534a3f463045727a71' });
const RDM_V = disk(2003, 'rdm-virtual', { lun: 'naa.600a0980383030534a3f463045727a72' });
const RDM_NO_LUN = disk(2004, 'rdm-virtual');

describe('hasRdm / isRdmKind', () => {
  const rows: [VirtualDisk[], boolean][] = [
    [[], false],
    [[FLAT], false],
    [[FLAT, INDEP], false],
    [[RDM_P], true],
    [[FLAT, RDM_V], true],
    [[INDEP, RDM_P, RDM_V], true],
  ];
  for (const [disks, expected] of rows) {
    it(`[${disks.map((d) => d.kind).join(', ')}] -> ${expected}`, () =>
      assert.equal(hasRdm(disks), expected));
  }
  it('kinds', () => {
    assert.deepEqual((['flat', 'rdm-physical', 'rdm-virtual', 'independent'] as const).map(isRdmKind), [
      false,
      true,
      true,
      false,
    ]);
  });
});

describe('classifyDisks', () => {
  it('keeps order and identity fields, adds no undefined keys', () => {
    const out = classifyDisks([RDM_P, FLAT, INDEP], 'SNAPSHOT_EXCL_MEM', 'file-system');
    assert.deepEqual(
      out.map((d) => d.key),
      [2002, 2000, 2001],
    );
    assert.deepEqual(out[1], {
      key: 2000,
      label: 'Hard disk 1',
      kind: 'flat',
      capacityBytes: 64 * 1024 * 1024,
      file: '[ds-a] web01/web01_2000.vmdk',
      datastore: 'ds-a',
      diskMode: 'persistent',
      controllerKey: 1000,
      unitNumber: 0,
      included: true,
      consistency: 'file-system',
    });
    for (const d of out) {
      for (const [k, v] of Object.entries(d)) assert.notEqual(v, undefined, `${d.label}.${k}`);
    }
  });

  it('RDM disks are excluded with a note naming the LUN, and no consistency', () => {
    const [p, v, none] = classifyDisks([RDM_P, RDM_V, RDM_NO_LUN], 'ASIS', 'crash');
    assert.equal(p?.included, false);
    assert.equal(p?.lun, RDM_P.lun);
    assert.equal(p?.consistency, undefined);
    assert.match(p?.note ?? '', /physical compatibility/);
    assert.match(
      p?.note ?? '',
      /naa\.600a0980383030534a3f463045727a71 is not on a datastore and is not backed up/,
    );
    assert.equal(v?.included, false);
    assert.match(v?.note ?? '', /virtual compatibility/);
    assert.equal(none?.included, false);
    assert.equal('lun' in (none ?? {}), false);
    assert.match(none?.note ?? '', /its LUN is not on a datastore/);
  });

  // effective mode, VM consistency -> flat disk consistency, independent disk consistency, independent note
  const rows: [BackupMode, Consistency, Consistency, RegExp][] = [
    ['SNAPSHOT_INCL_MEM', 'running-state', 'crash', /not covered by the VM snapshot/],
    ['SNAPSHOT_EXCL_MEM', 'file-system', 'crash', /not covered by the VM snapshot/],
    ['SNAPSHOT_INCL_MEM', 'powered-off', 'powered-off', /the VM was not running/],
    ['SNAPSHOT_EXCL_MEM', 'suspended', 'suspended', /the VM was not running/],
    ['SUSPEND', 'suspended', 'suspended', /the VM was not running/],
    ['SUSPEND', 'powered-off', 'powered-off', /the VM was not running/],
    ['ASIS', 'crash', 'crash', /crash consistent like the rest of the VM/],
    ['ASIS', 'powered-off', 'powered-off', /the VM was not running/],
  ];
  for (const [mode, vmConsistency, indepConsistency, note] of rows) {
    it(`${mode} / ${vmConsistency}: flat ${vmConsistency}, independent ${indepConsistency}`, () => {
      const [flat, indep, rdm] = classifyDisks([FLAT, INDEP, RDM_V], mode, vmConsistency);
      assert.equal(flat?.included, true);
      assert.equal(flat?.consistency, vmConsistency);
      assert.equal(flat?.note, undefined);
      assert.equal(indep?.included, true);
      assert.equal(indep?.consistency, indepConsistency);
      assert.match(indep?.note ?? '', /^independent disk: /);
      assert.match(indep?.note ?? '', note);
      assert.equal(indep?.datastore, 'ds-b');
      assert.equal(rdm?.included, false);
      assert.equal(rdm?.consistency, undefined);
    });
  }

  it('empty in, empty out', () => assert.deepEqual(classifyDisks([], 'ASIS', 'crash'), []));
});
