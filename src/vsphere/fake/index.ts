/** The in-memory vCenter for engine tests; see ../README.md. */
export { FakeVcenter, type FaultableMethod } from './fake-vcenter.js';
export type {
  FakeDatacenterSpec,
  FakeDatastoreSpec,
  FakeDiskSpec,
  FakeSpec,
  FakeVcenterOptions,
  FakeVmSpec,
} from './spec.js';
