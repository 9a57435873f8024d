import { createHash } from 'node:crypto';
import { afterEach } from 'node:test';
import { Catalog } from '../../src/catalog/index.js';
import type { Config } from '../../src/config/load.js';
import { EngineContext } from '../../src/engine/context.js';
import type { RepositoryFactory } from '../../src/engine/repository-access.js';
import { initRepository, MemoryBackend, openRepository } from '../../src/repository/index.js';
import { datastorePathToRelative } from '../../src/rules/datastores.js';
import { Secret } from '../../src/util/secret.js';
import type { FakeSpec } from '../../src/vsphere/index.js';
import { ARRAY, type EngineLab, engineLab, memoryExportFiles } from './harness.js';

/**
 * Engine offload tests on the in-memory peers (harness.ts) plus repositories on MemoryBackends: `mem` and
 * `other` (passphrase from the environment variable PASSPHRASE_ENV), `nopass` (a variable that is unset).
 */

export const PASSPHRASE_ENV = 'SNAPKEEPER_TEST_REPO_PASSPHRASE';
export const PASSPHRASE = 'correct horse battery staple';
process.env[PASSPHRASE_ENV] = PASSPHRASE;

const RDM_LUN = 'naa.600a0980383030534a3f463045727a71';

/** web01 (two disks on two datastores), db01 (one disk and an RDM), off01 (powered off). */
export const SPEC: FakeSpec = {
  datacenters: [
    {
      name: 'DC1',
      hosts: ['esx01'],
      datastores: [
        { name: 'ds-a', capacityGB: 50 },
        { name: 'ds-b', capacityGB: 20 },
      ],
      vms: [
        {
          name: 'web01',
          host: 'esx01',
          disks: [
            { datastore: 'ds-a', sizeMB: 8 },
            { datastore: 'ds-b', sizeMB: 8 },
          ],
        },
        {
          name: 'db01',
          host: 'esx01',
          disks: [
            { datastore: 'ds-a', sizeMB: 8 },
            { rdm: 'physical', lun: RDM_LUN, sizeMB: 64 },
          ],
        },
        { name: 'off01', host: 'esx01', power: 'poweredOff', disks: [{ datastore: 'ds-b', sizeMB: 8 }] },
      ],
    },
  ],
};

/** Deterministic pseudo-random bytes. */
export function pseudoRandom(size: number, seed: string): Buffer {
  const out = Buffer.alloc(size);
  let off = 0;
  for (let i = 0; off < size; i++) off += createHash('sha256').update(`${seed}/${i}`).digest().copy(out, off);
  return out;
}

/** Size of web01's first disk's flat file in these tests: a few chunks of the repository's 1 MiB. */
export const FLAT_BYTES = 4 * 1024 * 1024;

export interface OffloadLab extends EngineLab {
  backends: Map<string, MemoryBackend>;
  factory: RepositoryFactory;
  /** A context with the repositories configured and the memory backends behind them. */
  offloadContext(options?: {
    crashAt?: (point: string) => boolean;
    laterMs?: number;
    /** Changes the configuration of this context only. */
    config?: (config: Config) => Config;
  }): EngineContext;
  /** web01's first flat disk: its volume and path on the array. */
  web01Flat: { volume: string; path: string };
}

/** The repositories every offload test configures. */
function withRepositories(config: Config): Config {
  return {
    ...config,
    repositories: [
      { name: 'mem', type: 'local', path: '/unused/mem', passphraseEnv: PASSPHRASE_ENV },
      { name: 'other', type: 'local', path: '/unused/other', passphraseEnv: PASSPHRASE_ENV },
      { name: 'nopass', type: 'local', path: '/unused/nopass', passphraseEnv: 'SNAPKEEPER_TEST_UNSET_VAR' },
    ],
  };
}

export function offloadLabPerTest(): () => Promise<OffloadLab> {
  let lab: OffloadLab | undefined;
  afterEach(async () => {
    await lab?.close();
    lab = undefined;
  });
  return async () => {
    lab = await offloadLab();
    return lab;
  };
}

async function offloadLab(): Promise<OffloadLab> {
  const l = await engineLab(SPEC);
  const backends = new Map<string, MemoryBackend>();
  const fast = { kdf: { N: 1 << 15 }, workers: 2 };
  const factory: RepositoryFactory = {
    backend(config) {
      let b = backends.get(config.name);
      if (!b) {
        b = new MemoryBackend(config.name);
        backends.set(config.name, b);
      }
      return b;
    },
    init: (backend, passphrase) => initRepository(backend, passphrase.reveal(), fast),
    open: (backend, passphrase) => openRepository(backend, passphrase.reveal(), { workers: 2 }),
  };
  const config = withRepositories(l.ctx.config);
  const opened: EngineContext[] = [];
  const offloadContext = (
    extra: { crashAt?: (point: string) => boolean; laterMs?: number; config?: (c: Config) => Config } = {},
  ) => {
    const ctx = new EngineContext({
      config: extra.config ? extra.config(config) : config,
      catalog: () => Catalog.open(l.catalogPath),
      vcenter: l.vc,
      arrays: new Map([[ARRAY, l.array]]),
      files: memoryExportFiles(l.array),
      repositories: factory,
      now: () => new Date(Date.now() + (extra.laterMs ?? 0)),
      ...(extra.crashAt ? { crashAt: extra.crashAt } : {}),
    });
    opened.push(ctx);
    return ctx;
  };
  // web01's first disk gets a flat file of several chunks, so incremental reads can be told from full ones.
  const web01 = (await l.vc.inventory()).vms.find((v) => v.name === 'web01')!;
  const desc = datastorePathToRelative(web01.disks[0]!.file);
  const flat = { volume: desc.datastore, path: desc.path.replace(/\.vmdk$/, '-flat.vmdk') };
  l.array.writeFile(flat.volume, flat.path, pseudoRandom(FLAT_BYTES, 'web01-disk0'));
  // Every repository exists before the tests use it (`repo init`).
  for (const name of ['mem', 'other']) {
    const repo = await factory.init(
      await factory.backend(config.repositories.find((r) => r.name === name)!),
      new Secret(PASSPHRASE),
    );
    await repo.close();
  }
  return {
    ...l,
    backends,
    factory,
    offloadContext,
    web01Flat: flat,
    async close() {
      for (const c of opened) await c.catalog.close();
      await l.close();
    },
  };
}

/** An offload run that stops for good at `point` (as if its process died there); resolves once it has. */
export async function stoppedAt(
  l: OffloadLab,
  point: string,
  run: (ctx: EngineContext) => Promise<unknown>,
): Promise<void> {
  let reached!: () => void;
  const stopped = new Promise<void>((resolve) => {
    reached = resolve;
  });
  let failure: unknown;
  const ctx = l.offloadContext({
    crashAt: (p) => {
      if (p !== point) return false;
      reached();
      return true;
    },
  });
  run(ctx).then(
    () => reached(),
    (err) => {
      failure = err;
      reached();
    },
  );
  await stopped;
  if (failure !== undefined) throw failure;
  const open = await l.ctx.catalog.unfinishedOperations();
  if (open.length === 0) throw new Error(`the run ended without reaching crash point ${point}`);
}
