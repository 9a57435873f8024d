import { type FormEvent, type MouseEvent, useState } from 'react';
import { api, errorText, jobId } from '../api';
import {
  DiskKindBadge,
  ErrorBox,
  Loading,
  Section,
  StateBadge,
  useAsync,
  WarningList,
} from '../components/common';
import { JobProgress } from '../components/JobProgress';
import { between, bytes, duration, when } from '../format';
import { can } from '../roles';
import { href, navigate } from '../router';
import type { BackupCopy, BackupRecord, DiskRecord, Job, Session, VmRecord } from '../types';

const RESTORABLE = new Set(['complete', 'partial']);

/** In-page links would change the hash route: scroll to the section and focus its heading instead. */
function jumpTo(e: MouseEvent, id: string): void {
  e.preventDefault();
  const el = document.getElementById(id);
  el?.scrollIntoView({ block: 'start' });
  el?.setAttribute('tabindex', '-1');
  el?.focus();
}

function exclusionText(d: DiskRecord): string {
  if (d.included) return '';
  if (d.note) return d.note;
  if (d.exclusion === 'rdm') return 'raw device mapping: not on a datastore, not backed up';
  if (d.exclusion === 'task') return "excluded by the task's disk rules";
  return 'not part of the backup';
}

function VmCard({ vm, backup, session }: { vm: VmRecord; backup: BackupRecord; session: Session }) {
  const changed = vm.requestedMode !== vm.effectiveMode;
  const included = vm.disks.filter((d) => d.included);
  const excluded = vm.disks.filter((d) => !d.included);
  const restorable = RESTORABLE.has(backup.state) && vm.state === 'ok';
  const op = (kind: string) =>
    `${href('operations')}?kind=${kind}&backup=${encodeURIComponent(backup.id)}&vm=${encodeURIComponent(vm.name)}`;
  return (
    <section className="card vm-card" aria-labelledby={`vm-${vm.id}`} data-vm={vm.name}>
      <h2 id={`vm-${vm.id}`}>
        {vm.name} <StateBadge state={vm.state} />
      </h2>
      <dl className="facts">
        <dt>Requested mode</dt>
        <dd data-field="requestedMode">{vm.requestedMode}</dd>
        <dt>Effective mode</dt>
        <dd data-field="effectiveMode">
          {vm.effectiveMode}
          {changed && (
            <span className="badge warn-code">
              <span aria-hidden="true">⚠ </span>changed from {vm.requestedMode}
            </span>
          )}
        </dd>
        <dt>Consistency</dt>
        <dd data-field="consistency">{vm.consistency}</dd>
        <dt>Quiesce window</dt>
        <dd data-field="quiesce">
          {vm.quiesce ? (
            <>
              {duration(vm.quiesce.ms)}{' '}
              <span className="muted">
                ({when(vm.quiesce.start)} to {when(vm.quiesce.end)})
              </span>
            </>
          ) : (
            <span className="muted">none: the VM was not held</span>
          )}
        </dd>
        {vm.vmSnapshot && (
          <>
            <dt>VM snapshot inside the array snapshot</dt>
            <dd>
              <code>{vm.vmSnapshot}</code>
            </dd>
          </>
        )}
        <dt>Power state at backup</dt>
        <dd>{vm.powerState ?? '–'}</dd>
        <dt>Host</dt>
        <dd>{vm.host ?? '–'}</dd>
        {vm.error && (
          <>
            <dt>Error</dt>
            <dd className="error-text">{vm.error}</dd>
          </>
        )}
      </dl>
      <WarningList warnings={vm.warnings} label={`Warnings for ${vm.name}`} />
      <table className="disks-table">
        <caption>
          Disks of {vm.name}: {included.length} included, {excluded.length} excluded
        </caption>
        <thead>
          <tr>
            <th scope="col">Disk</th>
            <th scope="col">Kind</th>
            <th scope="col">Size</th>
            <th scope="col">Included</th>
            <th scope="col">Consistency / why excluded</th>
          </tr>
        </thead>
        <tbody>
          {vm.disks.map((d) => (
            <tr key={d.key ?? d.label} data-disk={d.label} className={d.included ? '' : 'excluded'}>
              <th scope="row">
                {d.label}
                <div className="muted small">{d.lun ? `LUN ${d.lun}` : d.file}</div>
              </th>
              <td>
                <DiskKindBadge kind={d.kind} />
              </td>
              <td>{bytes(d.capacityBytes)}</td>
              <td>{d.included ? 'yes' : <strong>no</strong>}</td>
              <td>
                {d.included ? (
                  <>
                    {d.consistency ?? vm.consistency}
                    {d.note && <div className="muted small">{d.note}</div>}
                  </>
                ) : (
                  exclusionText(d)
                )}
              </td>
            </tr>
          ))}
        </tbody>
      </table>
      {restorable && can(session, 'operator') && (
        <p className="actions">
          <a className="button" href={op('restore')}>
            Restore {vm.name}…
          </a>
          <a className="button" href={op('attach')}>
            Attach disks of {vm.name}…
          </a>
        </p>
      )}
    </section>
  );
}

