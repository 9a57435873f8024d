import { FakeVcenter } from '../../src/vsphere/fake/index.js';
import { CONFORMANCE_SPEC, sessionConformance } from './session-conformance.js';

let mounts = 0;
sessionConformance(
  'FakeVcenter',
  async () => {
    const session = FakeVcenter.fromLabSpec(CONFORMANCE_SPEC);
    return {
      session,
      newDatastorePath: async () => `/memory/mounts/${++mounts}`,
      cleanup: () => session.logout(),
    };
  },
  { suspendNeedsPoweredOn: true },
);
