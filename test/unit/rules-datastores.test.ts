import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { Datastore } from '../../src/model/inventory.js';
import {
  type ArrayVolumes,
  datastorePathToRelative,
  formatDatastorePath,
  mapDatastoresToVolumes,
  normalizePath,
} from '../../src/rules/datastores.js';
import { RuleError } from '../../src/rules/errors.js';

function ds(name: string, url: string, extra: Partial<Datastore> = {}): Datastore {
  return {
    id: `datastore-${name}`,
    name,
    datacenter: 'DC1',
    url,
    type: 'OTHER',
    capacityBytes: 1 << 30,
    freeBytes: 1 << 29,
    extents: [],
    hosts: ['esx01'],
    ...extra,
  };
}
function vmfs(name: string, luns: string[]): Datastore {
  return ds(name, `ds:///vmfs/volumes/${name}-uuid/`, {
    type: 'VMFS',
    extents: luns.map((lun) => ({ lun })),
  });
}

const A: ArrayVolumes = {
  name: 'arr1',
  volumes: [
    { name: 'vol-a', path: '/srv/arr1/pool/vol-a', lun: 'naa.6aaa0001' },
    { name: 'vol-b', path: '/srv/arr1/pool/vol-b/', lun: 'naa.6AAA0002' },
    { name: 'vol-c', path: '/srv/arr1/pool/vol-c', lun: 'naa.6aaa0003' },
  ],
};
const B: ArrayVolumes = {
  name: 'arr2',
  volumes: [
    { name: 'vol-x', path: '/srv/arr2/pool/vol-x', lun: 'naa.6bbb0001' },
    // Nested inside vol-x's path: the deeper volume must win for datastores inside it.
    { name: 'vol-y', path: '/srv/arr2/pool/vol-x/inner', lun: 'naa.6bbb0002' },
  ],
};

