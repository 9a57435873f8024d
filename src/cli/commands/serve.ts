import type { Command } from 'commander';
import { DEFAULT_LISTEN } from '../../config/server.js';
import { UsageError } from '../../errors.js';
import { startDaemon } from '../../server/index.js';
import { ok } from '../context.js';
import type { Runner } from './runner.js';

/** `snapkeeper serve`: the daemon (schedules, REST API, web UI, metrics) until SIGTERM or SIGINT. */
export function registerServe(program: Command, run: Runner): void {
  program
    .command('serve')
    .description(`run the daemon: task schedules, REST API, web UI, metrics (default ${DEFAULT_LISTEN})`)
    .option('--listen <host:port>', `address to listen on (default: server.listen, else ${DEFAULT_LISTEN})`)
    .option('--worker [n]', 'also run an offload worker, N disk jobs at once (default: workers.concurrency)')
    .action(
      run(async (ctx, opts: { listen?: string; worker?: string | boolean }) => {
        let worker: { concurrency?: number } | undefined;
        if (opts.worker === true) worker = {};
        else if (typeof opts.worker === 'string') {
          const n = Number(opts.worker);
          if (!/^\d+$/.test(opts.worker) || n < 1 || n > 64) {
            throw new UsageError(
              'WORKER_CONCURRENCY',
              `--worker ${JSON.stringify(opts.worker)} must be a whole number from 1 to 64`,
            );
          }
          worker = { concurrency: n };
        }
        const config = ctx.config();
        let signalled: (signal: NodeJS.Signals) => void = () => {};
        const stopSignal = new Promise<NodeJS.Signals>((resolve) => {
          signalled = resolve;
        });
        // Listening for the signals before the daemon starts: one sent during its start is not lost. `on`,
        // not `once`, for the daemon's whole life: the engine's hook runner kills running hooks on SIGTERM and
        // re-raises the signal when nobody else listens, which would end the daemon before its jobs release.
        process.on('SIGTERM', signalled);
        process.on('SIGINT', signalled);
        try {
          const daemon = await startDaemon({
            config,
            ...(opts.listen !== undefined ? { listen: opts.listen } : {}),
            ...(worker !== undefined ? { worker } : {}),
          });
          if (!ctx.json) process.stderr.write(`snapkeeper serve: listening on ${daemon.url}\n`);
          const signal = await stopSignal;
          await daemon.stop();
          return ok({ stopped: true, url: daemon.url, signal }, `snapkeeper serve stopped (${signal})`);
        } finally {
          process.off('SIGTERM', signalled);
          process.off('SIGINT', signalled);
        }
      }),
    );
}
