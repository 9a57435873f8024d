import { type Command, Option } from 'commander';
import YAML from 'yaml';
import { type DiskExclusionRule, type TaskConfig, userTaskSchema } from '../../config/schema.js';
import { assertEditable, findTask, listTasks } from '../../engine/index.js';
import { UsageError } from '../../errors.js';
import { BACKUP_MODES, QUIESCE_POLICIES } from '../../model/modes.js';
import { ok } from '../context.js';
import { withEngine } from '../engine.js';
import { table } from '../table.js';
import type { Runner } from './runner.js';

interface TaskOptions {
  vm?: string[];
  folder?: string[];
  host?: string[];
  cluster?: string[];
  datastore?: string[];
  datacenter?: string[];
  excludeVm?: string[];
  excludeDisk?: string[];
  mode?: TaskConfig['mode'];
  onQuiesceFailure?: TaskConfig['onQuiesceFailure'];
  keepVersions?: string;
  keepDays?: string;
  schedule?: string;
  timezone?: string;
  description?: string;
}

function withTaskOptions(cmd: Command): Command {
  return cmd
    .option('--vm <glob...>', 'select VMs by name or glob')
    .option('--folder <path...>', 'select VMs in these folders')
    .option('--host <name...>', 'select VMs on these hosts')
    .option('--cluster <name...>', 'select VMs in these clusters')
    .option('--datastore <name...>', 'select VMs with files on these datastores')
    .option('--datacenter <name...>', 'select VMs in these datacenters')
    .option('--exclude-vm <glob...>', 'leave out these VMs')
    .option(
      '--exclude-disk <vm:label...>',
      'leave out disks of the VMs matching the name or glob, e.g. "db*:Hard disk 2" (edit: replaces the list)',
    )
    .addOption(
      new Option('--mode <mode>', 'backup mode (default: the configured default)').choices(BACKUP_MODES),
    )
    .addOption(
      new Option(
        '--on-quiesce-failure <policy>',
        'when the VMware Tools quiesce is impossible or fails (default: the configured default)',
      ).choices(QUIESCE_POLICIES),
    )
    .option('--keep-versions <n>', 'retention: keep at most N backups')
    .option('--keep-days <d>', 'retention: keep backups at most D days')
    .option('--schedule <cron>', 'schedule (cron expression) for snapkeeper serve')
    .option('--timezone <iana>', 'the time zone of --schedule, e.g. Europe/Berlin (default: the host’s)')
    .option('--description <text>', 'free text');
}

/**
 * `--exclude-disk VM:LABEL...` as exclude.disks rules, one per VM pattern in the order first given. Split at
 * the last colon: vSphere disk labels (`Hard disk 2`) have none, a VM name may.
 */
function diskExclusions(values: readonly string[]): DiskExclusionRule[] {
  const rules: DiskExclusionRule[] = [];
  for (const value of values) {
    const colon = value.lastIndexOf(':');
    const vm = value.slice(0, Math.max(colon, 0));
    const label = value.slice(colon + 1);
    if (colon <= 0 || label === '') {
      throw new UsageError(
        'TASK_INVALID',
        `--exclude-disk ${JSON.stringify(value)}: expected VM:LABEL, e.g. "db01:Hard disk 2"`,
      );
    }
    const rule = rules.find((r) => r.vm === vm);
    if (rule === undefined) rules.push({ vm, disks: [label] });
    else if (!rule.disks.includes(label)) rule.disks.push(label);
  }
  return rules;
}

/** The task's exclude with what --exclude-vm and --exclude-disk replace; the rest of `base`'s is kept. */
function buildExclude(opts: TaskOptions, base?: TaskConfig): TaskConfig['exclude'] {
  if (opts.excludeVm === undefined && opts.excludeDisk === undefined) return base?.exclude;
  return {
    ...(base?.exclude ?? {}),
    ...(opts.excludeVm ? { vms: opts.excludeVm } : {}),
    ...(opts.excludeDisk ? { disks: diskExclusions(opts.excludeDisk) } : {}),
  };
}

function positiveNumber(flag: string, value: string | undefined, integer: boolean): number | undefined {
  if (value === undefined) return undefined;
  const n = Number(value);
  if (!Number.isFinite(n) || n <= 0 || (integer && !Number.isInteger(n))) {
    throw new UsageError(
      'USAGE',
      `${flag}: must be a positive ${integer ? 'whole ' : ''}number, got ${value}`,
    );
  }
  return n;
}

