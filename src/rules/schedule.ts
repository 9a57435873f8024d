import { Cron } from 'croner';
import { RuleError } from './errors.js';

/**
 * When a scheduled task runs (`snapkeeper serve`): pure, the time is an argument. A task's schedule is a cron
 * pattern (croner's: 5 fields, or 6 with seconds first) read in its time zone (default: the host's).
 * The daemon keeps, per task, the instant up to which due times are handled; a decision looks at the due
 * times after that instant up to now.
 */
export interface ScheduleInput {
  pattern: string;
  /** IANA time zone the pattern is read in; absent: the host's. */
  timezone?: string;
  /** Due times at or before this instant are handled. Absent: the daemon sees this task for the first time. */
  lastHandled?: Date;
  now: Date;
}

export type ScheduleDecision =
  /**
   * First sight of the task: nothing is owed from before (a new daemon does not run every task at once);
   * the daemon records `now` as handled and waits for `next`.
   */
  | { action: 'baseline'; next: Date | undefined }
  /**
   * Due: run once now. `dueAt` is the latest due time at or before now; `missed` how many earlier due times
   * since `lastHandled` were not run (downtime): they are folded into this one run, never run one by one.
   */
  | { action: 'run'; dueAt: Date; missed: number; next: Date | undefined }
  /** Nothing due since `lastHandled` (or the clock went back before it): wait for `next`. */
  | { action: 'wait'; next: Date | undefined };

/** How many missed due times are counted at most (a years-old state of an every-second schedule). */
export const MISSED_COUNT_CAP = 10_000;

function cron(pattern: string, timezone: string | undefined): Cron {
  try {
    // croner checks a time zone only when it computes a date: Intl checks it here, once.
    if (timezone !== undefined) new Intl.DateTimeFormat('en', { timeZone: timezone });
    return new Cron(pattern, { paused: true, ...(timezone === undefined ? {} : { timezone }) });
  } catch (err) {
    throw new RuleError(
      'BAD_SCHEDULE',
      `invalid schedule ${JSON.stringify(pattern)}${timezone === undefined ? '' : ` in ${timezone}`}: ${err instanceof Error ? err.message : String(err)}`,
    );
  }
}

function checkDate(d: Date, what: string): void {
  if (Number.isNaN(d.getTime())) throw new RuleError('BAD_TIMESTAMP', `${what} is not a valid time`);
}

/** The first due time strictly after `after`; undefined when the pattern never fires again. */
export function nextRunAfter(pattern: string, timezone: string | undefined, after: Date): Date | undefined {
  checkDate(after, 'after');
  return cron(pattern, timezone).nextRun(after) ?? undefined;
}

/** What the scheduler does for one task at `now` (see ScheduleDecision). */
export function scheduleDecision(input: ScheduleInput): ScheduleDecision {
  checkDate(input.now, 'now');
  const job = cron(input.pattern, input.timezone);
  const next = (after: Date) => job.nextRun(after) ?? undefined;
  if (input.lastHandled === undefined) return { action: 'baseline', next: next(input.now) };
  checkDate(input.lastHandled, 'lastHandled');
  let due = next(input.lastHandled);
  if (due === undefined || due.getTime() > input.now.getTime()) {
    // A clock set back leaves lastHandled in the future: due times up to it were handled already.
    const from = input.lastHandled.getTime() > input.now.getTime() ? input.lastHandled : input.now;
    return { action: 'wait', next: next(from) };
  }
  let count = 1;
  for (;;) {
    const after = next(due);
    if (after === undefined || after.getTime() > input.now.getTime() || count >= MISSED_COUNT_CAP) break;
    due = after;
    count++;
  }
  return { action: 'run', dueAt: due, missed: count - 1, next: next(input.now) };
}
