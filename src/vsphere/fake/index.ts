/** The in-memory vCenter for engine tests; see ../README.md. */
export { FakeVcenter, type FakeVcenterOptions, type FaultableMethod } from './fake-vcenter.js';
export type { FakeDatacenterSpec, FakeDatastoreSpec, FakeDiskSpec, FakeSpec, FakeVmSpec } from './spec.js';
