import { resolve } from 'node:path';
import type { Command } from 'commander';
import { migrateSqliteToPostgres, openCatalog } from '../../catalog/index.js';
import { resolveCatalogConfig } from '../../config/catalog.js';
import { deleteBackup, expireAll, recover } from '../../engine/index.js';
import { UsageError } from '../../errors.js';
import type { Warning } from '../../model/backup.js';
import { ok } from '../context.js';
import { withEngine } from '../engine.js';
import { outcomeExitCode } from '../format.js';
import type { Runner } from './runner.js';

export function registerMaintenance(program: Command, run: Runner): void {
  const catalog = program
    .command('catalog')
    .description('the catalog: a SQLite file or a PostgreSQL database');
  catalog
    .command('create')
    .description(
      'create the catalog at the configured catalog.path or catalog.url (other commands never create one)',
    )
    .action(
      run(async (ctx) => {
        const opened = await openCatalog(ctx.config().catalog, { create: true });
        try {
          return ok(
            { path: opened.location, id: opened.id, dialect: opened.dialect },
            `catalog ${opened.location} (id ${opened.id})`,
          );
        } finally {
          await opened.close();
        }
      }),
    );

  catalog
    .command('migrate')
    .description(
      'copy a SQLite catalog into an empty PostgreSQL catalog, in one transaction, keeping its id (the file is only read)',
    )
    .requiredOption('--from <file>', 'the SQLite catalog file')
    .requiredOption('--to <url>', 'postgres://USER@HOST:PORT/DATABASE (no password in it)')
    .option('--password-file <file>', "a file holding the PostgreSQL user's password")
    .option('--password-env <var>', "an environment variable holding the PostgreSQL user's password")
    .action(
      run(async (ctx, opts: { from: string; to: string; passwordFile?: string; passwordEnv?: string }) => {
        const warnings: Warning[] = [];
        const target = resolveCatalogConfig(
          {
            url: opts.to,
            ...(opts.passwordFile === undefined ? {} : { passwordFile: opts.passwordFile }),
            ...(opts.passwordEnv === undefined ? {} : { passwordEnv: opts.passwordEnv }),
          },
          (p) => resolve(p),
          ctx.env,
          warnings,
        );
        if ('problems' in target || target.url === undefined) {
          const problems = 'problems' in target ? target.problems : [];
          throw new UsageError(
            'USAGE',
            `catalog migrate: ${problems.map((p) => p.message.replace(/catalog\.(passwordFile|passwordEnv)/g, (_m, k: string) => (k === 'passwordFile' ? '--password-file' : '--password-env'))).join('; ')}`,
          );
        }
        const result = await migrateSqliteToPostgres(opts.from, target);
        const lines = [
          `migrated catalog ${result.catalogId} (schema ${result.schemaVersion}) from ${result.from} to ${result.to}:`,
          ...Object.entries(result.counts).map(([table, n]) => `  ${table}: ${n}`),
          'set catalog: { url, passwordFile } in the configuration to use it; the SQLite file is left as it was',
        ];
        return ok(result, lines.join('\n'));
      }),
    );

  program
    .command('recover')
    .description('repair what interrupted runs left: VM snapshots, suspended VMs, orphan array snapshots')
    .option('--dry-run', 'show what would be done, change nothing')
    .action(
      run(async (ctx, opts: { dryRun?: boolean }) =>
        withEngine(ctx, async (engine) => {
          const report = await recover(engine, { dryRun: opts.dryRun === true });
          const verb = report.dryRun ? 'would ' : '';
          const lines = [
            `${verb}close ${report.operations.length} interrupted operation(s)${report.operations.map((o) => `\n  ${o.kind} ${o.id}`).join('')}`,
            `${verb}remove ${report.removedVmSnapshots.length} VM snapshot(s)${report.removedVmSnapshots.map((s) => `\n  ${s.vm}: ${s.snapshot}`).join('')}`,
            `${verb}power on ${report.poweredOnVms.length} suspended VM(s)${report.poweredOnVms.map((v) => `\n  ${v}`).join('')}`,
            `${verb}delete ${report.deletedArraySnapshots.length} orphan array snapshot(s)${report.deletedArraySnapshots.map((s) => `\n  ${s.array}/${s.snapshotId}`).join('')}`,
            `${verb}mark ${report.failedBackups.length} interrupted backup(s) failed`,
          ];
          if (report.stillOpen.length > 0) {
            lines.push(
              `left open (not fully repaired; run recover again): ${report.stillOpen.map((o) => `${o.kind} ${o.id}`).join(', ')}`,
            );
          }
          for (const b of report.lostBackups) {
            lines.push(
              `warning: backup ${b.id} ${verb}${report.dryRun ? 'be ' : 'is '}marked lost: ${b.missing.map((m) => `${m.array}/${m.snapshotId}`).join(', ')} no longer on the array`,
            );
          }
          if (report.foreign.length > 0) {
            lines.push(
              `left alone (not made by this catalog): ${report.foreign.length}${report.foreign.map((f) => `\n  ${f.kind} ${f.where}/${f.name}: ${f.why}`).join('')}`,
            );
          }
          lines.push(...report.actions);
          if (report.running.length > 0) {
            lines.push(
              `left alone (still running): ${report.running.map((r) => `${r.kind} ${r.id} pid ${r.pid}`).join(', ')}`,
            );
          }
          if (report.errors.length > 0) lines.push('errors:', ...report.errors.map((e) => `  ${e}`));
          return ok(
            report,
            lines.join('\n'),
            outcomeExitCode(report.errors.length, report.lostBackups.length),
          );
        }),
      ),
    );

  program
    .command('delete')
    .description('delete a backup: its array snapshots and its catalog record')
    .requiredOption('--backup <id>', 'the backup to delete')
    .option('--dry-run', 'show what would be deleted, change nothing')
    .action(
      run(async (ctx, opts: { backup: string; dryRun?: boolean }) =>
        withEngine(ctx, async (engine) => {
          const deleted = await deleteBackup(engine, opts.backup, { dryRun: opts.dryRun === true });
          const verb = opts.dryRun ? 'would delete' : 'deleted';
          return ok(
            { dryRun: opts.dryRun === true, deleted: [deleted] },
            `${verb} backup ${deleted.id} and ${deleted.snapshots.length} array snapshot(s)`,
          );
        }),
      ),
    );

  program
    .command('expire')
    .description('apply retention: delete backups beyond each task’s max versions or max age')
    .option('--task <name>', 'only this task')
    .option('--dry-run', 'show what would be deleted, change nothing')
    .action(
      run(async (ctx, opts: { task?: string; dryRun?: boolean }) =>
        withEngine(ctx, async (engine) => {
          const dryRun = opts.dryRun === true;
          const result = await expireAll(engine, { dryRun, ...(opts.task ? { task: opts.task } : {}) });
          const verb = dryRun ? 'would expire' : 'expired';
          const lines = [
            `${verb} ${result.deleted.length} backup(s)`,
            ...result.deleted.map((d) => `  ${d.id} (${d.task}): ${d.reason}`),
            ...result.skipped.map((s) => `warning: skipped ${s.id}: ${s.reason}`),
            ...result.errors.map((e) => `error: ${e}`),
          ];
          return ok(
            { dryRun, ...result },
            lines.join('\n'),
            outcomeExitCode(result.errors.length, result.skipped.length),
          );
        }),
      ),
    );
}
