/**
 * The catalog schema as an ordered list of migrations. Rules: never edit a migration that has shipped, only
 * append; versions are consecutive from 1; each `up` runs inside the transaction that records it in
 * schema_migrations, so it must not change PRAGMAs (foreign_keys cannot change inside a transaction).
 * JSON is stored as TEXT, timestamps as ISO-8601 UTC strings (they sort as text).
 */
export interface Migration {
  version: number;
  name: string;
  up: string;
}

export const MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    name: 'backups, operations, journal, locks',
    up: `
      CREATE TABLE backups (
        id          TEXT PRIMARY KEY,
        task        TEXT NOT NULL,
        state       TEXT NOT NULL CHECK (state IN ('running', 'complete', 'partial', 'failed')),
        started_at  TEXT NOT NULL,
        finished_at TEXT,
        record      TEXT NOT NULL
      );
      CREATE INDEX backups_started ON backups (started_at, id);
      CREATE INDEX backups_task ON backups (task, started_at);

      CREATE TABLE backup_vms (
        backup_id TEXT NOT NULL REFERENCES backups (id) ON DELETE CASCADE,
        vm_id     TEXT NOT NULL,
        vm_name   TEXT NOT NULL,
        PRIMARY KEY (backup_id, vm_id)
      );
      CREATE INDEX backup_vms_name ON backup_vms (vm_name);

      CREATE TABLE backup_snapshots (
        backup_id   TEXT NOT NULL REFERENCES backups (id) ON DELETE CASCADE,
        array       TEXT NOT NULL,
        snapshot_id TEXT NOT NULL,
        PRIMARY KEY (backup_id, array, snapshot_id)
      );
      CREATE INDEX backup_snapshots_snapshot ON backup_snapshots (array, snapshot_id);

      CREATE TABLE operations (
        id           TEXT PRIMARY KEY,
        kind         TEXT NOT NULL,
        subject      TEXT,
        pid          INTEGER NOT NULL,
        host         TEXT NOT NULL,
        state        TEXT NOT NULL CHECK (state IN ('running', 'done', 'failed')),
        started_at   TEXT NOT NULL,
        finished_at  TEXT,
        heartbeat_at TEXT,
        recovered_at TEXT
      );
      CREATE INDEX operations_state ON operations (state, started_at);

      CREATE TABLE journal (
        id           INTEGER PRIMARY KEY AUTOINCREMENT,
        operation_id TEXT NOT NULL REFERENCES operations (id) ON DELETE CASCADE,
        action       TEXT NOT NULL,
        target       TEXT NOT NULL,
        data         TEXT NOT NULL,
        created_at   TEXT NOT NULL,
        completed_at TEXT
      );
      CREATE INDEX journal_operation ON journal (operation_id, id);

      CREATE TABLE locks (
        resource     TEXT PRIMARY KEY,
        operation_id TEXT NOT NULL REFERENCES operations (id) ON DELETE CASCADE,
        acquired_at  TEXT NOT NULL
      );
      CREATE INDEX locks_operation ON locks (operation_id);
    `,
  },
  {
    version: 2,
    name: 'tasks created from the CLI',
    up: `
      CREATE TABLE tasks (
        name       TEXT PRIMARY KEY,
        config     TEXT NOT NULL,
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL
      );
    `,
  },
  {
    version: 3,
    name: 'mounts and attaches of backups',
    up: `
      CREATE TABLE mounts (
        id         TEXT PRIMARY KEY,
        backup_id  TEXT NOT NULL REFERENCES backups (id) ON DELETE RESTRICT,
        kind       TEXT NOT NULL,
        data       TEXT NOT NULL,
        created_at TEXT NOT NULL
      );
      CREATE INDEX mounts_backup ON mounts (backup_id, created_at);
    `,
  },
  {
    version: 4,
    name: 'catalog identity, shared locks, lost backups',
    // Runs with foreign_keys off (applyMigrations sees to it): rebuilding backups must not cascade into its
    // index tables or trip the mounts' RESTRICT. Failed operations of earlier releases finished themselves
    // after a clean undo (recover marked its own): none is left to repair.
    up: `
      CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
      INSERT INTO meta (key, value) VALUES ('catalog_id', lower(hex(randomblob(6))));

      CREATE TABLE locks_new (
        resource     TEXT NOT NULL,
        operation_id TEXT NOT NULL REFERENCES operations (id) ON DELETE CASCADE,
        mode         TEXT NOT NULL CHECK (mode IN ('shared', 'exclusive')),
        acquired_at  TEXT NOT NULL,
        PRIMARY KEY (resource, operation_id)
      );
      INSERT INTO locks_new (resource, operation_id, mode, acquired_at)
        SELECT resource, operation_id, 'exclusive', acquired_at FROM locks;
      DROP TABLE locks;
      ALTER TABLE locks_new RENAME TO locks;
      CREATE INDEX locks_operation ON locks (operation_id);

      CREATE TABLE backups_new (
        id          TEXT PRIMARY KEY,
        task        TEXT NOT NULL,
        state       TEXT NOT NULL CHECK (state IN ('running', 'complete', 'partial', 'failed', 'lost')),
        started_at  TEXT NOT NULL,
        finished_at TEXT,
        record      TEXT NOT NULL
      );
      INSERT INTO backups_new SELECT id, task, state, started_at, finished_at, record FROM backups;
      DROP TABLE backups;
      ALTER TABLE backups_new RENAME TO backups;
      CREATE INDEX backups_started ON backups (started_at, id);
      CREATE INDEX backups_task ON backups (task, started_at);

      UPDATE operations SET recovered_at = coalesce(finished_at, started_at)
        WHERE state = 'failed' AND recovered_at IS NULL;
    `,
  },
  {
    version: 5,
    name: 'copies of backups in repositories',
    // No foreign key to backups: a copy outlives the backup's record (deleting a backup keeps its copies).
    up: `
      CREATE TABLE copies (
        backup_id     TEXT NOT NULL,
        repository_id TEXT NOT NULL,
        repository    TEXT NOT NULL,
        task          TEXT NOT NULL,
        manifest_id   TEXT NOT NULL,
        offloaded_at  TEXT NOT NULL,
        bytes         INTEGER NOT NULL,
        bytes_added   INTEGER NOT NULL,
        vms           TEXT NOT NULL,
        PRIMARY KEY (backup_id, repository_id)
      );
      CREATE INDEX copies_repository ON copies (repository, offloaded_at);
      CREATE INDEX copies_task ON copies (task, offloaded_at);
    `,
  },
  {
    version: 6,
    name: 'daemon: API tokens, users, sessions, schedule state, daemon lease, jobs',
    // Secrets are never stored: tokens and session ids as SHA-256 hex, passwords as scrypt hashes.
    up: `
      CREATE TABLE api_tokens (
        id           TEXT PRIMARY KEY,
        name         TEXT NOT NULL UNIQUE,
        role         TEXT NOT NULL CHECK (role IN ('read-only', 'operator', 'admin')),
        token_hash   TEXT NOT NULL UNIQUE,
        created_at   TEXT NOT NULL,
        last_used_at TEXT
      );

      CREATE TABLE users (
        name          TEXT PRIMARY KEY,
        role          TEXT NOT NULL CHECK (role IN ('read-only', 'operator', 'admin')),
        password_hash TEXT NOT NULL,
        created_at    TEXT NOT NULL,
        updated_at    TEXT NOT NULL
      );

      CREATE TABLE sessions (
        id_hash    TEXT PRIMARY KEY,
        user_name  TEXT NOT NULL REFERENCES users (name) ON DELETE CASCADE,
        created_at TEXT NOT NULL,
        expires_at TEXT NOT NULL
      );
      CREATE INDEX sessions_user ON sessions (user_name);

      CREATE TABLE schedule_state (
        task         TEXT PRIMARY KEY,
        handled_at   TEXT NOT NULL,
        last_run_at  TEXT,
        last_job_id  TEXT
      );

      CREATE TABLE daemon (
        slot         INTEGER PRIMARY KEY CHECK (slot = 1),
        instance_id  TEXT NOT NULL,
        host         TEXT NOT NULL,
        pid          INTEGER NOT NULL,
        listen       TEXT NOT NULL,
        started_at   TEXT NOT NULL,
        heartbeat_at TEXT NOT NULL
      );

      CREATE TABLE jobs (
        id           TEXT PRIMARY KEY,
        kind         TEXT NOT NULL,
        subject      TEXT NOT NULL,
        state        TEXT NOT NULL CHECK (state IN ('queued', 'running', 'done', 'failed')),
        instance_id  TEXT NOT NULL,
        started_at   TEXT NOT NULL,
        finished_at  TEXT,
        progress     TEXT,
        result       TEXT,
        error        TEXT,
        backup_id    TEXT
      );
      CREATE INDEX jobs_started ON jobs (started_at, id);
      CREATE INDEX jobs_state ON jobs (state);
    `,
  },
  {
    version: 7,
    name: "several daemons: membership rows and the schedules' leadership",
    // The one-daemon lease row of migration 6 gives way to a row per daemon and one leadership row; a
    // leadership's term grows at each change of holder, fencing off a deposed leader's writes.
    up: `
      DROP TABLE daemon;

      CREATE TABLE daemon_members (
        instance_id  TEXT PRIMARY KEY,
        host         TEXT NOT NULL,
        pid          INTEGER NOT NULL,
        listen       TEXT NOT NULL,
        started_at   TEXT NOT NULL,
        heartbeat_at TEXT NOT NULL
      );

      CREATE TABLE leadership (
        slot        INTEGER PRIMARY KEY CHECK (slot = 1),
        holder      TEXT,
        term        INTEGER NOT NULL,
        expires_at  TEXT
      );
      INSERT INTO leadership (slot, holder, term, expires_at) VALUES (1, NULL, 0, NULL);
    `,
  },
];

/** The schema version this code writes. */
export const LATEST_SCHEMA_VERSION = MIGRATIONS[MIGRATIONS.length - 1]?.version ?? 0;
