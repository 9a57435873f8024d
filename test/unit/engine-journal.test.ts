import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, relative, resolve } from 'node:path';
import { after, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { Catalog } from '../../src/catalog/index.js';
import { JOURNAL_SHAPES, type JournalAction } from '../../src/engine/journal/actions.js';
import { BACKUP_ACTIONS, backupRecovery, journaledRecovery } from '../../src/engine/journal/recovery.js';
import { journal, journalAll, journalStep, parseEntry, readJournal } from '../../src/engine/journal/write.js';
import { attachDataOf, mountDataOf } from '../../src/engine/steps/mounts.js';

const repo = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
const engineSrc = join(repo, 'src', 'engine');
const root = mkdtempSync(join(tmpdir(), 'snapkeeper-engine-journal-'));
after(() => rmSync(root, { recursive: true, force: true }));
let n = 0;

/**
 * The names catalogs hold today. A name here never changes or goes away: a catalog written by an earlier
 * release must still be recovered by this one. Adding an action adds its name here.
 */
const STORED_NAMES = [
  'array-snapshot',
  'array.clone',
  'commit',
  'datastore.create',
  'delete-snapshot',
  'detach.begin',
  'dirs.swap',
  'files.place',
  'hook.run',
  'mount.record',
  'repository.offload',
  'suspend',
  'unmount.begin',
  'vm-snapshot',
  'vm.attach',
  'vm.create',
  'vm.power-off',
  'vm.power-on',
  'vm.reconfigure',
  'vm.unregister',
];

function sourceFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const path = join(dir, e.name);
    if (e.isDirectory()) return sourceFiles(path);
    return e.name.endsWith('.ts') ? [path] : [];
  });
}

describe('the journal registry', () => {
  const names = Object.keys(JOURNAL_SHAPES) as JournalAction[];

  it('keeps every stored name, each once', () => {
    assert.deepEqual([...names].sort(), STORED_NAMES);
    assert.equal(new Set(names).size, names.length);
  });

  it('gives every action exactly one recovery: undo, roll-forward, or none with its reason', () => {
    const missing: string[] = [];
    for (const name of names) {
      const inBackup = (BACKUP_ACTIONS as readonly string[]).includes(name);
      const table: Record<string, { kind: string; run?: unknown; why?: string } | undefined> = inBackup
        ? backupRecovery
        : journaledRecovery;
      const other: Record<string, unknown> = inBackup ? journaledRecovery : backupRecovery;
      const r = table[name];
      assert.equal(other[name], undefined, `${name} is recovered by one kind of operation only`);
      if (r === undefined) {
        missing.push(name);
        continue;
      }
      if (r.kind === 'none') assert.ok((r.why ?? '').length > 20, `${name}: none needs its reason`);
      else {
        assert.ok(r.kind === 'undo' || r.kind === 'roll-forward', `${name}: ${r.kind}`);
        assert.equal(typeof r.run, 'function', `${name}: its ${r.kind} runs something`);
      }
    }
    assert.deepEqual(missing, []);
    // And nothing recovers an action that does not exist.
    for (const name of [...Object.keys(backupRecovery), ...Object.keys(journaledRecovery)]) {
      assert.ok(names.includes(name as JournalAction), `${name} is a registered action`);
    }
  });

  it('is the only way the engine journals: no direct catalog.journal, every action literal registered', () => {
    const direct: string[] = [];
    const unknown: string[] = [];
    for (const file of sourceFiles(engineSrc)) {
      const text = readFileSync(file, 'utf8');
      const where = relative(repo, file);
      if (!where.endsWith(join('journal', 'write.ts')) && /\bcatalog\.journal\(/.test(text))
        direct.push(where);
      for (const m of text.matchAll(/\baction:\s*'([^']+)'/g)) {
        if (!names.includes(m[1] as JournalAction)) unknown.push(`${where}: ${m[1]}`);
      }
    }
    assert.deepEqual(direct, []);
    assert.deepEqual(unknown, []);
  });

  it('the compiler refuses an unregistered action or a wrong shape', () => {
    // Never run: these lines exist for tsc, which fails the build if one of them is accepted.
    const refused = (c: Catalog) => {
      // @ts-expect-error an action that is not in the registry
      void journal(c, 'op', { action: 'vm.destroy', target: 'vm-1' });
      // @ts-expect-error vm.create needs the vmxFile its undo finds the VM by
      void journal(c, 'op', { action: 'vm.create', target: 'vm-1', data: { name: 'x' } });
      // @ts-expect-error a batch entry is checked like a single one
      void journalAll(c, 'op', [{ action: 'vm.teleport', target: 'vm-1' }]);
    };
    assert.equal(typeof refused, 'function');
  });
});

