import { InProcessJobQueue } from '../../src/jobs/index.js';
import { queueConformance } from './conformance.js';

/** The in-process queue (the single-machine default) against the job queue conformance suite. */
queueConformance('in-process', async () => {
  const queue = new InProcessJobQueue();
  return { queue, peer: async () => queue, close: () => queue.close() };
});
