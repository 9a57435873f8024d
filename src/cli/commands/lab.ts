import type { Command } from 'commander';
import { ExitCode, UsageError } from '../../errors.js';
import { labDown, labStatus, labUp, verifyLabVm } from '../../lab/index.js';
import { type CliContext, type CommandResult, ok } from '../context.js';
import { collect } from '../options.js';
import type { Runner } from './runner.js';

const UNITS: Record<string, number> = { '': 1, K: 1024, M: 1024 ** 2, G: 1024 ** 3, T: 1024 ** 4 };

/** `4G`, `512M`, `1.5GiB`, `1073741824` -> bytes (binary units). */
export function parseSize(text: string): number {
  const m = /^(\d+(?:\.\d+)?)\s*([KMGT]?)(?:i?B)?$/i.exec(text.trim());
  if (!m) throw new UsageError('USAGE', `invalid size ${JSON.stringify(text)} (expected e.g. 4G or 512M)`);
  const bytes = Math.floor(Number(m[1]) * UNITS[m[2]!.toUpperCase()]!);
  if (!Number.isSafeInteger(bytes) || bytes <= 0)
    throw new UsageError('USAGE', `invalid size ${JSON.stringify(text)}`);
  return bytes;
}

/** `CreateSnapshot_Task=500` -> [method, ms]. */
export function parseDelay(text: string): [string, number] {
  const m = /^([A-Za-z][A-Za-z0-9_]*)=(\d+)$/.exec(text.trim());
  if (!m)
    throw new UsageError('USAGE', `invalid delay ${JSON.stringify(text)} (expected Method=milliseconds)`);
  return [m[1]!, Number(m[2])];
}

interface UpOptions {
  spec: string;
  dir: string;
  btrfsImage?: string;
  delay?: string[];
  http?: boolean;
  sessionIdleTimeout?: string;
  s3?: boolean;
  postgres?: boolean;
}

async function verifyCommand(
  _ctx: CliContext,
  opts: { dir: string; vm: string; as?: string },
): Promise<CommandResult> {
  const disks = await verifyLabVm(opts.dir, opts.vm, opts.as);
  const target = opts.as ?? opts.vm;
  const good = disks.length > 0 && disks.every((d) => d.ok);
  const lines = disks.map(
    (d) =>
      `  ${d.label} ${d.file}: ${d.ok ? `identical to ${opts.vm}'s original (${d.bytes} bytes)` : `DIFFERS at byte ${d.firstDifference}`}`,
  );
  const text = `${target}: ${good ? 'every disk matches' : 'MISMATCH'}\n${lines.join('\n')}`;
  return ok({ vm: target, expected: opts.vm, ok: good, disks }, text, good ? ExitCode.ok : ExitCode.failed);
}

async function upCommand(ctx: CliContext, opts: UpOptions): Promise<CommandResult> {
  const btrfsImageBytes = opts.btrfsImage === undefined ? undefined : parseSize(opts.btrfsImage);
  const delays = Object.fromEntries((opts.delay ?? []).map(parseDelay));
  let sessionIdleTimeoutSeconds: number | undefined;
  if (opts.sessionIdleTimeout !== undefined) {
    sessionIdleTimeoutSeconds = Number(opts.sessionIdleTimeout);
    if (!Number.isSafeInteger(sessionIdleTimeoutSeconds) || sessionIdleTimeoutSeconds <= 0) {
      throw new UsageError(
        'USAGE',
        `invalid --session-idle-timeout ${opts.sessionIdleTimeout} (expected whole seconds)`,
      );
    }
  }
  const state = await labUp({
    specFile: opts.spec,
    dir: opts.dir,
    btrfsImageBytes,
    delays,
    tls: opts.http !== true,
    sessionIdleTimeoutSeconds,
    onProgress: (step) => ctx.progress.update('lab', step),
    env: ctx.env,
    s3: opts.s3 === true,
    postgres: opts.postgres === true,
  });
  const text = [
    `lab up: ${state.vmCount} VMs, vCenter simulator at ${state.url} (pid ${state.pid})`,
    state.thumbprint === undefined ? undefined : `certificate SHA-256 ${state.thumbprint}`,
    `array: ${state.arrayPath}${state.btrfsImage === undefined ? '' : ` (btrfs image ${state.btrfsImage})`}`,
    ...(state.repositories ?? []).map(
      (r) =>
        `repository ${r.name}: ${r.type === 'local' ? r.path : `bucket ${r.bucket} at ${r.endpoint} (moto, pid ${state.s3?.pid})`}`,
    ),
    state.postgres === undefined
      ? undefined
      : `catalog: PostgreSQL at ${state.postgres.url} (cluster ${state.postgres.dataDir}, password in ${state.postgres.passwordFile})`,
    '',
    'use it with:',
    `  snapkeeper --config ${state.configFile} inventory`,
    `  snapkeeper --config ${state.configFile} backup --task lab-all`,
    `  snapkeeper --config ${state.configFile} offload --backup ID --repository lab`,
    'stop it with:',
    `  snapkeeper lab down --dir ${state.dir}`,
  ]
    .filter((l) => l !== undefined)
    .join('\n');
  return ok(state, text);
}

