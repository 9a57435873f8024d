import { type Config, defaultConfigPath, loadConfig } from '../config/load.js';
import { ExitCode } from '../errors.js';
import type { Warning } from '../model/backup.js';
import { Progress } from './progress.js';

/** What every command gets: global options, lazily loaded configuration, and a progress display. */
export interface CliContext {
  json: boolean;
  configPath: string;
  /** True when --config was given (not only the default or $SNAPKEEPER_CONFIG). */
  configGiven: boolean;
  config(): Config;
  /** Warnings of the configuration, once it was loaded (none before). */
  configWarnings(): Warning[];
  progress: Progress;
  env: NodeJS.ProcessEnv;
}

/**
 * What a command returns; only main prints and sets the exit code. `json` is the single JSON document of
 * `--json`; `text` the human output. A command with no warnings returns exitCode 0.
 */
export interface CommandResult {
  exitCode: ExitCode;
  json: unknown;
  text: string;
}

export function ok(json: unknown, text: string, exitCode: ExitCode = ExitCode.ok): CommandResult {
  return { exitCode, json, text };
}

export function createContext(
  globals: { json?: boolean; config?: string },
  env: NodeJS.ProcessEnv,
): CliContext {
  const configPath = globals.config ?? defaultConfigPath(env);
  let cached: Config | undefined;
  const json = globals.json === true;
  return {
    json,
    configPath,
    configGiven: globals.config !== undefined,
    env,
    config() {
      cached ??= loadConfig(configPath, env);
      return cached;
    },
    configWarnings() {
      return cached?.warnings ?? [];
    },
    progress: new Progress({ enabled: !json && process.stderr.isTTY === true, stream: process.stderr }),
  };
}
