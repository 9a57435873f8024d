import { useEffect } from 'react';
import { api } from '../api';
import { ErrorBox, Loading, Section, StateBadge, useAsync } from '../components/common';
import { bytes, when } from '../format';
import { href } from '../router';

export function Dashboard() {
  const { data, error, loading, reload } = useAsync(() => api.dashboard(), []);
  const events = useAsync(() => api.events(15), []);

  // While jobs run, read the dashboard again every 5 s so their end shows up without a reload.
  const running = data?.running?.length ?? 0;
  useEffect(() => {
    if (!running) return;
    const t = setInterval(reload, 5000);
    return () => clearInterval(t);
  }, [running, reload]);

  return (
    <>
      <div className="page-head">
        <h1 tabIndex={-1}>Dashboard</h1>
        <button
          type="button"
          onClick={() => {
            void reload();
            void events.reload();
          }}
          disabled={loading}
        >
          Refresh
        </button>
      </div>
      <ErrorBox error={error} />
      {!data && loading && <Loading what="the dashboard" />}
      {data && (
        <>
          <Section title="Tasks: last run and next run">
            {data.tasks.length === 0 ? (
              <p className="muted">No task is configured.</p>
            ) : (
              <table>
                <thead>
                  <tr>
                    <th scope="col">Task</th>
                    <th scope="col">Last run</th>
                    <th scope="col">State</th>
                    <th scope="col">Warnings</th>
                    <th scope="col">Next run</th>
                  </tr>
                </thead>
                <tbody>
                  {data.tasks.map((t) => (
                    <tr key={t.name}>
                      <th scope="row">
                        <a href={href('tasks', t.name)}>{t.name}</a>
                      </th>
                      <td>
                        {t.lastRun ? (
                          <a href={href('backups', t.lastRun.backupId)}>{when(t.lastRun.startedAt)}</a>
                        ) : (
                          <span className="muted">never</span>
                        )}
                      </td>
                      <td>{t.lastRun ? <StateBadge state={t.lastRun.state} /> : '–'}</td>
                      <td>
                        {t.lastRun?.warnings?.length ? (
                          <ul className="codes">
                            {[...new Set(t.lastRun.warnings.map((w) => w.code))].map((c) => (
                              <li key={c} className="badge warn-code">
                                {c}
                              </li>
                            ))}
                          </ul>
                        ) : (
                          '–'
                        )}
                      </td>
                      <td>
                        {t.nextRun ? (
                          when(t.nextRun)
                        ) : (
                          <span className="muted">{t.schedule ?? 'no schedule'}</span>
                        )}
                      </td>
                    </tr>
                  ))}
                </tbody>
              </table>
            )}
          </Section>
          <div className="grid">
            <Section title="Running jobs">
              {data.running.length === 0 ? (
                <p className="muted">Nothing is running.</p>
              ) : (
                <ul>
                  {data.running.map((j) => (
                    <li key={j.id}>
                      {j.kind} {j.subject ?? ''} <StateBadge state={j.state} />{' '}
                      {j.progress?.phase && <span className="muted">{j.progress.phase}</span>}
                      {j.backupId && (
                        <>
                          {' '}
                          <a href={href('backups', j.backupId)}>{j.backupId}</a>
                        </>
                      )}
                    </li>
                  ))}
                </ul>
              )}
            </Section>
            <Section title="Recent warnings">
              {data.warnings.length === 0 ? (
                <p className="muted">No warning.</p>
              ) : (
                <ul className="warnings">
                  {data.warnings.map((w, i) => (
                    // biome-ignore lint/suspicious/noArrayIndexKey: one VM may carry the same code twice
                    <li key={i} className="warning">
                      <span className="badge warn-code">
                        <span aria-hidden="true">⚠ </span>
                        {w.code}
                      </span>{' '}
                      {w.vm && <strong>{w.vm}</strong>} {w.message}{' '}
                      <a href={href('backups', w.backupId)}>backup {w.backupId}</a>
                    </li>
                  ))}
                </ul>
              )}
            </Section>
            <Section title="Recent failures">
              {data.failures.length === 0 ? (
                <p className="muted">No failed backup.</p>
              ) : (
                <ul>
                  {data.failures.map((f, i) => {
                    const id = f.id ?? f.backupId ?? '';
                    return (
                      // biome-ignore lint/suspicious/noArrayIndexKey: failures without an id still list
                      <li key={i}>
                        <a href={href('backups', id)}>{id}</a> {f.task && <span>({f.task})</span>}{' '}
                        {f.state && <StateBadge state={f.state} />} {f.error && <span>{f.error}</span>}
                      </li>
                    );
                  })}
                </ul>
              )}
            </Section>
            <Section title="Recent events">
              {events.error && <p className="muted">Events are not available: {events.error}</p>}
              {events.data && events.data.length === 0 && <p className="muted">No event yet.</p>}
              {events.data && events.data.length > 0 && (
                <ol className="events">
                  {events.data.map((e, i) => (
                    // biome-ignore lint/suspicious/noArrayIndexKey: events have no id; the list is replaced whole
                    <li key={i}>
                      <span className="muted">{when(e.time)}</span>{' '}
                      {e.code && <span className="badge warn-code">{e.code}</span>} {e.message}
                      {e.backupId && (
                        <>
                          {' '}
                          <a href={href('backups', e.backupId)}>{e.backupId}</a>
                        </>
                      )}
                    </li>
                  ))}
                </ol>
              )}
            </Section>
            <Section title="Storage">
              <dl className="facts">
                <dt>Array snapshots held</dt>
                <dd data-testid="snapshots-held">{data.snapshotsHeld}</dd>
              </dl>
              {data.repositories && data.repositories.length > 0 ? (
                <table>
                  <caption>Repositories</caption>
                  <thead>
                    <tr>
                      <th scope="col">Repository</th>
                      <th scope="col">Type</th>
                      <th scope="col">Backups held</th>
                      <th scope="col">Stored (added by offloads)</th>
                      <th scope="col">Last offload</th>
                    </tr>
                  </thead>
                  <tbody>
                    {data.repositories.map((r) => (
                      <tr key={r.name} data-repository={r.name}>
                        <th scope="row">{r.name}</th>
                        <td>{r.type}</td>
                        <td data-field="backups">{r.backups}</td>
                        <td data-field="bytes">
                          {bytes(r.bytes)}
                          {r.logicalBytes !== undefined && (
                            <span className="muted small"> of {bytes(r.logicalBytes)} backed up</span>
                          )}
                        </td>
                        <td>{when(r.lastOffloadAt)}</td>
                      </tr>
                    ))}
                  </tbody>
                </table>
              ) : (
                <p className="muted">No repository is configured.</p>
              )}
            </Section>
          </div>
        </>
      )}
    </>
  );
}
