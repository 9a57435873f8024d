/** Public surface of the repository layer (its contract: types.ts). */
export type * from './types.js';
