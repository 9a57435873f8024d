import { openArray, type StorageArray } from '../arrays/index.js';
import { Catalog, type CatalogHandle, openCatalog } from '../catalog/index.js';
import type { Config } from '../config/load.js';
import { connect, type VcenterSession } from '../vsphere/index.js';
import { type ExportFiles, hostExportFiles } from './export-files.js';
import { configuredRepositoryFactory, type RepositoryFactory } from './repository-access.js';

/** Progress reports from long operations; the CLI draws them, the server will stream them. */
export interface EngineEvents {
  phase(name: string): void;
  item(key: string, status: string): void;
  log(message: string): void;
  /** Bytes done of a byte-counted item (offload), on every step (cheap: a listener only keeps it); optional. */
  bytes?(key: string, done: number, total: number): void;
}

export const silentEvents: EngineEvents = { phase() {}, item() {}, log() {} };

/** A part of the context given ready-made (tests: fakes) or as an opener called on first use (the CLI). */
export type Part<T> = T | (() => T);

/** What an EngineContext is made of. Absent parts are opened from `config` (see `configuredParts`). */
export interface EngineParts {
  config: Config;
  /**
   * The catalog, or its opener. An opener that returns a Promise (PostgreSQL) must be opened with
   * `await ctx.openCatalog()` before the `catalog` getter is used.
   */
  catalog?: Part<CatalogHandle | Promise<CatalogHandle>>;
  /**
   * False when the catalog is the caller's, shared by many contexts (the daemon's jobs on one PostgreSQL
   * pool): `close()` leaves it open. Default true.
   */
  ownsCatalog?: boolean;
  vcenter?: Part<VcenterSession | Promise<VcenterSession>>;
  arrays?: Part<Map<string, StorageArray> | Promise<Map<string, StorageArray>>>;
  /** The files behind the datastores (default: the host's file system). */
  files?: ExportFiles;
  /** How configured repositories are reached (default: local directories and S3; tests: memory backends). */
  repositories?: RepositoryFactory;
  events?: EngineEvents;
  now?: () => Date;
  /**
   * Test hook: called at each crash point an operation passes; returning true stops that operation there for
   * good (it never resumes, as if its process had died), leaving the catalog as a crash would.
   */
  crashAt?: (point: string) => boolean;
}

/**
 * The real openers of a configuration: the catalog (a SQLite file, opened synchronously on first use; or a
 * PostgreSQL server, opened by `await ctx.openCatalog()`), the vCenter of `config`, its arrays.
 */
export function configuredParts(
  config: Config,
): Required<Pick<EngineParts, 'catalog' | 'vcenter' | 'arrays'>> {
  return {
    catalog:
      config.catalog.url === undefined
        ? () => Catalog.open(config.catalog.path)
        : () => openCatalog(config.catalog),
    vcenter: () => connect(config.vcenter),
    arrays: async () => {
      const map = new Map<string, StorageArray>();
      for (const a of config.arrays) map.set(a.name, await openArray(a));
      return map;
    },
  };
}

function opener<T>(part: Part<T>): () => T {
  return typeof part === 'function' ? (part as () => T) : () => part;
}

/**
 * Everything an engine operation needs: catalog, vCenter session and arrays come from the caller, each
 * opened on first use and closed once. The vCenter session and arrays are only opened when an operation
 * needs them, so catalog-only commands work without vCenter.
 */
export class EngineContext {
  readonly config: Config;
  readonly events: EngineEvents;
  readonly now: () => Date;
  readonly files: ExportFiles;
  readonly #repositories: RepositoryFactory;
  readonly #openCatalog: () => CatalogHandle | Promise<CatalogHandle>;
  readonly #ownsCatalog: boolean;
  #opening: Promise<CatalogHandle> | undefined;
  readonly #openVcenter: () => VcenterSession | Promise<VcenterSession>;
  readonly #openArrays: () => Map<string, StorageArray> | Promise<Map<string, StorageArray>>;
  readonly #crashAt: ((point: string) => boolean) | undefined;
  #catalog: CatalogHandle | undefined;
  #vcenter: Promise<VcenterSession> | undefined;
  #arrays: Promise<Map<string, StorageArray>> | undefined;

