import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { MemoryArray } from '../../src/arrays/index.js';
import { Catalog } from '../../src/catalog/index.js';
import { EngineContext } from '../../src/engine/context.js';
import { FakeVcenter } from '../../src/vsphere/index.js';
import { engineLabPerTest, memoryExportFiles } from './harness.js';

const startLab = engineLabPerTest();

describe('EngineContext', () => {
  it('opens each part on first use only, once, and a catalog-only use never connects to vCenter', async () => {
    const lab = await startLab({ datacenters: [{ name: 'DC1', hosts: ['esx01'] }] });
    const opened = { catalog: 0, vcenter: 0, arrays: 0 };
    const vc = new FakeVcenter();
    const ctx = new EngineContext({
      config: lab.ctx.config,
      catalog: () => {
        opened.catalog++;
        return Catalog.open(lab.catalogPath);
      },
      vcenter: async () => {
        opened.vcenter++;
        return vc;
      },
      arrays: () => {
        opened.arrays++;
        return new Map([['array1', new MemoryArray({ name: 'array1', volumes: [] })]]);
      },
    });
    assert.deepEqual(await ctx.catalog.listMounts(), []);
    assert.deepEqual(opened, { catalog: 1, vcenter: 0, arrays: 0 });
    const [a, b] = await Promise.all([ctx.vcenter(), ctx.vcenter()]);
    assert.equal(a, vc);
    assert.equal(b, vc);
    assert.equal((await ctx.array('array1')).name, 'array1');
    await ctx.arrays();
    assert.deepEqual(opened, { catalog: 1, vcenter: 1, arrays: 1 });
    await assert.rejects(ctx.array('nope'), /array nope is not configured/);
    await ctx.close();
    assert.equal(vc.calls('logout'), 1);
  });

  it('a context that never used vCenter does not open it to close it', async () => {
    const lab = await startLab({ datacenters: [{ name: 'DC1', hosts: ['esx01'] }] });
    let connected = false;
    const ctx = new EngineContext({
      config: lab.ctx.config,
      catalog: () => Catalog.open(lab.catalogPath),
      vcenter: () => {
        connected = true;
        return new FakeVcenter();
      },
    });
    await ctx.close();
    assert.equal(connected, false);
  });
});

describe('the memory array as the files behind the datastores', () => {
  const array = () =>
    new MemoryArray({ name: 'm', volumes: [{ name: 'v', lun: 'naa.6000000000000000000000000000000a' }] });

  it('moves a directory within a volume, refusing an existing target and a move out of the volume', async () => {
    const a = array();
    const files = memoryExportFiles(a);
    a.writeFile('v', 'vm/disk.vmdk', 'x');
    a.mkdirPath('/memory/m/v/other');
    await assert.rejects(files.move('/memory/m/v/vm', '/memory/m/v/other'), /already exists/);
    await assert.rejects(files.move('/memory/m/v/vm', '/memory/m/.clones/c/v/vm'), /not a writable export/);
    await assert.rejects(files.move('/memory/m/v/none', '/memory/m/v/x'), /no file or directory/);
    await files.move('/memory/m/v/vm', '/memory/m/v/vm.old');
    assert.equal(await files.exists('/memory/m/v/vm'), false);
    assert.equal(a.readVolumeFile('v', 'vm.old/disk.vmdk').toString(), 'x');
  });

  it('writes new files only, lists a missing directory as empty, removes trees', async () => {
    const files = memoryExportFiles(array());
    await files.makeDirectory('/memory/m/v/a/b');
    await files.writeNewFile('/memory/m/v/a/b/f.vmdk', 'one');
    await assert.rejects(files.writeNewFile('/memory/m/v/a/b/f.vmdk', 'two'), /exists/);
    assert.deepEqual(await files.list('/memory/m/v/a/b'), ['f.vmdk']);
    assert.deepEqual(await files.list('/memory/m/v/none'), []);
    await files.remove('/memory/m/v/a');
    assert.equal(await files.exists('/memory/m/v/a'), false);
  });
});