/** The backup's copies as `inquire` shows them: the array snapshot, then each repository copy. */
function CopyList({ copies }: { copies: BackupCopy[] }) {
  const repos = copies.filter((c) => c.kind === 'repository');
  return (
    <>
      <ul className="copies" data-copies>
        {copies.map((c) =>
          c.kind === 'array' ? (
            <li key="array" data-copy="array" data-present={c.present ? 'yes' : 'no'}>
              <strong>array</strong>:{' '}
              {c.present
                ? c.snapshots.map((s) => `${s.array}/${s.snapshotId}`).join(', ')
                : 'gone (the backup was deleted, expired, failed or lost)'}
            </li>
          ) : (
            <li key={`repo-${c.name}-${c.manifestId ?? ''}`} data-copy="repository" data-repository={c.name}>
              <strong>repository {c.name}</strong>: offloaded {when(c.offloadedAt)}, {bytes(c.bytes)}
              {c.bytesAdded !== undefined && <span className="muted"> ({bytes(c.bytesAdded)} added)</span>}
            </li>
          ),
        )}
      </ul>
      {repos.length === 0 && (
        <p className="muted">No repository copy: this backup lives in its array snapshot only.</p>
      )}
    </>
  );
}

/** "Offload": copy the backup into a configured repository, as a job with live progress. */
function OffloadAction({ backup, onDone }: { backup: BackupRecord; onDone: () => void }) {
  const repos = useAsync(() => api.repositories(), []);
  const [repository, setRepository] = useState('');
  const [job, setJob] = useState<string | null>(null);
  const [error, setError] = useState<string | null>(null);
  const held = new Set((backup.copies ?? []).flatMap((c) => (c.kind === 'repository' ? [c.name] : [])));
  const choices = repos.data ?? [];
  if (repos.data && choices.length === 0)
    return <p className="muted">No repository is configured: nothing to offload to.</p>;
  const chosen = repository || choices.find((r) => !held.has(r.name))?.name || choices[0]?.name || '';
  const start = (e: FormEvent) => {
    e.preventDefault();
    setError(null);
    api.offload({ backupId: backup.id, repository: chosen }).then(
      (answer) => setJob(jobId(answer)),
      (err: unknown) => setError(errorText(err)),
    );
  };
  return (
    <form className="offload-form" onSubmit={start} aria-label="Offload to a repository">
      <label htmlFor="offload-repository">Repository</label>{' '}
      <select
        id="offload-repository"
        value={chosen}
        onChange={(e) => setRepository(e.target.value)}
        disabled={job !== null && !error}
      >
        {choices.map((r) => (
          <option key={r.name} value={r.name}>
            {r.name} ({r.type}){held.has(r.name) ? ': holds a copy already' : ''}
          </option>
        ))}
      </select>{' '}
      <button type="submit" disabled={!chosen}>
        Offload
      </button>
      <ErrorBox error={repos.error ?? error} />
      {job && <JobProgress jobId={job} onEnd={(j: Job) => j.state === 'done' && onDone()} />}
    </form>
  );
}

