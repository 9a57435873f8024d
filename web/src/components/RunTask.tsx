import { useState } from 'react';
import { api, errorText, jobId } from '../api';
import { href } from '../router';
import type { Job } from '../types';
import { JobProgress } from './JobProgress';

/** The backup id a finished backup job names (`backupId`, or the record in `result`). */
export function backupIdOf(job: Job): string | undefined {
  if (job.backupId) return job.backupId;
  const r = job.result as { id?: string; backupId?: string } | undefined;
  return r?.backupId ?? r?.id;
}

/** The backup's state and warning count, when the job's result is the backup record. */
function outcome(job: Job): string {
  const r = job.result as
    | { state?: string; warnings?: unknown[]; vms?: Array<{ warnings?: unknown[] }> }
    | undefined;
  if (!r?.state) return job.error ? `: ${job.error.code}: ${job.error.message}` : '';
  const n = (r.warnings?.length ?? 0) + (r.vms ?? []).reduce((a, v) => a + (v.warnings?.length ?? 0), 0);
  return `: ${r.state}${n ? `, ${n} warning${n === 1 ? '' : 's'}` : ''}`;
}

/** "Run now" with the job's live progress and, at the end, a link to the backup. */
export function RunTask({ task, onEnd }: { task: string; onEnd?: (job: Job) => void }) {
  const [job, setJob] = useState<string | null>(null);
  const [ended, setEnded] = useState<Job | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);

  const run = () => {
    setBusy(true);
    setError(null);
    setEnded(null);
    api.runTask(task).then(
      (a) => {
        setJob(jobId(a));
        setBusy(false);
      },
      (e: unknown) => {
        setBusy(false);
        setError(errorText(e));
      },
    );
  };

  const backupId = ended ? backupIdOf(ended) : undefined;
  return (
    <div className="run-task">
      <button type="button" className="primary" onClick={run} disabled={busy || (job !== null && !ended)}>
        Run {task} now
      </button>
      {error && (
        <div className="error-box" role="alert">
          {error}
        </div>
      )}
      {job && (
        <JobProgress
          key={job}
          jobId={job}
          onEnd={(j) => {
            setEnded(j);
            onEnd?.(j);
          }}
        />
      )}
      {ended && (
        <p role="status" className={`result result-${ended.state}`}>
          Backup run {ended.state === 'done' ? 'finished' : 'failed'}
          {outcome(ended)}.
          {backupId && (
            <>
              {' '}
              <a href={href('backups', backupId)}>Open backup {backupId}</a>
            </>
          )}
        </p>
      )}
    </div>
  );
}
