import { backupCases } from './backups.js';
import { copyCases } from './copies.js';
import { daemonCases } from './daemon.js';
import type { CatalogFactory } from './harness.js';
import { operationCases } from './operations.js';
import { taskAndMountCases } from './tasks.js';

export type { CatalogFactory, CatalogUnderTest } from './harness.js';

/*
 * The catalog conformance suite: what every catalog implementation must do, through the role interfaces
 * alone. The SQLite catalog runs it (sqlite.test.ts); a PostgreSQL catalog runs the same cases with its own
 * factory. What only one implementation can show (a file refused, a busy timeout, a second process on one
 * file) stays in that implementation's own tests.
 */

export function catalogConformance(factory: CatalogFactory): void {
  backupCases(factory);
  operationCases(factory);
  taskAndMountCases(factory);
  copyCases(factory);
  daemonCases(factory);
}
