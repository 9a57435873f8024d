/**
 * One worker process of the scale-out benchmark: `snapkeeper worker` as the CLI runs it (engine `startWorker`
 * on a configuration file), printing one JSON line per job event on stdout so that run.ts can measure queue
 * latency and utilisation. Stops on SIGTERM (running jobs given back) and prints its summary last.
 */
import { loadConfig } from '../../src/config/load.js';
import { configuredParts, EngineContext, startWorker } from '../../src/engine/index.js';

async function main(): Promise<void> {
  const configPath = process.argv[2];
  const concurrency = Number(process.argv[3] ?? '1');
  if (!configPath) throw new Error('usage: worker.js CONFIG [CONCURRENCY]');
  const config = loadConfig(configPath);
  const ctx = new EngineContext({ config, ...configuredParts(config) });
  const stop = new Promise<void>((resolve) => {
    process.once('SIGTERM', () => resolve());
  });
  const worker = await startWorker(ctx, {
    concurrency,
    pollMs: 200,
    onJob: (e) => process.stdout.write(`${JSON.stringify({ event: e, at: Date.now() })}\n`),
  });
  process.stdout.write(`${JSON.stringify({ ready: true, pid: process.pid })}\n`);
  await stop;
  const summary = await worker.stop();
  await ctx.close();
  process.stdout.write(`${JSON.stringify({ summary })}\n`);
}

await main();
