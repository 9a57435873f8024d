import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import type { BackupRecord } from '../../src/model/backup.js';

export const CLI = fileURLToPath(new URL('../../../bin/snapkeeper.js', import.meta.url));

export interface CliRun {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  /** stdout parsed as JSON when it is JSON; tests read it loosely and assert on what they need. */
  // biome-ignore lint/suspicious/noExplicitAny: a test reads whatever document a command printed
  json: any;
}

/** Runs the real CLI as a child process (as a user would), with extra environment variables. */
export function runCli(
  args: string[],
  options: { env?: Record<string, string>; input?: string } = {},
): Promise<CliRun> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [CLI, ...args], {
      env: { ...process.env, ...options.env },
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on('data', (b: Buffer) => out.push(b));
    child.stderr.on('data', (b: Buffer) => err.push(b));
    child.on('error', reject);
    child.on('close', (code, signal) => {
      const stdout = Buffer.concat(out).toString('utf8');
      let json: unknown;
      try {
        json = JSON.parse(stdout);
      } catch {
        json = undefined;
      }
      resolve({ code, signal, stdout, stderr: Buffer.concat(err).toString('utf8'), json });
    });
    child.stdin.end(options.input ?? '');
  });
}

/** Runs the CLI on the configuration `configPath` with `--json`: how tests read a command's document. */
export function runJson(configPath: string, ...args: string[]): Promise<CliRun> {
  return runCli(['--config', configPath, '--json', ...args]);
}

/** Runs `backup` with `args` on the configuration and fails the test unless the backup completed. */
export async function completeBackup(configPath: string, ...args: string[]): Promise<BackupRecord> {
  const run = await runJson(configPath, 'backup', ...args);
  assert.equal(run.json?.state, 'complete', run.stdout + run.stderr);
  return run.json as BackupRecord;
}
