import assert from 'node:assert/strict';
import { open, writeFile } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { openArray } from '../../src/arrays/index.js';
import { loadConfig } from '../../src/config/load.js';
import { EngineContext } from '../../src/engine/context.js';
import { openConfiguredRepository } from '../../src/engine/repository-access.js';
import { canMountLoopBtrfs } from '../../src/lab/loop-btrfs.js';
import type { BackupRecord } from '../../src/model/backup.js';
import { runCli } from '../helpers/cli.js';
import { editConfig, standardSpec, startLab, type TestLab } from '../helpers/lab.js';
import { isRoot } from '../helpers/require.js';

/**
 * Incremental forever on a btrfs array: after a 64 KiB change to one disk, the next offload reads only the
 * changed ranges the array reports (FIEMAP of the file in both snapshots), adds little, and the copy restores
 * exactly the bytes of the new array snapshot, as a full image.
 */

const btrfs = await canMountLoopBtrfs();
const needsSkip = !btrfs.ok && process.env.SNAPKEEPER_REQUIRE_ALL !== '1';

describe('incremental offload on a btrfs lab', {
  skip: needsSkip ? `btrfs lab unavailable: ${btrfs.reason}` : false,
}, () => {
  let lab: TestLab;
  const cli = (...args: string[]) => runCli(['--config', lab.configPath, '--json', ...args]);

  before(async () => {
    assert.ok(isRoot && btrfs.ok, `btrfs lab required (SNAPKEEPER_REQUIRE_ALL=1): ${btrfs.reason}`);
    lab = await startLab(await standardSpec(), { btrfs: true });
    await writeFile(join(lab.dir, 'repo.passphrase'), 'btrfs lab passphrase\n', { mode: 0o600 });
    await editConfig(lab.configPath, (doc) => {
      doc.repositories = [
        { name: 'local', type: 'local', path: 'offload-repository', passphraseFile: 'repo.passphrase' },
      ];
    });
    const init = await cli('repo', 'init', '--repository', 'local');
    assert.equal(init.code, 0, init.stdout + init.stderr);
  });
  after(async () => {
    await lab?.stop();
  });

  it('reads only the changed ranges after a small change, and the copy has the new snapshot bytes', async () => {
    const first = await cli('backup', '--vm', 'web01', '--offload', 'local');
    assert.equal(first.code, 0, first.stdout + first.stderr);
    const full = first.json.offload.result;

    // 64 KiB written in the middle of web01's first disk, on the live volume.
    const disk = lab.vm('web01').disks.find((d) => d.kind === 'flat')!;
    const f = await open(disk.path, 'r+');
    try {
      await f.write(Buffer.alloc(64 * 1024, 0x5a), 0, 64 * 1024, Math.floor((disk.sizeMB * 1024 * 1024) / 2));
      await f.sync();
    } finally {
      await f.close();
    }

    const second = await cli('backup', '--vm', 'web01', '--offload', 'local');
    assert.equal(second.code, 0, second.stdout + second.stderr);
    const inc = second.json.offload.result;
    const vm = inc.vms.find((v: { name: string }) => v.name === 'web01');
    const flat = vm.files.find((x: { path: string }) => x.path === basename(disk.path));
    assert.ok(flat, JSON.stringify(vm.files));
    assert.equal(flat.incrementalFrom, first.json.id);
    assert.ok(
      flat.bytesToRead < 1024 * 1024,
      `changed ranges of ${flat.bytesToRead} bytes after a 64 KiB write`,
    );
    assert.ok(inc.bytesRead < full.bytesRead / 4, `read ${inc.bytesRead} of ${full.bytesRead}`);
    assert.ok(inc.bytesAdded < full.bytesAdded / 4, `added ${inc.bytesAdded} of ${full.bytesAdded}`);

    // The copy restores as a full image: the bytes of the second array snapshot.
    const record = second.json as BackupRecord;
    const config = loadConfig(lab.configPath);
    const ctx = new EngineContext({ config });
    const { repository } = await openConfiguredRepository(ctx, 'local');
    try {
      const stored = (await repository.loadManifest(record.id)).body.vms
        .find((v) => v.name === 'web01')!
        .files.find((x) => x.path === flat.path)!;
      const restored = Buffer.alloc(stored.size);
      await repository.restoreFile(stored, { write: async (o, d) => void d.copy(restored, o) });
      const s = record.snapshots[0]!;
      const array = await openArray(config.arrays.find((a) => a.name === s.array)!);
      const parts: Buffer[] = [];
      for await (const c of await array.readFile(s.snapshotId, 'ds-a', `web01/${flat.path}`))
        parts.push(c as Buffer);
      assert.ok(
        restored.equals(Buffer.concat(parts)),
        'the incremental copy restores the new snapshot bytes',
      );
    } finally {
      await repository.close();
      await ctx.close();
    }
    const check = await cli('repo', 'check', '--repository', 'local', '--read-data');
    assert.equal(check.code, 0, check.stdout + check.stderr);
  });
});
