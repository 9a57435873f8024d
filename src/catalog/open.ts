import type { CatalogConfig } from '../config/catalog.js';
import { PostgresCatalog } from './postgres/catalog.js';
import type { PostgresOptions } from './postgres/database.js';
import { Catalog } from './sqlite/catalog.js';
import type { CatalogHandle } from './types.js';

export interface OpenCatalogOptions {
  /** Create the catalog when there is none (only `init`, `lab up` and `catalog create`). */
  create?: boolean;
  /** Tests only: the clock the catalog stamps times with (default: this process's on SQLite, the server's on PostgreSQL). */
  now?: () => Date;
}

/**
 * Opens the configured catalog, whichever database stands behind it: `catalog.url` a PostgreSQL server,
 * `catalog.path` a SQLite file. Each refuses what it cannot use with a UsageError naming it (see
 * `Catalog.open`, `PostgresCatalog.open`).
 */
export async function openCatalog(
  config: CatalogConfig,
  options: OpenCatalogOptions = {},
): Promise<CatalogHandle> {
  if (config.url !== undefined) {
    const pgOptions: PostgresOptions & { create?: boolean } = {
      ...(options.create === undefined ? {} : { create: options.create }),
      ...(options.now === undefined ? {} : { now: options.now }),
    };
    return PostgresCatalog.open(config, pgOptions);
  }
  return Catalog.open(config.path, {
    ...(options.create === undefined ? {} : { create: options.create }),
    ...(options.now === undefined ? {} : { now: options.now }),
  });
}
