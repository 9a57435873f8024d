import assert from 'node:assert/strict';
import { cp, open, readdir, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { labDiskChunk } from '../../src/lab/diskdata.js';
import { verifyLabVm } from '../../src/lab/index.js';
import { canMountLoopBtrfs } from '../../src/lab/loop-btrfs.js';
import { type CliRun, runCli, runJson } from '../helpers/cli.js';
import { editConfig, startLab, type TestLab } from '../helpers/lab.js';
import { isRoot } from '../helpers/require.js';

/**
 * Restore from a repository on the lab, end to end through the CLI as a user runs it: a backup offloaded to
 * the lab's local repository `lab` comes back byte for byte as a new VM, as a single disk into another VM and
 * as files; after `delete` removed the backup and its array snapshot; with a new, empty catalog (the backup
 * server was lost) from an id `repo backups` lists; and a corrupt or missing pack stops the restore naming the
 * chunk, leaving nothing behind. As root the array is a loop-mounted btrfs image (as in production); without
 * root the copy driver (the restore path does not depend on the array's driver: it reads no snapshot).
 */

const btrfs = isRoot ? await canMountLoopBtrfs() : { ok: false, reason: 'not root' };

const SPEC = {
  datacenters: [
    {
      name: 'DC1',
      hosts: ['esx01'],
      datastores: [
        { name: 'ds-a', capacityGB: 10 },
        { name: 'ds-b', capacityGB: 10 },
      ],
      vms: [
        {
          name: 'web01',
          host: 'esx01',
          disks: [
            { datastore: 'ds-a', sizeMB: 24 },
            { datastore: 'ds-b', sizeMB: 8 },
          ],
        },
        { name: 'app01', host: 'esx01', power: 'poweredOff', disks: [{ datastore: 'ds-b', sizeMB: 4 }] },
      ],
    },
  ],
};

const MiB = 1024 * 1024;

function ok(r: CliRun, what: string, codes = [0]): CliRun {
  assert.ok(codes.includes(r.code ?? -1), `${what}: exit ${r.code}\n${r.stdout}\n${r.stderr}`);
  return r;
}

/** Every disk of `vm` holds the bytes `specVm` had when the lab came up. */
async function assertVerified(lab: TestLab, specVm: string, vm: string): Promise<void> {
  const disks = await verifyLabVm(lab.dir, specVm, vm);
  assert.ok(disks.length > 0, `${vm} has disks`);
  for (const d of disks) assert.ok(d.ok, `${vm} ${d.label} differs at ${d.firstDifference}`);
}

/** A restored flat file holds disk `index` of `vm` as the lab made it. */
async function assertFlat(path: string, vm: string, index: number, size: number): Promise<void> {
  assert.equal((await stat(path)).size, size);
  const f = await open(path, 'r');
  try {
    const buf = Buffer.alloc(size);
    await f.read(buf, 0, size, 0);
    assert.ok(buf.equals(labDiskChunk(vm, index, 0, size)), `${path} holds ${vm}'s disk ${index}`);
  } finally {
    await f.close();
  }
}

/** Every file below `dir`, recursively. */
async function filesBelow(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const e of await readdir(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) out.push(...(await filesBelow(p)));
    else out.push(p);
  }
  return out.sort();
}

