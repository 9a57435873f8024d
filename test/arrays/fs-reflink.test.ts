import { fileBtrfs } from '../helpers/btrfs.js';
import { arrayConformance } from './conformance.js';
import { makeFsArray } from './fs-factory.js';

// btrfs supports FICLONE, so the reflink driver forced on a loop-mounted btrfs is the real thing.
const btrfs = fileBtrfs();
const capability = btrfs.capability;

arrayConformance('fs (reflink driver)', () => makeFsArray(btrfs.mountPoint(), 'reflink'), {
  atomicGroups: false,
  instantClone: true,
  capability: () => capability,
});
