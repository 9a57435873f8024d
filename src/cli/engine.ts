import { configuredParts, EngineContext } from '../engine/index.js';
import type { CliContext } from './context.js';

/**
 * Opens the engine for one command, with its progress drawn on the terminal, and always closes it. The
 * catalog, vCenter and arrays of the configuration are opened only when the command first needs them.
 */
export async function withEngine<T>(ctx: CliContext, fn: (engine: EngineContext) => Promise<T>): Promise<T> {
  const config = ctx.config();
  const engine = new EngineContext({
    config,
    ...configuredParts(config),
    events: {
      phase: (name) => ctx.progress.update('phase', name),
      item: (key, status) => ctx.progress.update(key, status),
      log: (message) => ctx.progress.log(message),
    },
  });
  try {
    // A PostgreSQL catalog opens asynchronously: before the command, so that `engine.catalog` works in it.
    if (config.catalog.url !== undefined) await engine.openCatalog();
    return await fn(engine);
  } finally {
    await engine.close();
  }
}