describe('journal entries read back from a catalog', () => {
  it('parse into their typed data, results merged, as earlier releases wrote them', async () => {
    const c = Catalog.create(join(root, `c${++n}.db`));
    try {
      await c.beginOperation({ id: 'restore-20261125-081500-a1b2c3', kind: 'restore' });
      const op = 'restore-20261125-081500-a1b2c3';
      await journalStep(
        { catalog: c },
        op,
        { action: 'vm.create', target: 'web01', data: { name: 'web01', vmxFile: '[ds-a] web01/web01.vmx' } },
        async () => 'vm-42',
        (id) => ({ vmId: id }),
      );
      // Written directly, as a release before the registry did: the same stored form.
      await c.journal(op, { action: 'dirs.swap', target: 'web01', data: { pairs: [] } });
      await journal(c, op, { action: 'commit', target: 'web01' });
      const read = readJournal(await c.journalEntries(op));
      assert.deepEqual(read.problems, []);
      assert.deepEqual(
        read.entries.map((e) => e.action),
        ['vm.create', 'dirs.swap', 'commit'],
      );
      const created = read.entries[0]!;
      assert.ok(created.action === 'vm.create');
      assert.equal(created.data.vmId, 'vm-42');
      assert.equal(created.data.vmxFile, '[ds-a] web01/web01.vmx');
      assert.ok(created.completedAt !== undefined, 'the step was completed');
    } finally {
      await c.close();
    }
  });

  it("written as one batch (a backup's prepare phase) read back in order, typed", async () => {
    const c = Catalog.create(join(root, `c${++n}.db`));
    try {
      const op = '20261125-081500-0b1c2d';
      await c.beginOperation({ id: op, kind: 'backup' });
      const ids = await journalAll(c, op, [
        { action: 'vm-snapshot', target: 'vm-1', data: { vm: 'web01', name: 'snapkeeper-x' } },
        { action: 'suspend', target: 'vm-2', data: { vm: 'db01', name: 'snapkeeper-x' } },
      ]);
      assert.equal(ids.length, 2);
      const read = readJournal(await c.journalEntries(op));
      assert.deepEqual(read.problems, []);
      assert.deepEqual(
        read.entries.map((e) => [e.id, e.action, e.target, e.data.vm]),
        [
          [ids[0], 'vm-snapshot', 'vm-1', 'web01'],
          [ids[1], 'suspend', 'vm-2', 'db01'],
        ],
      );
    } finally {
      await c.close();
    }
  });

  it('are refused, naming the entry and the field, when they are not what was written', async () => {
    const c = Catalog.create(join(root, `c${++n}.db`));
    try {
      const op = 'restore-20261125-081500-d4e5f6';
      await c.beginOperation({ id: op, kind: 'restore' });
      await c.journal(op, { action: 'vm.unregister', target: 'vm-7', data: { wasOn: true } });
      await c.journal(op, { action: 'vm.teleport', target: 'vm-7' });
      await c.journal(op, { action: 'files.place', target: '/d', data: { dir: 42 } });
      const read = readJournal(await c.journalEntries(op));
      assert.equal(read.entries.length, 0);
      assert.equal(read.problems.length, 3);
      assert.match(read.problems[0]!, /vm\.unregister.*spec/);
      assert.match(read.problems[1]!, /vm\.teleport.*does not know/);
      assert.match(read.problems[2]!, /files\.place.*dir/);
      const [first] = await c.journalEntries(op);
      assert.equal(typeof parseEntry(first!), 'string');
    } finally {
      await c.close();
    }
  });
});

describe('mount and attach records read back', () => {
  const record = (data: Record<string, unknown>) => ({
    id: 'mount-20261125-081500-a1b2c3',
    backupId: '20261125-081500-a1b2c3',
    kind: 'datastore',
    data,
    createdAt: '2026-11-25T08:15:00.000Z',
  });

  it('parse as written, lists an earlier release left out read as empty', () => {
    const data = mountDataOf(record({ host: 'esx01', hostId: 'host-1' }));
    assert.deepEqual([data.host, data.hostId, data.datastores, data.clones], ['esx01', 'host-1', [], []]);
  });

  it('are refused, naming the record and the field, when damaged', () => {
    assert.throws(
      () => mountDataOf(record({ host: 'esx01', clones: [{ array: 'a1' }] })),
      (err: Error & { code?: string }) =>
        err.code === 'MOUNT_RECORD_INVALID' &&
        err.message.includes('mount-20261125-081500-a1b2c3') &&
        err.message.includes('hostId') &&
        err.message.includes('clones.0.cloneId'),
    );
    assert.throws(() => attachDataOf({ ...record({ targetVm: 'web01' }), kind: 'attach' }), /targetVmId/);
  });
});
