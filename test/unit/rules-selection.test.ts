import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { Selection } from '../../src/config/schema.js';
import type { Inventory, Vm } from '../../src/model/inventory.js';
import {
  describeSelection,
  describeUnmatched,
  matchesPattern,
  matchGlob,
  selectVms,
  unmatchedCriteria,
} from '../../src/rules/selection.js';

interface VmSpec {
  dc?: string;
  host: string;
  cluster?: string;
  folder?: string;
  home: string;
  disks?: string[];
  extra?: string[];
}

function makeVm(name: string, s: VmSpec): Vm {
  const vm: Vm = {
    id: `vm-${name}-${s.dc ?? 'DC1'}`,
    name,
    instanceUuid: `uuid-${name}`,
    powerState: 'poweredOn',
    datacenter: s.dc ?? 'DC1',
    host: s.host,
    folder: s.folder ?? '',
    vmxFile: `[${s.home}] ${name}/${name}.vmx`,
    homeDatastore: s.home,
    datastores: [s.home, ...(s.extra ?? [])],
    snapshots: [],
    disks: (s.disks ?? []).map((ds, i) => ({
      key: 2000 + i,
      label: `Hard disk ${i + 1}`,
      kind: 'flat',
      capacityBytes: 1,
      file: `[${ds}] ${name}/${name}_${i}.vmdk`,
      datastore: ds,
      diskMode: 'persistent',
    })),
  };
  if (s.cluster !== undefined) vm.cluster = s.cluster;
  return vm;
}

// Inventory: DC1 with cluster Prod (esx01, esx02) and standalone esx03; DC2 with cluster Dev (esx11).
const INVENTORY: Inventory = {
  datacenters: [
    { id: 'dc1', name: 'DC1' },
    { id: 'dc2', name: 'DC2' },
  ],
  clusters: [
    { id: 'c1', name: 'Prod', datacenter: 'DC1' },
    { id: 'c2', name: 'Dev', datacenter: 'DC2' },
  ],
  hosts: [
    { id: 'h1', name: 'esx01', datacenter: 'DC1', cluster: 'Prod' },
    { id: 'h2', name: 'esx02', datacenter: 'DC1', cluster: 'Prod' },
    { id: 'h3', name: 'esx03', datacenter: 'DC1' },
    { id: 'h11', name: 'esx11', datacenter: 'DC2', cluster: 'Dev' },
  ],
  folders: [],
  datastores: [],
  // Deliberately unsorted; web02 leaves its cluster blank so the host's cluster must be used.
  vms: [
    makeVm('web02', { host: 'esx02', folder: 'prod/web', home: 'ds-a' }),
    makeVm('web01', {
      host: 'esx01',
      cluster: 'Prod',
      folder: 'prod/web',
      home: 'ds-a',
      disks: ['ds-a', 'ds-b'],
    }),
    makeVm('db01', { host: 'esx01', cluster: 'Prod', folder: 'prod/db', home: 'ds-c', extra: ['ds-d'] }),
    makeVm('Web03', { host: 'esx03', folder: 'production', home: 'ds-e' }),
    makeVm('.hidden', { host: 'esx03', folder: '', home: 'ds-e' }),
    makeVm('test[1]', { host: 'esx03', folder: 'test', home: 'ds-e' }),
    makeVm('dev01', { dc: 'DC2', host: 'esx11', cluster: 'Dev', folder: 'prod/web', home: 'ds-z' }),
  ],
};

const names = (vms: Vm[]) => vms.map((v) => `${v.name}${v.datacenter === 'DC2' ? '@DC2' : ''}`);

