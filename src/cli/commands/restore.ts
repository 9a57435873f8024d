import { createInterface } from 'node:readline/promises';
import type { Command } from 'commander';
import {
  type RestoreResult,
  runAttach,
  runDetach,
  runMount,
  runRestore,
  runUnmount,
} from '../../engine/index.js';
import { UsageError } from '../../errors.js';
import { type CliContext, ok } from '../context.js';
import { withEngine } from '../engine.js';
import { outcomeExitCode } from '../format.js';
import { refuseIgnoredOptions } from '../options.js';
import { formatBytes } from '../progress.js';
import type { Runner } from './runner.js';

interface RestoreOptions {
  backup: string;
  vm: string;
  as?: string;
  original?: boolean;
  force?: boolean;
  datastore?: string;
  host?: string;
  folder?: string;
  disk?: string[];
  to?: string;
  replace?: boolean;
  filesOnly?: boolean;
  powerOn?: boolean;
  dryRun?: boolean;
  source?: string;
  repository?: string;
}

const SOURCES = ['array', 'repository'] as const;

/** `--source` is one of SOURCES (exit 3 otherwise, naming what is allowed). */
function sourceOf(opts: RestoreOptions): (typeof SOURCES)[number] | undefined {
  if (opts.source === undefined) return undefined;
  const found = SOURCES.find((s) => s === opts.source);
  if (!found) {
    throw new UsageError(
      'INVALID_SOURCE',
      `--source ${JSON.stringify(opts.source)} is not a restore source: use array (the backup's array snapshot) or repository (an offloaded copy)`,
    );
  }
  return found;
}

/** What restore does to the live VM, by form, when it replaces something: the question to confirm. */
function replacementQuestion(opts: RestoreOptions): string | undefined {
  if (opts.original) {
    return `Restore ${opts.vm} from backup ${opts.backup} to its original place? The live VM is powered off and replaced.`;
  }
  if (opts.disk !== undefined && opts.replace) {
    return `Replace disk(s) ${opts.disk.join(', ')} of VM ${opts.to} with those of ${opts.vm} from backup ${opts.backup}? A powered-on VM's disks change under it.`;
  }
  return undefined;
}

/**
 * `--original` and `--disk --replace` replace what a VM is using: only with --force, or a typed "yes" on an
 * interactive terminal. The engine decides whether the target needs it (a powered-off VM does not for
 * --replace); this only gathers the answer.
 */
async function confirmed(ctx: CliContext, opts: RestoreOptions): Promise<boolean> {
  const question = replacementQuestion(opts);
  if (question === undefined || opts.force || opts.dryRun) return true;
  if (ctx.json || !process.stdin.isTTY || !process.stderr.isTTY) return false;
  const rl = createInterface({ input: process.stdin, output: process.stderr });
  try {
    const answer = await rl.question(`${question} Type yes: `);
    return answer.trim().toLowerCase() === 'yes';
  } finally {
    rl.close();
  }
}

/** The flags each form of restore uses; any other given is refused rather than silently ignored. */
const RESTORE_FORMS = {
  '--as': ['--as', '--datastore', '--host', '--folder', '--power-on', '--dry-run'],
  '--original': ['--original', '--force', '--power-on', '--dry-run'],
  '--disk --to': ['--disk', '--to', '--replace', '--datastore', '--dry-run'],
  '--disk --to --replace': ['--disk', '--to', '--replace', '--force', '--datastore', '--dry-run'],
  '--disk --files-only': ['--disk', '--files-only', '--datastore', '--dry-run'],
} as const;

function restoreForm(opts: RestoreOptions): keyof typeof RESTORE_FORMS | undefined {
  const forms = [opts.as !== undefined, opts.original === true, opts.disk !== undefined];
  // Zero or several forms: the engine's RESTORE_MODE error says what to choose.
  if (forms.filter(Boolean).length !== 1) return undefined;
  if (opts.as !== undefined) return '--as';
  if (opts.original) return '--original';
  if ((opts.to !== undefined) === (opts.filesOnly === true)) return undefined;
  if (opts.filesOnly) return '--disk --files-only';
  return opts.replace ? '--disk --to --replace' : '--disk --to';
}

function refuseIgnoredRestoreOptions(opts: RestoreOptions): void {
  const form = restoreForm(opts);
  if (form === undefined) return;
  refuseIgnoredOptions(
    `restore ${form}`,
    {
      '--as': opts.as !== undefined,
      '--original': opts.original === true,
      '--force': opts.force === true,
      '--datastore': opts.datastore !== undefined,
      '--host': opts.host !== undefined,
      '--folder': opts.folder !== undefined,
      '--disk': opts.disk !== undefined,
      '--to': opts.to !== undefined,
      '--replace': opts.replace === true,
      '--files-only': opts.filesOnly === true,
      '--power-on': opts.powerOn === true,
      '--dry-run': opts.dryRun === true,
    },
    RESTORE_FORMS[form],
  );
}

