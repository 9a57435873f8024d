import type { TaskStore } from '../catalog/index.js';
import type { Config } from '../config/load.js';
import type { TaskConfig } from '../config/schema.js';
import { ConflictError, NotFoundError } from '../errors.js';

export type TaskSource = 'config' | 'catalog';

export interface TaskEntry {
  task: TaskConfig;
  source: TaskSource;
}

/** Tasks from the configuration file (read-only) and those created from the CLI or API (in the catalog). */
export async function listTasks(config: Config, catalog: TaskStore): Promise<TaskEntry[]> {
  const fromConfig = config.tasks.map((task) => ({ task, source: 'config' as const }));
  const names = new Set(config.tasks.map((t) => t.name));
  const fromCatalog = (await catalog.listTasks())
    .filter((t) => !names.has(t.name))
    .map((task) => ({ task, source: 'catalog' as const }));
  return [...fromConfig, ...fromCatalog].sort((a, b) => a.task.name.localeCompare(b.task.name));
}

export async function findTask(config: Config, catalog: TaskStore, name: string): Promise<TaskEntry> {
  const entry = (await listTasks(config, catalog)).find((e) => e.task.name === name);
  if (!entry) throw new NotFoundError('TASK_NOT_FOUND', `no task named ${name} (see snapkeeper task list)`);
  return entry;
}

/** Refuses changes to tasks defined in the configuration file: that file is their source of truth. */
export function assertEditable(config: Config, name: string): void {
  if (config.tasks.some((t) => t.name === name)) {
    throw new ConflictError(
      'TASK_READ_ONLY',
      `task ${name} is defined in ${config.file}; change it there (only tasks created with task create can be edited here)`,
    );
  }
}
