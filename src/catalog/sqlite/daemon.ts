import { ConflictError } from '../../errors.js';
import type { BackupState } from '../../model/backup.js';
import type { DaemonLease, DaemonStore, JobRow, JobState, ScheduleState } from '../types.js';
import type { SqliteDatabase } from './database.js';

interface LeaseRow {
  instance_id: string;
  host: string;
  pid: number;
  listen: string;
  started_at: string;
  heartbeat_at: string;
}

interface JobTableRow {
  id: string;
  kind: string;
  subject: string;
  state: JobState;
  instance_id: string;
  started_at: string;
  finished_at: string | null;
  progress: string | null;
  result: string | null;
  error: string | null;
  backup_id: string | null;
}

function toLease(r: LeaseRow): DaemonLease {
  return {
    instanceId: r.instance_id,
    host: r.host,
    pid: r.pid,
    listen: r.listen,
    startedAt: r.started_at,
    heartbeatAt: r.heartbeat_at,
  };
}

/** The daemon's lease row (one daemon per catalog), its jobs and the schedule state of each task. */
export class SqliteDaemonStore implements DaemonStore {
  constructor(readonly db: SqliteDatabase) {}

  async acquireDaemonLease(
    lease: Omit<DaemonLease, 'startedAt' | 'heartbeatAt'>,
    alive: (holder: DaemonLease) => boolean,
  ): Promise<DaemonLease> {
    return this.db.write(() => {
      const row = this.db.get<LeaseRow>('SELECT * FROM daemon WHERE slot = 1');
      if (row && row.instance_id !== lease.instanceId && alive(toLease(row))) {
        throw new ConflictError(
          'DAEMON_RUNNING',
          `another snapkeeper daemon serves this catalog: pid ${row.pid} on ${row.host}, listening on ${row.listen} (since ${row.started_at}); stop it first`,
          { details: { host: row.host, pid: row.pid, listen: row.listen, startedAt: row.started_at } },
        );
      }
      const now = this.db.stamp();
      this.db.run(
        `INSERT INTO daemon (slot, instance_id, host, pid, listen, started_at, heartbeat_at)
         VALUES (1, ?, ?, ?, ?, ?, ?)
         ON CONFLICT (slot) DO UPDATE SET instance_id = excluded.instance_id, host = excluded.host,
           pid = excluded.pid, listen = excluded.listen, started_at = excluded.started_at,
           heartbeat_at = excluded.heartbeat_at`,
        lease.instanceId,
        lease.host,
        lease.pid,
        lease.listen,
        now,
        now,
      );
      return { ...lease, startedAt: now, heartbeatAt: now };
    });
  }

  async renewDaemonLease(instanceId: string): Promise<boolean> {
    return (
      this.db.write(() =>
        this.db.run('UPDATE daemon SET heartbeat_at = ? WHERE instance_id = ?', this.db.stamp(), instanceId),
      ) > 0
    );
  }

  async releaseDaemonLease(instanceId: string): Promise<void> {
    this.db.write(() => this.db.run('DELETE FROM daemon WHERE instance_id = ?', instanceId));
  }

  async currentDaemon(): Promise<DaemonLease | undefined> {
    const row = this.db.get<LeaseRow>('SELECT * FROM daemon WHERE slot = 1');
    return row ? toLease(row) : undefined;
  }

  async saveJob(job: JobRow): Promise<void> {
    this.db.write(() =>
      this.db.run(
        `INSERT OR REPLACE INTO jobs (id, kind, subject, state, instance_id, started_at, finished_at, progress,
           result, error, backup_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
        job.id,
        job.kind,
        job.subject,
        job.state,
        job.instanceId,
        job.startedAt,
        job.finishedAt ?? null,
        job.progress === undefined ? null : JSON.stringify(job.progress),
        job.result === undefined ? null : JSON.stringify(job.result),
        job.error === undefined ? null : JSON.stringify(job.error),
        job.backupId ?? null,
      ),
    );
  }

  async findJob(id: string): Promise<JobRow | undefined> {
    const row = this.db.get<JobTableRow>('SELECT * FROM jobs WHERE id = ?', id);
    return row ? this.#toJob(row) : undefined;
  }

  async listJobs(filter: { state?: JobState[]; limit?: number } = {}): Promise<JobRow[]> {
    const states = filter.state ?? [];
    const rows = this.db.all<JobTableRow>(
      `SELECT * FROM jobs WHERE (? = 0 OR state IN (SELECT value FROM json_each(?)))
       ORDER BY started_at DESC, id DESC LIMIT ?`,
      states.length,
      JSON.stringify(states),
      filter.limit ?? 100,
    );
    return rows.map((r) => this.#toJob(r));
  }

  async failInterruptedJobs(
    currentInstance: string,
    error: { code: string; message: string },
  ): Promise<number> {
    return this.db.write(() =>
      this.db.run(
        `UPDATE jobs SET state = 'failed', finished_at = ?, error = ?
         WHERE state IN ('queued', 'running') AND instance_id != ?`,
        this.db.stamp(),
        JSON.stringify(error),
        currentInstance,
      ),
    );
  }

  async scheduleState(task: string): Promise<ScheduleState | undefined> {
    const row = this.db.get<{
      task: string;
      handled_at: string;
      last_run_at: string | null;
      last_job_id: string | null;
    }>('SELECT * FROM schedule_state WHERE task = ?', task);
    if (!row) return undefined;
    return {
      task: row.task,
      handledAt: row.handled_at,
      ...(row.last_run_at ? { lastRunAt: row.last_run_at } : {}),
      ...(row.last_job_id ? { lastJobId: row.last_job_id } : {}),
    };
  }

  async saveScheduleState(state: ScheduleState): Promise<void> {
    this.db.write(() =>
      this.db.run(
        `INSERT OR REPLACE INTO schedule_state (task, handled_at, last_run_at, last_job_id) VALUES (?, ?, ?, ?)`,
        state.task,
        state.handledAt,
        state.lastRunAt ?? null,
        state.lastJobId ?? null,
      ),
    );
  }

  async backupCounts(): Promise<
    { task: string; state: BackupState; count: number; lastCompleteAt?: string }[]
  > {
    return this.db
      .all<{ task: string; state: BackupState; n: number; last: string | null }>(
        `SELECT task, state, count(*) AS n,
           max(CASE WHEN state = 'complete' THEN coalesce(finished_at, started_at) END) AS last
         FROM backups GROUP BY task, state ORDER BY task, state`,
      )
      .map((r) => ({
        task: r.task,
        state: r.state,
        count: r.n,
        ...(r.last ? { lastCompleteAt: r.last } : {}),
      }));
  }

  #toJob(r: JobTableRow): JobRow {
    return {
      id: r.id,
      kind: r.kind,
      subject: r.subject,
      state: r.state,
      instanceId: r.instance_id,
      startedAt: r.started_at,
      ...(r.finished_at ? { finishedAt: r.finished_at } : {}),
      ...(r.progress ? { progress: this.db.parse<Record<string, unknown>>(r.progress, `job ${r.id}`) } : {}),
      ...(r.result ? { result: this.db.parse<unknown>(r.result, `job ${r.id}`) } : {}),
      ...(r.error ? { error: this.db.parse<{ code: string; message: string }>(r.error, `job ${r.id}`) } : {}),
      ...(r.backup_id ? { backupId: r.backup_id } : {}),
    };
  }
}
