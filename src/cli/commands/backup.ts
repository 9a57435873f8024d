import { type Command, Option } from 'commander';
import { runBackup } from '../../engine/index.js';
import { UsageError } from '../../errors.js';
import { BACKUP_MODES, type BackupMode } from '../../model/modes.js';
import { ok } from '../context.js';
import { withEngine } from '../engine.js';
import { backupExitCode, formatBackup, formatBackupList } from '../format.js';
import type { Runner } from './runner.js';

export function registerBackup(program: Command, run: Runner): void {
  program
    .command('backup')
    .description('back up the VMs of a task (or the VMs named) with one array snapshot')
    .option('--task <name>', 'run this backup task')
    .option('--vm <glob...>', 'back up these VMs (names or globs) instead of a task')
    .addOption(new Option('--mode <mode>', 'override the backup mode').choices(BACKUP_MODES))
    .action(
      run(async (ctx, opts: { task?: string; vm?: string[]; mode?: BackupMode }) => {
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
          const record = await withEngine(ctx, (engine) =>
            runBackup(engine, {
              ...(opts.task ? { taskName: opts.task } : {}),
              ...(opts.vm ? { vmPatterns: opts.vm } : {}),
              ...(opts.mode ? { mode: opts.mode } : {}),
              signal: abort.signal,
            }),
          );
          return ok(record, formatBackup(record), backupExitCode(record));
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
            const record = await engine.catalog.getBackup(opts.backup);
            return ok(record, formatBackup(record));
          }
          const filter = parseInquireFilter(opts);
          const records = await engine.catalog.listBackups(filter);
          return ok(records, formatBackupList(records));
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
