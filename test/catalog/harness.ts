import { afterEach, beforeEach } from 'node:test';
import type { CatalogHandle } from '../../src/catalog/index.js';

/*
 * What the conformance cases stand on: the catalog under test, its factory, and a fresh catalog per case.
 * Apart from conformance.ts so that the case files and the suite that gathers them import it, not each other.
 */

/** Every role of one opened catalog (SQLite's `Catalog`, `PostgresCatalog`). */
export type CatalogUnderTest = CatalogHandle;

export interface CatalogFactory {
  /** A new, empty catalog whose own time stamps come from `now`. */
  create(now: () => Date): Promise<CatalogUnderTest>;
  /** Another connection to the same catalog, as another snapkeeper process would open it. */
  connect(catalog: CatalogUnderTest, now: () => Date): Promise<CatalogUnderTest>;
  close(catalog: CatalogUnderTest): Promise<void>;
}

/** A clock the test moves by hand, so stamped times are known. */
export interface ManualClock {
  now: () => Date;
  advance(ms: number): void;
}

export function manualClock(start = '2026-11-25T08:00:00.000Z'): ManualClock {
  let t = Date.parse(start);
  return {
    now: () => new Date(t),
    advance: (ms: number) => {
      t += ms;
    },
  };
}

/** A fresh catalog (and clock) for each case of the calling suite; every connection is closed after it. */
export interface CaseCatalog {
  readonly catalog: CatalogUnderTest;
  readonly clock: ManualClock;
  /** A second connection to the case's catalog. */
  connect(): Promise<CatalogUnderTest>;
}

export function catalogPerCase(factory: CatalogFactory): CaseCatalog {
  let catalog: CatalogUnderTest | undefined;
  let clock = manualClock();
  const opened: CatalogUnderTest[] = [];
  beforeEach(async () => {
    clock = manualClock();
    catalog = await factory.create(clock.now);
    opened.push(catalog);
  });
  afterEach(async () => {
    for (const c of opened.splice(0)) await factory.close(c);
  });
  return {
    get catalog() {
      if (!catalog) throw new Error('the catalog is made before each case');
      return catalog;
    },
    get clock() {
      return clock;
    },
    async connect() {
      const c = await factory.connect(this.catalog, clock.now);
      opened.push(c);
      return c;
    },
  };
}