export function BackupDetail({ id, session }: { id: string; session: Session }) {
  const { data, error, loading, reload } = useAsync(() => api.backup(id), [id]);
  const [actionError, setActionError] = useState<string | null>(null);

  const remove = () => {
    if (!window.confirm(`Delete backup ${id} and its array snapshots? This cannot be undone.`)) return;
    api.deleteBackup(id).then(
      () => navigate(href('backups')),
      (e: unknown) => setActionError(errorText(e)),
    );
  };

  const allWarnings = data ? data.warnings.length + data.vms.reduce((n, v) => n + v.warnings.length, 0) : 0;
  return (
    <>
      <div className="page-head">
        <h1 tabIndex={-1}>Backup {id}</h1>
        <a href={href('backups')}>All backups</a>
      </div>
      <ErrorBox error={error ?? actionError} />
      {!data && loading && <Loading what="the backup" />}
      {data && (
        <>
          <Section title="Summary">
            <dl className="facts">
              <dt>Task</dt>
              <dd>
                {data.task === 'adhoc' ? (
                  'adhoc (backup --vm)'
                ) : (
                  <a href={href('tasks', data.task)}>{data.task}</a>
                )}
              </dd>
              <dt>State</dt>
              <dd>
                <StateBadge state={data.state} />
              </dd>
              <dt>Requested mode</dt>
              <dd>{data.requestedMode ?? '–'}</dd>
              <dt>Started</dt>
              <dd>{when(data.startedAt)}</dd>
              <dt>Array snapshot taken</dt>
              <dd>{when(data.snapshotAt)}</dd>
              <dt>Finished</dt>
              <dd>
                {when(data.finishedAt)}{' '}
                <span className="muted">({between(data.startedAt, data.finishedAt)})</span>
              </dd>
              <dt>VMs</dt>
              <dd>
                {data.vms.length} ({data.vms.filter((v) => v.state === 'ok').length} ok)
              </dd>
              <dt>Warnings</dt>
              <dd>{allWarnings}</dd>
              {data.error && (
                <>
                  <dt>Error</dt>
                  <dd className="error-text">{data.error}</dd>
                </>
              )}
              {data.lost && (
                <>
                  <dt>Lost</dt>
                  <dd className="error-text">
                    {when(data.lost.at)}: {data.lost.reason} (was {data.lost.previousState})
                  </dd>
                </>
              )}
            </dl>
            <WarningList warnings={data.warnings} label="Warnings of the run" />
            {data.snapshots && data.snapshots.length > 0 && (
              <table>
                <caption>Array snapshots</caption>
                <thead>
                  <tr>
                    <th scope="col">Array</th>
                    <th scope="col">Snapshot</th>
                    <th scope="col">Volumes</th>
                    <th scope="col">Point in time</th>
                  </tr>
                </thead>
                <tbody>
                  {data.snapshots.map((s) => (
                    <tr key={s.snapshotId}>
                      <th scope="row">{s.array}</th>
                      <td>
                        <code>{s.snapshotId}</code>
                      </td>
                      <td>{s.volumes.join(', ')}</td>
                      <td>
                        {s.pointInTime ?? '–'}
                        {s.driver && <span className="muted"> ({s.driver})</span>}
                      </td>
                    </tr>
                  ))}
                </tbody>
              </table>
            )}
            <h3 id="copies">Copies</h3>
            <CopyList copies={data.copies ?? []} />
            {RESTORABLE.has(data.state) && can(session, 'operator') && (
              <OffloadAction backup={data} onDone={() => void reload()} />
            )}
            <p className="actions">
              {RESTORABLE.has(data.state) && can(session, 'operator') && (
                <a
                  className="button"
                  href={`${href('operations')}?kind=mount&backup=${encodeURIComponent(data.id)}`}
                >
                  Mount as a datastore…
                </a>
              )}
              {can(session, 'admin') && (
                <button type="button" className="danger" onClick={remove}>
                  Delete backup
                </button>
              )}
            </p>
          </Section>
          <Section title="VMs at a glance">
            <table className="vm-overview">
              <thead>
                <tr>
                  <th scope="col">VM</th>
                  <th scope="col">State</th>
                  <th scope="col">Requested mode</th>
                  <th scope="col">Effective mode</th>
                  <th scope="col">Consistency</th>
                  <th scope="col">Quiesce window</th>
                  <th scope="col">Disks included / excluded</th>
                  <th scope="col">Warnings</th>
                </tr>
              </thead>
              <tbody>
                {data.vms.map((vm) => (
                  <tr key={vm.id} data-vm={vm.name}>
                    <th scope="row">
                      <a href={`#vm-${vm.id}`} onClick={(e) => jumpTo(e, `vm-${vm.id}`)}>
                        {vm.name}
                      </a>
                    </th>
                    <td>
                      <StateBadge state={vm.state} />
                    </td>
                    <td>{vm.requestedMode}</td>
                    <td>
                      {vm.effectiveMode}
                      {vm.effectiveMode !== vm.requestedMode && (
                        <span className="badge warn-code">
                          <span aria-hidden="true">⚠ </span>changed
                        </span>
                      )}
                    </td>
                    <td>{vm.consistency}</td>
                    <td>{vm.quiesce ? duration(vm.quiesce.ms) : <span className="muted">not held</span>}</td>
                    <td>
                      {vm.disks.filter((d) => d.included).length} /{' '}
                      {vm.disks.filter((d) => !d.included).length}
                    </td>
                    <td>
                      {vm.warnings.length > 0 ? (
                        <ul className="codes">
                          {[...new Set(vm.warnings.map((w) => w.code))].map((c) => (
                            <li key={c} className="badge warn-code">
                              {c}
                            </li>
                          ))}
                        </ul>
                      ) : (
                        '–'
                      )}
                    </td>
                  </tr>
                ))}
              </tbody>
            </table>
          </Section>
          {data.vms.map((vm) => (
            <VmCard key={vm.id} vm={vm} backup={data} session={session} />
          ))}
        </>
      )}
    </>
  );
}
