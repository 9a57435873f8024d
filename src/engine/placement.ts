import type { ArrayVolume } from '../arrays/index.js';
import type { Config } from '../config/load.js';
import type { Datastore } from '../model/inventory.js';
import { type DatastoreMapping, mapDatastoresToVolumes } from '../rules/index.js';
import type { EngineContext } from './context.js';
import { applyRule } from './rule-errors.js';

/** Volumes of every configured array, by array name. */
export type VolumesByArray = Map<string, ArrayVolume[]>;

export async function listArrayVolumes(ctx: EngineContext): Promise<VolumesByArray> {
  const volumes: VolumesByArray = new Map();
  for (const [name, array] of await ctx.arrays()) volumes.set(name, await array.listVolumes());
  return volumes;
}

/**
 * Where each datastore lives among the configured arrays (explicit `arrays[].datastores` first, then VMFS
 * extents' LUNs, then URLs). A bad explicit mapping is a UsageError.
 */
export function mapConfiguredDatastores(
  config: Config,
  datastores: Datastore[],
  volumes: VolumesByArray,
): DatastoreMapping {
  return applyRule(() =>
    mapDatastoresToVolumes(
      datastores,
      config.arrays.map((a) => ({
        name: a.name,
        volumes: volumes.get(a.name) ?? [],
        ...(a.datastores ? { explicit: a.datastores } : {}),
      })),
    ),
  );
}

/** Each datastore's volumes as `array/volume` names (empty for a datastore no configured array holds). */
export async function datastoreVolumeNames(
  ctx: EngineContext,
  datastores: Datastore[],
): Promise<Map<string, string[]>> {
  const mapping = mapConfiguredDatastores(ctx.config, datastores, await listArrayVolumes(ctx));
  return new Map(
    datastores.map((d) => {
      const loc = mapping.mapped.get(d.name);
      return [d.name, loc ? loc.volumes.map((v) => `${loc.array}/${v}`) : []];
    }),
  );
}
