import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, beforeEach, describe, it } from 'node:test';
import Database from 'better-sqlite3';
import { Catalog } from '../../src/catalog/index.js';
import { SnapkeeperError } from '../../src/errors.js';
import { web } from '../catalog/tasks.js';

const root = mkdtempSync(join(tmpdir(), 'snapkeeper-catalog-tasks-'));
after(() => rmSync(root, { recursive: true, force: true }));
let n = 0;
let catalog: Catalog;
beforeEach(() => {
  void catalog?.close();
  catalog = Catalog.create(join(root, `c${++n}.db`));
});
after(() => catalog?.close());

describe('SQLite catalog tasks', () => {
  it('validates on read: a task damaged in the file is reported, not returned', async () => {
    await catalog.createTask(web);
    const raw = new Database(catalog.path);
    raw
      .prepare('UPDATE tasks SET config = ? WHERE name = ?')
      .run(JSON.stringify({ name: 'web', mode: 'FAST' }), 'web');
    raw.close();
    await assert.rejects(
      async () => catalog.getTask('web'),
      (e: unknown) =>
        e instanceof SnapkeeperError && e.code === 'TASK_INVALID' && e.message.includes(catalog.path),
    );
    await assert.rejects(async () => catalog.listTasks(), { code: 'TASK_INVALID' });
  });
});
