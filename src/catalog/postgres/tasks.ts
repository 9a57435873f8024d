import type { TaskConfig } from '../../config/schema.js';
import { taskSchema } from '../../config/schema.js';
import { ConflictError, SnapkeeperError } from '../../errors.js';
import { taskNotFound } from '../errors.js';
import type { TaskStore } from '../types.js';
import { issuesText, validTask } from '../validate.js';
import type { PostgresDatabase } from './database.js';

/** Tasks created from the CLI, validated with `taskSchema` on write and on read. */
export class PostgresTaskStore implements TaskStore {
  constructor(readonly db: PostgresDatabase) {}

  async createTask(task: TaskConfig): Promise<void> {
    const valid = validTask(task);
    await this.db.write(async (q) => {
      const now = await this.db.stamp(q);
      const inserted = await q.query(
        `INSERT INTO tasks (name, config, created_at, updated_at) VALUES ($1, $2, $3, $3)
         ON CONFLICT (name) DO NOTHING`,
        [valid.name, JSON.stringify(valid), now],
      );
      if (inserted.rowCount === 0) {
        throw new ConflictError('TASK_EXISTS', `task ${valid.name} already exists in the catalog`);
      }
    });
  }

  async updateTask(task: TaskConfig): Promise<void> {
    const valid = validTask(task);
    const changed = await this.db.write(async (q) => {
      const now = await this.db.stamp(q);
      return (
        await q.query('UPDATE tasks SET config = $1, updated_at = $2 WHERE name = $3', [
          JSON.stringify(valid),
          now,
          valid.name,
        ])
      ).rowCount;
    });
    if (changed === 0) throw taskNotFound(valid.name);
  }

  async deleteTask(name: string): Promise<void> {
    const changed = await this.db.run('DELETE FROM tasks WHERE name = $1', [name]);
    if (changed === 0) throw taskNotFound(name);
  }

  async getTask(name: string): Promise<TaskConfig> {
    const task = await this.findTask(name);
    if (!task) throw taskNotFound(name);
    return task;
  }

  async findTask(name: string): Promise<TaskConfig | undefined> {
    const row = await this.db.get<{ config: string }>('SELECT config FROM tasks WHERE name = $1', [name]);
    return row ? this.#stored(name, row.config) : undefined;
  }

  async listTasks(): Promise<TaskConfig[]> {
    const rows = await this.db.all<{ name: string; config: string }>(
      'SELECT name, config FROM tasks ORDER BY name',
    );
    return rows.map((r) => this.#stored(r.name, r.config));
  }

  #stored(name: string, json: string): TaskConfig {
    const parsed = taskSchema.safeParse(this.db.parse<unknown>(json, `task ${name}`));
    if (!parsed.success) {
      throw new SnapkeeperError(
        'TASK_INVALID',
        `task ${name} stored in catalog ${this.db.location} is invalid: ${issuesText(parsed.error.issues)}`,
      );
    }
    return parsed.data;
  }
}