describe(`restore from a repository on the lab (${btrfs.ok ? 'btrfs' : 'copy driver'})`, () => {
  let lab: TestLab;
  let backupId: string;
  const cli = (...args: string[]) => runJson(lab.configPath, ...args);
  /** `restore --backup ID --vm web01 --as AS --source repository ...more` under configuration `config`. */
  const restoreWeb01 = (config: string, id: string, as: string, ...more: string[]) =>
    runJson(
      config,
      'restore',
      '--backup',
      id,
      '--vm',
      'web01',
      '--as',
      as,
      '--source',
      'repository',
      ...more,
    );

  before(async () => {
    lab = await startLab(SPEC, { btrfs: btrfs.ok });
    const backup = ok(await cli('backup', '--vm', 'web01', 'app01'), 'backup');
    backupId = backup.json.id;
    ok(await cli('offload', '--backup', backupId, '--repository', 'lab'), 'offload');
  });
  after(async () => {
    await lab?.stop();
  });

  it('as a new VM, byte for byte: copied from the repository, not cloned', async () => {
    const r = ok(await restoreWeb01(lab.configPath, backupId, 'web01-r'), 'restore');
    assert.equal(r.json.source, 'repository');
    assert.equal(r.json.repository, 'lab');
    assert.equal(r.json.cloned, false);
    assert.equal(r.json.bytes, 32 * MiB);
    await assertVerified(lab, 'web01', 'web01-r');
  });

  it('a single disk into another VM, and disk files only', async () => {
    const one = ok(
      await cli(
        'restore',
        '--backup',
        backupId,
        '--vm',
        'web01',
        '--disk',
        'Hard disk 2',
        '--to',
        'app01',
        '--source',
        'repository',
        '--repository',
        'lab',
      ),
      'restore --disk --to',
    );
    assert.equal(one.json.mode, 'disks');
    await assertFlat(one.json.disks[0].path.replace(/\.vmdk$/, '-flat.vmdk'), 'web01', 1, 8 * MiB);
    const files = ok(
      await cli(
        'restore',
        '--backup',
        backupId,
        '--vm',
        'web01',
        '--disk',
        'Hard disk 1',
        '--files-only',
        '--datastore',
        'ds-b',
        '--source',
        'repository',
      ),
      'restore --files-only',
    );
    await assertFlat(files.json.disks[0].path.replace(/\.vmdk$/, '-flat.vmdk'), 'web01', 0, 24 * MiB);
  });

  it('bad input is refused with exit 3 naming what is wrong, nothing changed', async () => {
    const restore = (...more: string[]) =>
      cli('restore', '--backup', backupId, '--vm', 'web01', '--as', 'web01-b', ...more);
    const cases: [string[], string, RegExp][] = [
      [
        ['--source', 'tape'],
        'INVALID_SOURCE',
        /--source "tape" is not a restore source: use array .* or repository/,
      ],
      [['--repository', 'lab'], 'RESTORE_MODE', /--repository needs --source repository/],
      [
        ['--source', 'repository', '--repository', 'nope'],
        'REPOSITORY_UNKNOWN',
        /repository nope is not configured .*repositories: lab/,
      ],
    ];
    for (const [args, code, message] of cases) {
      const r = await restore(...args);
      assert.equal(r.code, 3, `${args.join(' ')}: ${r.stdout}`);
      assert.equal(r.json.error.code, code);
      assert.match(r.json.error.message, message);
    }
    const unknown = await cli(
      'restore',
      '--backup',
      '20200101-000000-abcdef',
      '--vm',
      'web01',
      '--as',
      'web01-b',
      '--source',
      'repository',
    );
    assert.equal(unknown.code, 3, unknown.stdout);
    assert.equal(unknown.json.error.code, 'REPOSITORY_BACKUP_NOT_FOUND');
    await assertNothingRestored('web01-b');
  });

  it('killed after the files were written: recover removes them', async () => {
    const r = await runCli(
      [
        '--config',
        lab.configPath,
        '--json',
        'restore',
        '--backup',
        backupId,
        '--vm',
        'web01',
        '--as',
        'web01-k',
        '--source',
        'repository',
      ],
      { env: { SNAPKEEPER_CRASH_AT: 'restore-files-placed' } },
    );
    assert.equal(r.signal, 'SIGKILL', r.stderr);
    const dir = join(lab.state.arrayPath, 'pool', 'ds-a', 'web01-k');
    assert.ok(await stat(dir).catch(() => undefined), 'the killed restore left its files');
    // The lease of a killed process on this host is over at once (its pid is dead).
    const recovered = ok(await cli('recover'), 'recover', [0, 1]);
    assert.deepEqual(recovered.json.errors ?? [], []);
    await assertNothingRestored('web01-k');
  });

  it('a corrupt pack: CHUNK_CORRUPT naming the chunk, exit 2, the target holds nothing', async () => {
    const broken = await brokenCopy('corrupt', async (packs) => {
      for (const p of packs) {
        const f = await open(p, 'r+');
        try {
          const size = (await f.stat()).size;
          const b = Buffer.alloc(1);
          await f.read(b, 0, 1, Math.floor(size / 2));
          b[0] = b[0]! ^ 0x10;
          await f.write(b, 0, 1, Math.floor(size / 2));
        } finally {
          await f.close();
        }
      }
    });
    const r = await restoreWeb01(broken, backupId, 'web01-x', '--repository', 'broken');
    assert.equal(r.code, 2, r.stdout);
    assert.equal(r.json.error.code, 'CHUNK_CORRUPT');
    assert.match(r.json.error.message, /chunk [0-9a-f]+/);
    await assertNothingRestored('web01-x');
  });

  it('a missing pack: CHUNK_MISSING, exit 2, the target holds nothing', async () => {
    const broken = await brokenCopy('missing', async (packs) => {
      for (const p of packs) await rm(p);
    });
    const r = await restoreWeb01(broken, backupId, 'web01-y', '--repository', 'broken');
    assert.equal(r.code, 2, r.stdout);
    assert.equal(r.json.error.code, 'CHUNK_MISSING');
    await assertNothingRestored('web01-y');
  });

  it('after delete removed the backup and its array snapshot', async () => {
    ok(await cli('delete', '--backup', backupId), 'delete');
    const array = ok(
      await cli('restore', '--backup', backupId, '--vm', 'web01', '--as', 'web01-z'),
      'array',
      [3],
    );
    assert.equal(array.json.error.code, 'BACKUP_NOT_FOUND');
    ok(await restoreWeb01(lab.configPath, backupId, 'web01-d'), 'restore after delete');
    await assertVerified(lab, 'web01', 'web01-d');
  });

  it('with a new, empty catalog: repo backups lists the copy, restore takes its id', async () => {
    const fresh = await editConfig(
      lab.configPath,
      (doc) => {
        doc.catalog.path = 'fresh-catalog.db';
      },
      join(lab.dir, 'fresh.yaml'),
    );
    ok(await runJson(fresh, 'catalog', 'create'), 'catalog create');
    ok(await runJson(fresh, 'inquire'), 'inquire');
    assert.deepEqual((await runJson(fresh, 'inquire')).json, []);
    const listed = ok(await runJson(fresh, 'repo', 'backups', '--repository', 'lab'), 'repo backups');
    const entry = (listed.json.backups ?? listed.json).find(
      (b: { backupId: string }) => b.backupId === backupId,
    );
    assert.ok(entry, `repo backups lists ${backupId}: ${listed.stdout}`);
    ok(await restoreWeb01(fresh, entry.id, 'web01-n'), 'restore from a fresh catalog');
    await assertVerified(lab, 'web01', 'web01-n');
    await rm(join(lab.dir, 'fresh-catalog.db'), { force: true });
  });

  /**
   * A copy of the lab's repository, damaged by `damage(packs)`, configured as repository `broken` in a copy of
   * the configuration; returns that configuration's path. The lab's own repository stays intact.
   */
  async function brokenCopy(name: string, damage: (packs: string[]) => Promise<void>): Promise<string> {
    const dir = join(lab.dir, `repository-${name}`);
    await cp(join(lab.dir, 'repository'), dir, { recursive: true });
    const packs = (await filesBelow(dir)).filter((p) => p.includes('/packs/'));
    assert.ok(packs.length > 0, 'the repository has packs');
    await damage(packs);
    return editConfig(
      lab.configPath,
      (doc) => {
        doc.repositories = [{ ...doc.repositories[0], name: 'broken', path: `repository-${name}` }];
      },
      join(lab.dir, `${name}.yaml`),
    );
  }

  async function assertNothingRestored(vm: string): Promise<void> {
    const inventory = ok(await cli('inventory'), 'inventory');
    assert.deepEqual(
      inventory.json.vms.filter((v: { name: string }) => v.name === vm),
      [],
      `no VM ${vm}`,
    );
    for (const ds of ['ds-a', 'ds-b']) {
      const dir = join(lab.state.arrayPath, 'pool', ds, vm);
      assert.equal(await stat(dir).catch(() => undefined), undefined, `${dir} was removed`);
    }
    const recover = ok(await cli('recover', '--dry-run'), 'recover --dry-run');
    assert.deepEqual(recover.json.errors ?? [], []);
  }
});
