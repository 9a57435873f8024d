export {
  btrfsSupport,
  type DriverSupport,
  type FsDriverChoice,
  type FsDriverName,
  reflinkSupport,
} from './detect.js';
export { FsArray, type FsArrayClone, type FsArrayConfig, openFsArray } from './fs-array.js';
export { isId, makeId, parseId, validateLabel } from './ids.js';
export { type FsArrayManifest, initFsArray, isBtrfs, layout, readManifest, volumeLun } from './layout.js';
export { removeTree } from './tree.js';
