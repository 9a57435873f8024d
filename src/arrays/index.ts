import type { ArrayConfig } from '../config/schema.js';
import { UsageError } from '../errors.js';
import { openFsArray } from './fs/index.js';
import type { StorageArray } from './types.js';

export { initFsArray, layout, removeTree } from './fs/index.js';
export { MemoryArray, type MemoryArrayOptions } from './memory/index.js';
export type * from './types.js';

/** Opens the storage array a configuration entry describes. Throws UsageError when it cannot be used. */
export async function openArray(config: ArrayConfig): Promise<StorageArray> {
  switch (config.type) {
    case 'fs':
      return openFsArray({ name: config.name, path: config.path, driver: config.driver });
    default:
      throw new UsageError('ARRAY_TYPE_UNKNOWN', `array "${(config as ArrayConfig).name}": unknown type`);
  }
}