describe('mapDatastoresToVolumes', () => {
  // datastore -> expected location or 'unmapped'
  const rows: [string, Datastore, { array: string; volumes: string[]; subPath: string } | 'unmapped'][] = [
    ['equal path', ds('d1', '/srv/arr1/pool/vol-a'), { array: 'arr1', volumes: ['vol-a'], subPath: '' }],
    ['trailing slash', ds('d2', '/srv/arr1/pool/vol-a/'), { array: 'arr1', volumes: ['vol-a'], subPath: '' }],
    [
      'volume path with slash',
      ds('d3', '/srv/arr1/pool/vol-b'),
      { array: 'arr1', volumes: ['vol-b'], subPath: '' },
    ],
    [
      'ds:// scheme',
      ds('d4', 'ds:///srv/arr1/pool/vol-c/'),
      { array: 'arr1', volumes: ['vol-c'], subPath: '' },
    ],
    [
      'file:// scheme',
      ds('d5', 'file:///srv/arr1/pool/vol-c'),
      { array: 'arr1', volumes: ['vol-c'], subPath: '' },
    ],
    [
      'upper-case scheme',
      ds('d5b', 'FILE:///srv/arr1/pool/vol-c'),
      { array: 'arr1', volumes: ['vol-c'], subPath: '' },
    ],
    [
      'inside a volume',
      ds('d6', '/srv/arr1/pool/vol-a/sub/dir//'),
      { array: 'arr1', volumes: ['vol-a'], subPath: 'sub/dir' },
    ],
    ['sibling prefix is not inside', ds('d7', '/srv/arr1/pool/vol-a2'), 'unmapped'],
    ['parent of a volume', ds('d8', '/srv/arr1/pool'), 'unmapped'],
    [
      'nested volumes: outer',
      ds('d9', '/srv/arr2/pool/vol-x/other'),
      { array: 'arr2', volumes: ['vol-x'], subPath: 'other' },
    ],
    [
      'nested volumes: inner',
      ds('d10', '/srv/arr2/pool/vol-x/inner/z'),
      { array: 'arr2', volumes: ['vol-y'], subPath: 'z' },
    ],
    ['unknown url', ds('d11', '/elsewhere'), 'unmapped'],
    ['empty url', ds('d12', ''), 'unmapped'],
    ['vmfs one extent', vmfs('v1', ['naa.6aaa0001']), { array: 'arr1', volumes: ['vol-a'], subPath: '' }],
    [
      'vmfs case-insensitive',
      vmfs('v2', ['NAA.6AAA0001', 'naa.6aaa0002']),
      { array: 'arr1', volumes: ['vol-a', 'vol-b'], subPath: '' },
    ],
    [
      'vmfs duplicate extents',
      vmfs('v3', ['naa.6aaa0003', 'naa.6aaa0003']),
      { array: 'arr1', volumes: ['vol-c'], subPath: '' },
    ],
    ['vmfs extents on two arrays', vmfs('v4', ['naa.6aaa0001', 'naa.6bbb0001']), 'unmapped'],
    ['vmfs one extent unknown', vmfs('v5', ['naa.6aaa0001', 'naa.6fff0000']), 'unmapped'],
    ['vmfs first extent unknown', vmfs('v6', ['naa.6fff0000', 'naa.6aaa0001']), 'unmapped'],
    ['vmfs no extent known', vmfs('v7', ['naa.6fff0000']), 'unmapped'],
    [
      'extents unknown, url known: url decides',
      ds('v8', '/srv/arr1/pool/vol-a', { type: 'VMFS', extents: [{ lun: 'naa.6fff0000' }] }),
      { array: 'arr1', volumes: ['vol-a'], subPath: '' },
    ],
    [
      'extents win over url',
      ds('v9', '/srv/arr1/pool/vol-a', { type: 'VMFS', extents: [{ lun: 'naa.6bbb0001' }] }),
      { array: 'arr2', volumes: ['vol-x'], subPath: '' },
    ],
  ];
  for (const [title, datastore, expected] of rows) {
    it(title, () => {
      const { mapped, unmapped } = mapDatastoresToVolumes([datastore], [A, B]);
      if (expected === 'unmapped') {
        assert.deepEqual(unmapped, [datastore.name]);
        assert.equal(mapped.size, 0);
      } else {
        assert.deepEqual(unmapped, []);
        assert.deepEqual(mapped.get(datastore.name), expected);
      }
    });
  }

  it('explicit configuration comes first and takes the subPath from the url', () => {
    const explicitA: ArrayVolumes = {
      ...A,
      explicit: { 'ds-odd': ['vol-c', 'vol-a', 'vol-c'], 'ds-in': ['vol-a'] },
    };
    const { mapped, unmapped } = mapDatastoresToVolumes(
      [
        vmfs('ds-odd', ['naa.6bbb0001']),
        ds('ds-in', '/srv/arr1/pool/vol-a/x'),
        ds('ds-gone', '/nowhere'),
        ds('d1', '/srv/arr2/pool/vol-x'),
      ],
      [explicitA, B],
    );
    assert.deepEqual(mapped.get('ds-odd'), { array: 'arr1', volumes: ['vol-c', 'vol-a'], subPath: '' });
    assert.deepEqual(mapped.get('ds-in'), { array: 'arr1', volumes: ['vol-a'], subPath: 'x' });
    assert.deepEqual(mapped.get('d1'), { array: 'arr2', volumes: ['vol-x'], subPath: '' });
    assert.deepEqual(unmapped, ['ds-gone']);
  });

  it('explicit entries for datastores not in the inventory are ignored', () => {
    const { mapped } = mapDatastoresToVolumes([], [{ ...A, explicit: { ghost: ['vol-a'] } }]);
    assert.equal(mapped.size, 0);
  });

  const invalid: [string, ArrayVolumes[], RegExp][] = [
    [
      'unknown volume',
      [{ ...A, explicit: { d: ['vol-a', 'nope'] } }],
      /volume\(s\) nope that array arr1 does not have/,
    ],
    [
      'two arrays',
      [
        { ...A, explicit: { d: ['vol-a'] } },
        { ...B, explicit: { d: ['vol-x'] } },
      ],
      /on two arrays: arr1 and arr2/,
    ],
    ['no volumes', [{ ...A, explicit: { d: [] } }], /with no volumes/],
  ];
  for (const [title, arrays, message] of invalid) {
    it(`explicit configuration refused: ${title}`, () => {
      assert.throws(
        () => mapDatastoresToVolumes([ds('d', '/x')], arrays),
        (err: unknown) =>
          err instanceof RuleError && err.code === 'DATASTORE_MAPPING_INVALID' && message.test(err.message),
      );
    });
  }

  it('keeps unmapped datastores in input order and maps many at once', () => {
    const { mapped, unmapped } = mapDatastoresToVolumes(
      [ds('z', '/q'), ds('a', '/srv/arr1/pool/vol-a'), ds('m', '/r'), vmfs('b', ['naa.6bbb0002'])],
      [A, B],
    );
    assert.deepEqual(unmapped, ['z', 'm']);
    assert.deepEqual([...mapped.keys()], ['a', 'b']);
    assert.deepEqual(mapped.get('b'), { array: 'arr2', volumes: ['vol-y'], subPath: '' });
  });

  it('nested volume paths resolve to the deepest volume whatever the listing order', () => {
    const outer = { name: 'outer', path: '/p/o', lun: 'naa.1' };
    const inner = { name: 'inner', path: '/p/o/i', lun: 'naa.2' };
    for (const volumes of [
      [outer, inner],
      [inner, outer],
    ]) {
      for (const arrays of [[{ name: 'r', volumes }], volumes.map((v) => ({ name: v.name, volumes: [v] }))]) {
        const { mapped } = mapDatastoresToVolumes([ds('d', '/p/o/i/x'), ds('e', '/p/o/j')], arrays);
        assert.deepEqual(mapped.get('d')?.volumes, ['inner']);
        assert.equal(mapped.get('d')?.subPath, 'x');
        assert.deepEqual(mapped.get('e')?.volumes, ['outer']);
      }
    }
  });

  it('a volume at / does not swallow every datastore', () => {
    const root: ArrayVolumes = { name: 'r', volumes: [{ name: 'root', path: '/', lun: 'naa.1' }] };
    assert.deepEqual(mapDatastoresToVolumes([ds('d', '/any/where')], [root]).unmapped, ['d']);
  });
});

