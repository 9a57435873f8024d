import { type FormEvent, useEffect, useState } from 'react';
import { api, errorText, jobId } from '../api';
import { DiskKindBadge, ErrorBox, StateBadge, useAsync, WarningList } from '../components/common';
import { JobProgress } from '../components/JobProgress';
import { bytes, when } from '../format';
import { can } from '../roles';
import { href } from '../router';
import type { ApiWarning, BackupRecord, Job, MountItem, Session } from '../types';

type Kind = 'restore' | 'attach' | 'mount';
const KINDS: Array<{ kind: Kind; label: string; help: string }> = [
  { kind: 'restore', label: 'Restore a VM', help: 'as a new VM, or over the live VM in its original place' },
  {
    kind: 'attach',
    label: 'Attach disks',
    help: "make a backup's disks visible to a running VM, for file recovery",
  },
  { kind: 'mount', label: 'Mount a backup', help: "expose a backup's array snapshot as a datastore" },
];
const STEPS = ['What', 'Backup', 'VM and disks', 'Target', 'Confirm', 'Progress'] as const;

function warningsOf(result: unknown): ApiWarning[] {
  const r = result as { warnings?: ApiWarning[] } | null | undefined;
  return Array.isArray(r?.warnings) ? r.warnings : [];
}

/** The job's result as a few facts: its scalar fields (name, ids, datastore) and its warnings. */
/** Words for the result fields the engine's restore, attach and mount results carry; others show as named. */
const RESULT_LABELS: Record<string, string> = {
  targetVm: 'VM',
  attachId: 'attach',
  mountId: 'mount',
  vm: 'from VM',
  backupId: 'backup',
  mode: 'restored as',
  disks: 'disks',
  bytes: 'data',
  cloned: 'cloned (instant)',
  operationId: 'operation',
  datastore: 'datastore',
  datastores: 'datastores',
  host: 'host',
};
const HIDDEN_RESULT_FIELDS = new Set(['dryRun', 'warnings']);

function ResultView({ job }: { job: Job }) {
  const r = (job.result ?? {}) as Record<string, unknown>;
  const facts = Object.entries(r).flatMap(([k, v]): Array<[string, string]> => {
    if (HIDDEN_RESULT_FIELDS.has(k)) return [];
    if (k === 'bytes' && typeof v === 'number') return [[k, bytes(v)]];
    if (k === 'mode' && v === 'new') return [[k, 'a new VM']];
    if (k === 'mode' && v === 'original') return [[k, 'the original VM, replaced']];
    if (['string', 'number', 'boolean'].includes(typeof v))
      return [[k, typeof v === 'boolean' ? (v ? 'yes' : 'no') : String(v)]];
    // A nested object with a name (the restored VM, the mounted datastore) shows as that name.
    const name = (v as { name?: unknown } | null)?.name;
    if (v && typeof v === 'object' && !Array.isArray(v) && typeof name === 'string') return [[k, name]];
    if (Array.isArray(v)) {
      const names = v.map(
        (x) => (x as { label?: unknown; name?: unknown })?.label ?? (x as { name?: unknown })?.name,
      );
      if (names.every((n) => typeof n === 'string')) return [[k, names.join(', ') || 'none']];
      return [[k, `${v.length}`]];
    }
    return [];
  });
  return (
    <div className={`result result-${job.state}`} role="status" data-result-state={job.state}>
      <h3>{job.state === 'done' ? 'Done' : 'Failed'}</h3>
      {job.error && (
        <p className="error-text">
          {job.error.code}: {job.error.message}
        </p>
      )}
      {facts.length > 0 && (
        <dl className="facts">
          {facts.map(([k, v]) => (
            <div key={k} className="fact">
              <dt>{RESULT_LABELS[k] ?? k}</dt>
              <dd data-fact={k}>{v}</dd>
            </div>
          ))}
        </dl>
      )}
      <WarningList warnings={warningsOf(job.result)} label="Warnings of the operation" />
    </div>
  );
}

/**
 * Restore, attach and mount as one guided form: what -> backup -> VM and disks -> target -> confirm, then the
 * job's live progress and its result. `#/operations?kind=restore&backup=ID&vm=NAME` starts with those chosen.
 */
