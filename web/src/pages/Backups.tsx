import { type FormEvent, useState } from 'react';
import { api } from '../api';
import { ErrorBox, Loading, StateBadge, useAsync } from '../components/common';
import { between, bytes, when } from '../format';
import { href, navigate } from '../router';
import { BACKUP_STATES } from '../types';

/** Backups per page; `#/backups?limit=N` (1 to 1000) changes it. */
const PAGE = 25;

function pageSize(params: URLSearchParams): number {
  const n = Number(params.get('limit'));
  return Number.isInteger(n) && n >= 1 && n <= 1000 ? n : PAGE;
}

/** A date input (YYYY-MM-DD, local) as the ISO instant of that day's start. */
function dayStart(d: string): string | undefined {
  if (!d) return undefined;
  const t = new Date(`${d}T00:00:00`);
  return Number.isNaN(t.getTime()) ? undefined : t.toISOString();
}

/** The list of backups, its filters in the address (`#/backups?task=…&vm=…`), paged by the API's cursor. */
export function Backups({ params }: { params: URLSearchParams }) {
  const task = params.get('task') ?? '';
  const vm = params.get('vm') ?? '';
  const state = params.get('state') ?? '';
  const since = params.get('since') ?? '';
  const until = params.get('until') ?? '';
  const limit = pageSize(params);
  // The cursors of the pages before this one, so "Previous" can go back.
  const [cursors, setCursors] = useState<string[]>([]);
  const cursor = cursors[cursors.length - 1];
  const key = `${task}|${vm}|${state}|${since}|${until}|${limit}`;
  const [lastKey, setLastKey] = useState(key);
  if (key !== lastKey) {
    setLastKey(key);
    setCursors([]);
  }
  const untilIso = until ? dayStart(until) : undefined;
  const { data, error, loading } = useAsync(
    () =>
      api.backups({
        task: task || undefined,
        vm: vm || undefined,
        state: state || undefined,
        since: dayStart(since),
        // `until` is a whole day here: up to the start of the next day (the API's bound is exclusive).
        until: untilIso ? new Date(new Date(untilIso).getTime() + 86_400_000).toISOString() : undefined,
        limit,
        cursor,
      }),
    [key, cursor],
  );
  const { data: tasks } = useAsync(() => api.tasks().catch(() => []), []);

  const [form, setForm] = useState({ task, vm, state, since, until });
  if (key !== lastKey) setForm({ task, vm, state, since, until });
  const apply = (e: FormEvent) => {
    e.preventDefault();
    const q = new URLSearchParams();
    for (const [k, v] of Object.entries(form)) if (v) q.set(k, v);
    const s = q.toString();
    navigate(`${href('backups')}${s ? `?${s}` : ''}`);
  };

  return (
    <>
      <div className="page-head">
        <h1 tabIndex={-1}>Backups</h1>
      </div>
      <form className="filters card" onSubmit={apply} aria-label="Filter backups">
        <div className="field">
          <label htmlFor="f-task">Task</label>
          <select id="f-task" value={form.task} onChange={(e) => setForm({ ...form, task: e.target.value })}>
            <option value="">all</option>
            <option value="adhoc">adhoc</option>
            {(tasks ?? []).map((t) => (
              <option key={t.name} value={t.name}>
                {t.name}
              </option>
            ))}
          </select>
        </div>
        <div className="field">
          <label htmlFor="f-vm">VM (name or glob)</label>
          <input id="f-vm" value={form.vm} onChange={(e) => setForm({ ...form, vm: e.target.value })} />
        </div>
        <div className="field">
          <label htmlFor="f-state">State</label>
          <select
            id="f-state"
            value={form.state}
            onChange={(e) => setForm({ ...form, state: e.target.value })}
          >
            <option value="">all</option>
            {BACKUP_STATES.map((s) => (
              <option key={s} value={s}>
                {s}
              </option>
            ))}
          </select>
        </div>
        <div className="field">
          <label htmlFor="f-since">From (date)</label>
          <input
            id="f-since"
            type="date"
            value={form.since}
            onChange={(e) => setForm({ ...form, since: e.target.value })}
          />
        </div>
        <div className="field">
          <label htmlFor="f-until">To (date, inclusive)</label>
          <input
            id="f-until"
            type="date"
            value={form.until}
            onChange={(e) => setForm({ ...form, until: e.target.value })}
          />
        </div>
        <div className="actions">
          <button type="submit" className="primary">
            Apply filters
          </button>
          <button
            type="button"
            onClick={() => {
              setForm({ task: '', vm: '', state: '', since: '', until: '' });
              navigate(href('backups'));
            }}
          >
            Clear
          </button>
        </div>
      </form>
      <ErrorBox error={error} />
      {!data && loading && <Loading what="backups" />}
      {data && (
        <>
          <table className="backups">
            <caption className="sr-only">Backups, newest first</caption>
            <thead>
              <tr>
                <th scope="col">Backup</th>
                <th scope="col">Task</th>
                <th scope="col">State</th>
                <th scope="col">Started</th>
                <th scope="col">Duration</th>
                <th scope="col">VMs</th>
                <th scope="col">Warnings</th>
                <th scope="col">Size</th>
                <th scope="col">Copies</th>
              </tr>
            </thead>
            <tbody>
              {data.items.length === 0 && (
                <tr>
                  <td colSpan={9} className="muted">
                    No backup matches.
                  </td>
                </tr>
              )}
              {data.items.map((b) => (
                <tr key={b.id} data-backup-id={b.id}>
                  <th scope="row">
                    <a href={href('backups', b.id)}>{b.id}</a>
                  </th>
                  <td>{b.task}</td>
                  <td>
                    <StateBadge state={b.state} />
                  </td>
                  <td>{when(b.startedAt)}</td>
                  <td>{between(b.startedAt, b.finishedAt)}</td>
                  <td>{b.vms.join(', ')}</td>
                  <td>{b.warnings > 0 ? <span className="badge warn-code">{b.warnings}</span> : '0'}</td>
                  <td>{bytes(b.bytes)}</td>
                  <td data-field="copies">
                    {(b.copies ?? [])
                      .flatMap((c) => (c.kind === 'array' ? (c.present ? ['array'] : []) : [c.name]))
                      .join(', ') || '–'}
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
          <nav className="pager" aria-label="Pages of backups">
            <button
              type="button"
              disabled={cursors.length === 0}
              onClick={() => setCursors(cursors.slice(0, -1))}
            >
              Previous page
            </button>
            <span>Page {cursors.length + 1}</span>
            <button
              type="button"
              disabled={!data.nextCursor}
              onClick={() => data.nextCursor && setCursors([...cursors, data.nextCursor])}
            >
              Next page
            </button>
          </nav>
        </>
      )}
    </>
  );
}
