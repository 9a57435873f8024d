import type { Command } from 'commander';
import { refuseRepeatedOptions } from '../options.js';
import { registerBackup } from './backup.js';
import { registerInit } from './init.js';
import { registerInventory } from './inventory.js';
import { registerLab } from './lab.js';
import { registerMaintenance } from './maintenance.js';
import { registerOffload } from './offload.js';
import { registerRepo } from './repo.js';
import { registerRestore } from './restore.js';
import type { Runner } from './runner.js';
import { registerServe } from './serve.js';
import { registerTask } from './task.js';
import { registerToken } from './token.js';
import { registerUser } from './user.js';
import { registerWorker } from './worker.js';

export type { Runner } from './runner.js';

/** Each command family lives in its own file and registers itself here. */
export function registerCommands(program: Command, run: Runner): void {
  registerInit(program, run);
  registerBackup(program, run);
  registerInventory(program, run);
  registerTask(program, run);
  registerMaintenance(program, run);
  registerLab(program, run);
  registerRestore(program, run);
  registerOffload(program, run);
  registerRepo(program, run);
  registerServe(program, run);
  registerToken(program, run);
  registerUser(program, run);
  registerWorker(program, run);
  refuseRepeatedOptions(program);
}
