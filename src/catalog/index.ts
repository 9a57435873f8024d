/** The catalog layer's public surface. */
export { Catalog, type CatalogOptions } from './catalog.js';
export { HEARTBEAT_INTERVAL_MS, LEASE_MS, operationAlive, pidAlive } from './liveness.js';
export { applyMigrations, type MigrationResult } from './migrate.js';
export { LATEST_SCHEMA_VERSION, MIGRATIONS, type Migration } from './migrations.js';
export type * from './types.js';
