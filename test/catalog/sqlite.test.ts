import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after } from 'node:test';
import { Catalog } from '../../src/catalog/index.js';
import { catalogConformance } from './conformance.js';

// The SQLite catalog against the conformance suite: each case on a new file; a second connection is a second
// handle on the same file, as another snapkeeper process opens it.
const root = mkdtempSync(join(tmpdir(), 'snapkeeper-catalog-conformance-'));
after(() => rmSync(root, { recursive: true, force: true }));
let n = 0;

catalogConformance({
  create: async (now) => Catalog.create(join(root, `c${++n}.db`), { now }),
  connect: async (catalog, now) => Catalog.open((catalog as Catalog).path, { now }),
  close: async (catalog) => (catalog as Catalog).close(),
});