describe('selectVms', () => {
  const rows: [string, Selection, Selection | undefined, string[]][] = [
    ['empty selection', {}, undefined, []],
    ['empty lists', { vms: [], hosts: [] }, undefined, []],
    ['one name', { vms: ['web01'] }, undefined, ['web01']],
    ['unknown name', { vms: ['nope'] }, undefined, []],
    [
      '* matches all, dot names too',
      { vms: ['*'] },
      undefined,
      ['.hidden', 'Web03', 'db01', 'dev01@DC2', 'test[1]', 'web01', 'web02'],
    ],
    ['glob is case-sensitive', { vms: ['web*'] }, undefined, ['web01', 'web02']],
    ['upper-case glob', { vms: ['W*'] }, undefined, ['Web03']],
    ['brace and class globs', { vms: ['{db,dev}0[1-9]'] }, undefined, ['db01', 'dev01@DC2']],
    ['literal name with glob characters', { vms: ['test[1]'] }, undefined, ['test[1]']],
    ['two names, one twice', { vms: ['web01', 'web01', 'db01'] }, undefined, ['db01', 'web01']],
    ['folder and below', { folders: ['prod'] }, undefined, ['db01', 'dev01@DC2', 'web01', 'web02']],
    ['folder with slashes', { folders: ['/prod/web/'] }, undefined, ['dev01@DC2', 'web01', 'web02']],
    ['folder prefix is not a parent', { folders: ['prod/we'] }, undefined, []],
    ['folder glob', { folders: ['prod*'] }, undefined, ['Web03', 'db01', 'dev01@DC2', 'web01', 'web02']],
    ['folder glob one level', { folders: ['prod/*'] }, undefined, ['db01', 'dev01@DC2', 'web01', 'web02']],
    [
      'root folder holds all',
      { folders: ['/'] },
      undefined,
      ['.hidden', 'Web03', 'db01', 'dev01@DC2', 'test[1]', 'web01', 'web02'],
    ],
    ['host', { hosts: ['esx01'] }, undefined, ['db01', 'web01']],
    ['host glob', { hosts: ['esx0?'] }, undefined, ['.hidden', 'Web03', 'db01', 'test[1]', 'web01', 'web02']],
    ['cluster, also through the host', { clusters: ['Prod'] }, undefined, ['db01', 'web01', 'web02']],
    ['cluster other dc', { clusters: ['Dev'] }, undefined, ['dev01@DC2']],
    ['datastore of a disk', { datastores: ['ds-b'] }, undefined, ['web01']],
    ['datastore of the list', { datastores: ['ds-d'] }, undefined, ['db01']],
    ['datastore home', { datastores: ['ds-e'] }, undefined, ['.hidden', 'Web03', 'test[1]']],
    ['datacenter', { datacenters: ['DC2'] }, undefined, ['dev01@DC2']],
    [
      'any criterion (union)',
      { vms: ['db01'], hosts: ['esx03'] },
      undefined,
      ['.hidden', 'Web03', 'db01', 'test[1]'],
    ],
    ['exclusion by name', { clusters: ['Prod'] }, { vms: ['web0*'] }, ['db01']],
    ['exclusion by folder', { vms: ['*'] }, { folders: ['prod'] }, ['.hidden', 'Web03', 'test[1]']],
    [
      'exclusion by datastore',
      { datacenters: ['DC1'] },
      { datastores: ['ds-e', 'ds-c'] },
      ['web01', 'web02'],
    ],
    ['exclusion by datacenter', { folders: ['prod/web'] }, { datacenters: ['DC2'] }, ['web01', 'web02']],
    ['empty exclusion subtracts nothing', { hosts: ['esx01'] }, {}, ['db01', 'web01']],
    ['exclude everything', { vms: ['*'] }, { vms: ['*'] }, []],
  ];
  for (const [title, select, exclude, expected] of rows) {
    it(title, () => assert.deepEqual(names(selectVms(INVENTORY, select, exclude)), expected));
  }

  it('same name in two datacenters: both, ordered by datacenter', () => {
    const inv: Inventory = {
      ...INVENTORY,
      vms: [
        makeVm('app', { dc: 'DC2', host: 'esx11', home: 'x' }),
        makeVm('app', { host: 'esx01', home: 'y' }),
      ],
    };
    assert.deepEqual(
      selectVms(inv, { vms: ['app'] }).map((v) => v.id),
      ['vm-app-DC1', 'vm-app-DC2'],
    );
  });

  it('a VM listed twice in the inventory is returned once', () => {
    const web = makeVm('web', { host: 'esx01', home: 'a' });
    assert.equal(selectVms({ ...INVENTORY, vms: [web, web] }, { vms: ['*'] }).length, 1);
  });
});

describe('matchGlob / matchesPattern', () => {
  const all = ['web01', 'web02', 'db01', 'web01', '.x', 'a/b'];
  const rows: [string, string[]][] = [
    ['web*', ['web01', 'web02']],
    // `*` matches every VM name, `/` included (issue 7: names are not paths).
    ['*', ['web01', 'web02', 'db01', '.x', 'a/b']],
    ['db01', ['db01']],
    ['WEB*', []],
    ['a/b', ['a/b']],
    ['?eb0[2]', ['web02']],
  ];
  for (const [pattern, expected] of rows) {
    it(`${pattern} -> ${expected.join(',') || 'nothing'}`, () =>
      assert.deepEqual(matchGlob(all, pattern), expected));
  }
  it('matchesPattern', () => {
    assert.equal(matchesPattern('web01', 'web0?'), true);
    assert.equal(matchesPattern('web10', 'web0?'), false);
    assert.equal(matchesPattern('x(1)', 'x(1)'), true);
  });
});

