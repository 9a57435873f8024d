import { test } from 'node:test';
import { PostgresCatalog } from '../../src/catalog/index.js';
import { Secret } from '../../src/util/secret.js';
import { filePostgres } from '../helpers/postgres.js';
import { catalogConformance } from './conformance.js';

// The PostgreSQL catalog against the conformance suite: one server for this file, a new database per case; a
// second connection is a second PostgresCatalog (its own pool) on that database, as another process (or
// machine) opens it. The cases' clock is given to the catalog (`now`) so that stamped times are known.
const postgres = filePostgres();

if (postgres.available) {
  catalogConformance({
    create: async (now) => {
      const db = postgres.database();
      return PostgresCatalog.create(
        { url: db.url, path: db.url, password: new Secret(db.password) },
        { now },
      );
    },
    connect: async (catalog, now) => {
      const pg = catalog as PostgresCatalog;
      return PostgresCatalog.open(
        { url: pg.location, path: pg.location, password: new Secret(postgres.server().password) },
        { now },
      );
    },
    close: async (catalog) => catalog.close(),
  });
} else {
  test('the catalog conformance suite on PostgreSQL', (t) => {
    postgres.require(t);
  });
}
