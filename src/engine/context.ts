import { openArray, type StorageArray } from '../arrays/index.js';
import { Catalog } from '../catalog/index.js';
import type { Config } from '../config/load.js';
import { connect, type VcenterSession } from '../vsphere/index.js';

/** Progress reports from long operations; the CLI draws them, the server will stream them. */
export interface EngineEvents {
  phase(name: string): void;
  item(key: string, status: string): void;
  log(message: string): void;
}

export const silentEvents: EngineEvents = { phase() {}, item() {}, log() {} };

/**
 * Everything an engine operation needs, opened lazily and closed once. The vCenter session and arrays are
 * only opened when an operation needs them, so catalog-only commands work without vCenter.
 */
export class EngineContext {
  #catalog: Catalog | undefined;
  #vcenter: Promise<VcenterSession> | undefined;
  #arrays: Promise<Map<string, StorageArray>> | undefined;

  constructor(
    readonly config: Config,
    readonly events: EngineEvents = silentEvents,
    readonly now: () => Date = () => new Date(),
  ) {}

  /** Opened on first use: commands that only read vCenter never create a catalog file. */
  get catalog(): Catalog {
    this.#catalog ??= Catalog.open(this.config.catalog.path);
    return this.#catalog;
  }

  vcenter(): Promise<VcenterSession> {
    const session = this.#vcenter ?? connect(this.config.vcenter);
    this.#vcenter = session;
    return session;
  }

  arrays(): Promise<Map<string, StorageArray>> {
    const arrays =
      this.#arrays ??
      (async () => {
        const map = new Map<string, StorageArray>();
        for (const a of this.config.arrays) map.set(a.name, await openArray(a));
        return map;
      })();
    this.#arrays = arrays;
    return arrays;
  }

  async array(name: string): Promise<StorageArray> {
    const found = (await this.arrays()).get(name);
    if (!found) throw new Error(`array ${name} is not configured`);
    return found;
  }

  async close(): Promise<void> {
    if (this.#vcenter) {
      try {
        await (await this.#vcenter).logout();
      } catch {
        // A failed logout leaves a session that vCenter expires on its own; nothing to undo.
      }
    }
    this.#catalog?.close();
  }
}

/**
 * Test-only crash injection: `SNAPKEEPER_CRASH_AT=<point>` makes the process SIGKILL itself at that point,
 * which is how the recovery tests reach every phase deterministically.
 */
export function crashPoint(point: string): void {
  if (process.env.SNAPKEEPER_CRASH_AT === point) process.kill(process.pid, 'SIGKILL');
}