describe('describeSelection', () => {
  const rows: [Selection, Selection | undefined, string][] = [
    [{}, undefined, 'nothing'],
    [{ vms: ['web*', 'db01'] }, undefined, 'vms web*, db01'],
    [
      { folders: ['prod'], vms: ['a'], datacenters: ['DC1'] },
      undefined,
      'vms a; folders prod; datacenters DC1',
    ],
    [{ hosts: ['esx01'] }, { vms: ['test*'], clusters: [] }, 'hosts esx01; excluding vms test*'],
    [{ clusters: ['Prod'] }, {}, 'clusters Prod'],
    [{}, { datastores: ['ds-a'] }, 'nothing; excluding datastores ds-a'],
  ];
  for (const [select, exclude, expected] of rows) {
    it(expected, () => assert.equal(describeSelection(select, exclude), expected));
  }
});

describe('names that are not paths: * matches them all', () => {
  const odd = [
    'a b',
    'a/b',
    '..',
    '.',
    '.hidden',
    'x/../y',
    'web%2f01',
    '100%',
    'a\\b',
    ' lead',
    '-dash',
    '*',
    '[x]',
  ];
  const inv: Inventory = { ...INVENTORY, vms: odd.map((n) => makeVm(n, { host: 'esx03', home: 'ds-e' })) };
  it('* selects every VM whatever its name', () => {
    assert.deepEqual(
      selectVms(inv, { vms: ['*'] }).map((v) => v.name),
      [...odd].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0)),
    );
  });
  const rows: [string, string, boolean][] = [
    ['a/b', 'a/*', true],
    ['a/b', 'a?b', true],
    ['a/b', 'a/b', true],
    ['axb', 'a/b', false],
    ['..', '?.', true],
    ['x/../y', 'x*y', true],
    ['web%2f01', 'web*', true],
    ['.hidden', '?hidden', true],
    ['a b', 'a*', true],
    ['ab', '.*', false],
  ];
  for (const [name, pattern, expected] of rows) {
    it(`${JSON.stringify(name)} ${expected ? 'matches' : 'does not match'} ${pattern}`, () =>
      assert.equal(matchesPattern(name, pattern), expected));
  }
  it('folder globs keep / as the separator', () => {
    assert.deepEqual(names(selectVms(INVENTORY, { folders: ['prod/w*'] })), ['dev01@DC2', 'web01', 'web02']);
    assert.deepEqual(names(selectVms(INVENTORY, { folders: ['p*b'] })), []);
  });
});

describe('unmatchedCriteria', () => {
  const rows: [string, Selection, string][] = [
    ['everything matches', { vms: ['web01', 'db*'], hosts: ['esx01'] }, ''],
    ['a typo among names', { vms: ['web01', 'webO1-typo'] }, 'vms webO1-typo'],
    ['a glob matching nothing', { vms: ['zz*', 'web*'] }, 'vms zz*'],
    ['a name given twice is reported once', { vms: ['nope', 'nope'] }, 'vms nope'],
    [
      'every criterion',
      {
        vms: ['x'],
        folders: ['prod/nope'],
        hosts: ['esx9'],
        clusters: ['Nope'],
        datastores: ['ds-q'],
        datacenters: ['DC9'],
      },
      'vms x; folders prod/nope; hosts esx9; clusters Nope; datastores ds-q; datacenters DC9',
    ],
    ['the root folder always matches', { folders: ['/'] }, ''],
    ['cluster through the host', { clusters: ['Prod'] }, ''],
    ['empty selection', {}, ''],
  ];
  for (const [title, select, expected] of rows) {
    it(title, () => assert.equal(describeUnmatched(unmatchedCriteria(INVENTORY, select)), expected));
  }
  it('an excluded VM still counts as matched: the name exists', () => {
    assert.deepEqual(unmatchedCriteria(INVENTORY, { vms: ['web01'] }), []);
    assert.deepEqual(selectVms(INVENTORY, { vms: ['web01'] }, { vms: ['web01'] }), []);
  });
  it('names each unmatched pattern with its criterion', () => {
    assert.deepEqual(unmatchedCriteria(INVENTORY, { vms: ['web01', 'b'], hosts: ['h'] }), [
      { criterion: 'vms', pattern: 'b' },
      { criterion: 'hosts', pattern: 'h' },
    ]);
  });
});
