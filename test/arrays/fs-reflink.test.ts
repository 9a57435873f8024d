import { fileBtrfs } from '../helpers/btrfs.js';
import { arrayConformance } from './conformance.js';
import { makeFsArray } from './fs-factory.js';
import { fsArraySpecifics } from './fs-suite.js';

// btrfs supports FICLONE, so the reflink driver forced on a loop-mounted btrfs is the real thing.
const btrfs = fileBtrfs();
const capability = btrfs.capability;

const expectations = {
  atomicGroups: false,
  instantClone: true,
  changedRanges: true,
  capability: () => capability,
};
arrayConformance('fs (reflink driver)', () => makeFsArray(btrfs.mountPoint(), 'reflink'), expectations);
fsArraySpecifics('fs (reflink driver)', () => makeFsArray(btrfs.mountPoint(), 'reflink'), expectations);
