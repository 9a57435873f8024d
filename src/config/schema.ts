import { Cron } from 'croner';
import { z } from 'zod';
import { HOOK_PHASES } from '../model/backup.js';
import { BACKUP_MODES, QUIESCE_POLICIES } from '../model/modes.js';
import { catalogSchema } from './catalog.js';
import { safeName } from './names.js';
import { repositoriesSchema, taskOffloadSchema } from './repositories.js';
import { serverSchema } from './server.js';
import { workersSchema } from './workers.js';

export { safeName } from './names.js';

const retention = z
  .object({
    versions: z.number().int().positive().optional(),
    days: z.number().positive().optional(),
  })
  .strict();

const selectionLists = {
  vms: z.array(z.string().min(1)).optional(),
  folders: z.array(z.string().min(1)).optional(),
  hosts: z.array(z.string().min(1)).optional(),
  clusters: z.array(z.string().min(1)).optional(),
  datastores: z.array(z.string().min(1)).optional(),
  datacenters: z.array(z.string().min(1)).optional(),
};
export const selectionSchema = z.object(selectionLists).strict();

/** A task's `select` must name something: an empty one would back up nothing, night after night. */
const taskSelectionSchema = selectionSchema.refine(
  (s) => Object.values(s).some((list) => list !== undefined && list.length > 0),
  { message: 'is empty: name at least one VM, folder, host, cluster, datastore or datacenter' },
);

/** Checked with croner, the library `snapkeeper serve` schedules with, so what loads is what runs. */
const cronSchedule = z
  .string()
  .min(1)
  .superRefine((pattern, ctx) => {
    try {
      // Without a callback croner only parses the pattern; stop() makes sure no timer outlives the check.
      new Cron(pattern).stop();
    } catch (err) {
      ctx.addIssue({
        code: 'custom',
        message: `invalid cron schedule ${JSON.stringify(pattern)}: ${err instanceof Error ? err.message : String(err)}`,
      });
    }
  });

/** An IANA time zone name such as Europe/Berlin, as the platform's time zone database knows it. */
export function isTimeZone(name: string): boolean {
  try {
    new Intl.DateTimeFormat('en', { timeZone: name });
    return true;
  } catch {
    return false;
  }
}

const timeZone = z.string().refine(isTimeZone, {
  error: (issue) => `unknown time zone ${JSON.stringify(issue.input)} (an IANA name such as Europe/Berlin)`,
});

/**
 * A command run on the snapkeeper host at one phase of a backup: an argument list, never a shell line, so
 * nothing in a VM name or a backup id can be read as shell syntax. `timeoutSeconds` defaults by phase
 * (hooks.ts: 30 s while the VMs are held, 300 s otherwise).
 */
export const hookSchema = z
  .object({
    phase: z.enum(HOOK_PHASES),
    run: z
      .array(z.string().min(1))
      .min(1, 'needs the program to run and its arguments, e.g. ["/usr/local/bin/flush"]'),
    timeoutSeconds: z.number().int().min(1).max(3600).optional(),
    onError: z.enum(['fail', 'continue']).default('fail'),
  })
  .strict();
export type HookConfig = z.infer<typeof hookSchema>;

/** Ad-hoc backups (`backup --vm`) are recorded under this task name: no task may take it. */
export const RESERVED_TASK_NAME = 'adhoc';

/** Issue 11: disks of matching VMs (name or glob) left out of the task's backups, by disk label. */
const diskExclusionRule = z
  .object({
    vm: z.string().min(1),
    disks: z.array(z.string().min(1, { message: 'a disk label must not be empty' })).min(1),
  })
  .strict();

/** What a task leaves out: VMs (the selection criteria) and disks of the VMs it keeps. */
const taskExcludeSchema = selectionSchema.extend({ disks: z.array(diskExclusionRule).optional() });

