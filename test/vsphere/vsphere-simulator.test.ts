import { mkdir, mkdtemp, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { loadConfig } from '../../src/config/load.js';
import { connect } from '../../src/vsphere/client.js';
import { startLab } from '../helpers/lab.js';
import { CONFORMANCE_SPEC, sessionConformance } from './session-conformance.js';

// The SOAP client against the lab simulator (govmomi 0.24), over HTTPS with the lab's pinned certificate.
sessionConformance(
  'SOAP client on the lab simulator',
  async () => {
    const lab = await startLab(CONFORMANCE_SPEC);
    try {
      const session = await connect(loadConfig(lab.configPath).vcenter);
      return {
        session,
        // The simulator mounts a local directory: any directory of the lab will do.
        async newDatastorePath(files = []) {
          const dir = await mkdtemp(join(lab.dir, 'mount-'));
          for (const f of files) {
            await mkdir(dirname(join(dir, f)), { recursive: true });
            await writeFile(join(dir, f), '');
          }
          return dir;
        },
        async cleanup() {
          await session.logout();
          await lab.stop();
        },
      };
    } catch (err) {
      await lab.stop();
      throw err;
    }
  },
  { suspendNeedsPoweredOn: false, uniqueVmNamesPerFolder: false },
);
