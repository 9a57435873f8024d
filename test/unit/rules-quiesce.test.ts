import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { TOOLS_STATES, type ToolsState } from '../../src/model/inventory.js';
import { BACKUP_MODES, QUIESCE_POLICIES, type QuiescePolicy } from '../../src/model/modes.js';
import { decideMode } from '../../src/rules/modes.js';
import { decideQuiesce, QUIESCE_FAILED, type QuiesceDecision } from '../../src/rules/quiesce.js';

type Tools = ToolsState | 'unknown';
type Fault = '-' | 'ToolsUnavailable' | 'FilesystemQuiesceFault' | 'ApplicationQuiesceFault' | 'SystemError';
type Outcome = QuiesceDecision['outcome'];
type Row = [Tools, Fault, QuiescePolicy, Outcome];

const TOOLS: Tools[] = [...TOOLS_STATES, 'unknown'];
const FAULTS: Fault[] = [
  '-',
  'ToolsUnavailable',
  'FilesystemQuiesceFault',
  'ApplicationQuiesceFault',
  'SystemError',
];

/**
 * SNAPSHOT_EXCL_MEM on a powered-on VM (the one case that quiesces), every combination written out:
 * Tools state, the fault of the quiesced CreateSnapshot ('-': before trying), policy -> outcome.
 */
const EXCL_MEM: Row[] = [
  ['running', '-', 'crash-consistent', 'as-planned'],
  ['running', '-', 'fail', 'as-planned'],
  ['running', 'ToolsUnavailable', 'crash-consistent', 'without-quiesce'],
  ['running', 'ToolsUnavailable', 'fail', 'fail'],
  ['running', 'FilesystemQuiesceFault', 'crash-consistent', 'without-quiesce'],
  ['running', 'FilesystemQuiesceFault', 'fail', 'fail'],
  ['running', 'ApplicationQuiesceFault', 'crash-consistent', 'without-quiesce'],
  ['running', 'ApplicationQuiesceFault', 'fail', 'fail'],
  ['running', 'SystemError', 'crash-consistent', 'as-planned'],
  ['running', 'SystemError', 'fail', 'as-planned'],
  ['notRunning', '-', 'crash-consistent', 'without-quiesce'],
  ['notRunning', '-', 'fail', 'fail'],
  ['notRunning', 'ToolsUnavailable', 'crash-consistent', 'without-quiesce'],
  ['notRunning', 'ToolsUnavailable', 'fail', 'fail'],
  ['notRunning', 'FilesystemQuiesceFault', 'crash-consistent', 'without-quiesce'],
  ['notRunning', 'FilesystemQuiesceFault', 'fail', 'fail'],
  ['notRunning', 'ApplicationQuiesceFault', 'crash-consistent', 'without-quiesce'],
  ['notRunning', 'ApplicationQuiesceFault', 'fail', 'fail'],
  ['notRunning', 'SystemError', 'crash-consistent', 'as-planned'],
  ['notRunning', 'SystemError', 'fail', 'as-planned'],
  ['notInstalled', '-', 'crash-consistent', 'without-quiesce'],
  ['notInstalled', '-', 'fail', 'fail'],
  ['notInstalled', 'ToolsUnavailable', 'crash-consistent', 'without-quiesce'],
  ['notInstalled', 'ToolsUnavailable', 'fail', 'fail'],
  ['notInstalled', 'FilesystemQuiesceFault', 'crash-consistent', 'without-quiesce'],
  ['notInstalled', 'FilesystemQuiesceFault', 'fail', 'fail'],
  ['notInstalled', 'ApplicationQuiesceFault', 'crash-consistent', 'without-quiesce'],
  ['notInstalled', 'ApplicationQuiesceFault', 'fail', 'fail'],
  ['notInstalled', 'SystemError', 'crash-consistent', 'as-planned'],
  ['notInstalled', 'SystemError', 'fail', 'as-planned'],
  ['unknown', '-', 'crash-consistent', 'as-planned'],
  ['unknown', '-', 'fail', 'as-planned'],
  ['unknown', 'ToolsUnavailable', 'crash-consistent', 'without-quiesce'],
  ['unknown', 'ToolsUnavailable', 'fail', 'fail'],
  ['unknown', 'FilesystemQuiesceFault', 'crash-consistent', 'without-quiesce'],
  ['unknown', 'FilesystemQuiesceFault', 'fail', 'fail'],
  ['unknown', 'ApplicationQuiesceFault', 'crash-consistent', 'without-quiesce'],
  ['unknown', 'ApplicationQuiesceFault', 'fail', 'fail'],
  ['unknown', 'SystemError', 'crash-consistent', 'as-planned'],
  ['unknown', 'SystemError', 'fail', 'as-planned'],
];

function decide(
  mode: (typeof BACKUP_MODES)[number],
  power: 'poweredOn' | 'poweredOff' | 'suspended',
  tools: Tools,
  fault: Fault,
  policy: QuiescePolicy,
): QuiesceDecision {
  const planned = decideMode({
    vmName: 'app01',
    requested: mode,
    powerState: power,
    hasRdm: false,
    followedByOffload: false,
  }).before;
  return decideQuiesce({
    vmName: 'app01',
    planned,
    tools: tools === 'unknown' ? undefined : tools,
    ...(fault === '-' ? {} : { fault: { type: fault, message: `the guest said no (${fault})` } }),
    policy,
  });
}

describe('quiesce fallback decision (issue 11)', () => {
  it('the SNAPSHOT_EXCL_MEM table covers every Tools state x fault x policy exactly once', () => {
    const keys = new Set(EXCL_MEM.map(([t, f, p]) => `${t}/${f}/${p}`));
    assert.equal(keys.size, EXCL_MEM.length);
    assert.equal(EXCL_MEM.length, TOOLS.length * FAULTS.length * QUIESCE_POLICIES.length);
  });

  for (const [tools, fault, policy, outcome] of EXCL_MEM) {
    it(`SNAPSHOT_EXCL_MEM, Tools ${tools}, fault ${fault}, ${policy} -> ${outcome}`, () => {
      const d = decide('SNAPSHOT_EXCL_MEM', 'poweredOn', tools, fault, policy);
      assert.equal(d.outcome, outcome);
      const reason = fault === '-' ? (tools === 'notInstalled' ? 'not installed' : 'not running') : fault;
      if (d.outcome === 'without-quiesce') {
        assert.equal(d.consistency, 'crash');
        assert.equal(d.warning.code, QUIESCE_FAILED);
        assert.match(d.warning.message, /^VM app01: /);
        assert.ok(d.warning.message.includes(reason), d.warning.message);
      }
      if (d.outcome === 'fail') {
        assert.ok(d.reason.includes(reason), d.reason);
        assert.match(d.reason, /onQuiesceFailure: fail/);
      }
    });
  }

  it('every mode and power state that does not quiesce is left as planned, whatever Tools and faults say', () => {
    let checked = 0;
    for (const mode of BACKUP_MODES) {
      for (const power of ['poweredOn', 'poweredOff', 'suspended'] as const) {
        if (mode === 'SNAPSHOT_EXCL_MEM' && power === 'poweredOn') continue;
        for (const tools of TOOLS) {
          for (const fault of FAULTS) {
            for (const policy of QUIESCE_POLICIES) {
              assert.deepEqual(
                decide(mode, power, tools, fault, policy),
                { outcome: 'as-planned' },
                `${mode} ${power} ${tools} ${fault} ${policy}`,
              );
              checked++;
            }
          }
        }
      }
    }
    assert.equal(checked, (BACKUP_MODES.length * 3 - 1) * TOOLS.length * FAULTS.length * 2);
  });
});
