import type { BackupState } from '../../model/backup.js';
import {
  claimDecision,
  type JobTableRow,
  jobValues,
  type LeadershipRow,
  leadershipAt,
  type MemberRow,
  type ParseJson,
  toJob,
  toMember,
} from '../rows.js';
import type { DaemonMember, DaemonStore, JobRow, JobState, Leadership, ScheduleState } from '../types.js';
import type { SqliteDatabase } from './database.js';

/**
 * The daemons serving the catalog (a membership row each), the schedules' leadership, their jobs and the
 * schedule state of each task. Times come from the catalog's clock (`db.stamp()`), ISO-8601 UTC strings that
 * compare as instants.
 */
export class SqliteDaemonStore implements DaemonStore {
  constructor(readonly db: SqliteDatabase) {}

  readonly #parse: ParseJson = (json, what) => this.db.parse(json, what);

  #ago(ms: number): string {
    return new Date(Date.parse(this.db.stamp()) - ms).toISOString();
  }

  async heartbeatMember(
    member: Pick<DaemonMember, 'instanceId' | 'host' | 'pid' | 'listen'>,
  ): Promise<DaemonMember> {
    return this.db.write(() => {
      const now = this.db.stamp();
      this.db.run(
        `INSERT INTO daemon_members (instance_id, host, pid, listen, started_at, heartbeat_at)
         VALUES (?, ?, ?, ?, ?, ?)
         ON CONFLICT (instance_id) DO UPDATE SET host = excluded.host, pid = excluded.pid,
           listen = excluded.listen, heartbeat_at = excluded.heartbeat_at`,
        member.instanceId,
        member.host,
        member.pid,
        member.listen,
        now,
        now,
      );
      const row = this.db.get<MemberRow>(
        'SELECT * FROM daemon_members WHERE instance_id = ?',
        member.instanceId,
      );
      if (!row) throw new Error(`daemon member ${member.instanceId} vanished inside its own transaction`);
      return toMember(row);
    });
  }

  async liveMembers(ttlMs: number): Promise<DaemonMember[]> {
    return this.db
      .all<MemberRow>(
        'SELECT * FROM daemon_members WHERE heartbeat_at > ? ORDER BY started_at, instance_id',
        this.#ago(ttlMs),
      )
      .map(toMember);
  }

  async removeMember(instanceId: string): Promise<void> {
    this.db.write(() => {
      this.db.run('DELETE FROM daemon_members WHERE instance_id = ?', instanceId);
      this.#release(instanceId);
    });
  }

  async claimLeadership(instanceId: string, ttlMs: number): Promise<Leadership> {
    return this.db.write(() => {
      const { leadership, write } = claimDecision(this.#leadershipRow(), instanceId, this.db.stamp(), ttlMs);
      if (write) {
        this.db.run(
          'UPDATE leadership SET holder = ?, term = ?, expires_at = ? WHERE slot = 1',
          write.holder,
          write.term,
          write.expiresAt,
        );
      }
      return leadership;
    });
  }

  async releaseLeadership(instanceId: string): Promise<void> {
    this.db.write(() => this.#release(instanceId));
  }

  async currentLeadership(): Promise<Leadership> {
    return leadershipAt(this.#leadershipRow(), this.db.stamp());
  }

  #release(instanceId: string): void {
    this.db.run(
      'UPDATE leadership SET holder = NULL, expires_at = NULL WHERE slot = 1 AND holder = ?',
      instanceId,
    );
  }

  #leadershipRow(): LeadershipRow {
    const row = this.db.get<LeadershipRow>('SELECT holder, term, expires_at FROM leadership WHERE slot = 1');
    if (!row) throw new Error('the catalog has no leadership row (migration 7 missing)');
    return row;
  }

  async saveJob(job: JobRow): Promise<void> {
    this.db.write(() =>
      this.db.run(
        `INSERT OR REPLACE INTO jobs (id, kind, subject, state, instance_id, started_at, finished_at, progress,
           result, error, backup_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
        ...jobValues(job),
      ),
    );
  }

  async findJob(id: string): Promise<JobRow | undefined> {
    const row = this.db.get<JobTableRow>('SELECT * FROM jobs WHERE id = ?', id);
    return row ? toJob(this.#parse, row) : undefined;
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
    return rows.map((r) => toJob(this.#parse, r));
  }

  async failOrphanedJobs(ttlMs: number, error: { code: string; message: string }): Promise<number> {
    return this.db.write(() =>
      this.db.run(
        `UPDATE jobs SET state = 'failed', finished_at = ?, error = ?
         WHERE state IN ('queued', 'running') AND instance_id NOT IN
           (SELECT instance_id FROM daemon_members WHERE heartbeat_at > ?)`,
        this.db.stamp(),
        JSON.stringify(error),
        this.#ago(ttlMs),
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

  async saveScheduleStateAsLeader(
    state: ScheduleState,
    leader: { instanceId: string; term: number },
  ): Promise<boolean> {
    return this.db.write(() => {
      const row = this.#leadershipRow();
      const held =
        row.holder === leader.instanceId &&
        row.term === leader.term &&
        row.expires_at !== null &&
        row.expires_at > this.db.stamp();
      if (!held) return false;
      this.db.run(
        `INSERT OR REPLACE INTO schedule_state (task, handled_at, last_run_at, last_job_id) VALUES (?, ?, ?, ?)`,
        state.task,
        state.handledAt,
        state.lastRunAt ?? null,
        state.lastJobId ?? null,
      );
      return true;
    });
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
}
