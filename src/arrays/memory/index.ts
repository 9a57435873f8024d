export { BLOCK_SIZE } from './files.js';
export { MemoryArray, type MemoryArrayOptions } from './memory-array.js';
