import type { Command } from 'commander';
import type { CopyView, OffloadAfterBackup, OffloadResult } from '../../engine/index.js';
import { runOffload } from '../../engine/index.js';
import { ExitCode } from '../../errors.js';
import { ok } from '../context.js';
import { withEngine } from '../engine.js';
import { formatBytes } from '../progress.js';
import { table } from '../table.js';
import type { Runner } from './runner.js';

/** `snapkeeper offload --backup ID --repository NAME`: copies a backup into a repository (issue 8). */
export function registerOffload(program: Command, run: Runner): void {
  program
    .command('offload')
    .description('copy a backup from its array snapshot into a repository (deduplicated, encrypted)')
    .requiredOption('--backup <id>', 'the backup to copy')
    .requiredOption('--repository <name>', 'the configured repository to copy it into')
    .action(
      run(async (ctx, opts: { backup: string; repository: string }) => {
        const abort = new AbortController();
        // Ctrl-C stops the offload; what was stored stays for the next offload to reuse.
        const onSigint = () => abort.abort();
        process.once('SIGINT', onSigint);
        try {
          const result = await withEngine(ctx, (engine) =>
            runOffload(engine, { backupId: opts.backup, repository: opts.repository, signal: abort.signal }),
          );
          ctx.progress.done();
          return ok(
            result,
            formatOffload(result),
            result.warnings.length > 0 ? ExitCode.warnings : ExitCode.ok,
          );
        } finally {
          process.off('SIGINT', onSigint);
        }
      }),
    );
}

function mbPerSecond(bytes: number, ms: number): string {
  return ms > 0 ? `${(bytes / 1048576 / (ms / 1000)).toFixed(1)} MiB/s` : '-';
}

/** An offload's result for a terminal. */
export function formatOffload(r: OffloadResult): string {
  const lines = r.alreadyStored
    ? [
        `Backup ${r.backupId} is already in repository ${r.repository} (manifest ${r.manifestId}): nothing stored, the catalog has its copy`,
        `  ${formatBytes(r.bytes)} in the copy`,
      ]
    : [
        `Backup ${r.backupId} offloaded to repository ${r.repository} (manifest ${r.manifestId})`,
        `  ${formatBytes(r.bytes)} in the copy, ${formatBytes(r.bytesRead)} read, ${formatBytes(r.bytesAdded)} added, ${(r.ms / 1000).toFixed(1)} s (${mbPerSecond(r.bytes, r.ms)})`,
      ];
  if (r.vms.length > 0) {
    lines.push('');
    lines.push(
      table(
        ['VM', 'IMAGE', 'FILES', 'BYTES', 'INCREMENTAL FROM', 'EXCLUDED'],
        r.vms.map((v) => {
          const from = [...new Set(v.files.map((f) => f.incrementalFrom).filter((x) => x !== undefined))];
          return [
            v.name,
            v.image === 'base-disks' ? 'base disks (at VM snapshot)' : 'disks',
            String(v.files.length || '-'),
            formatBytes(v.bytes),
            from.join(', ') || '-',
            v.excludedDisks.map((d) => `${d.label} (${d.reason})`).join(', ') || '-',
          ];
        }),
      ),
    );
  }
  for (const w of r.warnings) lines.push(`warning ${w.code}: ${w.message}`);
  return lines.join('\n');
}

/** The offload that followed a backup, for a terminal (below the backup's own output). */
export function formatOffloadAfterBackup(o: OffloadAfterBackup): string {
  const lines: string[] = [''];
  if (o.error) lines.push(`OFFLOAD to ${o.repository} FAILED (${o.error.code}): ${o.error.message}`);
  if (o.result) lines.push(formatOffload(o.result));
  if (o.retention) {
    const r = o.retention;
    lines.push(
      `repository retention of task ${r.task} in ${r.repository}: ${r.forgotten.length} copy(ies) forgotten${r.forgotten.map((f) => `\n  ${f.backupId} (${f.reason})`).join('')}`,
    );
    for (const s of r.skipped) lines.push(`  kept ${s.backupId}: ${s.reason}`);
  }
  if (o.retentionError)
    lines.push(`repository retention failed (${o.retentionError.code}): ${o.retentionError.message}`);
  return lines.join('\n');
}

/** The exit code an offload after a backup adds: 2 when it failed, 1 with warnings. */
export function offloadAfterBackupExitCode(o: OffloadAfterBackup | undefined): ExitCode {
  if (!o) return ExitCode.ok;
  if (o.error) return ExitCode.failed;
  if (o.retentionError || (o.result?.warnings.length ?? 0) > 0 || (o.retention?.skipped.length ?? 0) > 0) {
    return ExitCode.warnings;
  }
  return ExitCode.ok;
}

export { type CopyView, copyViews } from '../../engine/index.js';

/** The copies as one short cell: `array, offsite` (`array` only while the array snapshot is there). */
export function copiesCell(views: CopyView[]): string {
  return (
    views
      .map((v) => (v.kind === 'array' ? (v.present ? 'array' : undefined) : v.name))
      .filter((x) => x !== undefined)
      .join(', ') || '-'
  );
}

/** The copies of one backup, for `inquire --backup ID` on a terminal. */
export function formatCopies(views: CopyView[]): string {
  const lines = ['', 'Copies'];
  for (const v of views) {
    if (v.kind === 'array') {
      lines.push(
        v.present
          ? `  array: ${v.snapshots.map((s) => `${s.array}/${s.snapshotId}`).join(', ')}`
          : '  array: gone (the backup was deleted, expired, failed or lost)',
      );
    } else {
      lines.push(
        `  repository ${v.name}: manifest ${v.manifestId}, offloaded ${v.offloadedAt}, ${formatBytes(v.bytes)}`,
      );
    }
  }
  return lines.join('\n');
}
