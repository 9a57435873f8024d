import { randomBytes } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, type TestContext } from 'node:test';
import {
  type CreateBucketOptions,
  createMotoBucket,
  MOTO_ACCESS_KEY,
  MOTO_REGION,
  MOTO_SECRET_KEY,
  type MotoServer,
  motoAvailable,
  startMoto,
} from '../../src/lab/moto.js';
import { requireCapability } from './require.js';

export { MOTO_ACCESS_KEY, MOTO_REGION, MOTO_SECRET_KEY };

export interface FileMoto {
  /** Whether moto can run here (`python3 -c 'import moto'`). */
  readonly available: boolean;
  /** False (and the test skipped, or failed under SNAPKEEPER_REQUIRE_ALL=1) when moto is missing. */
  require(t: TestContext): boolean;
  /** The server's endpoint (`http://127.0.0.1:PORT`), valid inside tests once `before` has run. */
  endpoint(): string;
  server(): MotoServer;
  /** A new bucket with a unique name (tests of one file share the server, never a bucket). */
  bucket(options?: CreateBucketOptions): Promise<string>;
}

/**
 * One moto S3 server for every test of a file: started in `before` when moto is installed, stopped in
 * `after` (and killed if the test process dies). Call at the top level of a test file.
 */
export function fileMoto(): FileMoto {
  const available = motoAvailable();
  let server: MotoServer | undefined;
  let n = 0;
  before(async () => {
    if (available) {
      server = await startMoto({ logFile: join(tmpdir(), `snapkeeper-moto-${process.pid}.log`) });
    }
  });
  after(async () => {
    await server?.stop();
  });
  const get = () => {
    if (!server) throw new Error('no moto server for this file (see available)');
    return server;
  };
  return {
    available,
    require: (t) =>
      requireCapability(t, available, 'moto is not installed for python3 (scripts/setup.sh checks it)'),
    endpoint: () => get().endpoint,
    server: get,
    async bucket(options) {
      n += 1;
      const name = `t${n}-${randomBytes(4).toString('hex')}`;
      await createMotoBucket(get().endpoint, name, options);
      return name;
    },
  };
}
