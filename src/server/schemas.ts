import { z } from 'zod';
import { BACKUP_MODES } from '../model/modes.js';

/*
 * The API's request and response schemas: they validate what comes in and what goes out, and the OpenAPI
 * document is generated from them (openapi.ts), so the document cannot drift from what the daemon does.
 * Records the engine and catalog define (backup record, inventory) are described by their stable fields and
 * let further fields through, as `inquire --json` and `inventory --json` do.
 */

export const roleSchema = z.enum(['read-only', 'operator', 'admin']);
export const warningSchema = z.object({ code: z.string(), message: z.string() });
export const errorSchema = z
  .object({
    error: z.object({
      code: z.string().meta({ description: 'stable code, as the CLI prints it with --json' }),
      message: z.string(),
      details: z.record(z.string(), z.unknown()).optional(),
    }),
  })
  .meta({ title: 'Error' });

export const backupStateSchema = z.enum(['running', 'complete', 'partial', 'failed', 'lost']);

const diskSchema = z.looseObject({
  label: z.string(),
  kind: z.enum(['flat', 'rdm-physical', 'rdm-virtual', 'independent']),
  included: z.boolean(),
  exclusion: z.enum(['rdm', 'task']).optional(),
  note: z.string().optional(),
});

const vmRecordSchema = z.looseObject({
  id: z.string(),
  name: z.string(),
  requestedMode: z.enum(BACKUP_MODES),
  effectiveMode: z.enum(BACKUP_MODES),
  consistency: z.string(),
  quiesce: z.object({ start: z.string(), end: z.string(), ms: z.number() }).optional(),
  state: z.enum(['ok', 'failed']),
  error: z.string().optional(),
  disks: z.array(diskSchema),
  warnings: z.array(warningSchema),
});

/** One of a backup's copies, as `inquire` shows them: its array snapshot first, then repository copies. */
export const copySchema = z
  .discriminatedUnion('kind', [
    z.object({
      kind: z.literal('array'),
      present: z
        .boolean()
        .meta({ description: 'false once the backup failed, was deleted, expired or lost' }),
      snapshots: z.array(z.object({ array: z.string(), snapshotId: z.string() })),
    }),
    z.object({
      kind: z.literal('repository'),
      name: z.string().meta({ description: 'the repository name in the configuration at offload time' }),
      repositoryId: z.string(),
      manifestId: z.string(),
      offloadedAt: z.string(),
      bytes: z.number().meta({ description: 'logical bytes of the copy (every file, zeros included)' }),
      bytesAdded: z.number().meta({ description: 'new bytes this offload wrote (compressed, encrypted)' }),
    }),
  ])
  .meta({ title: 'Copy' });

const bytesDescription =
  'sum of the capacities of the included disks (what the array snapshot covers, logically)';
const bytesAddedDescription =
  'where the backup has repository copies: the new bytes their offloads wrote (compressed, encrypted), summed';

/** The full record, as `inquire --backup ID --json`, plus its repository copies. */
export const backupRecordSchema = z
  .looseObject({
    id: z.string(),
    task: z.string(),
    state: backupStateSchema,
    startedAt: z.string(),
    finishedAt: z.string().optional(),
    snapshotAt: z.string().optional(),
    snapshots: z.array(z.looseObject({ array: z.string(), snapshotId: z.string() })),
    vms: z.array(vmRecordSchema),
    warnings: z.array(warningSchema),
    error: z.string().optional(),
    bytes: z.number().optional().meta({ description: bytesDescription }),
    copies: z.array(copySchema),
  })
  .meta({ title: 'BackupRecord' });

export const backupSummarySchema = z
  .object({
    id: z.string(),
    task: z.string(),
    state: backupStateSchema,
    startedAt: z.string(),
    finishedAt: z.string().optional(),
    vms: z.array(z.string()),
    warnings: z.number().int().meta({ description: 'how many warnings (run and VMs)' }),
    bytes: z.number().optional().meta({ description: bytesDescription }),
    bytesAdded: z.number().optional().meta({ description: bytesAddedDescription }),
    copies: z.array(copySchema),
  })
  .meta({ title: 'BackupSummary' });

export const jobSchema = z
  .object({
    id: z.string(),
    kind: z.string(),
    subject: z.string(),
    state: z.enum(['queued', 'running', 'done', 'failed']),
    startedAt: z.string(),
    finishedAt: z.string().optional(),
    progress: z
      .object({
        phase: z.string(),
        done: z.number().meta({ description: 'items finished' }),
        total: z.number().meta({ description: 'items reported so far' }),
        bytesDone: z.number().optional().meta({ description: 'bytes done of a byte-counted step (offload)' }),
        bytesTotal: z.number().optional(),
        rate: z.number().optional().meta({ description: 'bytes per second of the byte-counted step' }),
        eta: z.number().optional().meta({ description: 'seconds left, estimated from the rate' }),
      })
      .optional(),
    result: z.unknown().optional(),
    error: z.object({ code: z.string(), message: z.string() }).optional(),
    operationId: z.string().optional(),
    backupId: z.string().optional(),
    instanceId: z
      .string()
      .optional()
      .meta({ description: 'the daemon that runs or ran it (an instance of GET /api/v1/daemons)' }),
  })
  .meta({ title: 'Job' });