function formatRestore(r: RestoreResult): string {
  const lines: string[] = [];
  // A dry run made no VM, so there is no id to show.
  const id = r.targetVm?.id ? ` (${r.targetVm.id})` : '';
  const what =
    r.mode === 'new'
      ? `restored ${r.vm} as new VM ${r.targetVm?.name}${id}`
      : r.mode === 'original'
        ? `restored ${r.vm} to its original place${id}`
        : r.mode === 'disks'
          ? `restored ${r.disks.length} disk(s) of ${r.vm} into VM ${r.targetVm?.name}`
          : `restored ${r.disks.length} disk file(s) of ${r.vm}`;
  const from = r.source === 'repository' ? ` (copy in repository ${r.repository})` : '';
  lines.push(`${r.dryRun ? 'would have ' : ''}${what} from backup ${r.backupId}${from}`);
  if (r.targetVm)
    lines.push(
      `  host ${r.targetVm.host}, folder /${r.targetVm.folder}, ${r.targetVm.poweredOn ? 'powered on' : 'powered off'}`,
    );
  for (const d of r.disks) {
    lines.push(
      `  ${d.label}: ${d.source} -> ${d.target} (${d.cloned ? 'cloned' : 'copied'}, ${formatBytes(d.bytes)})${d.replaced ? `, replaces ${d.replaced} (kept)` : ''}`,
    );
  }
  lines.push(`  ${r.cloned ? 'instant (cloned, no data copied)' : 'copied'}: ${formatBytes(r.bytes)}`);
  if (r.dryRun) lines.push('dry run: nothing was changed');
  if (r.warnings.length > 0) lines.push('warnings:', ...r.warnings.map((w) => `  ${w.code}: ${w.message}`));
  return lines.join('\n');
}

