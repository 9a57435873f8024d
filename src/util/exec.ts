import { spawn } from 'node:child_process';
import { SnapkeeperError } from '../errors.js';

export interface ExecResult {
  stdout: string;
  stderr: string;
}

/**
 * Runs a program without a shell (arguments are never interpreted) and resolves with its output.
 * A non-zero exit rejects with an error naming the command and its stderr.
 */
export function execFile(
  file: string,
  args: string[],
  options: { signal?: AbortSignal; input?: string; env?: NodeJS.ProcessEnv } = {},
): Promise<ExecResult> {
  return new Promise((resolve, reject) => {
    // No input: stdin is not a pipe at all. A pipe the child never reads makes an EPIPE when it exits early.
    const withInput = options.input !== undefined;
    const child = spawn(file, args, {
      signal: options.signal,
      env: options.env,
      stdio: [withInput ? 'pipe' : 'ignore', 'pipe', 'pipe'],
    });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout?.on('data', (b: Buffer) => out.push(b));
    child.stderr?.on('data', (b: Buffer) => err.push(b));
    child.on('error', (e) =>
      reject(new SnapkeeperError('EXEC_FAILED', `${file}: ${e.message}`, { cause: e })),
    );
    child.on('close', (code, signal) => {
      const stdout = Buffer.concat(out).toString('utf8');
      const stderr = Buffer.concat(err).toString('utf8');
      if (code === 0) resolve({ stdout, stderr });
      else {
        const why = signal ? `killed by ${signal}` : `exit code ${code}`;
        reject(
          new SnapkeeperError(
            'EXEC_FAILED',
            `${file} ${args.join(' ')} failed (${why}): ${stderr.trim() || stdout.trim()}`,
          ),
        );
      }
    });
    if (withInput && child.stdin) {
      child.stdin.on('error', () => {}); // the exit status tells what happened
      child.stdin.end(options.input);
    }
  });
}

/** True when `file` can be run (found on PATH). */
export async function hasCommand(file: string): Promise<boolean> {
  try {
    await execFile('sh', ['-c', 'command -v "$1"', 'sh', file]);
    return true;
  } catch {
    return false;
  }
}
