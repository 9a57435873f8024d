import type { Command } from 'commander';
import { DEFAULT_LISTEN } from '../../config/server.js';
import { startDaemon } from '../../server/index.js';
import { ok } from '../context.js';
import type { Runner } from './runner.js';

/** `snapkeeper serve`: the daemon (schedules, REST API, web UI, metrics) until SIGTERM or SIGINT. */
export function registerServe(program: Command, run: Runner): void {
  program
    .command('serve')
    .description(`run the daemon: task schedules, REST API, web UI, metrics (default ${DEFAULT_LISTEN})`)
    .option('--listen <host:port>', `address to listen on (default: server.listen, else ${DEFAULT_LISTEN})`)
    .action(
      run(async (ctx, opts: { listen?: string }) => {
        const config = ctx.config();
        let signalled: (signal: NodeJS.Signals) => void = () => {};
        const stopSignal = new Promise<NodeJS.Signals>((resolve) => {
          signalled = resolve;
        });
        // Listening for the signals before the daemon starts: one sent during its start is not lost.
        process.once('SIGTERM', signalled);
        process.once('SIGINT', signalled);
        try {
          const daemon = await startDaemon({
            config,
            ...(opts.listen !== undefined ? { listen: opts.listen } : {}),
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
