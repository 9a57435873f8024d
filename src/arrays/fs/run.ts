import { spawn } from 'node:child_process';
import { SnapkeeperError } from '../../errors.js';

/**
 * Runs a program without a shell and with no input, resolving with its output; a non-zero exit rejects
 * with an error naming the command and its stderr.
 *
 * Why not util/exec.ts: its execFile writes to the child's stdin without an error handler, so a child that
 * exits before reading it (btrfs, sync, true) makes an uncaught EPIPE about one time in five. Here stdin is
 * not a pipe at all.
 */
export function run(file: string, args: string[], options: { signal?: AbortSignal } = {}): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(file, args, { signal: options.signal, stdio: ['ignore', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on('data', (b: Buffer) => out.push(b));
    child.stderr.on('data', (b: Buffer) => err.push(b));
    child.on('error', (e) =>
      reject(new SnapkeeperError('EXEC_FAILED', `${file}: ${e.message}`, { cause: e })),
    );
    child.on('close', (code, signal) => {
      const stdout = Buffer.concat(out).toString('utf8');
      if (code === 0) return resolve(stdout);
      const why = signal ? `killed by ${signal}` : `exit code ${code}`;
      const stderr = Buffer.concat(err).toString('utf8').trim();
      reject(
        new SnapkeeperError(
          'EXEC_FAILED',
          `${file} ${args.join(' ')} failed (${why}): ${stderr || stdout.trim()}`,
        ),
      );
    });
  });
}

/** True when `file` is an executable on PATH. */
export async function onPath(file: string): Promise<boolean> {
  try {
    await run('sh', ['-c', 'command -v "$1"', 'sh', file]);
    return true;
  } catch {
    return false;
  }
}
