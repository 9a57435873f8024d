// The lab's public surface: the CLI, the tests and the benchmarks import the lab from here.
export { closestName } from './closest-name.js';
export { fillLabDisk, LAB_DISK_CHUNK_BYTES, labDiskChunk } from './diskdata.js';
export { labDown } from './down.js';
export { labFiles } from './lab-dir.js';
export { canMountLoopBtrfs, isMountPoint, mountLoopBtrfs, unmountLoopBtrfs } from './loop-btrfs.js';
export {
  type CreateBucketOptions,
  createMotoBucket,
  freePort,
  isMotoProcess,
  MOTO_ACCESS_KEY,
  MOTO_REGION,
  MOTO_SECRET_KEY,
  type MotoServer,
  motoAvailable,
  motoClient,
  type StartMotoOptions,
  startMoto,
  stopMotoProcess,
} from './moto.js';
export { diskBytesByDatastore } from './preflight.js';
export {
  repoRoot,
  type SimulatorDisk,
  type SimulatorReady,
  simulatorBinary,
  startSimulator,
} from './simulator.js';
export {
  datastoreNames,
  homeDatastore,
  type LabDisk,
  type LabSpec,
  type LabVmSpec,
  labDiskKind,
  labSpecSchema,
  loadLabSpec,
  parseLabSpec,
} from './spec.js';
export { type LabState, type LabVm, readLabState } from './state.js';
export { type LabStatus, labStatus } from './status.js';
export { type LabUpOptions, labUp } from './up.js';
export { answersSoap, LAB_USER } from './vcenter.js';
export { type VerifiedDisk, verifyLabVm } from './verify.js';
export { VIM25_METHODS } from './vim25-methods.js';
export { simulatorVmNames } from './vm-names.js';
