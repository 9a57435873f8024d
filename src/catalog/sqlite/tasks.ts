import type { TaskConfig } from '../../config/schema.js';
import { taskSchema } from '../../config/schema.js';
import { ConflictError, SnapkeeperError } from '../../errors.js';
import { taskNotFound } from '../errors.js';
import type { TaskStore } from '../types.js';
import { issuesText, validTask } from '../validate.js';
import type { SqliteDatabase } from './database.js';

/** Tasks created from the CLI, validated with `taskSchema` on write and on read. */
export class SqliteTaskStore implements TaskStore {
  constructor(readonly db: SqliteDatabase) {}

  async createTask(task: TaskConfig): Promise<void> {
    const valid = validTask(task);
    this.db.write(() => {
      if (this.db.get('SELECT 1 FROM tasks WHERE name = ?', valid.name)) {
        throw new ConflictError('TASK_EXISTS', `task ${valid.name} already exists in the catalog`);
      }
      const now = this.db.stamp();
      this.db.run(
        'INSERT INTO tasks (name, config, created_at, updated_at) VALUES (?, ?, ?, ?)',
        valid.name,
        JSON.stringify(valid),
        now,
        now,
      );
    });
  }

  async updateTask(task: TaskConfig): Promise<void> {
    const valid = validTask(task);
    const changed = this.db.write(() =>
      this.db.run(
        'UPDATE tasks SET config = ?, updated_at = ? WHERE name = ?',
        JSON.stringify(valid),
        this.db.stamp(),
        valid.name,
      ),
    );
    if (changed === 0) throw taskNotFound(valid.name);
  }

  async deleteTask(name: string): Promise<void> {
    const changed = this.db.write(() => this.db.run('DELETE FROM tasks WHERE name = ?', name));
    if (changed === 0) throw taskNotFound(name);
  }

  async getTask(name: string): Promise<TaskConfig> {
    const task = this.#find(name);
    if (!task) throw taskNotFound(name);
    return task;
  }

  async findTask(name: string): Promise<TaskConfig | undefined> {
    return this.#find(name);
  }

  async listTasks(): Promise<TaskConfig[]> {
    return this.db
      .all<{ name: string; config: string }>('SELECT name, config FROM tasks ORDER BY name')
      .map((r) => this.#stored(r.name, r.config));
  }

  #find(name: string): TaskConfig | undefined {
    const row = this.db.get<{ config: string }>('SELECT config FROM tasks WHERE name = ?', name);
    return row ? this.#stored(name, row.config) : undefined;
  }

  #stored(name: string, json: string): TaskConfig {
    const parsed = taskSchema.safeParse(this.db.parse<unknown>(json, `task ${name}`));
    if (!parsed.success) {
      throw new SnapkeeperError(
        'TASK_INVALID',
        `task ${name} stored in catalog ${this.db.path} is invalid: ${issuesText(parsed.error.issues)}`,
      );
    }
    return parsed.data;
  }
}
