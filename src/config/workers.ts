import { z } from 'zod';

/**
 * Offload workers (issue 10, docs/workers.md): one backup's offload is one job per disk on a job queue.
 * Without `queue` the jobs run in the process that runs the offload (the single-machine default). With a
 * PostgreSQL queue (`queue.url`, or the catalog's own URL when the catalog is on PostgreSQL) they are taken by
 * `snapkeeper worker` processes on any machine that reads the arrays' snapshots and reaches the repository.
 * The password is named here (a file or an environment variable), never written in the configuration.
 */

const envName = z
  .string()
  .regex(/^[A-Za-z_][A-Za-z0-9_]*$/, 'must be an environment variable name (letters, digits, "_")');

export const workersQueueSchema = z
  .object({
    /** `postgres://user@host:port/database`, without a password. */
    url: z.string().superRefine((u, ctx) => {
      let parsed: URL | undefined;
      try {
        parsed = new URL(u);
      } catch {
        parsed = undefined;
      }
      if (!parsed || !/^postgres(ql)?:$/.test(parsed.protocol) || parsed.hostname === '') {
        ctx.addIssue({ code: 'custom', message: 'must be a postgres://user@host:port/database URL' });
      } else if (parsed.password !== '') {
        ctx.addIssue({
          code: 'custom',
          message: 'must not hold a password: remove it and use passwordFile or passwordEnv',
        });
      }
    }),
    /** A file holding the password (one line). Relative to the config file. */
    passwordFile: z.string().min(1).optional(),
    passwordEnv: envName.optional(),
    /** pg-boss's schema in that database. */
    schema: z
      .string()
      .regex(/^[a-z_][a-z0-9_]{0,49}$/, 'must be a plain lowercase name (letters, digits, "_")')
      .default('snapkeeper_jobs'),
  })
  .strict()
  .refine((q) => q.passwordFile === undefined || q.passwordEnv === undefined, {
    message: 'set passwordFile or passwordEnv, not both',
  });

export const workersSchema = z
  .object({
    /** Disk jobs one worker (or the offloading process, without a queue) runs at once. */
    concurrency: z.number().int().min(1).max(64).default(2),
    /** Disk jobs of one repository running at once across every worker (default: no cap). */
    perRepository: z.number().int().min(1).max(1024).optional(),
    /** A worker renews its lease on a job every third of this; a job whose worker stops renewing is retried. */
    leaseSeconds: z.number().int().min(2).max(3600).default(60),
    /**
     * Run an offload's largest disk read in full alone first, the others after it: they find its chunks stored
     * (disks of one template share most of their data; writers running at once cannot see each other's).
     */
    seedFirst: z.boolean().default(true),
    /**
     * With a PostgreSQL queue: the offloading process also takes disk jobs (`concurrency` at once) while it
     * waits for its own, so an offload completes with no `snapkeeper worker` running. False: only workers do.
     */
    local: z.boolean().default(true),
    /** Attempts of a disk job after its first. */
    retries: z.number().int().min(0).max(20).default(3),
    queue: workersQueueSchema.optional(),
  })
  .strict();

export type WorkersConfig = z.infer<typeof workersSchema>;
export type WorkersQueueConfig = z.infer<typeof workersQueueSchema>;