/** Builds a task from CLI options over `base` (for edit), validated with the same schema as the config file. */
function buildTask(name: string, opts: TaskOptions, base?: TaskConfig): TaskConfig {
  const select = { ...(base?.select ?? {}) };
  if (opts.vm) select.vms = opts.vm;
  if (opts.folder) select.folders = opts.folder;
  if (opts.host) select.hosts = opts.host;
  if (opts.cluster) select.clusters = opts.cluster;
  if (opts.datastore) select.datastores = opts.datastore;
  if (opts.datacenter) select.datacenters = opts.datacenter;
  const versions = positiveNumber('--keep-versions', opts.keepVersions, true);
  const days = positiveNumber('--keep-days', opts.keepDays, false);
  const retention =
    versions !== undefined || days !== undefined
      ? {
          ...(base?.retention ?? {}),
          ...(versions !== undefined ? { versions } : {}),
          ...(days !== undefined ? { days } : {}),
        }
      : base?.retention;
  const exclude = buildExclude(opts, base);
  const candidate = {
    ...(base ?? {}),
    name,
    select,
    ...(exclude ? { exclude } : {}),
    ...(opts.mode ? { mode: opts.mode } : {}),
    ...(opts.onQuiesceFailure ? { onQuiesceFailure: opts.onQuiesceFailure } : {}),
    ...(retention ? { retention } : {}),
    ...(opts.schedule ? { schedule: opts.schedule } : {}),
    ...(opts.timezone ? { timezone: opts.timezone } : {}),
    ...(opts.description ? { description: opts.description } : {}),
  };
  if (candidate.timezone !== undefined && candidate.schedule === undefined) {
    throw new UsageError('TASK_INVALID', '--timezone applies to a schedule: add --schedule CRON');
  }
  const parsed = userTaskSchema.safeParse(candidate);
  if (!parsed.success) {
    throw new UsageError(
      'TASK_INVALID',
      `invalid task: ${parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ')}`,
    );
  }
  return parsed.data;
}

export function registerTask(program: Command, run: Runner): void {
  const task = program.command('task').description('backup tasks: list, show, create, edit, delete');

  task
    .command('list')
    .description('list backup tasks (from the config file and the catalog)')
    .action(
      run(async (ctx) =>
        withEngine(ctx, async (engine) => {
          const entries = await listTasks(engine.config, engine.catalog);
          const text = table(
            ['NAME', 'SOURCE', 'MODE', 'SELECTION', 'RETENTION', 'SCHEDULE'],
            entries.map(({ task: t, source }) => [
              t.name,
              source,
              t.mode ?? `${engine.config.defaults.mode} (default)`,
              Object.entries(t.select)
                .map(([k, v]) => `${k}=${(v as string[]).join(',')}`)
                .join(' '),
              t.retention ? `${t.retention.versions ?? '-'} versions / ${t.retention.days ?? '-'} days` : '',
              t.schedule ?? '',
            ]),
          );
          return ok(
            entries.map((e) => ({ ...e.task, source: e.source })),
            entries.length === 0 ? 'no tasks' : text,
          );
        }),
      ),
    );

  task
    .command('show')
    .argument('<name>')
    .description('show one task')
    .action(
      run(async (ctx, name: string) =>
        withEngine(ctx, async (engine) => {
          const entry = await findTask(engine.config, engine.catalog, name);
          return ok(
            { ...entry.task, source: entry.source },
            `# source: ${entry.source}\n${YAML.stringify(entry.task)}`,
          );
        }),
      ),
    );

  withTaskOptions(
    task.command('create').argument('<name>').description('create a task (stored in the catalog)'),
  ).action(
    run(async (ctx, name: string, opts: TaskOptions) =>
      withEngine(ctx, async (engine) => {
        assertEditable(engine.config, name);
        const t = buildTask(name, opts);
        await engine.catalog.createTask(t);
        return ok(t, `created task ${t.name}`);
      }),
    ),
  );

  withTaskOptions(
    task.command('edit').argument('<name>').description('change a task created with task create'),
  ).action(
    run(async (ctx, name: string, opts: TaskOptions) =>
      withEngine(ctx, async (engine) => {
        assertEditable(engine.config, name);
        const current = (await findTask(engine.config, engine.catalog, name)).task;
        const t = buildTask(name, opts, current);
        await engine.catalog.updateTask(t);
        return ok(t, `updated task ${t.name}`);
      }),
    ),
  );

  task
    .command('delete')
    .argument('<name>')
    .description('delete a task created with task create (its backups stay)')
    .action(
      run(async (ctx, name: string) =>
        withEngine(ctx, async (engine) => {
          assertEditable(engine.config, name);
          await engine.catalog.deleteTask(name);
          return ok({ deleted: name }, `deleted task ${name}`);
        }),
      ),
    );
}
