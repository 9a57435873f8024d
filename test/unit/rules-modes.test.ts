import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { Consistency } from '../../src/model/backup.js';
import type { PowerState } from '../../src/model/inventory.js';
import { BACKUP_MODES, type BackupMode } from '../../src/model/modes.js';
import {
  decideMode,
  MODE_CHANGED_RDM,
  type PrepareAction,
  type ReleaseAction,
  resolveRequestedMode,
} from '../../src/rules/modes.js';

type Before = 'snap+mem' | 'snap+quiesce' | 'suspend' | '-';
type After = 'remove' | 'power-on' | '-';
type Row = [BackupMode, PowerState, boolean, boolean, BackupMode, Before, After, Consistency, boolean];

const BEFORE: Record<Before, PrepareAction | null> = {
  'snap+mem': { kind: 'create-vm-snapshot', memory: true, quiesce: false },
  'snap+quiesce': { kind: 'create-vm-snapshot', memory: false, quiesce: true },
  suspend: { kind: 'suspend' },
  '-': null,
};
const AFTER: Record<After, ReleaseAction | null> = {
  remove: { kind: 'remove-vm-snapshot' },
  'power-on': { kind: 'power-on' },
  '-': null,
};

// SPEC section 2, written out: requested, power, hasRdm, offload -> effective, before, after, consistency, warned.
const TABLE: Row[] = [
  [
    'SNAPSHOT_INCL_MEM',
    'poweredOn',
    false,
    false,
    'SNAPSHOT_INCL_MEM',
    'snap+mem',
    'remove',
    'running-state',
    false,
  ],
  [
    'SNAPSHOT_INCL_MEM',
    'poweredOn',
    false,
    true,
    'SNAPSHOT_INCL_MEM',
    'snap+mem',
    'remove',
    'running-state',
    false,
  ],
  ['SNAPSHOT_INCL_MEM', 'poweredOn', true, false, 'ASIS', '-', '-', 'crash', true],
  [
    'SNAPSHOT_INCL_MEM',
    'poweredOn',
    true,
    true,
    'SNAPSHOT_INCL_MEM',
    'snap+mem',
    'remove',
    'running-state',
    false,
  ],
  ['SNAPSHOT_INCL_MEM', 'poweredOff', false, false, 'SNAPSHOT_INCL_MEM', '-', '-', 'powered-off', false],
  ['SNAPSHOT_INCL_MEM', 'poweredOff', false, true, 'SNAPSHOT_INCL_MEM', '-', '-', 'powered-off', false],
  ['SNAPSHOT_INCL_MEM', 'poweredOff', true, false, 'ASIS', '-', '-', 'powered-off', true],
  ['SNAPSHOT_INCL_MEM', 'poweredOff', true, true, 'SNAPSHOT_INCL_MEM', '-', '-', 'powered-off', false],
  ['SNAPSHOT_INCL_MEM', 'suspended', false, false, 'SNAPSHOT_INCL_MEM', '-', '-', 'suspended', false],
  ['SNAPSHOT_INCL_MEM', 'suspended', false, true, 'SNAPSHOT_INCL_MEM', '-', '-', 'suspended', false],
  ['SNAPSHOT_INCL_MEM', 'suspended', true, false, 'ASIS', '-', '-', 'suspended', true],
  ['SNAPSHOT_INCL_MEM', 'suspended', true, true, 'SNAPSHOT_INCL_MEM', '-', '-', 'suspended', false],
  [
    'SNAPSHOT_EXCL_MEM',
    'poweredOn',
    false,
    false,
    'SNAPSHOT_EXCL_MEM',
    'snap+quiesce',
    'remove',
    'file-system',
    false,
  ],
  [
    'SNAPSHOT_EXCL_MEM',
    'poweredOn',
    false,
    true,
    'SNAPSHOT_EXCL_MEM',
    'snap+quiesce',
    'remove',
    'file-system',
    false,
  ],
  ['SNAPSHOT_EXCL_MEM', 'poweredOn', true, false, 'ASIS', '-', '-', 'crash', true],
  [
    'SNAPSHOT_EXCL_MEM',
    'poweredOn',
    true,
    true,
    'SNAPSHOT_EXCL_MEM',
    'snap+quiesce',
    'remove',
    'file-system',
    false,
  ],
  ['SNAPSHOT_EXCL_MEM', 'poweredOff', false, false, 'SNAPSHOT_EXCL_MEM', '-', '-', 'powered-off', false],
  ['SNAPSHOT_EXCL_MEM', 'poweredOff', false, true, 'SNAPSHOT_EXCL_MEM', '-', '-', 'powered-off', false],
  ['SNAPSHOT_EXCL_MEM', 'poweredOff', true, false, 'ASIS', '-', '-', 'powered-off', true],
  ['SNAPSHOT_EXCL_MEM', 'poweredOff', true, true, 'SNAPSHOT_EXCL_MEM', '-', '-', 'powered-off', false],
  ['SNAPSHOT_EXCL_MEM', 'suspended', false, false, 'SNAPSHOT_EXCL_MEM', '-', '-', 'suspended', false],
  ['SNAPSHOT_EXCL_MEM', 'suspended', false, true, 'SNAPSHOT_EXCL_MEM', '-', '-', 'suspended', false],
  ['SNAPSHOT_EXCL_MEM', 'suspended', true, false, 'ASIS', '-', '-', 'suspended', true],
  ['SNAPSHOT_EXCL_MEM', 'suspended', true, true, 'SNAPSHOT_EXCL_MEM', '-', '-', 'suspended', false],
  ['SUSPEND', 'poweredOn', false, false, 'SUSPEND', 'suspend', 'power-on', 'suspended', false],
  ['SUSPEND', 'poweredOn', false, true, 'SUSPEND', 'suspend', 'power-on', 'suspended', false],
  ['SUSPEND', 'poweredOn', true, false, 'SUSPEND', 'suspend', 'power-on', 'suspended', false],
  ['SUSPEND', 'poweredOn', true, true, 'SUSPEND', 'suspend', 'power-on', 'suspended', false],
  ['SUSPEND', 'poweredOff', false, false, 'SUSPEND', '-', '-', 'powered-off', false],
  ['SUSPEND', 'poweredOff', false, true, 'SUSPEND', '-', '-', 'powered-off', false],
  ['SUSPEND', 'poweredOff', true, false, 'SUSPEND', '-', '-', 'powered-off', false],
  ['SUSPEND', 'poweredOff', true, true, 'SUSPEND', '-', '-', 'powered-off', false],
  ['SUSPEND', 'suspended', false, false, 'SUSPEND', '-', '-', 'suspended', false],
  ['SUSPEND', 'suspended', false, true, 'SUSPEND', '-', '-', 'suspended', false],
  ['SUSPEND', 'suspended', true, false, 'SUSPEND', '-', '-', 'suspended', false],
  ['SUSPEND', 'suspended', true, true, 'SUSPEND', '-', '-', 'suspended', false],
  ['ASIS', 'poweredOn', false, false, 'ASIS', '-', '-', 'crash', false],
  ['ASIS', 'poweredOn', false, true, 'ASIS', '-', '-', 'crash', false],
  ['ASIS', 'poweredOn', true, false, 'ASIS', '-', '-', 'crash', false],
  ['ASIS', 'poweredOn', true, true, 'ASIS', '-', '-', 'crash', false],
  ['ASIS', 'poweredOff', false, false, 'ASIS', '-', '-', 'powered-off', false],
  ['ASIS', 'poweredOff', false, true, 'ASIS', '-', '-', 'powered-off', false],
  ['ASIS', 'poweredOff', true, false, 'ASIS', '-', '-', 'powered-off', false],
  ['ASIS', 'poweredOff', true, true, 'ASIS', '-', '-', 'powered-off', false],
  ['ASIS', 'suspended', false, false, 'ASIS', '-', '-', 'suspended', false],
  ['ASIS', 'suspended', false, true, 'ASIS', '-', '-', 'suspended', false],
  ['ASIS', 'suspended', true, false, 'ASIS', '-', '-', 'suspended', false],
  ['ASIS', 'suspended', true, true, 'ASIS', '-', '-', 'suspended', false],
];