describe('normalizePath', () => {
  const rows: [string, string][] = [
    ['/a/b/', '/a/b'],
    ['/a//b///', '/a/b'],
    ['/a/./b', '/a/b'],
    ['/a/b/../c', '/a/c'],
    ['/../a', '/a'],
    ['/', '/'],
    ['a/b/', 'a/b'],
    ['../a', '../a'],
    ['', ''],
  ];
  for (const [input, expected] of rows)
    it(`${JSON.stringify(input)} -> ${expected}`, () => assert.equal(normalizePath(input), expected));
});

describe('datastorePathToRelative', () => {
  const good: [string, string, string][] = [
    ['[ds-a] web01/web01.vmdk', 'ds-a', 'web01/web01.vmdk'],
    ['[ds-a]web01/web01.vmdk', 'ds-a', 'web01/web01.vmdk'],
    ['[ds a] web 01/web 01.vmdk', 'ds a', 'web 01/web 01.vmdk'],
    ['[ds-a] /web01//./web01.vmx', 'ds-a', 'web01/web01.vmx'],
    ['[ds-a]', 'ds-a', ''],
    ['[ds-a] ', 'ds-a', ''],
    ['[ds-a] web01/', 'ds-a', 'web01'],
  ];
  for (const [input, datastore, path] of good) {
    it(`${JSON.stringify(input)} -> ${datastore} + ${JSON.stringify(path)}`, () => {
      assert.deepEqual(datastorePathToRelative(input), { datastore, path });
    });
  }
  const bad: [string, RegExp][] = [
    ['ds-a/web01.vmdk', /expected "\[datastore\] relative\/path"/],
    ['', /expected/],
    ['[] web01.vmdk', /empty datastore name/],
    ['[  ] web01.vmdk', /empty datastore name/],
    ['[ds-a web01.vmdk', /expected/],
    [' [ds-a] x', /expected/],
    ['[ds-a] ../etc/passwd', /contains "\.\."/],
    ['[ds-a] web01/../../x', /contains "\.\."/],
    ['[ds-a] web\u0000.vmdk', /NUL/],
  ];
  for (const [input, message] of bad) {
    it(`refuses ${JSON.stringify(input)}`, () => {
      assert.throws(
        () => datastorePathToRelative(input),
        (err: unknown) =>
          err instanceof RuleError &&
          err.code === 'BAD_DATASTORE_PATH' &&
          message.test(err.message) &&
          err.message.includes(JSON.stringify(input)),
      );
    });
  }
  it('formatDatastorePath is the inverse', () => {
    for (const p of ['[ds-a] web01/web01.vmdk', '[ds-a]']) {
      const { datastore, path } = datastorePathToRelative(p);
      assert.equal(formatDatastorePath(datastore, path), p);
    }
  });
});
