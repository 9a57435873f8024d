import { ExitCode } from '../errors.js';
import type { BackupRecord, HookRecord, Warning } from '../model/backup.js';
import { table } from './table.js';

/**
 * Run-level warnings (record.warnings) followed by every VM's (vms[].warnings), each once (records written
 * by older versions also copied the VM warnings into record.warnings).
 */
export function allWarnings(record: BackupRecord): Warning[] {
  const seen = new Set<string>();
  return [...record.warnings, ...record.vms.flatMap((vm) => vm.warnings)].filter((w) => {
    const key = `${w.code}\0${w.message}`;
    if (seen.has(key)) return false;
    seen.add(key);
    return true;
  });
}

/**
 * SPEC 6: complete without warnings 0, complete with warnings 1, partial or failed 2. A backup that left a VM
 * held (RELEASE_FAILED: suspended, or with its VM snapshot) failed its guarantee: 2 as well.
 */
export function backupExitCode(record: BackupRecord): ExitCode {
  if (record.state === 'partial' || record.state === 'failed' || record.state === 'running')
    return ExitCode.failed;
  const warnings = allWarnings(record);
  if (warnings.some((w) => w.code === 'RELEASE_FAILED')) return ExitCode.failed;
  return outcomeExitCode(0, warnings.length);
}

/** SPEC 6 for a command that did several things: any error 2, else any warning 1, else 0. */
export function outcomeExitCode(errors: number, warnings: number): ExitCode {
  if (errors > 0) return ExitCode.failed;
  return warnings > 0 ? ExitCode.warnings : ExitCode.ok;
}

function seconds(ms: number | undefined): string {
  return ms === undefined ? '-' : `${(ms / 1000).toFixed(1)} s`;
}

/** The full record of one backup, for people. */
export function formatBackup(record: BackupRecord): string {
  const lines = [`Backup ${record.id}  task ${record.task}  ${record.state.toUpperCase()}`];
  lines.push(`  started ${record.startedAt}${record.finishedAt ? `  finished ${record.finishedAt}` : ''}`);
  if (record.snapshotAt) lines.push(`  array snapshot at ${record.snapshotAt}`);
  for (const s of record.snapshots) {
    lines.push(
      `  snapshot ${s.array}/${s.snapshotId}: ${s.pointInTime} (${s.driver}), volumes ${s.volumes.join(', ')}`,
    );
  }
  if (record.error) lines.push(`  error: ${record.error}`);
  if (record.lost) lines.push(`  LOST since ${record.lost.at}: ${record.lost.reason}; it cannot be restored`);
  lines.push('');
  lines.push(
    table(
      ['VM', 'MODE', 'CONSISTENCY', 'QUIESCE', 'DISKS', 'STATE'],
      record.vms.map((vm) => {
        const byTask = vm.disks.filter((d) => !d.included && d.exclusion === 'task').length;
        const rdm = vm.disks.filter((d) => !d.included && d.exclusion !== 'task').length;
        const included = vm.disks.length - byTask - rdm;
        const disks = `${included} in${rdm > 0 ? `, ${rdm} RDM excluded` : ''}${byTask > 0 ? `, ${byTask} excluded` : ''}`;
        const mode =
          vm.requestedMode === vm.effectiveMode
            ? vm.effectiveMode
            : `${vm.requestedMode} -> ${vm.effectiveMode}`;
        return [
          vm.name,
          mode,
          vm.consistency,
          seconds(vm.quiesce?.ms),
          disks,
          vm.error ? `failed: ${vm.error}` : vm.state,
        ];
      }),
    ),
  );
  const diskLines = record.vms.flatMap((vm) =>
    vm.disks.map(
      (d) =>
        `  ${vm.name} / ${d.label}: ${d.kind}, ${d.included ? 'included' : 'EXCLUDED'}${d.note ? ` (${d.note})` : ''}`,
    ),
  );
  if (diskLines.length > 0) lines.push('', 'disks:', ...diskLines);
  if (record.hooks && record.hooks.length > 0) lines.push('', 'hooks:', ...record.hooks.flatMap(hookLines));
  const warnings = allWarnings(record);
  if (warnings.length > 0) {
    lines.push('', 'warnings:', ...warnings.map((w) => `  ${w.code}: ${w.message}`));
  }
  return lines.join('\n');
}

/** The last lines of a failed hook's output: where its reason usually is (the record keeps 4 KiB). */
const FAILED_HOOK_OUTPUT_LINES = 5;

function hookLines(hook: HookRecord): string[] {
  const outcome = hook.ok ? `ok (exit 0)` : `FAILED: ${hook.error ?? `exit ${hook.exitCode}`}`;
  const head = `  ${hook.phase}: ${hook.run.join(' ')}  ${seconds(hook.ms)}  ${outcome}`;
  if (hook.ok || hook.output.trim() === '') return [head];
  const tail = hook.output.trimEnd().split('\n').slice(-FAILED_HOOK_OUTPUT_LINES);
  return [head, ...tail.map((line) => `    | ${line}`)];
}

/** One line per backup, for `inquire`. */
export function formatBackupList(records: BackupRecord[]): string {
  if (records.length === 0) return 'no backups';
  return table(
    ['ID', 'TASK', 'STATE', 'STARTED', 'VMS', 'WARNINGS'],
    records.map((r) => {
      const warnings = allWarnings(r).length;
      return [
        r.id,
        r.task,
        r.state,
        r.startedAt,
        String(r.vms.length),
        warnings === 0 ? '' : String(warnings),
      ];
    }),
  );
}
