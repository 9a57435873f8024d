import type { DaemonStore, ScheduleState, TaskStore } from '../catalog/index.js';
import type { Config } from '../config/load.js';
import type { TaskConfig } from '../config/schema.js';
import { listTasks } from '../engine/index.js';
import { errorMessage } from '../errors.js';
import { nextRunAfter, scheduleDecision } from '../rules/index.js';
import type { Logger } from './log.js';

export interface SchedulerOptions {
  config: Config;
  catalog: TaskStore & Pick<DaemonStore, 'scheduleState' | 'saveScheduleStateAsLeader'>;
  log: Logger;
  /**
   * This daemon's leadership of the schedules when it holds it (instance and term), else undefined: only the
   * leader runs schedules, and each write it makes names its term (a deposed leader's write is refused).
   */
  leader: () => { instanceId: string; term: number } | undefined;
  /**
   * Called on a tick while this daemon is not the leader: a standby looks whether the leadership is free
   * (its leader stopped cleanly) and takes it, so that a handover waits for a tick, not a heartbeat.
   */
  standby?: () => Promise<void>;
  /**
   * Whether a run of the task is still going, on this daemon or another one of the catalog (then a due time is
   * skipped, and logged).
   */
  taskRunning: (task: string) => boolean | Promise<boolean>;
  /** Starts a run of the task; returns its job id. */
  runTask: (task: string) => Promise<string>;
  now?: () => Date;
  tickMs?: number;
}

/**
 * Runs task schedules, independent of HTTP. Every tick it asks the schedule rule, per task with a schedule,
 * whether a run is due since the instant the catalog says is handled; a due task runs once however many
 * due times passed while the daemon was down, and a task whose last run is still going is skipped. The
 * handled instant is saved before the run starts, so a crash right after never runs it twice.
 *
 * Only the schedules' leader ticks (several daemons may serve one catalog). Every write names the leader's
 * term and is refused once the term is over (`saveScheduleStateAsLeader`), and the write that records a
 * run as handled comes before the run starts: a deposed leader never starts a run its successor also
 * starts, and its successor, reading the handled instant from the catalog, runs a due time the old leader
 * did not record (missed during the handover) once.
 */
export class Scheduler {
  readonly #o: SchedulerOptions;
  readonly #now: () => Date;
  #timer: NodeJS.Timeout | undefined;
  #ticking: Promise<void> | undefined;

  constructor(options: SchedulerOptions) {
    this.#o = options;
    this.#now = options.now ?? (() => new Date());
  }

  start(): void {
    const every = this.#o.tickMs ?? 1000;
    const loop = () => {
      this.#ticking = this.tick().finally(() => {
        this.#ticking = undefined;
        if (this.#timer !== undefined) this.#timer = setTimeout(loop, every);
      });
    };
    this.#timer = setTimeout(loop, 0);
  }

  async stop(): Promise<void> {
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#timer = undefined;
    await this.#ticking;
  }

  /** The next due time of a task (undefined without a schedule). */
  nextRun(task: TaskConfig): Date | undefined {
    if (task.schedule === undefined) return undefined;
    try {
      return nextRunAfter(task.schedule, task.timezone, this.#now());
    } catch {
      return undefined;
    }
  }

  async tick(): Promise<void> {
    if (this.#o.leader() === undefined) {
      try {
        await this.#o.standby?.();
      } catch (err) {
        this.#o.log.error('schedule: cannot read the leadership', { reason: errorMessage(err) });
      }
      if (this.#o.leader() === undefined) return;
    }
    let tasks: TaskConfig[];
    try {
      tasks = (await listTasks(this.#o.config, this.#o.catalog)).map((e) => e.task);
    } catch (err) {
      this.#o.log.error('schedule: cannot list tasks', { reason: errorMessage(err) });
      return;
    }
    for (const task of tasks) {
      if (task.schedule === undefined) continue;
      try {
        await this.#tickTask(task, task.schedule);
      } catch (err) {
        this.#o.log.error('schedule: task not handled', { task: task.name, reason: errorMessage(err) });
      }
    }
  }

  /** Saves as leader; false (logged) when the leadership was lost meanwhile: the caller stops there. */
  async #save(state: ScheduleState): Promise<boolean> {
    const leader = this.#o.leader();
    const saved = leader !== undefined && (await this.#o.catalog.saveScheduleStateAsLeader(state, leader));
    if (!saved)
      this.#o.log.warn('schedule: leadership lost, task left to the new leader', { task: state.task });
    return saved;
  }

  async #tickTask(task: TaskConfig, pattern: string): Promise<void> {
    const now = this.#now();
    const state = await this.#o.catalog.scheduleState(task.name);
    const decision = scheduleDecision({
      pattern,
      ...(task.timezone !== undefined ? { timezone: task.timezone } : {}),
      ...(state ? { lastHandled: new Date(state.handledAt) } : {}),
      now,
    });
    if (decision.action === 'wait') return;
    const handledAt = now.toISOString();
    if (decision.action === 'baseline') {
      if (!(await this.#save({ task: task.name, handledAt }))) return;
      this.#o.log.info('schedule: task seen', { task: task.name, next: decision.next?.toISOString() });
      return;
    }
    if (await this.#o.taskRunning(task.name)) {
      if (!(await this.#save({ ...state, task: task.name, handledAt }))) return;
      this.#o.log.warn('schedule: run skipped, the previous run is still going', {
        task: task.name,
        dueAt: decision.dueAt.toISOString(),
      });
      return;
    }
    if (!(await this.#save({ ...state, task: task.name, handledAt, lastRunAt: handledAt }))) return;
    if (decision.missed > 0) {
      this.#o.log.warn('schedule: due times missed while the daemon was down, running once', {
        task: task.name,
        missed: decision.missed,
      });
    }
    const jobId = await this.#o.runTask(task.name);
    // Only the job's id, for the task's view: the run was recorded as handled before it started, so a
    // leadership lost in between changes nothing that matters.
    const leader = this.#o.leader();
    if (leader !== undefined)
      await this.#o.catalog.saveScheduleStateAsLeader(
        { task: task.name, handledAt, lastRunAt: handledAt, lastJobId: jobId },
        leader,
      );
    this.#o.log.info('schedule: run started', {
      task: task.name,
      dueAt: decision.dueAt.toISOString(),
      job: jobId,
    });
  }
}