describe('decideMode', () => {
  it('the table covers every combination exactly once', () => {
    assert.equal(TABLE.length, 4 * 3 * 2 * 2);
    const keys = new Set(TABLE.map((r) => r.slice(0, 4).join('|')));
    assert.equal(keys.size, TABLE.length);
    for (const mode of BACKUP_MODES) assert.equal(TABLE.filter((r) => r[0] === mode).length, 12);
  });

  for (const [
    requested,
    powerState,
    hasRdm,
    followedByOffload,
    effective,
    before,
    after,
    consistency,
    warned,
  ] of TABLE) {
    it(`${requested} ${powerState} rdm=${hasRdm} offload=${followedByOffload}`, () => {
      const d = decideMode({ vmName: 'vm-x', requested, powerState, hasRdm, followedByOffload });
      assert.equal(d.effectiveMode, effective);
      assert.deepEqual(d.before, BEFORE[before]);
      assert.deepEqual(d.after, AFTER[after]);
      assert.equal(d.consistency, consistency);
      if (warned) {
        assert.equal(d.warnings.length, 1);
        const w = d.warnings[0]!;
        assert.equal(w.code, MODE_CHANGED_RDM);
        assert.equal(w.code, 'MODE_CHANGED_RDM');
        assert.match(w.message, /\bvm-x\b/);
        assert.ok(w.message.includes(requested), 'names the requested mode');
        assert.ok(w.message.includes('ASIS'), 'names the effective mode');
      } else {
        assert.deepEqual(d.warnings, []);
      }
    });
  }

  it('before and after are both set or both null', () => {
    for (const [requested, powerState, hasRdm, followedByOffload] of TABLE) {
      const d = decideMode({ vmName: 'v', requested, powerState, hasRdm, followedByOffload });
      assert.equal(d.before === null, d.after === null, `${requested} ${powerState}`);
      if (d.before?.kind === 'create-vm-snapshot') assert.deepEqual(d.after, { kind: 'remove-vm-snapshot' });
      if (d.before?.kind === 'suspend') assert.deepEqual(d.after, { kind: 'power-on' });
    }
  });

  it('returns fresh objects: mutating one decision does not change the next', () => {
    const input = {
      vmName: 'a',
      requested: 'SNAPSHOT_INCL_MEM',
      powerState: 'poweredOn',
      hasRdm: false,
      followedByOffload: false,
    } as const;
    const first = decideMode(input);
    assert.equal(first.before?.kind, 'create-vm-snapshot');
    if (first.before?.kind === 'create-vm-snapshot') first.before.memory = false;
    const second = decideMode(input);
    assert.deepEqual(second.before, { kind: 'create-vm-snapshot', memory: true, quiesce: false });
  });
});

describe('resolveRequestedMode', () => {
  const rows: [BackupMode | undefined, BackupMode | undefined, BackupMode, BackupMode][] = [
    ['ASIS', 'SUSPEND', 'SNAPSHOT_EXCL_MEM', 'ASIS'],
    [undefined, 'SUSPEND', 'SNAPSHOT_EXCL_MEM', 'SUSPEND'],
    [undefined, undefined, 'SNAPSHOT_EXCL_MEM', 'SNAPSHOT_EXCL_MEM'],
    ['SNAPSHOT_INCL_MEM', undefined, 'ASIS', 'SNAPSHOT_INCL_MEM'],
  ];
  for (const [override, taskMode, defaultMode, expected] of rows) {
    it(`override=${override} task=${taskMode} default=${defaultMode} -> ${expected}`, () => {
      const input: { override?: BackupMode; taskMode?: BackupMode; defaultMode: BackupMode } = {
        defaultMode,
      };
      if (override !== undefined) input.override = override;
      if (taskMode !== undefined) input.taskMode = taskMode;
      assert.equal(resolveRequestedMode(input), expected);
    });
  }
});