export const jobAcceptedSchema = z.object({ job: jobSchema });

export const daemonSchema = z
  .object({
    instanceId: z.string().meta({ description: 'made anew each time a daemon starts' }),
    host: z.string(),
    pid: z.number().int(),
    listen: z.string().meta({ description: 'the address it answers on (HOST:PORT)' }),
    startedAt: z.string(),
    heartbeatAt: z.string().meta({ description: 'its last heartbeat, by the catalog’s clock' }),
    leader: z.boolean().meta({ description: 'whether it runs the schedules' }),
    self: z.boolean().meta({ description: 'whether it is the daemon answering this request' }),
  })
  .meta({ title: 'Daemon' });

export const daemonsSchema = z
  .object({
    shared: z.boolean().meta({
      description: 'whether several daemons may serve this catalog (PostgreSQL); one per SQLite catalog',
    }),
    leaseSeconds: z.number().meta({ description: 'server.leaseSeconds of the daemon answering' }),
    leadership: z.object({
      holder: z
        .string()
        .optional()
        .meta({ description: 'instance id of the leader; none while nobody leads' }),
      term: z.number().int().meta({ description: 'grows by one each time the leadership changes hands' }),
      expiresAt: z.string().optional().meta({ description: 'when its lease ends unless renewed' }),
    }),
    daemons: z.array(daemonSchema).meta({ description: 'the live daemons, oldest start first' }),
  })
  .meta({ title: 'Daemons' });

export const sessionSchema = z.object({ user: z.string(), role: roleSchema, csrfToken: z.string() });
export const loginSchema = z.object({ user: z.string().min(1), password: z.string().min(1) }).strict();

export const healthSchema = z.object({ status: z.literal('ok'), version: z.string() });

const inventoryDiskSchema = z.looseObject({
  label: z.string(),
  kind: z.enum(['flat', 'rdm-physical', 'rdm-virtual', 'independent']),
  capacityBytes: z.number(),
  file: z.string(),
  datastore: z.string(),
  diskMode: z.string(),
  lun: z.string().optional(),
});

export const inventorySchema = z
  .object({
    vms: z.array(
      z.looseObject({
        name: z.string(),
        id: z.string(),
        powerState: z.string(),
        datacenter: z.string(),
        host: z.string(),
        cluster: z.string().optional(),
        folder: z.string(),
        datastores: z.array(z.string()),
        disks: z.array(inventoryDiskSchema),
        snapshots: z.array(z.unknown()),
      }),
    ),
    datastores: z.array(z.looseObject({ name: z.string(), volumes: z.array(z.string()) })),
    datacenters: z.array(z.looseObject({ name: z.string() })),
    clusters: z.array(z.looseObject({ name: z.string(), datacenter: z.string() })),
    hosts: z.array(
      z.looseObject({ name: z.string(), datacenter: z.string(), cluster: z.string().optional() }),
    ),
    folders: z.array(z.looseObject({ path: z.string(), datacenter: z.string() })),
  })
  .meta({ title: 'Inventory' });

const lastRunSchema = z.object({
  backupId: z.string(),
  state: backupStateSchema,
  startedAt: z.string(),
  finishedAt: z.string().optional(),
  warnings: z.array(warningSchema),
});

export const taskSummarySchema = z
  .object({
    name: z.string(),
    source: z.enum(['config', 'catalog']),
    schedule: z.string().optional(),
    timezone: z.string().optional(),
    nextRun: z.string().optional(),
    lastRun: lastRunSchema.optional(),
    running: z.boolean(),
  })
  .meta({ title: 'TaskSummary' });

/** A task as written in the configuration (checked again by the config's own schema when stored). */
export const taskConfigSchema = z.looseObject({ name: z.string() }).meta({
  title: 'TaskConfig',
  description: 'a task as in the configuration file (tasks[]); validated with the configuration rules',
});

export const taskDetailSchema = z.object({
  name: z.string(),
  source: z.enum(['config', 'catalog']),
  config: taskConfigSchema,
  nextRun: z.string().optional(),
  running: z.boolean(),
  lastRuns: z.array(backupSummarySchema),
});

export const repositorySchema = z
  .object({
    name: z.string(),
    type: z.enum(['local', 's3']),
    backups: z.number().int().meta({ description: 'backups the catalog records as copied there' }),
    bytes: z.number().meta({
      description:
        'bytes the recorded offloads added to it (compressed, encrypted, deduplicated): its usage as the catalog knows it',
    }),
    logicalBytes: z.number().meta({ description: 'logical bytes of those copies (zeros included)' }),
    lastOffloadAt: z.string().optional(),
  })
  .meta({ title: 'Repository' });

