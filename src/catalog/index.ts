/** The catalog layer's public surface: the role interfaces, and the SQLite catalog that implements them. */
export { HEARTBEAT_INTERVAL_MS, LEASE_MS, operationAlive, pidAlive } from './liveness.js';
export { applyMigrations, type MigrationResult } from './migrate.js';
export { LATEST_SCHEMA_VERSION, MIGRATIONS, type Migration } from './migrations.js';
export { Catalog } from './sqlite/catalog.js';
export type { CatalogOptions } from './sqlite/database.js';
export type * from './types.js';
