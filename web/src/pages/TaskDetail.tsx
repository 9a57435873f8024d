import { useState } from 'react';
import { api, errorText } from '../api';
import { ErrorBox, Loading, Section, StateBadge, useAsync } from '../components/common';
import { RunTask } from '../components/RunTask';
import { TaskForm } from '../components/TaskForm';
import { when } from '../format';
import { can } from '../roles';
import { href, navigate } from '../router';
import type { Session, TaskConfig } from '../types';
import { selectionText } from './Tasks';

export function TaskDetail({ name, session }: { name: string; session: Session }) {
  const { data, error, loading, reload } = useAsync(() => api.task(name), [name]);
  const [editing, setEditing] = useState(false);
  const [actionError, setActionError] = useState<string | null>(null);
  const config: TaskConfig | undefined = data ? (data.config ?? (data as TaskConfig)) : undefined;
  const editable = data?.source === 'catalog' && can(session, 'admin');

  const remove = () => {
    if (!window.confirm(`Delete task ${name}? Its backups are kept.`)) return;
    api.deleteTask(name).then(
      () => navigate(href('tasks')),
      (e: unknown) => setActionError(errorText(e)),
    );
  };

  return (
    <>
      <div className="page-head">
        <h1 tabIndex={-1}>Task {name}</h1>
        <a href={href('tasks')}>All tasks</a>
      </div>
      <ErrorBox error={error ?? actionError} />
      {!data && loading && <Loading what="the task" />}
      {data && config && (
        <>
          {can(session, 'operator') && (
            <Section title="Run now">
              <RunTask task={name} onEnd={reload} />
            </Section>
          )}
          {editing ? (
            <TaskForm
              isNew={false}
              initial={config}
              onCancel={() => setEditing(false)}
              onSave={async (t) => {
                await api.updateTask(name, t);
                // Show the stored task, not the old one, when the form closes.
                await reload();
                setEditing(false);
              }}
            />
          ) : (
            <Section title="Configuration">
              <dl className="facts">
                <dt>Source</dt>
                <dd>
                  {data.source === 'config'
                    ? 'configuration file (read-only here; edit the YAML file)'
                    : (data.source ?? '–')}
                </dd>
                {config.description && (
                  <>
                    <dt>Description</dt>
                    <dd>{config.description}</dd>
                  </>
                )}
                <dt>Selection</dt>
                <dd>{selectionText(config.select)}</dd>
                {config.exclude && (
                  <>
                    <dt>Exclusions</dt>
                    <dd>
                      {selectionText(config.exclude)}
                      {config.exclude.disks?.map((r) => (
                        <div key={r.vm}>
                          disks of {r.vm}: {r.disks.join(', ')}
                        </div>
                      ))}
                    </dd>
                  </>
                )}
                <dt>Mode</dt>
                <dd>{config.mode ?? 'configuration default'}</dd>
                <dt>When the quiesce fails</dt>
                <dd>{config.onQuiesceFailure ?? 'configuration default'}</dd>
                <dt>Schedule</dt>
                <dd>
                  {config.schedule ? <code>{config.schedule}</code> : 'on demand only'}
                  {config.timezone && ` (${config.timezone})`}
                </dd>
                <dt>Next run</dt>
                <dd>{data.nextRun ? when(data.nextRun) : '–'}</dd>
                <dt>Retention</dt>
                <dd>
                  {config.retention
                    ? [
                        config.retention.versions !== undefined && `${config.retention.versions} versions`,
                        config.retention.days !== undefined && `${config.retention.days} days`,
                      ]
                        .filter(Boolean)
                        .join(', ')
                    : 'keep all'}
                </dd>
                <dt>Offload</dt>
                <dd>
                  {config.offload ? `to repository ${config.offload.repository}` : 'none (snapshot only)'}
                </dd>
                {config.hooks && config.hooks.length > 0 && (
                  <>
                    <dt>Hooks</dt>
                    <dd>{config.hooks.length}</dd>
                  </>
                )}
              </dl>
              <details>
                <summary>As JSON</summary>
                <pre>{JSON.stringify(config, null, 2)}</pre>
              </details>
              {editable && (
                <div className="actions">
                  <button type="button" onClick={() => setEditing(true)}>
                    Edit task
                  </button>
                  <button type="button" className="danger" onClick={remove}>
                    Delete task
                  </button>
                </div>
              )}
            </Section>
          )}
          <Section title="Last runs">
            {data.lastRuns && data.lastRuns.length > 0 ? (
              <ul>
                {data.lastRuns.map((r) => {
                  const id = 'id' in r && r.id ? r.id : 'backupId' in r ? r.backupId : '';
                  const warnings = Array.isArray(r.warnings) ? r.warnings.length : (r.warnings ?? 0);
                  return (
                    <li key={id}>
                      <a href={href('backups', id)}>{id}</a> {when(r.startedAt)}{' '}
                      <StateBadge state={r.state} />
                      {warnings > 0 && <span className="badge warn-code">{warnings} warnings</span>}
                    </li>
                  );
                })}
              </ul>
            ) : (
              <p>
                <a href={`${href('backups')}?task=${encodeURIComponent(name)}`}>Backups of {name}</a>
              </p>
            )}
          </Section>
        </>
      )}
    </>
  );
}
