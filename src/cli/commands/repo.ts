import { readFileSync } from 'node:fs';
import type { Command } from 'commander';
import {
  type ForgetResult,
  type RepoBackup,
  type RepoCheckResult,
  repoBackups,
  repoCheck,
  repoForget,
  repoInit,
  repoPasswd,
  repoPrune,
} from '../../engine/index.js';
import { ExitCode, errorMessage, UsageError } from '../../errors.js';
import { Secret } from '../../util/secret.js';
import { ok } from '../context.js';
import { withEngine } from '../engine.js';
import { formatBytes } from '../progress.js';
import { table } from '../table.js';
import type { Runner } from './runner.js';

/** `snapkeeper repo init|check|prune|backups|forget|passwd --repository NAME` (issue 8). */
export function registerRepo(program: Command, run: Runner): void {
  const repo = program
    .command('repo')
    .description('repositories: create, check, prune, list, forget, passphrase');

  repo
    .command('init')
    .description('create the repository where its configuration says (an empty directory or bucket prefix)')
    .requiredOption('--repository <name>', 'the configured repository')
    .action(
      run(async (ctx, opts: { repository: string }) =>
        withEngine(ctx, async (engine) => {
          const r = await repoInit(engine, opts.repository);
          return ok(r, `repository ${r.repository} created (id ${r.id}) at ${r.backend}`);
        }),
      ),
    );

  repo
    .command('check')
    .description('check the repository structure; with --read-data, decrypt and verify every byte')
    .requiredOption('--repository <name>', 'the configured repository')
    .option('--read-data', 'read and verify all data (slow: reads the whole repository)')
    .action(
      run(async (ctx, opts: { repository: string; readData?: boolean }) =>
        withEngine(ctx, async (engine) => {
          const r = await repoCheck(engine, opts.repository, { readData: opts.readData === true });
          ctx.progress.done();
          return ok(r, formatCheck(r), r.ok ? ExitCode.ok : ExitCode.failed);
        }),
      ),
    );

  repo
    .command('prune')
    .description('delete data no backup references any more, older than the safety delay')
    .requiredOption('--repository <name>', 'the configured repository')
    .option(
      '--safety-delay <hours>',
      'keep unreferenced data younger than this (default: the repository safetyDelayHours, else 24)',
      (v) => Number(v),
    )
    .action(
      run(async (ctx, opts: { repository: string; safetyDelay?: number }) => {
        if (opts.safetyDelay !== undefined && (!Number.isFinite(opts.safetyDelay) || opts.safetyDelay < 0)) {
          throw new UsageError('USAGE', '--safety-delay: must be a number of hours, 0 or more');
        }
        return withEngine(ctx, async (engine) => {
          const r = await repoPrune(engine, opts.repository, {
            ...(opts.safetyDelay !== undefined ? { safetyDelayHours: opts.safetyDelay } : {}),
          });
          ctx.progress.done();
          return ok(
            r,
            `repository ${r.repository} pruned (safety delay ${r.safetyDelayHours} h): ${r.packsDeleted} pack(s) deleted, ${r.packsRewritten} rewritten, ${formatBytes(r.bytesFreed)} freed, ${r.packsPending} unreferenced pack(s) kept until the delay has passed`,
          );
        });
      }),
    );

  repo
    .command('backups')
    .description('list the backups the repository holds (whichever catalog made them)')
    .requiredOption('--repository <name>', 'the configured repository')
    .action(
      run(async (ctx, opts: { repository: string }) =>
        withEngine(ctx, async (engine) => {
          const list = await repoBackups(engine, opts.repository);
          return ok(list, formatRepoBackups(opts.repository, list));
        }),
      ),
    );

  repo
    .command('forget')
    .description('remove backups from the repository (their data goes at the next prune)')
    .requiredOption('--repository <name>', 'the configured repository')
    .requiredOption('--backup <id...>', 'backup ids (or manifest ids) to forget')
    .option('--dry-run', 'show what would be forgotten, change nothing')
    .action(
      run(async (ctx, opts: { repository: string; backup: string[]; dryRun?: boolean }) =>
        withEngine(ctx, async (engine) => {
          const r = await repoForget(engine, opts.repository, {
            ids: opts.backup,
            dryRun: opts.dryRun === true,
          });
          return ok(r, formatForget(r), r.skipped.length > 0 ? ExitCode.warnings : ExitCode.ok);
        }),
      ),
    );

  repo
    .command('passwd')
    .description('change the repository passphrase (no data is rewritten)')
    .requiredOption('--repository <name>', 'the configured repository')
    .option('--new-passphrase-file <file>', 'file holding the new passphrase')
    .option('--new-passphrase-env <var>', 'environment variable holding the new passphrase')
    .action(
      run(
        async (ctx, opts: { repository: string; newPassphraseFile?: string; newPassphraseEnv?: string }) => {
          const passphrase = newPassphrase(opts, ctx.env);
          return withEngine(ctx, async (engine) => {
            const r = await repoPasswd(engine, opts.repository, passphrase);
            return ok(
              r,
              `passphrase of repository ${r.repository} changed; update its passphraseFile or passphraseEnv in the configuration`,
            );
          });
        },
      ),
    );
}

