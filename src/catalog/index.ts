/** The catalog layer's public surface: the role interfaces, `openCatalog`, and the SQLite and PostgreSQL catalogs. */
export { HEARTBEAT_INTERVAL_MS, LEASE_MS, operationAlive, pidAlive } from './liveness.js';
export { applyMigrations, type MigrationResult } from './migrate.js';
export { LATEST_SCHEMA_VERSION, MIGRATIONS, type Migration } from './migrations.js';
export { type OpenCatalogOptions, openCatalog } from './open.js';
export { PostgresCatalog } from './postgres/catalog.js';
export type { PostgresOptions } from './postgres/database.js';
export { POSTGRES_MIGRATIONS } from './postgres/migrations.js';
export { Catalog } from './sqlite/catalog.js';
export type { CatalogOptions } from './sqlite/database.js';
export { type CatalogMigration, migrateSqliteToPostgres } from './transfer.js';
export type * from './types.js';