export function registerRestore(program: Command, run: Runner): void {
  program
    .command('restore')
    .description('restore a VM (as a new VM or to its original place) or some of its disks from a backup')
    .requiredOption('--backup <id>', 'the backup to restore from')
    .requiredOption('--vm <name>', 'the VM in that backup')
    .option('--as <name>', 'restore the whole VM as a new VM with this name')
    .option('--original', 'restore the whole VM to its original place, replacing the live VM')
    .option('--force', 'do not ask before replacing the live VM (--original) or its disks (--disk --replace)')
    .option('--datastore <name>', 'put the restored files on this datastore (default: the original ones)')
    .option('--host <name>', 'register the new VM on this host (default: the original host)')
    .option('--folder <path>', 'create the new VM in this folder (default: the original folder)')
    .option('--disk <label...>', 'restore only these disks (by label)')
    .option('--to <vm>', 'with --disk: add the disks to this existing VM')
    .option('--replace', 'with --disk --to: replace the VM’s disk of the same label')
    .option('--files-only', 'with --disk: only place the disk files on --datastore')
    .option('--power-on', 'power the restored VM on')
    .option('--dry-run', 'check everything and show what would be restored where; change nothing')
    .option(
      '--source <kind>',
      'where to read the backup: array (its array snapshot, the default) or repository (an offloaded copy)',
    )
    .option(
      '--repository <name>',
      'with --source repository: the repository to read (default: the only configured one holding the backup)',
    )
    .action(
      run(async (ctx, opts: RestoreOptions) => {
        const source = sourceOf(opts);
        refuseIgnoredRestoreOptions(opts);
        const yes = await confirmed(ctx, opts);
        // Ctrl-C stops a copy in progress; what the restore did so far is undone before the exit.
        const abort = new AbortController();
        const onSigint = () => abort.abort();
        process.once('SIGINT', onSigint);
        const result = await withEngine(ctx, (engine) =>
          runRestore(engine, {
            backupId: opts.backup,
            vm: opts.vm,
            ...(source !== undefined ? { source } : {}),
            ...(opts.repository !== undefined ? { repository: opts.repository } : {}),
            ...(opts.as !== undefined ? { as: opts.as } : {}),
            ...(opts.original ? { original: true, confirmed: yes } : {}),
            ...(opts.datastore !== undefined ? { datastore: opts.datastore } : {}),
            ...(opts.host !== undefined ? { host: opts.host } : {}),
            ...(opts.folder !== undefined ? { folder: opts.folder.replace(/^\/+|\/+$/g, '') } : {}),
            ...(opts.disk !== undefined ? { disks: opts.disk } : {}),
            ...(opts.to !== undefined ? { to: opts.to } : {}),
            ...(opts.replace ? { replace: true, ...(yes ? { force: true } : {}) } : {}),
            ...(opts.filesOnly ? { filesOnly: true } : {}),
            ...(opts.powerOn ? { powerOn: true } : {}),
            ...(opts.dryRun ? { dryRun: true } : {}),
            signal: abort.signal,
          }),
        ).finally(() => process.off('SIGINT', onSigint));
        return ok(result, formatRestore(result), outcomeExitCode(0, result.warnings.length));
      }),
    );

  program
    .command('mount')
    .description('expose a backup’s array snapshot as datastore(s) on a host, through a writable clone')
    .requiredOption('--backup <id>', 'the backup to mount')
    .option('--host <name>', 'mount on this host (default: the host of the backup’s first VM)')
    .option('--dry-run', 'check everything (the array snapshot exists) and show what would be mounted')
    .action(
      run(async (ctx, opts: { backup: string; host?: string; dryRun?: boolean }) =>
        withEngine(ctx, async (engine) => {
          const r = await runMount(engine, {
            backupId: opts.backup,
            ...(opts.host ? { host: opts.host } : {}),
            dryRun: opts.dryRun === true,
          });
          const lines = [
            r.dryRun
              ? `would mount backup ${r.backupId} on ${r.host}`
              : `mounted backup ${r.backupId} on ${r.host} (mount ${r.mountId})`,
          ];
          for (const d of r.datastores) lines.push(`  ${d.name}: ${d.source} at ${d.path}`);
          return ok(r, lines.join('\n'));
        }),
      ),
    );

  program
    .command('unmount')
    .description('remove the datastores of a mounted backup and delete their clone')
    .requiredOption('--backup <id>', 'the mounted backup')
    .action(
      run(async (ctx, opts: { backup: string }) =>
        withEngine(ctx, async (engine) => {
          const r = await runUnmount(engine, { backupId: opts.backup });
          const names = r.unmounted.flatMap((u) => u.datastores);
          return ok(r, `unmounted backup ${r.backupId}: removed ${names.join(', ') || 'no datastore'}`);
        }),
      ),
    );

  program
    .command('attach')
    .description('make a backup’s disks visible to a running VM without copying them')
    .requiredOption('--backup <id>', 'the backup')
    .requiredOption('--vm <name>', 'the VM in that backup whose disks to attach')
    .requiredOption('--to <vm>', 'the running VM to attach them to')
    .option('--disk <label...>', 'only these disks (by label)')
    .option('--dry-run', 'check everything (the array snapshot exists) and show what would be attached')
    .action(
      run(async (ctx, opts: { backup: string; vm: string; to: string; disk?: string[]; dryRun?: boolean }) =>
        withEngine(ctx, async (engine) => {
          const r = await runAttach(engine, {
            backupId: opts.backup,
            vm: opts.vm,
            to: opts.to,
            ...(opts.disk ? { disks: opts.disk } : {}),
            dryRun: opts.dryRun === true,
          });
          const lines = [
            `${r.dryRun ? 'would attach' : 'attached'} ${r.disks.length} disk(s) of ${r.vm} from backup ${r.backupId} to ${r.targetVm.name}${r.mount.created ? ` (${r.dryRun ? 'would mount' : 'mounted'} ${r.mount.datastores.join(', ')})` : ''}`,
            ...r.disks.map(
              (d) => `  ${d.label}: ${d.file} (controller ${d.controllerKey}, unit ${d.unitNumber})`,
            ),
          ];
          if (r.warnings.length > 0)
            lines.push('warnings:', ...r.warnings.map((w) => `  ${w.code}: ${w.message}`));
          return ok(r, lines.join('\n'), outcomeExitCode(0, r.warnings.length));
        }),
      ),
    );

  program
    .command('detach')
    .description('remove attached backup disks from a VM and release the mount')
    .requiredOption('--to <vm>', 'the VM the disks were attached to')
    .option('--backup <id>', 'only the disks of this backup')
    .action(
      run(async (ctx, opts: { to: string; backup?: string }) =>
        withEngine(ctx, async (engine) => {
          const r = await runDetach(engine, {
            to: opts.to,
            ...(opts.backup ? { backupId: opts.backup } : {}),
          });
          const lines = r.detached.map(
            (d) =>
              `detached ${d.files.length} disk(s) of backup ${d.backupId} from ${d.targetVm}${d.unmounted ? ', unmounted' : ''}`,
          );
          return ok(r, lines.join('\n'));
        }),
      ),
    );
}
