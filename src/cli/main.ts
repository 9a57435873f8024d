import { Command, CommanderError } from 'commander';
import { ExitCode, errorMessage, exitCodeOf, SnapkeeperError } from '../errors.js';
import type { Warning } from '../model/backup.js';
import { statsLine } from '../util/stats.js';
import { VERSION } from '../version.js';
import { registerCommands } from './commands/index.js';
import { type CliContext, type CommandResult, createContext } from './context.js';

/**
 * The one place that prints results and errors and decides the exit code. Commands return a CommandResult
 * or throw; with --json, stdout carries exactly one JSON document, errors included.
 */
export async function main(argv: string[], env: NodeJS.ProcessEnv = process.env): Promise<number> {
  const wantsJson = argv.includes('--json');
  let result: CommandResult | undefined;
  let context: CliContext | undefined;
  const program = new Command('snapkeeper')
    .description('Snapshot-based backup manager for VMware vSphere')
    .version(VERSION)
    .option('--config <file>', 'configuration file (default ./snapkeeper.yaml or $SNAPKEEPER_CONFIG)')
    .option('--json', 'print one JSON document on stdout, nothing else')
    .showHelpAfterError()
    .exitOverride()
    .configureOutput({
      writeOut: (s) => {
        // With --json, help and version go out as JSON documents (reportError); nothing else on stdout.
        if (!wantsJson) process.stdout.write(s);
      },
      writeErr: (s) => {
        if (!wantsJson) process.stderr.write(s);
      },
    });

  const run =
    (fn: (ctx: CliContext, ...args: never[]) => Promise<CommandResult>) =>
    async (...args: unknown[]) => {
      const ctx = createContext(program.opts<{ json?: boolean; config?: string }>(), env);
      context = ctx;
      try {
        result = await fn(ctx, ...(args as never[]));
      } finally {
        ctx.progress.done();
      }
    };
  registerCommands(program, run);

  try {
    await program.parseAsync(argv);
  } catch (err) {
    return reportError(err, wantsJson, program, argv, context?.configWarnings() ?? []);
  } finally {
    if (env.SNAPKEEPER_STATS === '1') process.stderr.write(`${statsLine()}\n`);
  }
  if (result === undefined) return ExitCode.ok;
  const configWarnings = context?.configWarnings() ?? [];
  if (wantsJson) {
    printJson(withWarnings(result.json, configWarnings));
  } else {
    printWarnings(configWarnings);
    if (result.text !== '')
      process.stdout.write(result.text.endsWith('\n') ? result.text : `${result.text}\n`);
  }
  return result.exitCode;
}

function printJson(doc: unknown): void {
  process.stdout.write(`${JSON.stringify(doc, null, 2)}\n`);
}

function printWarnings(warnings: readonly Warning[]): void {
  for (const w of warnings) process.stderr.write(`snapkeeper: warning ${w.code}: ${w.message}\n`);
}

/**
 * Adds warnings (of the configuration) to a command's JSON document under `warnings`, after the command's
 * own. A document that is a list has no place for them: they go to stderr, so stdout stays one document.
 */
function withWarnings(doc: unknown, warnings: readonly Warning[]): unknown {
  if (warnings.length === 0) return doc;
  if (typeof doc !== 'object' || doc === null || Array.isArray(doc)) {
    printWarnings(warnings);
    return doc;
  }
  const own = (doc as { warnings?: unknown }).warnings;
  return { ...doc, warnings: [...(Array.isArray(own) ? own : []), ...warnings] };
}

/**
 * The command whose help was asked for: the deepest subcommand named in argv (`backup --help`,
 * `help backup`, `lab up -h`), else the program. Words that name no subcommand (option values) are skipped.
 */
function helpTarget(program: Command, argv: readonly string[]): Command {
  let cmd = program;
  for (const word of argv.slice(2)) {
    if (word.startsWith('-')) continue;
    const sub = cmd.commands.find((c) => c.name() === word || c.aliases().includes(word));
    if (sub !== undefined) cmd = sub;
  }
  return cmd;
}

/** The help of a command as data: what `--help` prints, for `--json`. */
function helpJson(cmd: Command) {
  const path: string[] = [];
  for (let c: Command | null = cmd; c !== null && c.parent !== null; c = c.parent) path.unshift(c.name());
  return {
    command: ['snapkeeper', ...path].join(' '),
    usage: `${['snapkeeper', ...path].join(' ')} ${cmd.usage()}`,
    description: cmd.description(),
    options: cmd.options.map((o) => ({
      flags: o.flags,
      description: o.description,
      ...(o.mandatory ? { required: true } : {}),
      ...(o.argChoices ? { choices: o.argChoices } : {}),
    })),
    commands: cmd.commands.map((c) => ({ name: c.name(), description: c.description() })),
  };
}

function reportError(
  err: unknown,
  json: boolean,
  program: Command,
  argv: readonly string[],
  configWarnings: readonly Warning[],
): number {
  if (err instanceof CommanderError) {
    // Help and version are successful exits; anything else commander rejects is a usage error.
    if (err.code === 'commander.version') {
      if (json) printJson({ version: VERSION });
      return ExitCode.ok;
    }
    // `--help` and the `help` command exit 0; help shown because no command was given exits 1.
    const helpAsked =
      err.code === 'commander.helpDisplayed' || (err.code === 'commander.help' && err.exitCode === 0);
    if (helpAsked) {
      if (json) printJson(helpJson(helpTarget(program, argv)));
      return ExitCode.ok;
    }
    if (err.code === 'commander.help') {
      // No command given: the plain CLI shows the help; a script asking for JSON gets an error it can parse.
      if (!json) return ExitCode.ok;
      const target = helpTarget(program, argv);
      printJson({
        error: {
          code: 'USAGE',
          message: `no command given; one of: ${target.commands.map((c) => c.name()).join(', ')}`,
          details: helpJson(target),
        },
      });
      return ExitCode.usage;
    }
    if (json) printJson({ error: { code: 'USAGE', message: err.message } });
    return ExitCode.usage;
  }
  const code = exitCodeOf(err);
  const errorCode = err instanceof SnapkeeperError ? err.code : 'INTERNAL';
  const message = errorMessage(err);
  if (json) {
    const details = err instanceof SnapkeeperError ? err.details : undefined;
    printJson({
      error: { code: errorCode, message, details },
      ...(configWarnings.length > 0 ? { warnings: configWarnings } : {}),
    });
  } else {
    printWarnings(configWarnings);
    process.stderr.write(`snapkeeper: ${message}\n`);
    if (!(err instanceof SnapkeeperError) && process.env.SNAPKEEPER_DEBUG && err instanceof Error) {
      process.stderr.write(`${err.stack}\n`);
    }
  }
  return code;
}
