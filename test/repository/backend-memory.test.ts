import { MemoryBackend } from '../../src/repository/index.js';
import { backendConformance } from './backend-conformance.js';

backendConformance(
  'memory',
  async () => ({ backend: new MemoryBackend('conformance'), cleanup: async () => {} }),
  {
    conditionalWrite: true,
    objectLock: false,
    largeObjectBytes: 8 * 1024 * 1024,
    manyKeys: 1100,
  },
);
