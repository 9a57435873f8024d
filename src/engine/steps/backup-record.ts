import type { BackupRecord, VmRecord } from '../../model/backup.js';
import type { BackupPlan, VmPlan } from '../plan.js';

/**
 * A backup run's record as it is built: one VmRun per planned VM (its progress beside its record), the
 * record's first shape, its outcome. No side effects: the steps that act (backup-vms.ts,
 * backup-snapshot.ts) write what happened here, and the entry point (backup.ts) stores it.
 */

/** Per-VM progress of one run, kept beside the record while it is being built. */
export interface VmRun {
  plan: VmPlan;
  record: VmRecord;
  prepared: boolean;
  quiesceStart?: Date;
  /** The VM snapshot this run created, once vCenter confirmed it. */
  vmSnapshotId?: string;
  /** True once vCenter confirmed this run suspended the VM. */
  suspended?: boolean;
  /** Preparing failed: the VM was never held in its mode's state, so it has no quiesce window. */
  notPrepared?: boolean;
}

/** The run's VMs and its record in state `running`, before anything is done. */
export function startRecord(
  id: string,
  taskName: string,
  plan: BackupPlan,
  snapshotName: string,
  now: Date,
): { record: BackupRecord; runs: VmRun[] } {
  const runs: VmRun[] = plan.vms.map((p) => ({
    plan: p,
    record: vmRecordOf(p, snapshotName),
    prepared: false,
  }));
  const record: BackupRecord = {
    id,
    task: taskName,
    state: 'running',
    startedAt: now.toISOString(),
    requestedMode: plan.vms[0]!.requestedMode,
    snapshots: [],
    vms: runs.map((r) => r.record),
    warnings: [...plan.warnings],
  };
  return { record, runs };
}

function vmRecordOf(p: VmPlan, snapshotName: string): VmRecord {
  const { vm, decision } = p;
  return {
    id: vm.id,
    name: vm.name,
    instanceUuid: vm.instanceUuid,
    host: vm.host,
    folder: vm.folder,
    datacenter: vm.datacenter,
    vmxFile: vm.vmxFile,
    homeDatastore: vm.homeDatastore,
    datastores: vm.datastores,
    powerState: vm.powerState,
    requestedMode: p.requestedMode,
    effectiveMode: decision.effectiveMode,
    consistency: decision.consistency,
    ...(decision.before?.kind === 'create-vm-snapshot' ? { vmSnapshot: snapshotName } : {}),
    state: 'ok',
    disks: p.disks,
    warnings: [...decision.warnings],
    ...(vm.hardware ? { hardware: vm.hardware } : {}),
  };
}

/**
 * The VM was never held in its mode's state: its record says so (no consistency the mode promised, no VM
 * snapshot inside the array snapshot, no quiesce window) instead of what the plan expected.
 */
export function failPrepare(run: VmRun, message: string): void {
  run.notPrepared = true;
  run.record.consistency = 'not-prepared';
  delete run.record.vmSnapshot;
  delete run.record.quiesce;
  failVm(run, message);
}

export function failVm(run: VmRun, message: string): void {
  if (run.record.state === 'failed') return;
  run.record.state = 'failed';
  run.record.error = message;
  run.record.warnings.push({ code: 'VM_FAILED', message: `${run.record.name}: ${message}` });
}

/** Failed when the run failed or no VM is ok; partial when some are; complete when all are. */
export function settleState(record: BackupRecord, runs: VmRun[]): void {
  addPointInTimeWarnings(record);
  const okCount = runs.filter((r) => r.record.state === 'ok').length;
  record.state =
    record.error !== undefined || okCount === 0 ? 'failed' : okCount === runs.length ? 'complete' : 'partial';
}

function addPointInTimeWarnings(record: BackupRecord): void {
  const sequential = record.snapshots.filter((s) => s.pointInTime === 'sequential');
  if (sequential.length === 0 && record.snapshots.length <= 1) return;
  for (const vm of record.vms) {
    if (vm.state !== 'ok' || (vm.consistency !== 'crash' && !vm.disks.some((d) => d.consistency === 'crash')))
      continue;
    const spans = record.snapshots.filter((s) => vm.datastores.some((ds) => s.datastores[ds] !== undefined));
    if (spans.length > 1 || spans.some((s) => s.pointInTime === 'sequential')) {
      vm.warnings.push({
        code: 'NOT_POINT_IN_TIME',
        message: `${vm.name}: its volumes were not captured at one point in time (driver ${spans.map((s) => s.driver).join(', ')}); the crash-consistent image may be torn`,
      });
    }
  }
}
