/**
 * The first SIGTERM or SIGINT from now on, for the long-running commands (`serve`, `worker`). Listening starts
 * at once, so a signal sent while the command starts up is not lost. `on`, not `once`, for the command's
 * whole life: the engine's hook runner kills running hooks on SIGTERM and re-raises the signal when nobody
 * else listens, which would end the process before its jobs release what they hold. `dispose` stops
 * listening.
 */
export function stopSignals(): { received: Promise<NodeJS.Signals>; dispose(): void } {
  let signalled: (signal: NodeJS.Signals) => void = () => {};
  const received = new Promise<NodeJS.Signals>((resolve) => {
    signalled = resolve;
  });
  process.on('SIGTERM', signalled);
  process.on('SIGINT', signalled);
  return {
    received,
    dispose() {
      process.off('SIGTERM', signalled);
      process.off('SIGINT', signalled);
    },
  };
}
