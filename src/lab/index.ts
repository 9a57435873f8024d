/** Public surface of the embedded lab; see README.md. */
export {
  LAB_USER,
  type LabState,
  type LabStatus,
  type LabUpOptions,
  type LabVm,
  labDown,
  labFiles,
  labStatus,
  labUp,
  readLabState,
} from './lab.js';
export { type VerifiedDisk, verifyLabVm } from './verify.js';