export const dashboardSchema = z
  .object({
    tasks: z.array(taskSummarySchema),
    failures: z.array(backupSummarySchema),
    warnings: z.array(
      z.object({ backupId: z.string(), vm: z.string().optional(), code: z.string(), message: z.string() }),
    ),
    snapshotsHeld: z.number().int(),
    repositories: z.array(repositorySchema),
    running: z.array(jobSchema),
  })
  .meta({ title: 'Dashboard' });

export const eventSchema = z
  .object({
    time: z.string(),
    type: z.string().meta({ description: 'job.started, job.finished, backup.finished, backup.warning' }),
    message: z.string(),
    jobId: z.string().optional(),
    backupId: z.string().optional(),
    task: z.string().optional(),
    code: z.string().optional(),
  })
  .meta({ title: 'Event' });

export const statSchema = z.object({
  backupId: z.string(),
  task: z.string(),
  startedAt: z.string(),
  durationMs: z.number().optional(),
  bytes: z.number().optional().meta({ description: bytesDescription }),
  bytesAdded: z.number().optional().meta({ description: bytesAddedDescription }),
  state: backupStateSchema,
});

export const tokenSchema = z
  .object({
    id: z.string(),
    name: z.string(),
    role: roleSchema,
    createdAt: z.string(),
    lastUsedAt: z.string().optional(),
  })
  .meta({ title: 'Token' });

const limitSchema = z.coerce.number().int().min(1).max(1000).optional();

export const backupQuerySchema = z
  .object({
    task: z.string().optional(),
    vm: z.string().optional(),
    state: z
      .string()
      .optional()
      .meta({ description: 'comma-separated states: running, complete, partial, failed, lost' }),
    since: z.string().optional().meta({ description: 'ISO time: started at or after' }),
    until: z.string().optional().meta({ description: 'ISO time: started before' }),
    limit: limitSchema,
    cursor: z.string().optional().meta({ description: 'nextCursor of the previous page' }),
  })
  .strict();

export const idParams = z.object({ id: z.string().min(1) });
export const nameParams = z.object({ name: z.string().min(1) });

export const backupRequestSchema = z
  .object({
    vms: z.array(z.string().min(1)).min(1).optional(),
    task: z.string().min(1).optional(),
    mode: z.enum(BACKUP_MODES).optional(),
  })
  .strict()
  .refine((b) => (b.vms === undefined) !== (b.task === undefined), {
    message: 'give either task or vms (not both)',
  });

export const restoreRequestSchema = z
  .object({
    backupId: z.string().min(1),
    vm: z.string().min(1),
    newName: z
      .string()
      .min(1)
      .optional()
      .meta({ description: 'restore the whole VM as a new VM of this name' }),
    original: z.boolean().optional().meta({ description: 'replace the live VM (needs confirmed: true)' }),
    confirmed: z.boolean().optional(),
    disks: z.array(z.string().min(1)).optional(),
    targetVm: z.string().min(1).optional().meta({ description: 'restore the disks into this existing VM' }),
    replace: z.boolean().optional(),
    force: z.boolean().optional(),
    filesOnly: z.boolean().optional(),
    datastore: z.string().min(1).optional(),
    host: z.string().min(1).optional(),
    folder: z.string().optional(),
    powerOn: z.boolean().optional(),
    dryRun: z.boolean().optional(),
    source: z
      .enum(['array', 'repository'])
      .optional()
      .meta({ description: 'where the files are read: the array snapshot (default) or a repository copy' }),
    repository: z.string().min(1).optional().meta({
      description: 'with source repository: which one (default: the only configured one holding it)',
    }),
  })
  .strict();

export const offloadRequestSchema = z
  .object({
    backupId: z.string().min(1),
    repository: z
      .string()
      .min(1)
      .meta({ description: 'a repository of the configuration (repositories[].name)' }),
  })
  .strict();

export const mountRequestSchema = z
  .object({
    backupId: z.string().min(1),
    host: z.string().min(1).optional(),
    datastore: z.string().min(1).optional(),
    dryRun: z.boolean().optional(),
  })
  .strict();

export const attachRequestSchema = z
  .object({
    backupId: z.string().min(1),
    vm: z.string().min(1),
    targetVm: z.string().min(1),
    disks: z.array(z.string().min(1)).optional(),
    dryRun: z.boolean().optional(),
  })
  .strict();

export const tokenRequestSchema = z.object({ name: z.string().min(1), role: roleSchema }).strict();

export const jobsQuerySchema = z
  .object({
    state: z.string().optional().meta({ description: 'comma-separated job states' }),
    limit: limitSchema,
  })
  .strict();
export const eventsQuerySchema = z.object({ limit: limitSchema }).strict();
export const statsQuerySchema = z.object({ task: z.string().optional(), limit: limitSchema }).strict();
