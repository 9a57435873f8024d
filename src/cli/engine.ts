import { EngineContext } from '../engine/index.js';
import type { CliContext } from './context.js';

/** Opens the engine for one command, with its progress drawn on the terminal, and always closes it. */
export async function withEngine<T>(ctx: CliContext, fn: (engine: EngineContext) => Promise<T>): Promise<T> {
  const engine = new EngineContext(ctx.config(), {
    phase: (name) => ctx.progress.update('phase', name),
    item: (key, status) => ctx.progress.update(key, status),
    log: (message) => ctx.progress.log(message),
  });
  try {
    return await fn(engine);
  } finally {
    await engine.close();
  }
}
