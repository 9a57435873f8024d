import { fileBtrfs } from '../helpers/btrfs.js';
import { fsDriverSuites } from './fs-suite.js';

// btrfs supports FICLONE, so the reflink driver forced on a loop-mounted btrfs is the real thing.
const btrfs = fileBtrfs();
const capability = btrfs.capability;

fsDriverSuites('reflink', () => btrfs.mountPoint(), {
  atomicGroups: false,
  instantClone: true,
  changedRanges: true,
  capability: () => capability,
});