/** The new passphrase, from exactly one of a file and an environment variable; never echoed. */
function newPassphrase(
  opts: { newPassphraseFile?: string; newPassphraseEnv?: string },
  env: NodeJS.ProcessEnv,
): Secret {
  if ((opts.newPassphraseFile === undefined) === (opts.newPassphraseEnv === undefined)) {
    throw new UsageError(
      'USAGE',
      'give the new passphrase with exactly one of --new-passphrase-file and --new-passphrase-env',
    );
  }
  let value: string;
  if (opts.newPassphraseFile !== undefined) {
    try {
      value = readFileSync(opts.newPassphraseFile, 'utf8').replace(/\r?\n$/, '');
    } catch (err) {
      throw new UsageError(
        'USAGE',
        `--new-passphrase-file: cannot read ${opts.newPassphraseFile}: ${(err as NodeJS.ErrnoException).code ?? errorMessage(err)}`,
      );
    }
  } else {
    const found = env[opts.newPassphraseEnv!];
    if (found === undefined) {
      throw new UsageError(
        'USAGE',
        `--new-passphrase-env: environment variable ${opts.newPassphraseEnv} is not set`,
      );
    }
    value = found;
  }
  if (value.trim() === '') throw new UsageError('USAGE', 'the new passphrase is empty');
  return new Secret(value);
}

function formatCheck(r: RepoCheckResult): string {
  const lines = [
    `repository ${r.repository}: ${r.ok ? 'OK' : 'PROBLEMS FOUND'}${r.readData ? ' (every byte read)' : ' (structure; --read-data reads every byte)'}`,
    `  ${r.manifests} backup(s), ${r.packs} pack(s), ${r.chunks} chunk(s), ${formatBytes(r.bytesRead)} read`,
  ];
  for (const i of r.issues) lines.push(`  ${i.code} ${i.object}: ${i.message}`);
  return lines.join('\n');
}

function formatRepoBackups(name: string, list: RepoBackup[]): string {
  if (list.length === 0) return `repository ${name} holds no backups`;
  return table(
    ['BACKUP', 'TASK', 'STARTED', 'OFFLOADED', 'VMS', 'BYTES', 'CATALOG'],
    list.map((b) => [
      b.backupId,
      b.task,
      b.startedAt,
      b.offloadedAt,
      b.vms.map((v) => v.name).join(', '),
      formatBytes(b.bytes),
      b.inCatalog ? 'this' : b.thisCatalog ? 'this (record deleted)' : `other (${b.catalogId})`,
    ]),
  );
}

function formatForget(r: ForgetResult): string {
  const verb = r.dryRun ? 'would forget' : 'forgot';
  const lines = [
    `${verb} ${r.forgotten.length} backup(s) in repository ${r.repository}${r.forgotten.map((f) => `\n  ${f.backupId} (manifest ${f.manifestId})`).join('')}`,
  ];
  for (const s of r.skipped) lines.push(`kept ${s.backupId}: ${s.reason}`);
  if (!r.dryRun && r.forgotten.length > 0) lines.push('their data is deleted by the next `repo prune`');
  return lines.join('\n');
}
