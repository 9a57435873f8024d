import type { CliContext, CommandResult } from '../context.js';

/** Wraps a command implementation so main can print its result; see main.ts. */
export type Runner = (
  fn: (ctx: CliContext, ...args: never[]) => Promise<CommandResult>,
) => (...args: unknown[]) => Promise<void>;