async function statusCommand(_ctx: CliContext, opts: { dir: string }): Promise<CommandResult> {
  const s = await labStatus(opts.dir);
  const repos = s.repositories.map(
    (r) =>
      `\n  repository ${r.name}: ${r.type === 'local' ? r.path : `bucket ${r.bucket} at ${r.endpoint}, moto pid ${s.s3?.pid} ${s.s3?.alive ? 'alive' : 'GONE'}`}`,
  );
  const text =
    (s.running
      ? `lab in ${s.dir} is running: ${s.vmCount} VMs at ${s.url} (pid ${s.pid}); config ${s.configFile}`
      : s.starting
        ? `lab in ${s.dir} is still starting or its lab up was interrupted; remove it with snapkeeper lab down --dir ${s.dir}`
        : `lab in ${s.dir} is NOT running (process ${s.processAlive ? 'alive' : 'gone'}, ${s.url} ${s.answering ? 'answers' : 'does not answer'}${s.s3?.alive === false ? ', moto S3 server gone' : ''}${s.postgres?.alive === false ? ', PostgreSQL gone' : ''}); remove it with snapkeeper lab down --dir ${s.dir}`) +
    repos.join('') +
    (s.postgres === undefined
      ? ''
      : `\n  catalog: PostgreSQL at ${s.postgres.url} (${s.postgres.dataDir}) ${s.postgres.alive ? 'alive' : 'GONE'}`);
  return ok(s, text);
}

async function downCommand(ctx: CliContext, opts: { dir: string }): Promise<CommandResult> {
  ctx.progress.update('lab', 'stopping');
  await labDown(opts.dir);
  return ok({ dir: opts.dir, removed: true }, `lab in ${opts.dir} stopped and removed`);
}

/** Lab commands work on DIR alone: a --config they would ignore is refused rather than silently dropped. */
const action =
  (fn: (ctx: CliContext, opts: never) => Promise<CommandResult>) =>
  (ctx: CliContext, ...args: never[]): Promise<CommandResult> => {
    if (ctx.configGiven) {
      throw new UsageError(
        'USAGE',
        'lab commands do not use --config: the lab keeps its own configuration in DIR/snapkeeper.yaml',
      );
    }
    return fn(ctx, args[0] as never);
  };

/** `snapkeeper lab up|status|down`: the embedded lab (SPEC section 7). */
export function registerLab(program: Command, run: Runner): void {
  const lab = program.command('lab').description('an embedded lab: vCenter simulator and file-system array');
  lab
    .command('up')
    .description('start a lab from a spec and write DIR/snapkeeper.yaml for it')
    .requiredOption('--spec <file>', 'lab spec (JSON)')
    .requiredOption('--dir <dir>', 'directory for the lab (array, configuration, state)')
    .option(
      '--btrfs-image <size>',
      'put the array on a loop-mounted btrfs image of this size, e.g. 4G (root)',
    )
    .option(
      '--delay <method=ms>',
      'delay one SOAP method, e.g. CreateSnapshot_Task=500 (repeatable)',
      collect,
    )
    .option('--http', 'serve plain HTTP instead of HTTPS')
    .option('--session-idle-timeout <seconds>', 'expire idle vCenter sessions after this many seconds')
    .option('--s3', 'also start a moto S3 server and configure repository lab-s3 on it')
    .option(
      '--postgres',
      'keep the catalog on a PostgreSQL server started in DIR/postgres (not DIR/catalog.db)',
    )
    .action(run(action(upCommand)));
  lab
    .command('status')
    .description('whether the lab in DIR is running')
    .requiredOption('--dir <dir>', 'lab directory')
    .action(run(action(statusCommand)));
  lab
    .command('verify')
    .description("check that a VM's disks hold the bytes the lab wrote for a VM (e.g. after a restore)")
    .requiredOption('--dir <dir>', 'lab directory')
    .requiredOption('--vm <name>', 'the lab VM whose original bytes are expected')
    .option('--as <name>', 'the VM to check (default: --vm), e.g. a restored copy')
    .action(run(action(verifyCommand)));
  lab
    .command('down')
    .description('stop the lab in DIR and remove everything it made there')
    .requiredOption('--dir <dir>', 'lab directory')
    .action(run(action(downCommand)));
}
