import { type Command, Option } from 'commander';
import { runBackupThenOffload } from '../../engine/index.js';
import { type ExitCode, UsageError } from '../../errors.js';
import type { BackupRecord } from '../../model/backup.js';
import { BACKUP_MODES, type BackupMode } from '../../model/modes.js';
import { ok } from '../context.js';
import { withEngine } from '../engine.js';
import { backupExitCode, formatBackup, formatBackupList } from '../format.js';
import {
  type CopyView,
  copiesCell,
  copyViews,
  formatCopies,
  formatOffloadAfterBackup,
  offloadAfterBackupExitCode,
} from './offload.js';
import type { Runner } from './runner.js';

export function registerBackup(program: Command, run: Runner): void {
  program
    .command('backup')
    .description('back up the VMs of a task (or the VMs named) with one array snapshot')
    .option('--task <name>', 'run this backup task')
    .option('--vm <glob...>', 'back up these VMs (names or globs) instead of a task')
    .addOption(new Option('--mode <mode>', 'override the backup mode').choices(BACKUP_MODES))
    .option(
      '--offload <repository>',
      "offload the backup to this repository afterwards (a task's own offload otherwise)",
    )
    .action(
      run(async (ctx, opts: { task?: string; vm?: string[]; mode?: BackupMode; offload?: string }) => {
        if (opts.task !== undefined && opts.vm !== undefined) {
          throw new UsageError(
            'USAGE',
            '--task and --vm cannot be used together: back up a task (--task NAME) or the VMs named (--vm GLOB...)',
          );
        }
        const abort = new AbortController();
        // Ctrl-C stops preparing further VMs; those already prepared are still released before exit.
        const onSigint = () => abort.abort();
        process.once('SIGINT', onSigint);
        try {
          const { record, offload } = await withEngine(ctx, (engine) =>
            runBackupThenOffload(engine, {
              ...(opts.task ? { taskName: opts.task } : {}),
              ...(opts.vm ? { vmPatterns: opts.vm } : {}),
              ...(opts.mode ? { mode: opts.mode } : {}),
              ...(opts.offload !== undefined ? { offload: opts.offload } : {}),
              signal: abort.signal,
            }),
          );
          ctx.progress.done();
          if (!offload) return ok(record, formatBackup(record), backupExitCode(record));
          // The backup record as always, with the offload that followed it (SPEC 6: the record stays the document).
          return ok(
            { ...record, offload },
            `${formatBackup(record)}\n${formatOffloadAfterBackup(offload)}`,
            Math.max(backupExitCode(record), offloadAfterBackupExitCode(offload)) as ExitCode,
          );
        } finally {
          process.off('SIGINT', onSigint);
        }
      }),
    );

  program
    .command('inquire')
    .description('list backups, or show one with --backup ID')
    .option('--backup <id>', 'show the full record of this backup')
    .option('--task <name>', 'only backups of this task')
    .option('--vm <name>', 'only backups containing this VM (name or glob)')
    .option('--state <state...>', 'only backups in these states (complete, partial, failed, running)')
    .option('--since <time>', 'only backups started at or after this ISO time')
    .option('--until <time>', 'only backups started before this ISO time')
    .option('--limit <n>', 'at most this many', (v) => Number.parseInt(v, 10))
    .action(
      run(async (ctx, opts: InquireOptions & { backup?: string }) =>
        withEngine(ctx, async (engine) => {
          if (opts.backup !== undefined) {
            const others = (['task', 'vm', 'state', 'since', 'until', 'limit'] as const).filter(
              (k) => opts[k] !== undefined,
            );
            if (others.length > 0) {
              throw new UsageError(
                'USAGE',
                `--backup shows one backup and takes no filter; drop ${others.map((k) => `--${k}`).join(', ')}`,
              );
            }
            const record = await engine.catalog.findBackup(opts.backup);
            const copies = await engine.catalog.copiesOf(opts.backup);
            // A deleted backup whose repository copies remain is still shown: by its copies.
            if (!record && copies.length === 0) await engine.catalog.getBackup(opts.backup);
            const views = copyViews(record, copies);
            if (!record) {
              return ok(
                { id: opts.backup, task: copies[0]!.task, state: 'deleted', copies: views },
                `Backup ${opts.backup}  task ${copies[0]!.task}  DELETED from the catalog and the array${formatCopies(views)}`,
              );
            }
            return ok({ ...record, copies: views }, `${formatBackup(record)}${formatCopies(views)}`);
          }
          const filter = parseInquireFilter(opts);
          const records = await engine.catalog.listBackups(filter);
          const rows = [];
          for (const r of records)
            rows.push({ ...r, copies: copyViews(r, await engine.catalog.copiesOf(r.id)) });
          return ok(rows, formatBackupListWithCopies(rows));
        }),
      ),
    );
}

const STATES = ['running', 'complete', 'partial', 'failed'] as const;

interface InquireOptions {
  task?: string;
  vm?: string;
  state?: string[];
  since?: string;
  until?: string;
  limit?: number;
}

function parseInquireFilter(opts: InquireOptions) {
  for (const s of opts.state ?? []) {
    if (!(STATES as readonly string[]).includes(s)) {
      throw badOption('--state', `unknown state ${s} (one of ${STATES.join(', ')})`);
    }
  }
  for (const [flag, value] of [
    ['--since', opts.since],
    ['--until', opts.until],
  ] as const) {
    if (value !== undefined && Number.isNaN(Date.parse(value))) {
      throw badOption(flag, `not a date/time: ${value}`);
    }
  }
  if (
    opts.since !== undefined &&
    opts.until !== undefined &&
    Date.parse(opts.since) > Date.parse(opts.until)
  ) {
    throw badOption('--since', `${opts.since} is later than --until ${opts.until}: no backup can match`);
  }
  if (opts.limit !== undefined && (!Number.isInteger(opts.limit) || opts.limit < 1)) {
    throw badOption('--limit', 'must be a positive whole number');
  }
  return {
    ...(opts.task ? { task: opts.task } : {}),
    ...(opts.vm ? { vm: opts.vm } : {}),
    ...(opts.state ? { state: opts.state as (typeof STATES)[number][] } : {}),
    ...(opts.since ? { since: new Date(opts.since).toISOString() } : {}),
    ...(opts.until ? { until: new Date(opts.until).toISOString() } : {}),
    ...(opts.limit ? { limit: opts.limit } : {}),
  };
}

/** A bad option value: exit 3, naming the option. */
function badOption(flag: string, message: string): UsageError {
  return new UsageError('USAGE', `${flag}: ${message}`);
}

/** The backup list with a COPIES column (array, repositories). */
function formatBackupListWithCopies(rows: (BackupRecord & { copies: CopyView[] })[]): string {
  const text = formatBackupList(rows);
  if (rows.length === 0) return text;
  const lines = text.split('\n');
  const width = Math.max(...lines.map((l) => l.length));
  return lines
    .map((l, i) => `${l.padEnd(width)}  ${i === 0 ? 'COPIES' : copiesCell(rows[i - 1]!.copies)}`)
    .join('\n');
}
