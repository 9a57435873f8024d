import { useState } from 'react';
import { api } from '../api';
import { TimeChart } from '../components/Chart';
import { ErrorBox, Loading, StateBadge, useAsync } from '../components/common';
import { bytes, duration, when } from '../format';
import { href } from '../router';

export function Stats() {
  const [task, setTask] = useState('');
  const { data, error, loading } = useAsync(() => api.stats(task || undefined, 200), [task]);
  const { data: tasks } = useAsync(() => api.tasks().catch(() => []), []);
  const rows = data ?? [];
  // A backup without a duration (still running) or a size (not measured) has no point on that chart.
  const pts = (f: (r: (typeof rows)[number]) => number | undefined) =>
    rows.flatMap((r) => {
      const v = f(r);
      return v === undefined
        ? []
        : [{ t: new Date(r.startedAt).getTime(), v, label: r.backupId, state: r.state }];
    });
  return (
    <>
      <div className="page-head">
        <h1 tabIndex={-1}>Backup duration and size</h1>
      </div>
      <div className="toolbar">
        <label htmlFor="st-task">Task</label>
        <select id="st-task" value={task} onChange={(e) => setTask(e.target.value)}>
          <option value="">all tasks</option>
          {(tasks ?? []).map((t) => (
            <option key={t.name} value={t.name}>
              {t.name}
            </option>
          ))}
        </select>
      </div>
      <ErrorBox error={error} />
      {!data && loading && <Loading what="statistics" />}
      {data && (
        <>
          <div className="charts">
            <TimeChart
              title="Duration of each backup"
              points={pts((r) => r.durationMs)}
              empty="No finished backup yet."
              format={duration}
              className="duration"
            />
            <TimeChart
              title="Data size of each backup (its included disks)"
              points={pts((r) => r.bytes)}
              empty="No data size is reported for these backups."
              format={bytes}
              className="size"
            />
            <TimeChart
              title="Bytes each offload added to its repository"
              points={pts((r) => r.bytesAdded)}
              empty="No backup here has been offloaded."
              format={bytes}
              className="offloaded"
            />
          </div>
          <details>
            <summary>The numbers ({rows.length} backups)</summary>
            <table>
              <thead>
                <tr>
                  <th scope="col">Backup</th>
                  <th scope="col">Task</th>
                  <th scope="col">Started</th>
                  <th scope="col">Duration</th>
                  <th scope="col">Size</th>
                  <th scope="col">Offload added</th>
                  <th scope="col">State</th>
                </tr>
              </thead>
              <tbody>
                {rows.map((r) => (
                  <tr key={r.backupId}>
                    <th scope="row">
                      <a href={href('backups', r.backupId)}>{r.backupId}</a>
                    </th>
                    <td>{r.task}</td>
                    <td>{when(r.startedAt)}</td>
                    <td>{duration(r.durationMs)}</td>
                    <td>{bytes(r.bytes)}</td>
                    <td>{bytes(r.bytesAdded)}</td>
                    <td>
                      <StateBadge state={r.state} />
                    </td>
                  </tr>
                ))}
              </tbody>
            </table>
          </details>
        </>
      )}
    </>
  );
}
