import type { Consistency, Warning } from '../model/backup.js';
import type { PowerState } from '../model/inventory.js';
import type { BackupMode } from '../model/modes.js';

/** What to do to a VM right before the hardware snapshot. */
export type PrepareAction =
  | { kind: 'create-vm-snapshot'; memory: boolean; quiesce: boolean }
  | { kind: 'suspend' };

/** What to do to a VM right after the hardware snapshot; always paired with the PrepareAction. */
export type ReleaseAction = { kind: 'remove-vm-snapshot' } | { kind: 'power-on' };

export interface ModeDecision {
  /** The mode actually used; differs from the requested one only through the RDM rule. */
  effectiveMode: BackupMode;
  /** Null when nothing is done to the VM (ASIS, powered off, suspended). */
  before: PrepareAction | null;
  /** Non-null exactly when `before` is. */
  after: ReleaseAction | null;
  consistency: Consistency;
  warnings: Warning[];
}

export interface ModeInput {
  vmName: string;
  requested: BackupMode;
  powerState: PowerState;
  /** The VM has at least one RDM disk, physical or virtual compatibility. */
  hasRdm: boolean;
  /** The backup is copied to a repository afterwards; the RDM rule then keeps the requested mode. */
  followedByOffload: boolean;
}

/** Warning code of the SPEC section 2 RDM rule. */
export const MODE_CHANGED_RDM = 'MODE_CHANGED_RDM';

const SNAPSHOT_MODES: ReadonlySet<BackupMode> = new Set<BackupMode>([
  'SNAPSHOT_INCL_MEM',
  'SNAPSHOT_EXCL_MEM',
]);

/** True for the modes that take a VM snapshot (on a powered-on VM). */
export function usesVmSnapshot(mode: BackupMode): boolean {
  return SNAPSHOT_MODES.has(mode);
}

/** SPEC section 2 table, for a powered-on VM. */
const RUNNING: Record<BackupMode, Omit<ModeDecision, 'effectiveMode' | 'warnings'>> = {
  SNAPSHOT_INCL_MEM: {
    before: { kind: 'create-vm-snapshot', memory: true, quiesce: false },
    after: { kind: 'remove-vm-snapshot' },
    consistency: 'running-state',
  },
  SNAPSHOT_EXCL_MEM: {
    before: { kind: 'create-vm-snapshot', memory: false, quiesce: true },
    after: { kind: 'remove-vm-snapshot' },
    consistency: 'file-system',
  },
  SUSPEND: { before: { kind: 'suspend' }, after: { kind: 'power-on' }, consistency: 'suspended' },
  ASIS: { before: null, after: null, consistency: 'crash' },
};

/**
 * SPEC section 2: how one VM is brought into a consistent state for the hardware snapshot and released after.
 * The RDM rule decides `effectiveMode` whatever the power state (so the record shows the same mode for a VM
 * whether or not it happened to run); the power state then decides the actions: a powered-off VM needs
 * nothing and a suspended VM is left as it is. Returns fresh objects: callers may mutate them.
 */
export function decideMode(input: ModeInput): ModeDecision {
  const { vmName, requested, powerState, hasRdm, followedByOffload } = input;
  const warnings: Warning[] = [];
  let effectiveMode = requested;
  if (hasRdm && !followedByOffload && usesVmSnapshot(requested)) {
    effectiveMode = 'ASIS';
    warnings.push({
      code: MODE_CHANGED_RDM,
      message:
        `VM ${vmName} has raw device mapping (RDM) disks: backed up in ASIS instead of the requested ` +
        `${requested} (no VM snapshot, crash consistent only)`,
    });
  }
  if (powerState === 'poweredOff') {
    return { effectiveMode, before: null, after: null, consistency: 'powered-off', warnings };
  }
  if (powerState === 'suspended') {
    return { effectiveMode, before: null, after: null, consistency: 'suspended', warnings };
  }
  const row = RUNNING[effectiveMode];
  return {
    effectiveMode,
    before: row.before === null ? null : { ...row.before },
    after: row.after === null ? null : { ...row.after },
    consistency: row.consistency,
    warnings,
  };
}

/** The mode a backup asks for: the CLI override, else the task's mode, else the configured default. */
export function resolveRequestedMode(input: {
  override?: BackupMode;
  taskMode?: BackupMode;
  defaultMode: BackupMode;
}): BackupMode {
  return input.override ?? input.taskMode ?? input.defaultMode;
}
