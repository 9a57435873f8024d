import { Command, CommanderError } from 'commander';
import { ExitCode, errorMessage, exitCodeOf, SnapkeeperError } from '../errors.js';
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
  const program = new Command('snapkeeper')
    .description('Snapshot-based backup manager for VMware vSphere')
    .version(VERSION)
    .option('--config <file>', 'configuration file (default ./snapkeeper.yaml or $SNAPKEEPER_CONFIG)')
    .option('--json', 'print one JSON document on stdout, nothing else')
    .showHelpAfterError()
    .exitOverride()
    .configureOutput({
      writeOut: (s) => {
        // With --json, the version goes out as a JSON document (reportError); nothing else on stdout.
        if (!(wantsJson && s.trim() === VERSION)) process.stdout.write(s);
      },
      writeErr: (s) => {
        if (!wantsJson) process.stderr.write(s);
      },
    });

  const run =
    (fn: (ctx: CliContext, ...args: never[]) => Promise<CommandResult>) =>
    async (...args: unknown[]) => {
      const ctx = createContext(program.opts<{ json?: boolean; config?: string }>(), env);
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
    return reportError(err, wantsJson);
  } finally {
    if (env.SNAPKEEPER_STATS === '1') process.stderr.write(`${statsLine()}\n`);
  }
  if (result === undefined) return ExitCode.ok;
  if (wantsJson) process.stdout.write(`${JSON.stringify(result.json, null, 2)}\n`);
  else if (result.text !== '')
    process.stdout.write(result.text.endsWith('\n') ? result.text : `${result.text}\n`);
  return result.exitCode;
}

function reportError(err: unknown, json: boolean): number {
  if (err instanceof CommanderError) {
    // Help and version are successful exits; anything else commander rejects is a usage error.
    if (err.code === 'commander.version') {
      if (json) process.stdout.write(`${JSON.stringify({ version: VERSION }, null, 2)}\n`);
      return ExitCode.ok;
    }
    if (err.code === 'commander.helpDisplayed' || err.code === 'commander.help') return ExitCode.ok;
    if (json) {
      process.stdout.write(
        `${JSON.stringify({ error: { code: 'USAGE', message: err.message } }, null, 2)}\n`,
      );
    }
    return ExitCode.usage;
  }
  const code = exitCodeOf(err);
  const errorCode = err instanceof SnapkeeperError ? err.code : 'INTERNAL';
  const message = errorMessage(err);
  if (json) {
    const details = err instanceof SnapkeeperError ? err.details : undefined;
    process.stdout.write(`${JSON.stringify({ error: { code: errorCode, message, details } }, null, 2)}\n`);
  } else {
    process.stderr.write(`snapkeeper: ${message}\n`);
    if (!(err instanceof SnapkeeperError) && process.env.SNAPKEEPER_DEBUG && err instanceof Error) {
      process.stderr.write(`${err.stack}\n`);
    }
  }
  return code;
}
