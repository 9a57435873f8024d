import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { UsageError } from '../../src/errors.js';
import { homeDatastore, labDiskKind, loadLabSpec, parseLabSpec } from '../../src/lab/spec.js';
import { STANDARD_SPEC, standardSpec } from '../helpers/lab.js';

/** Asserts that parsing fails with a UsageError naming the file and each expected `path: message` fragment. */
function assertInvalid(spec: unknown, ...expected: RegExp[]): void {
  assert.throws(
    () => parseLabSpec(spec, 'spec.json'),
    (err: unknown) => {
      assert.ok(err instanceof UsageError, `expected UsageError, got ${err}`);
      assert.equal(err.code, 'LAB_SPEC_INVALID');
      assert.equal(err.exitCode, 3);
      assert.match(err.message, /^invalid lab spec spec\.json:/);
      for (const re of expected) assert.match(err.message, re);
      return true;
    },
  );
}

describe('lab spec', () => {
  test('the standard fixture is valid, with defaults applied', async () => {
    const spec = parseLabSpec(await standardSpec(), 'standard.json');
    const dc = spec.datacenters[0]!;
    assert.deepEqual(
      dc.vms.map((v) => [v.name, v.power]),
      [
        ['web01', 'poweredOn'],
        ['db01', 'poweredOn'],
        ['app01', 'poweredOn'],
        ['off01', 'poweredOff'],
        ['susp01', 'suspended'],
      ],
    );
    const db01 = dc.vms.find((v) => v.name === 'db01')!;
    assert.deepEqual(db01.disks.map(labDiskKind), ['flat', 'rdm-physical', 'rdm-virtual']);
    assert.equal(homeDatastore(dc.vms.find((v) => v.name === 'app01')!), 'ds-b');
    assert.deepEqual(dc.vms.find((v) => v.name === 'app01')!.disks.map(labDiskKind), ['flat', 'independent']);
  });

  test('the example of SPEC section 7 is valid', () => {
    const spec = parseLabSpec(
      {
        datacenters: [
          {
            name: 'DC1',
            clusters: [{ name: 'Prod', hosts: ['esx01', 'esx02'] }],
            hosts: ['esx-standalone'],
            datastores: [
              { name: 'ds-a', capacityGB: 50 },
              { name: 'ds-b', capacityGB: 20 },
            ],
            vms: [
              {
                name: 'web01',
                host: 'esx01',
                power: 'poweredOn',
                datastore: 'ds-a',
                disks: [
                  { datastore: 'ds-a', sizeMB: 64 },
                  { datastore: 'ds-b', sizeMB: 32, mode: 'independent_persistent' },
                  { rdm: 'physical', lun: 'naa.600a0980383030534a3f463045727a71', sizeMB: 1024 },
                  { rdm: 'virtual', lun: 'naa.600a0980383030534a3f463045727a72', sizeMB: 1024 },
                ],
              },
            ],
          },
        ],
      },
      'x.json',
    );
    assert.equal(spec.datacenters[0]!.vms[0]!.disks.length, 4);
  });

  test('unknown fields are errors, at any depth', async () => {
    assertInvalid({ ...(await standardSpec()), extra: 1 }, /\(top level\): Unrecognized key: "extra"/);
    const s = await standardSpec();
    s.datacenters[0].vms[1].disks[1].shared = true;
    assertInvalid(s, /datacenters\[0\]\.vms\[1\]\.disks\[1\]: Unrecognized key: "shared"/);
    const t = await standardSpec();
    t.datacenters[0].vms[0].disks[0].size = 3;
    assertInvalid(t, /datacenters\[0\]\.vms\[0\]\.disks\[0\]: Unrecognized key: "size"/);
  });

  test('a VM on an undefined host or datastore is an error', async () => {
    const s = await standardSpec();
    s.datacenters[0].vms[0].host = 'esx99';
    s.datacenters[0].vms[1].datastore = 'ds-z';
    s.datacenters[0].vms[2].disks[1].datastore = 'ds-y';
    assertInvalid(
      s,
      /datacenters\[0\]\.vms\[0\]\.host: host esx99 is not defined/,
      /datacenters\[0\]\.vms\[1\]\.datastore: datastore ds-z is not defined/,
      /datacenters\[0\]\.vms\[2\]\.disks\[1\]\.datastore: datastore ds-y is not defined/,
    );
  });

  test('references must stay within the datacenter', async () => {
    const s = await standardSpec();
    s.datacenters.push({
      name: 'DC2',
      hosts: ['esx-dc2'],
      vms: [{ name: 'x01', host: 'esx01', datastore: 'ds-a', disks: [] }],
    });
    assertInvalid(s, /datacenters\[1\]\.vms\[0\]\.host: host esx01 is not defined in datacenter DC2/);
  });

  test('duplicate names are errors', async () => {
    const s = await standardSpec();
    s.datacenters[0].vms[1].name = 'web01';
    s.datacenters[0].hosts.push('esx01');
    s.datacenters[0].datastores.push({ name: 'ds-a', capacityGB: 1 });
    assertInvalid(
      s,
      /datacenters\[0\]\.vms\[1\]\.name: duplicate VM name web01 \(first at datacenters\[0\]\.vms\[0\]\.name\)/,
      /datacenters\[0\]\.hosts\[1\]: duplicate host name esx01/,
      /datacenters\[0\]\.datastores\[2\]\.name: duplicate datastore name ds-a/,
    );
  });

  test('an RDM LUN must be an NAA name and mapped once per VM', async () => {
    const s = await standardSpec();
    s.datacenters[0].vms[1].disks[1].lun = 'lun-1';
    assertInvalid(s, /datacenters\[0\]\.vms\[1\]\.disks\[1\]\.lun: must be an NAA canonical name/);
    const t = await standardSpec();
    t.datacenters[0].vms[1].disks[2].lun = t.datacenters[0].vms[1].disks[1].lun;
    assertInvalid(
      t,
      /datacenters\[0\]\.vms\[1\]\.disks\[2\]\.lun: LUN naa\.\w+ is already mapped by disks\[1\]/,
    );
    const u = await standardSpec();
    u.datacenters[0].vms[1].disks[1].rdm = 'raw';
    assertInvalid(u, /datacenters\[0\]\.vms\[1\]\.disks\[1\]\.rdm:/);
  });

  test('an RDM LUN name is "naa." and 16 or 32 hex digits', async () => {
    for (const bad of [
      'naa.1',
      'naa.600a0980383030534a3f463045727a7',
      'naa.600a0980383030534a3f463045727a711',
      'naa.600a09803830305g',
    ]) {
      const s = await standardSpec();
      s.datacenters[0].vms[1].disks[1].lun = bad;
      assertInvalid(
        s,
        /datacenters\[0\]\.vms\[1\]\.disks\[1\]\.lun: must be an NAA canonical name: "naa\." followed by 16 or 32 hex digits/,
      );
    }
    for (const good of ['naa.600A0980383030534A3F463045727A71', 'naa.5000c500a1b2c3d4']) {
      const s = await standardSpec();
      s.datacenters[0].vms[1].disks[1].lun = good;
      assert.equal(parseLabSpec(s, 'spec.json').datacenters[0]!.vms[1]!.disks.length, 3);
    }
  });

  test('one LUN mapped by two VMs must have one size', async () => {
    const s = await standardSpec();
    const lun = s.datacenters[0].vms[1].disks[1].lun;
    s.datacenters[0].vms[0].disks.push({
      rdm: 'virtual',
      lun: lun.toUpperCase().replace('NAA.', 'naa.'),
      sizeMB: 2048,
    });
    assertInvalid(
      s,
      /datacenters\[0\]\.vms\[1\]\.disks\[1\]\.sizeMB: LUN naa\.\w+ is 2048 MB at datacenters\[0\]\.vms\[0\]\.disks\[2\]: a LUN has one size/,
    );
    // The same LUN with the same size in two VMs (a shared RDM) is fine.
    const t = await standardSpec();
    t.datacenters[0].vms[0].disks.push({ ...t.datacenters[0].vms[1].disks[1] });
    assert.equal(parseLabSpec(t, 'spec.json').datacenters[0]!.vms[0]!.disks.length, 3);
  });

  test('the disks on a datastore must fit in its capacity', async () => {
    const s = await standardSpec();
    // ds-b is 20 GB (20480 MB); app01 and susp01 use 5 MB of it, so web01's disk on it may have 20475.
    s.datacenters[0].vms[0].disks[1].sizeMB = 20 * 1024 - 5 + 1;
    assertInvalid(
      s,
      /datacenters\[0\]\.datastores\[1\]\.capacityGB: the disks on datastore ds-b add up to 20481 MB, more than its 20 GB \(20480 MB\)/,
    );
    s.datacenters[0].vms[0].disks[1].sizeMB = 20 * 1024 - 5;
    assert.equal(parseLabSpec(s, 'spec.json').datacenters[0]!.datastores.length, 2, 'exactly full is fine');
    const t = {
      datacenters: [
        {
          name: 'DC',
          hosts: ['esx'],
          datastores: [{ name: 'ds', capacityGB: 1 }],
          vms: [
            // RDMs are LUNs of their own: they do not count against the datastore.
            {
              name: 'vm1',
              host: 'esx',
              disks: [
                { datastore: 'ds', sizeMB: 4096 },
                { rdm: 'physical', lun: 'naa.600a0980383030534a3f463045727a71', sizeMB: 8192 },
              ],
            },
          ],
        },
      ],
    };
    assertInvalid(
      t,
      /datacenters\[0\]\.datastores\[0\]\.capacityGB: the disks on datastore ds add up to 4096 MB/,
    );
  });

  test('a VM needs a home datastore', async () => {
    const s = await standardSpec();
    s.datacenters[0].vms[1] = {
      name: 'rdmonly',
      host: 'esx01',
      disks: [{ rdm: 'physical', lun: 'naa.600a0980383030534a3f463045727a79', sizeMB: 10 }],
    };
    assertInvalid(s, /datacenters\[0\]\.vms\[1\]: the VM needs a home datastore/);
  });

  test('wrong values name their path', async () => {
    const s = await standardSpec();
    s.datacenters[0].vms[3].power = 'on';
    s.datacenters[0].vms[0].disks[0].sizeMB = 1.5;
    s.datacenters[0].vms[0].disks[1].mode = 'fast';
    s.datacenters[0].datastores[0].capacityGB = -1;
    // VM names may hold `/` and `..` (issue 7: the lab must hold such names); control characters are refused.
    s.datacenters[0].vms[4].name = 'bad\u0007name';
    assertInvalid(
      s,
      /datacenters\[0\]\.vms\[3\]\.power:/,
      /datacenters\[0\]\.vms\[0\]\.disks\[0\]\.sizeMB: must be a whole number of MB/,
      /datacenters\[0\]\.vms\[0\]\.disks\[1\]\.mode:/,
      /datacenters\[0\]\.datastores\[0\]\.capacityGB:/,
      /datacenters\[0\]\.vms\[4\]\.name:/,
    );
    assertInvalid({ datacenters: [] }, /datacenters:/);
    assertInvalid(
      { datacenters: [{ name: 'DC1', datastores: [{ name: 'ds', capacityGB: 1 }] }] },
      /datacenters\[0\]\.hosts: datastores need at least one host/,
    );
  });

  test('loadLabSpec names the file for unreadable or non-JSON input', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'lab-spec-'));
    try {
      const bad = join(dir, 'bad.json');
      await writeFile(bad, '{ not json');
      await assert.rejects(loadLabSpec(bad), (err: unknown) => {
        assert.ok(err instanceof UsageError);
        assert.match(err.message, new RegExp(`invalid lab spec ${bad}: not valid JSON`));
        return true;
      });
      await assert.rejects(
        loadLabSpec(join(dir, 'missing.json')),
        /cannot read lab spec .*missing\.json: ENOENT/,
      );
      const good = join(dir, 'good.json');
      await writeFile(good, await readFile(STANDARD_SPEC, 'utf8'));
      assert.equal((await loadLabSpec(good)).datacenters[0]!.vms.length, 5);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
