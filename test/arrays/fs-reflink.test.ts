import { after, before } from 'node:test';
import { canMountLoopBtrfs, type LoopBtrfs, mountTestBtrfs } from '../helpers/btrfs.js';
import { arrayConformance } from './conformance.js';
import { makeFsArray } from './fs-factory.js';

// btrfs supports FICLONE, so the reflink driver forced on a loop-mounted btrfs is the real thing.
let fs: LoopBtrfs | undefined;
const capability = canMountLoopBtrfs();
before(async () => {
  if ((await capability).ok) fs = await mountTestBtrfs();
});
after(async () => {
  await fs?.cleanup();
});

arrayConformance('fs (reflink driver)', () => makeFsArray(fs!.mountPoint, 'reflink'), {
  atomicGroups: false,
  instantClone: true,
  capability: () => capability,
});