  constructor(parts: EngineParts) {
    const configured = configuredParts(parts.config);
    this.config = parts.config;
    this.events = parts.events ?? silentEvents;
    this.now = parts.now ?? (() => new Date());
    this.files = parts.files ?? hostExportFiles;
    this.#repositories = parts.repositories ?? configuredRepositoryFactory;
    this.#crashAt = parts.crashAt;
    this.#openCatalog = opener(parts.catalog ?? configured.catalog);
    this.#ownsCatalog = parts.ownsCatalog ?? true;
    this.#openVcenter = opener(parts.vcenter ?? configured.vcenter);
    this.#openArrays = opener(parts.arrays ?? configured.arrays);
  }

  /**
   * Opened on first use: commands that only read vCenter never open a catalog file. A catalog whose opener
   * is asynchronous (PostgreSQL) must have been opened with `openCatalog()` first (the CLI's `withEngine` and
   * the daemon do).
   */
  get catalog(): CatalogHandle {
    if (this.#catalog) return this.#catalog;
    const opened = this.#openCatalog();
    if (opened instanceof Promise) {
      this.#opening = opened;
      opened.catch(() => {}); // reported by openCatalog() to whoever awaits it
      throw new Error('this catalog opens asynchronously: call await ctx.openCatalog() before ctx.catalog');
    }
    this.#catalog = opened;
    return opened;
  }

  /** Opens the catalog now (SQLite or PostgreSQL) and returns it; opened once, later calls return it. */
  async openCatalog(): Promise<CatalogHandle> {
    if (this.#catalog) return this.#catalog;
    this.#opening ??= Promise.resolve(this.#openCatalog());
    this.#catalog = await this.#opening;
    return this.#catalog;
  }

  /**
   * The time to judge operations' leases by (`operationAlive`): the catalog's clock on PostgreSQL (heartbeats
   * are stamped by the server, whatever this machine's clock says), this context's `now` on SQLite.
   */
  async catalogNow(): Promise<Date> {
    const catalog = await this.openCatalog();
    return catalog.dialect === 'postgres' ? catalog.now() : this.now();
  }

  vcenter(): Promise<VcenterSession> {
    this.#vcenter ??= (async () => this.#openVcenter())();
    return this.#vcenter;
  }

  arrays(): Promise<Map<string, StorageArray>> {
    this.#arrays ??= (async () => this.#openArrays())();
    return this.#arrays;
  }

  /** How repositories are reached (see repository-access.ts: `openConfiguredRepository`). */
  repositories(): RepositoryFactory {
    return this.#repositories;
  }

  async array(name: string): Promise<StorageArray> {
    const found = (await this.arrays()).get(name);
    if (!found) throw new Error(`array ${name} is not configured`);
    return found;
  }

  /**
   * A point where recovery tests stop an operation: the process kills itself when `SNAPKEEPER_CRASH_AT` names
   * it (crashPoint below), and an operation of a context whose `crashAt` hook says so never goes on.
   */
  async crashPoint(point: string): Promise<void> {
    crashPoint(point);
    if (this.#crashAt?.(point)) await new Promise<never>(() => {});
  }

  async close(): Promise<void> {
    if (this.#vcenter !== undefined) {
      try {
        await (await this.#vcenter).logout();
      } catch {
        // A failed logout (or connect) leaves a session that vCenter expires on its own; nothing to undo.
      }
    }
    if (this.#ownsCatalog) await this.#catalog?.close();
  }
}

/**
 * Test-only crash injection: `SNAPKEEPER_CRASH_AT=<point>` makes the process SIGKILL itself at that point,
 * which is how the recovery tests reach every phase deterministically.
 */
export function crashPoint(point: string): void {
  if (process.env.SNAPKEEPER_CRASH_AT === point) process.kill(process.pid, 'SIGKILL');
}
