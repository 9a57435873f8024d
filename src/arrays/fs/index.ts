export {
  btrfsSupport,
  type DriverSupport,
  type FsDriverChoice,
  type FsDriverName,
  reflinkSupport,
} from './detect.js';
export { FsArray, type FsArrayClone, type FsArrayConfig, openFsArray } from './fs-array.js';
export { isId, makeId, parseId, validateLabel } from './ids.js';
export { type FsArrayManifest, initFsArray, layout, readManifest, volumeLun } from './layout.js';
