import type { HookConfig } from '../../config/schema.js';
import { errorMessage } from '../../errors.js';
import type { BackupRecord, HookPhase, HookRecord } from '../../model/backup.js';
import type { EngineContext } from '../context.js';
import { journal } from '../journal/write.js';
import { hookEnvironment, runHook } from './hooks.js';

/**
 * A backup run's hooks (the task's `hooks`), phase by phase: each journaled (`hook.run`, with its process
 * group once it runs, so that recovery can kill it), recorded in `record.hooks`, and its failure either
 * stopping the run (before-prepare, onError fail) or becoming a HOOK_FAILED warning.
 */
export class BackupHooks {
  readonly #ctx: EngineContext;
  readonly #record: BackupRecord;
  readonly #hooks: readonly HookConfig[];
  readonly #vms: string[];

  constructor(ctx: EngineContext, record: BackupRecord, hooks: readonly HookConfig[] | undefined) {
    this.#ctx = ctx;
    this.#record = record;
    this.#hooks = hooks ?? [];
    this.#vms = record.vms.map((vm) => vm.name);
    if (this.#hooks.length > 0) record.hooks = [];
  }

  /**
   * Runs the hooks of `phase` in their order. Returns the message of the first that failed with onError
   * `fail` in before-prepare (the run must stop: no VM is touched); every other failure is a warning.
   */
  async run(phase: HookPhase): Promise<string | undefined> {
    for (const hook of this.#hooks.filter((h) => h.phase === phase)) {
      const result = await this.#runOne(hook);
      if (result.ok) continue;
      const message = `${phase} hook ${JSON.stringify(hook.run[0])} failed: ${result.error ?? 'failed'}`;
      if (phase === 'before-prepare' && hook.onError === 'fail') return message;
      this.#record.warnings.push({ code: 'HOOK_FAILED', message });
    }
    return undefined;
  }

  async #runOne(hook: HookConfig): Promise<HookRecord> {
    const ctx = this.#ctx;
    ctx.events.phase(`hook ${hook.phase}`);
    const env = hookEnvironment(hook, {
      backupId: this.#record.id,
      task: this.#record.task,
      vms: this.#vms,
      secrets: [ctx.config.vcenter.password.reveal()],
    });
    let entryId: number;
    try {
      entryId = await journal(ctx.catalog, this.#record.id, {
        action: 'hook.run',
        target: hook.phase,
        data: { run: hook.run },
      });
    } catch (err) {
      // A hook that recovery could not find must not run: it is a failed hook, like one that cannot start.
      const result = notRun(hook, ctx.now(), `not journaled: ${errorMessage(err)}`);
      this.#record.hooks?.push(result);
      return result;
    }
    const result = await runHook(
      hook,
      env,
      async (proc) => {
        // The process group, written the moment it exists: what recovery needs to end it after a crash.
        await ctx.catalog.completeJournal(entryId, { ...proc });
        await ctx.crashPoint(`hook-${hook.phase}`);
      },
      () => ctx.now(),
    );
    this.#record.hooks?.push(result);
    return result;
  }
}

function notRun(hook: HookConfig, at: Date, error: string): HookRecord {
  return {
    phase: hook.phase,
    run: [...hook.run],
    startedAt: at.toISOString(),
    ms: 0,
    exitCode: null,
    timedOut: false,
    ok: false,
    output: '',
    error,
  };
}
