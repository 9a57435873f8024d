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
import type { PostgresDatabase, Queryable } from './database.js';

function plus(stamp: string, ms: number): string {
  return new Date(Date.parse(stamp) + ms).toISOString();
}

/**
 * The daemons serving the catalog (a membership row each), the schedules' leadership, their jobs and the
 * schedule state of each task. Every time is the database server's (`db.stamp`), never a daemon's own clock,
 * so daemons on machines whose clocks differ agree on who is alive and who leads. The leadership row is
 * locked (FOR UPDATE) by whoever claims, releases or writes as leader: those transactions run one at a time.
 */
export class PostgresDaemonStore implements DaemonStore {
  constructor(readonly db: PostgresDatabase) {}

  readonly #parse: ParseJson = (json, what) => this.db.parse(json, what);

  async heartbeatMember(
    member: Pick<DaemonMember, 'instanceId' | 'host' | 'pid' | 'listen'>,
  ): Promise<DaemonMember> {
    return this.db.write(async (q) => {
      const now = await this.db.stamp(q);
      const row = (
        await q.query<MemberRow>(
          `INSERT INTO daemon_members (instance_id, host, pid, listen, started_at, heartbeat_at)
           VALUES ($1, $2, $3, $4, $5, $5)
           ON CONFLICT (instance_id) DO UPDATE SET host = excluded.host, pid = excluded.pid,
             listen = excluded.listen, heartbeat_at = excluded.heartbeat_at
           RETURNING *`,
          [member.instanceId, member.host, member.pid, member.listen, now],
        )
      ).rows[0]!;
      return toMember(row);
    });
  }

  async liveMembers(ttlMs: number): Promise<DaemonMember[]> {
    const now = await this.db.stamp();
    const rows = await this.db.all<MemberRow>(
      'SELECT * FROM daemon_members WHERE heartbeat_at > $1 ORDER BY started_at, instance_id',
      [plus(now, -ttlMs)],
    );
    return rows.map(toMember);
  }

  async removeMember(instanceId: string): Promise<void> {
    await this.db.write(async (q) => {
      await q.query('DELETE FROM daemon_members WHERE instance_id = $1', [instanceId]);
      await release(q, instanceId);
    });
  }

  async claimLeadership(instanceId: string, ttlMs: number): Promise<Leadership> {
    return this.db.write(async (q) => {
      const row = await leadershipRow(q, true);
      const { leadership, write } = claimDecision(row, instanceId, await this.db.stamp(q), ttlMs);
      if (write) {
        await q.query('UPDATE leadership SET holder = $1, term = $2, expires_at = $3 WHERE slot = 1', [
          write.holder,
          write.term,
          write.expiresAt,
        ]);
      }
      return leadership;
    });
  }

  async releaseLeadership(instanceId: string): Promise<void> {
    await this.db.write(async (q) => release(q, instanceId));
  }

  async currentLeadership(): Promise<Leadership> {
    const row = await leadershipRow(this.db, false);
    return leadershipAt(row, await this.db.stamp());
  }

  async saveJob(job: JobRow): Promise<void> {
    await this.db.run(
      `INSERT INTO jobs (id, kind, subject, state, instance_id, started_at, finished_at, progress, result, error,
         backup_id) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
       ON CONFLICT (id) DO UPDATE SET kind = excluded.kind, subject = excluded.subject, state = excluded.state,
         instance_id = excluded.instance_id, started_at = excluded.started_at, finished_at = excluded.finished_at,
         progress = excluded.progress, result = excluded.result, error = excluded.error,
         backup_id = excluded.backup_id`,
      jobValues(job),
    );
  }

  async findJob(id: string): Promise<JobRow | undefined> {
    const row = await this.db.get<JobTableRow>('SELECT * FROM jobs WHERE id = $1', [id]);
    return row ? toJob(this.#parse, row) : undefined;
  }

  async listJobs(filter: { state?: JobState[]; limit?: number } = {}): Promise<JobRow[]> {
    const states = filter.state ?? [];
    const limit = filter.limit ?? 100;
    const rows = await this.db.all<JobTableRow>(
      `SELECT * FROM jobs WHERE (cardinality($1::text[]) = 0 OR state = ANY($1::text[]))
       ORDER BY started_at DESC, id DESC LIMIT $2`,
      [states, limit < 0 ? null : limit],
    );
    return rows.map((r) => toJob(this.#parse, r));
  }

  async failOrphanedJobs(ttlMs: number, error: { code: string; message: string }): Promise<number> {
    return this.db.write(async (q) => {
      const now = await this.db.stamp(q);
      return (
        (
          await q.query(
            `UPDATE jobs SET state = 'failed', finished_at = $1, error = $2
             WHERE state IN ('queued', 'running') AND instance_id NOT IN
               (SELECT instance_id FROM daemon_members WHERE heartbeat_at > $3)`,
            [now, JSON.stringify(error), plus(now, -ttlMs)],
          )
        ).rowCount ?? 0
      );
    });
  }

  async scheduleState(task: string): Promise<ScheduleState | undefined> {
    const row = await this.db.get<{
      task: string;
      handled_at: string;
      last_run_at: string | null;
      last_job_id: string | null;
    }>('SELECT * FROM schedule_state WHERE task = $1', [task]);
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
    return this.db.write(async (q) => {
      // FOR SHARE: no claim can change the leadership until this write commits (a claim locks FOR UPDATE).
      const row = await leadershipRow(q, false, true);
      const now = await this.db.stamp(q);
      const held =
        row.holder === leader.instanceId &&
        row.term === leader.term &&
        row.expires_at !== null &&
        row.expires_at > now;
      if (!held) return false;
      await q.query(
        `INSERT INTO schedule_state (task, handled_at, last_run_at, last_job_id) VALUES ($1, $2, $3, $4)
         ON CONFLICT (task) DO UPDATE SET handled_at = excluded.handled_at, last_run_at = excluded.last_run_at,
           last_job_id = excluded.last_job_id`,
        [state.task, state.handledAt, state.lastRunAt ?? null, state.lastJobId ?? null],
      );
      return true;
    });
  }

  async backupCounts(): Promise<
    { task: string; state: BackupState; count: number; lastCompleteAt?: string }[]
  > {
    const rows = await this.db.all<{ task: string; state: BackupState; n: number; last: string | null }>(
      `SELECT task, state, count(*)::int AS n,
         max(CASE WHEN state = 'complete' THEN coalesce(finished_at, started_at) END) AS last
       FROM backups GROUP BY task, state ORDER BY task, state`,
    );
    return rows.map((r) => ({
      task: r.task,
      state: r.state,
      count: r.n,
      ...(r.last ? { lastCompleteAt: r.last } : {}),
    }));
  }
}

async function leadershipRow(q: Queryable, forUpdate: boolean, forShare = false): Promise<LeadershipRow> {
  const lock = forUpdate ? ' FOR UPDATE' : forShare ? ' FOR SHARE' : '';
  const row = (
    await q.query<LeadershipRow>(`SELECT holder, term, expires_at FROM leadership WHERE slot = 1${lock}`)
  ).rows[0];
  if (!row) throw new Error('the catalog has no leadership row (migration 7 missing)');
  return row;
}

async function release(q: Queryable, instanceId: string): Promise<void> {
  await q.query('UPDATE leadership SET holder = NULL, expires_at = NULL WHERE slot = 1 AND holder = $1', [
    instanceId,
  ]);
}
