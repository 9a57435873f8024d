import { useEffect, useRef, useState } from 'react';
import { api, errorText, jobEventsUrl } from '../api';
import { bytes, duration } from '../format';
import type { Job } from '../types';
import { StateBadge } from './common';

interface LogLine {
  at: string;
  text: string;
}

/**
 * Live progress of one job from its server-sent event stream (`event: progress|log|done|failed`). The job is
 * also read once over GET, so a job that finished before the stream opened still shows its end; if the
 * stream breaks before the end, the job is read again every two seconds until it ends.
 */
export function JobProgress({ jobId, onEnd }: { jobId: string; onEnd?: (job: Job) => void }) {
  const [job, setJob] = useState<Job | null>(null);
  const [log, setLog] = useState<LogLine[]>([]);
  const [error, setError] = useState<string | null>(null);
  const ended = useRef(false);
  const onEndRef = useRef(onEnd);
  onEndRef.current = onEnd;

  useEffect(() => {
    ended.current = false;
    let source: EventSource | null = null;
    let poll: ReturnType<typeof setInterval> | null = null;
    let cancelled = false;

    const finish = (j: Job) => {
      if (cancelled) return;
      setJob(j);
      if (ended.current) return;
      if (j.state === 'done' || j.state === 'failed') {
        ended.current = true;
        source?.close();
        if (poll) clearInterval(poll);
        onEndRef.current?.(j);
      }
    };
    const refresh = () => {
      api.job(jobId).then(finish, (e: unknown) => !cancelled && setError(errorText(e)));
    };
    const parse = (ev: MessageEvent): Record<string, unknown> => {
      try {
        return JSON.parse(ev.data as string) as Record<string, unknown>;
      } catch {
        return { message: String(ev.data) };
      }
    };

    source = new EventSource(jobEventsUrl(jobId));
    source.addEventListener('progress', (ev) => {
      const d = parse(ev as MessageEvent);
      const progress = (d.progress ?? d) as Job['progress'];
      setJob((j) => (j ? { ...j, state: 'running', progress } : j));
    });
    source.addEventListener('log', (ev) => {
      const d = parse(ev as MessageEvent);
      const text = typeof d.message === 'string' ? d.message : JSON.stringify(d);
      setLog((l) => [...l.slice(-199), { at: new Date().toISOString(), text }]);
    });
    const end = () => {
      // The end event's data may be the job or just its result: read the job for the whole picture.
      source?.close();
      refresh();
    };
    source.addEventListener('done', end);
    source.addEventListener('failed', end);
    source.onerror = () => {
      if (ended.current || cancelled) return;
      source?.close();
      if (!poll) poll = setInterval(refresh, 2000);
      refresh();
    };
    refresh();
    return () => {
      cancelled = true;
      source?.close();
      if (poll) clearInterval(poll);
    };
  }, [jobId]);

  const p = job?.progress;
  // A byte-counted step (offload) measures in bytes; otherwise items done of those reported.
  const pct = p?.bytesTotal
    ? Math.min(100, Math.round(((p.bytesDone ?? 0) / p.bytesTotal) * 100))
    : p?.total
      ? Math.min(100, Math.round(((p.done ?? 0) / p.total) * 100))
      : undefined;
  return (
    <div className="job" aria-live="polite" data-job-id={jobId} data-job-state={job?.state ?? 'unknown'}>
      <p>
        Job <code>{jobId}</code>
        {job && (
          <>
            {' '}
            ({job.kind}
            {job.subject ? ` ${job.subject}` : ''}): <StateBadge state={job.state} />
          </>
        )}
      </p>
      {job && (job.state === 'running' || job.state === 'queued') && (
        <div className="progress-row">
          <label htmlFor={`prog-${jobId}`}>{p?.phase ?? job.state}</label>{' '}
          <progress id={`prog-${jobId}`} max={100} value={pct}>
            {pct !== undefined ? `${pct}%` : 'working'}
          </progress>{' '}
          {pct !== undefined && <span>{pct}%</span>}
          {p?.bytesTotal !== undefined && (
            <span className="muted" data-field="bytes">
              {' '}
              {bytes(p.bytesDone)} of {bytes(p.bytesTotal)}
              {p.rate !== undefined && `, ${bytes(p.rate)}/s`}
            </span>
          )}
          {p?.eta !== undefined && <span className="muted"> about {duration(p.eta * 1000)} left</span>}
        </div>
      )}
      {job?.state === 'failed' && job.error && (
        <div className="error-box" role="alert">
          {job.error.code}: {job.error.message}
        </div>
      )}
      {error && <div className="error-box">{error}</div>}
      {log.length > 0 && (
        <details open>
          <summary>Log ({log.length})</summary>
          <ol className="log">
            {log.map((l, i) => (
              // biome-ignore lint/suspicious/noArrayIndexKey: an append-only log
              <li key={i}>{l.text}</li>
            ))}
          </ol>
        </details>
      )}
    </div>
  );
}