export const taskSchema = z
  .object({
    name: safeName.refine((n) => n !== RESERVED_TASK_NAME, {
      message: `"${RESERVED_TASK_NAME}" is reserved for ad-hoc backups (backup --vm); choose another task name`,
    }),
    description: z.string().optional(),
    select: selectionSchema,
    exclude: taskExcludeSchema.optional(),
    mode: z.enum(BACKUP_MODES).optional(),
    retention: retention.optional(),
    offload: taskOffloadSchema.optional(),
    schedule: cronSchedule.optional(),
    /** The time zone `schedule` is read in (default: the host's). */
    timezone: timeZone.optional(),
    hooks: z.array(hookSchema).optional(),
    /** When a quiesced VM snapshot is impossible or fails (default: defaults.onQuiesceFailure). */
    onQuiesceFailure: z.enum(QUIESCE_POLICIES).optional(),
  })
  .strict();

/**
 * A task as written by a user (config file, `task create|edit`): as taskSchema, and its `select` must name
 * something. The catalog reads stored tasks with taskSchema, so a task stored before this rule still loads.
 */
export const userTaskSchema = taskSchema.extend({ select: taskSelectionSchema });

export const arraySchema = z
  .object({
    name: safeName,
    type: z.literal('fs'),
    /** Root directory of the file-system array. */
    path: z.string().min(1),
    driver: z.enum(['auto', 'btrfs', 'reflink', 'copy']).default('auto'),
    /** Explicit datastore -> volume names, for datastores the automatic mapping cannot place. */
    datastores: z.record(z.string(), z.array(z.string().min(1)).min(1)).optional(),
  })
  .strict();

export const vcenterSchema = z
  .object({
    url: z.url({ protocol: /^https?$/ }),
    user: z.string().min(1),
    passwordFile: z.string().min(1).optional(),
    passwordEnv: z.string().min(1).optional(),
    /** SHA-256 (or SHA-1) fingerprint of the server certificate, hex with or without colons. */
    thumbprint: z
      .string()
      .regex(
        /^([0-9A-Fa-f]{2}:?){20}$|^([0-9A-Fa-f]{2}:?){32}$/,
        'must be a SHA-1 or SHA-256 fingerprint in hex',
      )
      .optional(),
    insecure: z.boolean().default(false),
    maxConcurrentRequests: z.number().int().min(1).max(64).default(8),
    timeoutSeconds: z.number().positive().default(120),
  })
  .strict()
  .refine((v) => (v.passwordFile === undefined) !== (v.passwordEnv === undefined), {
    message: 'exactly one of passwordFile and passwordEnv must be set',
  });

export const configSchema = z
  .object({
    vcenter: vcenterSchema,
    arrays: z.array(arraySchema).min(1),
    /** A SQLite file (`path`) or a PostgreSQL database (`url`): src/config/catalog.ts. */
    catalog: catalogSchema.optional(),
    defaults: z
      .object({
        mode: z.enum(BACKUP_MODES).default('SNAPSHOT_EXCL_MEM'),
        onQuiesceFailure: z.enum(QUIESCE_POLICIES).default('crash-consistent'),
        retention: retention.optional(),
        concurrency: z
          .object({
            global: z.number().int().min(1).max(512).default(16),
            perHost: z.number().int().min(1).max(128).default(4),
          })
          .strict()
          .default({ global: 16, perHost: 4 }),
      })
      .strict()
      .default({
        mode: 'SNAPSHOT_EXCL_MEM',
        onQuiesceFailure: 'crash-consistent',
        concurrency: { global: 16, perHost: 4 },
      }),
    tasks: z.array(userTaskSchema).default([]),
    repositories: repositoriesSchema,
    /** `snapkeeper serve`: listen address, TLS, webhooks, logins (src/config/server.ts). */
    server: serverSchema.prefault({}),
    /** Offload disk jobs: concurrency, lease, and the PostgreSQL job queue (src/config/workers.ts). */
    workers: workersSchema.prefault({}),
  })
  .strict();

export type RawConfig = z.infer<typeof configSchema>;
export type TaskConfig = z.infer<typeof taskSchema>;
export type Selection = z.infer<typeof selectionSchema>;
export type TaskExclude = z.infer<typeof taskExcludeSchema>;
export type DiskExclusionRule = z.infer<typeof diskExclusionRule>;
export type ArrayConfig = z.infer<typeof arraySchema>;
export type Retention = z.infer<typeof retention>;
