import { useState } from 'react';
import { api } from '../api';
import { ErrorBox, Loading, StateBadge, useAsync } from '../components/common';
import { TaskForm } from '../components/TaskForm';
import { when } from '../format';
import { can } from '../roles';
import { href, navigate } from '../router';
import type { Session, TaskSelection } from '../types';

export function selectionText(s: TaskSelection | undefined): string {
  if (!s) return '–';
  return Object.entries(s)
    .filter(([, v]) => Array.isArray(v) && v.length > 0)
    .map(([k, v]) => `${k}: ${(v as string[]).join(', ')}`)
    .join('; ');
}

export function Tasks({ session }: { session: Session }) {
  const { data, error, loading, reload } = useAsync(() => api.tasks(), []);
  const [creating, setCreating] = useState(false);
  return (
    <>
      <div className="page-head">
        <h1 tabIndex={-1}>Tasks</h1>
        {can(session, 'admin') && !creating && (
          <button type="button" onClick={() => setCreating(true)}>
            New task
          </button>
        )}
      </div>
      {creating && (
        <TaskForm
          isNew
          onCancel={() => setCreating(false)}
          onSave={async (t) => {
            await api.createTask(t);
            setCreating(false);
            void reload();
            navigate(href('tasks', t.name));
          }}
        />
      )}
      <ErrorBox error={error} />
      {!data && loading && <Loading what="tasks" />}
      {data && (
        <table>
          <thead>
            <tr>
              <th scope="col">Task</th>
              <th scope="col">Source</th>
              <th scope="col">Schedule</th>
              <th scope="col">Next run</th>
              <th scope="col">Last run</th>
              <th scope="col">State</th>
            </tr>
          </thead>
          <tbody>
            {data.map((t) => (
              <tr key={t.name}>
                <th scope="row">
                  <a href={href('tasks', t.name)}>{t.name}</a>
                </th>
                <td>{t.source ?? '–'}</td>
                <td>
                  {t.schedule ? <code>{t.schedule}</code> : <span className="muted">on demand</span>}
                  {t.timezone && <span className="muted"> ({t.timezone})</span>}
                </td>
                <td>{t.nextRun ? when(t.nextRun) : '–'}</td>
                <td>
                  {t.lastRun ? (
                    <a href={href('backups', t.lastRun.backupId)}>{when(t.lastRun.startedAt)}</a>
                  ) : (
                    <span className="muted">never</span>
                  )}
                </td>
                <td>
                  {t.running ? (
                    <StateBadge state="running" />
                  ) : t.lastRun ? (
                    <StateBadge state={t.lastRun.state} />
                  ) : (
                    '–'
                  )}
                  {t.lastRun?.warnings && t.lastRun.warnings.length > 0 && (
                    <span className="badge warn-code">
                      {[...new Set(t.lastRun.warnings.map((w) => w.code))].join(', ')}
                    </span>
                  )}
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </>
  );
}