export function Operations({ params, session }: { params: URLSearchParams; session: Session }) {
  const [kind, setKind] = useState<Kind>((params.get('kind') as Kind) || 'restore');
  const [backupId, setBackupId] = useState(params.get('backup') ?? '');
  const [vm, setVm] = useState(params.get('vm') ?? '');
  const [disks, setDisks] = useState<string[] | null>(null);
  const [newName, setNewName] = useState('');
  const [inPlace, setInPlace] = useState(false);
  const [understood, setUnderstood] = useState(false);
  const [targetVm, setTargetVm] = useState('');
  const [datastore, setDatastore] = useState('');
  const [host, setHost] = useState('');
  const [powerOn, setPowerOn] = useState(false);
  /** Where a restore reads from: '' the array snapshot, else the name of a repository holding a copy. */
  const [source, setSource] = useState(params.get('repository') ?? '');
  const [step, setStep] = useState(() =>
    params.get('backup') ? (params.get('kind') === 'mount' ? 3 : 2) : 0,
  );
  const [error, setError] = useState<string | null>(null);
  const [job, setJob] = useState<string | null>(null);
  const [ended, setEnded] = useState<Job | null>(null);

  const backups = useAsync(() => api.backups({ limit: 50 }), []);
  const [record, setRecord] = useState<BackupRecord | null>(null);
  useEffect(() => {
    setRecord(null);
    if (!backupId) return;
    api.backup(backupId).then(setRecord, (e: unknown) => setError(errorText(e)));
  }, [backupId]);
  const inventory = useAsync(() => api.inventory(), []);
  const hosts = [
    ...new Set([
      ...(inventory.data?.hosts ?? []).map((h) => h.name),
      ...(inventory.data?.vms ?? []).map((v) => v.host ?? ''),
    ]),
  ]
    .filter(Boolean)
    .sort();

  const vmRecord = record?.vms.find((v) => v.name === vm);
  const arrayPresent = record?.copies?.some((c) => c.kind === 'array' && c.present) ?? true;
  const repoCopies = (record?.copies ?? []).flatMap((c) => (c.kind === 'repository' ? [c] : []));
  useEffect(() => {
    if (vm && !newName) setNewName(`${vm}-restored`);
  }, [vm, newName]);

  if (!can(session, 'operator')) {
    return (
      <>
        <h1 tabIndex={-1}>Restore, attach, mount</h1>
        <p>
          Your role ({session.role}) may not start restores, attaches or mounts: an operator or admin can.
        </p>
      </>
    );
  }

  const restorable = (backups.data?.items ?? []).filter(
    (b) => b.state === 'complete' || b.state === 'partial',
  );
  const needsVm = kind !== 'mount';
  const selectedDisks = disks ?? vmRecord?.disks.filter((d) => d.included).map((d) => d.label) ?? [];

  const next = (e: FormEvent) => {
    e.preventDefault();
    setError(null);
    if (step === 1 && !backupId) return setError('Choose a backup.');
    if (step === 2 && needsVm && !vm) return setError('Choose a VM of the backup.');
    if (step === 2 && needsVm && selectedDisks.length === 0) return setError('Choose at least one disk.');
    if (step === 3) {
      if (kind === 'restore' && !inPlace && !newName.trim()) return setError('Give the new VM a name.');
      if (kind === 'attach' && !targetVm) return setError('Choose the VM to attach the disks to.');
    }
    if (step === 1 && !needsVm) return setStep(3);
    setStep(step + 1);
  };

  const start = () => {
    if (kind === 'restore' && inPlace && !understood)
      return setError('Confirm that the live VM may be powered off and replaced.');
    setError(null);
    const allIncluded = vmRecord && selectedDisks.length === vmRecord.disks.filter((d) => d.included).length;
    const diskList = allIncluded ? undefined : selectedDisks;
    const call =
      kind === 'restore'
        ? api.restore({
            backupId,
            vm,
            ...(inPlace ? { original: true, confirmed: true } : { newName: newName.trim() }),
            ...(diskList ? { disks: diskList } : {}),
            ...(!inPlace && datastore ? { datastore } : {}),
            ...(!inPlace && host ? { host } : {}),
            ...(powerOn ? { powerOn: true } : {}),
            ...(source ? { source: 'repository' as const, repository: source } : {}),
          })
        : kind === 'attach'
          ? api.attach({ backupId, vm, targetVm, ...(diskList ? { disks: diskList } : {}) })
          : api.mount({ backupId, ...(host ? { host } : {}) });
    call.then(
      (a) => {
        setJob(jobId(a));
        setStep(5);
      },
      (e: unknown) => setError(errorText(e)),
    );
  };

  const restart = () => {
    setJob(null);
    setEnded(null);
    setStep(0);
    setUnderstood(false);
  };

  return (
    <>
      <div className="page-head">
        <h1 tabIndex={-1}>Restore, attach, mount</h1>
      </div>
      <ol className="steps" aria-label="Steps">
        {STEPS.map((s, i) =>
          !needsVm && i === 2 ? null : (
            <li key={s} aria-current={i === step ? 'step' : undefined} className={i < step ? 'done' : ''}>
              {s}
            </li>
          ),
        )}
      </ol>
      <ErrorBox error={error} />
      {step < 4 && (
        <form className="card form wizard" onSubmit={next} aria-label={`Step: ${STEPS[step]}`}>
          {step === 0 && (
            <fieldset>
              <legend>What do you want to do?</legend>
              {KINDS.map((k) => (
                <label key={k.kind} className="choice">
                  <input
                    type="radio"
                    name="kind"
                    value={k.kind}
                    checked={kind === k.kind}
                    onChange={() => setKind(k.kind)}
                  />{' '}
                  <strong>{k.label}</strong> <span className="muted">{k.help}</span>
                </label>
              ))}
            </fieldset>
          )}
          {step === 1 && (
            <div className="field">
              <label htmlFor="op-backup">Backup</label>
              <select id="op-backup" value={backupId} onChange={(e) => setBackupId(e.target.value)}>
                <option value="">(choose a backup)</option>
                {backupId && !restorable.some((b) => b.id === backupId) && (
                  <option value={backupId}>{backupId}</option>
                )}
                {restorable.map((b) => (
                  <option key={b.id} value={b.id}>
                    {b.id} · {b.task} · {b.state} · {when(b.startedAt)} · {b.vms.join(', ')}
                  </option>
                ))}
              </select>
              {backups.error && <ErrorBox error={backups.error} />}
            </div>
          )}
          {step === 2 && (
            <>
              <div className="field">
                <label htmlFor="op-vm">VM of backup {backupId}</label>
                <select
                  id="op-vm"
                  value={vm}
                  onChange={(e) => {
                    setVm(e.target.value);
                    setDisks(null);
                    setNewName('');
                  }}
                >
                  <option value="">(choose a VM)</option>
                  {(record?.vms ?? [])
                    .filter((v) => v.state === 'ok')
                    .map((v) => (
                      <option key={v.id} value={v.name}>
                        {v.name} ({v.effectiveMode}, {v.consistency})
                      </option>
                    ))}
                </select>
              </div>
              {vmRecord && (
                <fieldset>
                  <legend>Disks</legend>
                  {vmRecord.disks.map((d) => (
                    <label key={d.label} className="choice">
                      <input
                        type="checkbox"
                        disabled={!d.included}
                        checked={d.included && selectedDisks.includes(d.label)}
                        onChange={(e) =>
                          setDisks(
                            e.target.checked
                              ? [...selectedDisks, d.label]
                              : selectedDisks.filter((x) => x !== d.label),
                          )
                        }
                      />{' '}
                      {d.label} <DiskKindBadge kind={d.kind} />
                      {!d.included && (
                        <span className="muted">
                          {' '}
                          not in the backup{kind === 'restore' ? ', never restored' : ', never attached'}
                          {d.note ? `: ${d.note}` : ''}
                        </span>
                      )}
                    </label>
                  ))}
                </fieldset>
              )}
            </>
          )}
          {step === 3 && kind === 'restore' && (
            <fieldset>
              <legend>Where to restore {vm}</legend>
              <div className="field">
                <label htmlFor="op-source">Read the backup from</label>
                <select id="op-source" value={source} onChange={(e) => setSource(e.target.value)}>
                  {arrayPresent && <option value="">the array snapshot (fastest)</option>}
                  {!arrayPresent && !source && <option value="">(choose a copy)</option>}
                  {repoCopies.map((c) => (
                    <option key={c.name} value={c.name}>
                      repository {c.name} (offloaded {when(c.offloadedAt)})
                    </option>
                  ))}
                </select>
              </div>
              <label className="choice">
                <input type="radio" name="target" checked={!inPlace} onChange={() => setInPlace(false)} /> as
                a new VM
              </label>
              {!inPlace && (
                <>
                  <div className="field">
                    <label htmlFor="op-newname">Name of the new VM</label>
                    <input id="op-newname" value={newName} onChange={(e) => setNewName(e.target.value)} />
                  </div>
                  <div className="field">
                    <label htmlFor="op-rds">Datastore for its files</label>
                    <select id="op-rds" value={datastore} onChange={(e) => setDatastore(e.target.value)}>
                      <option value="">(the original datastores)</option>
                      {(inventory.data?.datastores ?? []).map((d) => (
                        <option key={d.name} value={d.name}>
                          {d.name}
                        </option>
                      ))}
                    </select>
                  </div>
                  <div className="field">
                    <label htmlFor="op-rhost">Host to register it on</label>
                    <select id="op-rhost" value={host} onChange={(e) => setHost(e.target.value)}>
                      <option value="">(the original host)</option>
                      {hosts.map((h) => (
                        <option key={h} value={h}>
                          {h}
                        </option>
                      ))}
                    </select>
                  </div>
                </>
              )}
              <label className="choice">
                <input type="radio" name="target" checked={inPlace} onChange={() => setInPlace(true)} /> to
                its original place: the live VM {vm} is powered off and replaced
              </label>
              <label className="choice">
                <input type="checkbox" checked={powerOn} onChange={(e) => setPowerOn(e.target.checked)} />{' '}
                power the restored VM on
              </label>
            </fieldset>
          )}
          {step === 3 && kind === 'attach' && (
            <div className="field">
              <label htmlFor="op-target">Attach to the running VM</label>
              <select id="op-target" value={targetVm} onChange={(e) => setTargetVm(e.target.value)}>
                <option value="">(choose a VM)</option>
                {(inventory.data?.vms ?? []).map((v) => (
                  <option key={v.id} value={v.name}>
                    {v.name} ({v.powerState})
                  </option>
                ))}
              </select>
            </div>
          )}
          {step === 3 && kind === 'mount' && (
            <div className="field">
              <label htmlFor="op-mhost">Host to mount the snapshot on</label>
              <select
                id="op-mhost"
                value={host}
                onChange={(e) => setHost(e.target.value)}
                aria-describedby="op-mhost-help"
              >
                <option value="">(the daemon's choice)</option>
                {hosts.map((h) => (
                  <option key={h} value={h}>
                    {h}
                  </option>
                ))}
              </select>
              <small id="op-mhost-help">
                An auxiliary host is best: the mounted datastore shows on it until you unmount.
              </small>
            </div>
          )}
          <div className="actions">
            {step > 0 && (
              <button type="button" onClick={() => setStep(step === 3 && !needsVm ? 1 : step - 1)}>
                Back
              </button>
            )}
            <button type="submit" className="primary">
              Next
            </button>
          </div>
        </form>
      )}
      {step === 4 && (
        <section className="card" aria-labelledby="confirm-title">
          <h2 id="confirm-title">Confirm</h2>
          <dl className="facts">
            <dt>Operation</dt>
            <dd>{KINDS.find((k) => k.kind === kind)?.label}</dd>
            <dt>Backup</dt>
            <dd>
              <a href={href('backups', backupId)}>{backupId}</a>
              {record && ` (${record.task}, ${when(record.startedAt)})`}
            </dd>
            {needsVm && (
              <>
                <dt>VM</dt>
                <dd>{vm}</dd>
                <dt>Disks</dt>
                <dd>{selectedDisks.join(', ')}</dd>
              </>
            )}
            {kind === 'restore' && (
              <>
                <dt>Target</dt>
                <dd>
                  {inPlace
                    ? `original place: the live ${vm} is powered off and replaced`
                    : `new VM ${newName}`}
                </dd>
                <dt>Read from</dt>
                <dd data-field="source">{source ? `repository ${source}` : 'the array snapshot'}</dd>
              </>
            )}
            {kind === 'attach' && (
              <>
                <dt>Attach to</dt>
                <dd>{targetVm}</dd>
              </>
            )}
            {kind === 'mount' && (
              <>
                <dt>Host</dt>
                <dd>{host || "(the daemon's choice)"}</dd>
              </>
            )}
            {kind === 'restore' && !inPlace && (
              <>
                <dt>Datastore, host</dt>
                <dd>
                  {datastore || 'original datastores'}, {host || 'original host'}
                  {powerOn ? ', powered on' : ''}
                </dd>
              </>
            )}
          </dl>
          {vmRecord?.disks.some((d) => !d.included) && (
            <p className="note">
              Disks not in the backup (raw device mappings, excluded disks) are left out:{' '}
              {vmRecord.disks
                .filter((d) => !d.included)
                .map((d) => d.label)
                .join(', ')}
              .
            </p>
          )}
          {kind === 'restore' && inPlace && (
            <label className="choice danger-zone">
              <input type="checkbox" checked={understood} onChange={(e) => setUnderstood(e.target.checked)} />{' '}
              I understand that the live VM {vm} is powered off and replaced by the backup.
            </label>
          )}
          <div className="actions">
            <button type="button" onClick={() => setStep(3)}>
              Back
            </button>
            <button type="button" className="primary" onClick={start}>
              Start {kind}
            </button>
          </div>
        </section>
      )}
      {step === 5 && job && (
        <section className="card" aria-labelledby="progress-title">
          <h2 id="progress-title">Progress</h2>
          <JobProgress jobId={job} onEnd={setEnded} />
          {ended && <ResultView job={ended} />}
          {ended && (
            <p className="actions">
              <button type="button" onClick={restart}>
                Start another operation
              </button>
              {ended.state === 'done' && ended.startedAt && (
                <span className="muted">
                  {' '}
                  <StateBadge state={ended.state} /> {when(ended.finishedAt)}
                </span>
              )}
            </p>
          )}
        </section>
      )}
      <ActiveMounts refresh={ended?.id ?? ''} />
    </>
  );
}

/**
 * A datastore mount an attach made (id `attach-…-mount`, see src/engine/attach.ts): not unmounted on its own;
 * detaching the backup's last attach releases it.
 */
function madeByAttach(m: MountItem): boolean {
  return m.kind === 'datastore' && m.id.startsWith('attach-') && m.id.endsWith('-mount');
}

/**
 * Mounts and attaches that are in place now, each with its undo (unmount, detach) as a job. Read again when
 * `refresh` changes (an operation of the form above ended).
 */
function ActiveMounts({ refresh }: { refresh: string }) {
  const { data, error, reload } = useAsync(() => api.mounts(), [refresh]);
  const [job, setJob] = useState<string | null>(null);
  const [actionError, setActionError] = useState<string | null>(null);
  const undo = (m: MountItem) => {
    setActionError(null);
    (m.kind === 'datastore' ? api.unmount(m.id) : api.detach(m.id)).then(
      (a) => setJob(jobId(a)),
      (e: unknown) => setActionError(errorText(e)),
    );
  };
  return (
    <section className="card" aria-labelledby="mounts-title">
      <h2 id="mounts-title">Mounted backups and attached disks</h2>
      <ErrorBox error={error ?? actionError} />
      {data && data.length === 0 && <p className="muted">Nothing is mounted or attached.</p>}
      {data && data.length > 0 && (
        <table>
          <thead>
            <tr>
              <th scope="col">Id</th>
              <th scope="col">Kind</th>
              <th scope="col">Backup</th>
              <th scope="col">Since</th>
              <th scope="col">Details</th>
              <th scope="col">Action</th>
            </tr>
          </thead>
          <tbody>
            {data.map((m) => (
              <tr key={m.id} data-mount-kind={m.kind}>
                <th scope="row">
                  <code>{m.id}</code>
                </th>
                <td>{m.kind === 'datastore' ? 'mount' : m.kind}</td>
                <td>
                  <a href={href('backups', m.backupId)}>{m.backupId}</a>
                </td>
                <td>{when(m.createdAt)}</td>
                <td className="small">
                  {Object.entries(m.data ?? {})
                    .filter(([, v]) => typeof v === 'string' || typeof v === 'number')
                    .map(([k, v]) => `${k}: ${v}`)
                    .join(', ')}
                </td>
                <td>
                  {madeByAttach(m) ? (
                    <span className="muted small">
                      released when the last attach of the backup is detached
                    </span>
                  ) : (
                    <button type="button" onClick={() => undo(m)} disabled={job !== null}>
                      {m.kind === 'datastore' ? 'Unmount' : 'Detach'}
                    </button>
                  )}
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
      {job && (
        <JobProgress
          key={job}
          jobId={job}
          onEnd={() => {
            setJob(null);
            void reload();
          }}
        />
      )}
    </section>
  );
}
