import { z } from 'zod';
import { safeName } from './names.js';

/**
 * Repositories (issue 8): where offloaded copies of backups live. Two types, a local directory and an
 * S3-compatible bucket. The passphrase is named here (a file or an environment variable), never written in
 * the configuration itself, and is only read when a repository is opened (src/engine/repository-access.ts),
 * so a command that uses no repository never needs it.
 */

/** A variable name as a shell would accept it; anything else is certainly a mistake (e.g. a value pasted). */
const envName = z
  .string()
  .regex(/^[A-Za-z_][A-Za-z0-9_]*$/, 'must be an environment variable name (letters, digits, "_")');

const passphraseFields = {
  /** A file holding the passphrase (one line; a trailing newline is ignored). Relative to the config file. */
  passphraseFile: z.string().min(1).optional(),
  /** An environment variable holding the passphrase. */
  passphraseEnv: envName.optional(),
};

/** Hours an unreferenced pack stays before prune deletes it (protects offloads running meanwhile). */
const safetyDelayHours = z
  .number()
  .min(0)
  .max(24 * 365);

export const localRepositorySchema = z
  .object({
    name: safeName,
    type: z.literal('local'),
    /** The repository's directory (created by `repo init`). Relative to the config file. */
    path: z.string().min(1),
    ...passphraseFields,
    safetyDelayHours: safetyDelayHours.optional(),
  })
  .strict();

export const s3RepositorySchema = z
  .object({
    name: safeName,
    type: z.literal('s3'),
    /** S3-compatible endpoint URL (default: the AWS endpoint of `region`). */
    endpoint: z.url({ protocol: /^https?$/ }).optional(),
    region: z.string().min(1),
    bucket: z
      .string()
      .regex(
        /^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/,
        'must be a bucket name: 3-63 lowercase letters, digits, "." or "-"',
      ),
    /** Key prefix inside the bucket, so several repositories can share one bucket. */
    prefix: z
      .string()
      .regex(/^[^/].*$/, 'must not start with "/"')
      .optional(),
    /** Path-style addressing (`endpoint/bucket/key`), needed by most S3-compatible servers. */
    pathStyle: z.boolean().default(false),
    /** Environment variables holding the access key id and the secret key (default: the SDK's own chain). */
    accessKeyIdEnv: envName.optional(),
    secretAccessKeyEnv: envName.optional(),
    /** A shared-credentials style file (`aws_access_key_id = …`, `aws_secret_access_key = …`). */
    credentialsFile: z.string().min(1).optional(),
    /** Write-once: every object is retained for `days` (S3 Object Lock, compliance mode). */
    objectLock: z
      .object({ days: z.number().int().min(1).max(36500) })
      .strict()
      .optional(),
    ...passphraseFields,
    safetyDelayHours: safetyDelayHours.optional(),
  })
  .strict()
  .refine((r) => (r.accessKeyIdEnv === undefined) === (r.secretAccessKeyEnv === undefined), {
    message: 'accessKeyIdEnv and secretAccessKeyEnv go together: set both or neither',
  })
  .refine((r) => r.credentialsFile === undefined || r.accessKeyIdEnv === undefined, {
    message: 'set either credentialsFile or accessKeyIdEnv/secretAccessKeyEnv, not both',
  });

export const repositorySchema = z
  .discriminatedUnion('type', [localRepositorySchema, s3RepositorySchema], {
    error: (issue) => (issue.code === 'invalid_union' ? 'type must be "local" or "s3"' : undefined),
  })
  .refine((r) => (r.passphraseFile === undefined) !== (r.passphraseEnv === undefined), {
    message: 'exactly one of passphraseFile and passphraseEnv must be set',
  });

export const repositoriesSchema = z.array(repositorySchema).default([]);

/** A task's offload: the repository it copies every backup to, and how long the copies stay there. */
export const taskOffloadSchema = z
  .object({
    repository: safeName,
    /** Retention of this task's copies in that repository, separate from the array retention. */
    retention: z
      .object({
        versions: z.number().int().positive().optional(),
        days: z.number().positive().optional(),
      })
      .strict()
      .optional(),
  })
  .strict();

export type RepositoryConfig = z.infer<typeof repositorySchema>;
export type LocalRepositoryConfig = z.infer<typeof localRepositorySchema>;
export type S3RepositoryConfig = z.infer<typeof s3RepositorySchema>;
export type TaskOffload = z.infer<typeof taskOffloadSchema>;

/** Default prune safety delay when neither the command nor the repository's configuration gives one. */
export const DEFAULT_SAFETY_DELAY_HOURS = 24;

/**
 * Problems in the cross references between repositories and tasks: a repository name given twice, and a
 * task offloading to a repository that is not configured (named with the task).
 */
export function repositoryReferenceProblems(input: unknown): { path: string; message: string }[] {
  const doc = input as { repositories?: unknown; tasks?: unknown } | undefined;
  const repos = Array.isArray(doc?.repositories) ? doc.repositories : [];
  const names = new Set<string>();
  const problems: { path: string; message: string }[] = [];
  for (const [i, r] of repos.entries()) {
    const name = (r as { name?: unknown } | null)?.name;
    if (typeof name !== 'string') continue;
    if (names.has(name))
      problems.push({ path: `repositories[${i}].name`, message: `duplicate repository name ${name}` });
    names.add(name);
  }
  const tasks = Array.isArray(doc?.tasks) ? doc.tasks : [];
  for (const [i, t] of tasks.entries()) {
    const task = t as { name?: unknown; offload?: { repository?: unknown } } | null;
    const repo = task?.offload?.repository;
    if (typeof repo !== 'string' || names.has(repo)) continue;
    const known = [...names].join(', ') || 'none configured';
    problems.push({
      path: `tasks[${i}].offload.repository${typeof task?.name === 'string' ? ` (task ${task.name})` : ''}`,
      message: `unknown repository ${repo} (repositories: ${known})`,
    });
  }
  return problems;
}

/**
 * A local repository inside an array's directory is lost with that array, which is what offload protects
 * against: it works, so it is a warning (printed, never fatal), not an error. Paths are absolute here.
 */
export function repositoryPlacementWarnings(
  repositories: readonly RepositoryConfig[],
  arrays: readonly { name: string; path: string }[],
): { code: string; message: string }[] {
  const inside = (path: string, root: string) =>
    path === root || path.startsWith(root.endsWith('/') ? root : `${root}/`);
  return repositories.flatMap((r) => {
    if (r.type !== 'local') return [];
    const array = arrays.find((a) => inside(r.path, a.path));
    return array
      ? [
          {
            code: 'REPOSITORY_ON_ARRAY',
            message: `repositories: ${r.name} (${r.path}) is inside array ${array.name} (${array.path}): its copies are lost with the array they protect`,
          },
        ]
      : [];
  });
}
