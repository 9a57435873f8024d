import { z } from 'zod';
import { BACKUP_MODES } from '../model/modes.js';

/** Names used in paths and ids: no separators, no `..`, no control characters. */
export const safeName = z
  .string()
  .min(1)
  .max(80)
  .regex(
    /^[A-Za-z0-9][A-Za-z0-9._-]*$/,
    'must be letters, digits, ".", "_" or "-", starting with a letter or digit',
  );

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

/** Ad-hoc backups (`backup --vm`) are recorded under this task name: no task may take it. */
export const RESERVED_TASK_NAME = 'adhoc';

export const taskSchema = z
  .object({
    name: safeName.refine((n) => n !== RESERVED_TASK_NAME, {
      message: `"${RESERVED_TASK_NAME}" is reserved for ad-hoc backups (backup --vm); choose another task name`,
    }),
    description: z.string().optional(),
    select: selectionSchema,
    exclude: selectionSchema.optional(),
    mode: z.enum(BACKUP_MODES).optional(),
    retention: retention.optional(),
    offload: z.object({ repository: safeName }).strict().optional(),
    schedule: z.string().min(1).optional(),
  })
  .strict();

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
    catalog: z
      .object({ path: z.string().min(1) })
      .strict()
      .optional(),
    defaults: z
      .object({
        mode: z.enum(BACKUP_MODES).default('SNAPSHOT_EXCL_MEM'),
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
        concurrency: { global: 16, perHost: 4 },
      }),
    tasks: z.array(taskSchema).default([]),
    repositories: z.array(z.record(z.string(), z.unknown())).default([]),
  })
  .strict();

export type RawConfig = z.infer<typeof configSchema>;
export type TaskConfig = z.infer<typeof taskSchema>;
export type Selection = z.infer<typeof selectionSchema>;
export type ArrayConfig = z.infer<typeof arraySchema>;
export type Retention = z.infer<typeof retention>;
