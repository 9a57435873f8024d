import type { Command } from 'commander';
import type { CliContext, CommandResult } from '../context.js';

/** Wraps a command implementation so main can print its result; see main.ts. */
export type Runner = (
  fn: (ctx: CliContext, ...args: never[]) => Promise<CommandResult>,
) => (...args: unknown[]) => Promise<void>;

/** Each command family lives in its own file and registers itself here. */
export function registerCommands(_program: Command, _run: Runner): void {}
