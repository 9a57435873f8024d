import { type FormEvent, useState } from 'react';
import { errorText } from '../api';
import { BACKUP_MODES, type TaskConfig, type TaskSelection } from '../types';

const LISTS: Array<{ key: keyof TaskSelection; label: string }> = [
  { key: 'vms', label: 'VMs (names or globs)' },
  { key: 'folders', label: 'Folders' },
  { key: 'hosts', label: 'Hosts' },
  { key: 'clusters', label: 'Clusters' },
  { key: 'datastores', label: 'Datastores' },
  { key: 'datacenters', label: 'Datacenters' },
];

function splitList(s: string): string[] | undefined {
  const l = s
    .split(',')
    .map((x) => x.trim())
    .filter(Boolean);
  return l.length ? l : undefined;
}

function intOrUndef(s: string): number | undefined {
  if (!s.trim()) return undefined;
  return Number(s);
}

/**
 * Create or edit a catalog task. Fields the form does not show (exclusions, hooks, offload) are kept as they
 * were. The daemon validates the whole task with the same schema as the CLI and answers 400 naming what is
 * wrong; that message is shown as is.
 */
export function TaskForm({
  initial,
  isNew,
  onSave,
  onCancel,
}: {
  initial?: TaskConfig;
  isNew: boolean;
  onSave: (task: TaskConfig) => Promise<unknown>;
  onCancel: () => void;
}) {
  const [name, setName] = useState(initial?.name ?? '');
  const [description, setDescription] = useState(initial?.description ?? '');
  const [mode, setMode] = useState(initial?.mode ?? '');
  const [schedule, setSchedule] = useState(initial?.schedule ?? '');
  const [timezone, setTimezone] = useState(initial?.timezone ?? '');
  const [versions, setVersions] = useState(initial?.retention?.versions?.toString() ?? '');
  const [days, setDays] = useState(initial?.retention?.days?.toString() ?? '');
  const [onQuiesceFailure, setOnQuiesceFailure] = useState(initial?.onQuiesceFailure ?? '');
  const [lists, setLists] = useState<Record<string, string>>(() =>
    Object.fromEntries(LISTS.map((l) => [l.key, (initial?.select?.[l.key] ?? []).join(', ')])),
  );
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);

  const submit = (e: FormEvent) => {
    e.preventDefault();
    const select: TaskSelection = {};
    for (const l of LISTS) {
      const v = splitList(lists[l.key] ?? '');
      if (v) select[l.key] = v;
    }
    if (!name.trim()) return setError('The task needs a name.');
    if (Object.keys(select).length === 0)
      return setError('Select something: at least one VM, folder, host, cluster, datastore or datacenter.');
    const v = intOrUndef(versions);
    const d = intOrUndef(days);
    if (v !== undefined && !(Number.isInteger(v) && v > 0))
      return setError('Keep versions must be a whole number above 0.');
    if (d !== undefined && !(d > 0)) return setError('Keep days must be a number above 0.');
    const task: TaskConfig = { ...(initial ?? {}), name: name.trim(), select };
    for (const [k, val] of [
      ['description', description.trim()],
      ['mode', mode],
      ['schedule', schedule.trim()],
      ['timezone', timezone.trim()],
      ['onQuiesceFailure', onQuiesceFailure],
    ] as const) {
      if (val) (task as unknown as Record<string, unknown>)[k] = val;
      else delete (task as unknown as Record<string, unknown>)[k];
    }
    if (v !== undefined || d !== undefined) task.retention = { versions: v, days: d };
    else delete task.retention;
    if (task.retention) {
      if (task.retention.versions === undefined) delete task.retention.versions;
      if (task.retention.days === undefined) delete task.retention.days;
    }
    setBusy(true);
    setError(null);
    onSave(task).then(
      () => setBusy(false),
      (err: unknown) => {
        setBusy(false);
        setError(errorText(err));
      },
    );
  };

  return (
    <form className="form card" onSubmit={submit} aria-label={isNew ? 'New task' : `Edit task ${name}`}>
      <div className="field">
        <label htmlFor="tf-name">Name</label>
        <input
          id="tf-name"
          value={name}
          onChange={(e) => setName(e.target.value)}
          readOnly={!isNew}
          required
        />
      </div>
      <div className="field">
        <label htmlFor="tf-desc">Description</label>
        <input id="tf-desc" value={description} onChange={(e) => setDescription(e.target.value)} />
      </div>
      <fieldset>
        <legend>Selection (comma-separated; at least one)</legend>
        {LISTS.map((l) => (
          <div className="field" key={l.key}>
            <label htmlFor={`tf-sel-${l.key}`}>{l.label}</label>
            <input
              id={`tf-sel-${l.key}`}
              value={lists[l.key] ?? ''}
              onChange={(e) => setLists({ ...lists, [l.key]: e.target.value })}
            />
          </div>
        ))}
      </fieldset>
      <div className="field">
        <label htmlFor="tf-mode">Backup mode</label>
        <select id="tf-mode" value={mode} onChange={(e) => setMode(e.target.value)}>
          <option value="">(configuration default)</option>
          {BACKUP_MODES.map((m) => (
            <option key={m} value={m}>
              {m}
            </option>
          ))}
        </select>
      </div>
      <div className="field">
        <label htmlFor="tf-oqf">When the quiesce fails</label>
        <select id="tf-oqf" value={onQuiesceFailure} onChange={(e) => setOnQuiesceFailure(e.target.value)}>
          <option value="">(configuration default)</option>
          <option value="crash-consistent">crash-consistent: back up without quiesce, warn</option>
          <option value="fail">fail the VM</option>
        </select>
      </div>
      <div className="field">
        <label htmlFor="tf-schedule">Schedule (cron)</label>
        <input
          id="tf-schedule"
          value={schedule}
          placeholder="0 2 * * *"
          onChange={(e) => setSchedule(e.target.value)}
          aria-describedby="tf-schedule-help"
        />
        <small id="tf-schedule-help">Five or six cron fields; empty: run only on demand.</small>
      </div>
      <div className="field">
        <label htmlFor="tf-tz">Time zone</label>
        <input
          id="tf-tz"
          value={timezone}
          placeholder="Europe/Berlin"
          onChange={(e) => setTimezone(e.target.value)}
        />
      </div>
      <fieldset className="inline">
        <legend>Retention</legend>
        <label htmlFor="tf-versions">Keep versions</label>
        <input
          id="tf-versions"
          inputMode="numeric"
          value={versions}
          onChange={(e) => setVersions(e.target.value)}
        />
        <label htmlFor="tf-days">Keep days</label>
        <input id="tf-days" inputMode="decimal" value={days} onChange={(e) => setDays(e.target.value)} />
      </fieldset>
      {error && (
        <div className="error-box" role="alert">
          {error}
        </div>
      )}
      <div className="actions">
        <button type="submit" className="primary" disabled={busy}>
          {isNew ? 'Create task' : 'Save task'}
        </button>
        <button type="button" onClick={onCancel}>
          Cancel
        </button>
      </div>
    </form>
  );
}
