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

/** "Run now" with the job's live progress and, at the end, a link to the backup. */
export function RunTask({ task }: { task: string }) {
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
      {job && <JobProgress key={job} jobId={job} onEnd={setEnded} />}
      {ended && (
        <p role="status" className={`result result-${ended.state}`}>
          Backup run {ended.state === 'done' ? 'finished' : 'failed'}.
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
