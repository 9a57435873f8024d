import { PgBossJobQueue } from '../../src/jobs/index.js';
import { Secret } from '../../src/util/secret.js';
import { filePostgres } from '../helpers/postgres.js';
import { queueConformance } from './conformance.js';

const pg = filePostgres();

/**
 * The PostgreSQL queue (pg-boss) against the job queue conformance suite, on a real server started for this
 * file: each case gets a database of its own; `peer` is a second queue handle (its own connections and
 * maintenance), as a second worker machine would have.
 */
queueConformance('postgres (pg-boss)', async (t) => {
  if (!pg.require(t)) return undefined;
  const db = pg.database();
  const open = () =>
    new PgBossJobQueue({ url: db.url, password: new Secret(db.password), maintenanceSeconds: 1 });
  const queue = open();
  await queue.start();
  const peers: PgBossJobQueue[] = [];
  return {
    queue,
    peer: async () => {
      const p = open();
      await p.start();
      peers.push(p);
      return p;
    },
    close: async () => {
      for (const p of peers) await p.close();
      await queue.close();
    },
  };
});
