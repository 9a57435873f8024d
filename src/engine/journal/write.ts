import type { JournalEntry, JournalStep, OperationJournal } from '../../catalog/index.js';
import { JOURNAL_SHAPES, type JournalAction, type JournalWrite, type TypedEntry } from './actions.js';

/**
 * Writing and reading the journal through the registry (actions.ts): the only way the engine journals, so
 * every action written has a name, a shape and a recovery.
 */

/** Appends an intent entry (committed before it returns) and returns its id. */
export function journal(
  catalog: Pick<OperationJournal, 'journal'>,
  operationId: string,
  entry: JournalWrite,
): Promise<number> {
  return catalog.journal(operationId, storedEntry(entry));
}

/** Appends several intent entries in one transaction (one sync to disk) and returns their ids. */
export function journalAll(
  catalog: Pick<OperationJournal, 'journalSteps'>,
  operationId: string,
  entries: readonly JournalWrite[],
): Promise<number[]> {
  return catalog.journalSteps(operationId, entries.map(storedEntry));
}

function storedEntry(entry: JournalWrite): JournalStep {
  return { action: entry.action, target: entry.target, data: { ...entry.data } };
}

/** Journals one step, runs it, completes the entry with its result data. */
export async function journalStep<T>(
  ctx: { catalog: Pick<OperationJournal, 'journal' | 'completeJournal'> },
  operationId: string,
  entry: JournalWrite,
  fn: (entryId: number) => Promise<T>,
  resultData?: (value: T) => Record<string, string | number | boolean>,
): Promise<T> {
  const id = await journal(ctx.catalog, operationId, entry);
  const value = await fn(id);
  await ctx.catalog.completeJournal(id, resultData ? resultData(value) : undefined);
  return value;
}

/** An operation's journal read back and checked; `problems` names every entry that is not what was written. */
export interface ReadJournal {
  entries: TypedEntry[];
  problems: string[];
}

export function readJournal(entries: readonly JournalEntry[]): ReadJournal {
  const out: ReadJournal = { entries: [], problems: [] };
  for (const e of entries) {
    const parsed = parseEntry(e);
    if (typeof parsed === 'string') out.problems.push(`journal entry ${e.id} (${e.action}): ${parsed}`);
    else out.entries.push(parsed);
  }
  return out;
}

/** One stored entry checked against its action's shape; a string says what is wrong with it. */
export function parseEntry(e: JournalEntry): TypedEntry | string {
  if (!Object.hasOwn(JOURNAL_SHAPES, e.action)) return 'an action this release does not know';
  const action = e.action as JournalAction;
  const result = JOURNAL_SHAPES[action].safeParse(e.data);
  if (!result.success) {
    return result.error.issues.map((i) => `${i.path.join('.') || 'data'}: ${i.message}`).join('; ');
  }
  return {
    id: e.id,
    action,
    target: e.target,
    data: result.data,
    ...(e.completedAt !== undefined ? { completedAt: e.completedAt } : {}),
  } as TypedEntry;
}
