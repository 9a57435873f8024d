import type { Command } from 'commander';
import { startWorker, type WorkerJobEvent } from '../../engine/index.js';
import { UsageError } from '../../errors.js';
import { ok } from '../context.js';
import { withEngine } from '../engine.js';
import { formatBytes } from '../progress.js';
import type { Runner } from './runner.js';

function jobLine(e: WorkerJobEvent): string {
  const what = `${e.vm} ${e.disk} of backup ${e.backupId} -> ${e.repository}${e.attempt > 1 ? ` (attempt ${e.attempt})` : ''}`;
  switch (e.type) {
    case 'started':
      return `started   ${what}`;
    case 'completed':
      return `done      ${what}: ${formatBytes(e.bytes ?? 0)}, read ${formatBytes(e.bytesRead ?? 0)}, added ${formatBytes(e.bytesAdded ?? 0)}, ${((e.ms ?? 0) / 1000).toFixed(1)} s`;
    case 'failed':
      return `FAILED    ${what}: ${e.error?.code}: ${e.error?.message}`;
    case 'released':
      return `given back ${what}`;
    case 'lost':
      return `lost      ${what}: its lease expired, another worker runs it`;
  }
}

/**
 * `snapkeeper worker [--concurrency N]`: takes offload disk jobs from the PostgreSQL job queue until SIGTERM
 * or SIGINT, then gives its running jobs back and exits 0 (docs/workers.md).
 */
export function registerWorker(program: Command, run: Runner): void {
  program
    .command('worker')
    .description('take offload disk jobs from the PostgreSQL job queue until SIGTERM (docs/workers.md)')
    .option('--concurrency <n>', 'disk jobs at once (default: workers.concurrency, 2)')
    .action(
      run(async (ctx, opts: { concurrency?: string }) => {
        let concurrency: number | undefined;
        if (opts.concurrency !== undefined) {
          concurrency = Number(opts.concurrency);
          if (!/^\d+$/.test(opts.concurrency) || concurrency < 1 || concurrency > 64) {
            throw new UsageError(
              'WORKER_CONCURRENCY',
              `--concurrency ${JSON.stringify(opts.concurrency)} must be a whole number from 1 to 64`,
            );
          }
        }
        let signalled: (signal: NodeJS.Signals) => void = () => {};
        const stopSignal = new Promise<NodeJS.Signals>((resolve) => {
          signalled = resolve;
        });
        process.on('SIGTERM', signalled);
        process.on('SIGINT', signalled);
        try {
          return await withEngine(ctx, async (engine) => {
            const worker = await startWorker(engine, {
              ...(concurrency !== undefined ? { concurrency } : {}),
              onJob: (e) => {
                if (!ctx.json) process.stderr.write(`${jobLine(e)}\n`);
              },
            });
            if (!ctx.json) {
              process.stderr.write(
                `snapkeeper worker: ${worker.concurrency} at once, repositories ${worker.repositories.join(', ')}, queue ${worker.queue}\n`,
              );
            }
            const signal = await stopSignal;
            const summary = await worker.stop();
            return ok(
              { stopped: true, signal, ...summary },
              `snapkeeper worker stopped (${signal}): ${summary.completed} disk job(s) done (${formatBytes(summary.bytes)}), ${summary.failed} failed, ${summary.givenBack} given back`,
            );
          });
        } finally {
          process.off('SIGTERM', signalled);
          process.off('SIGINT', signalled);
        }
      }),
    );
}
