import type { BackupCopy } from '../catalog/index.js';
import { DEFAULT_SAFETY_DELAY_HOURS } from '../config/repositories.js';
import { NotFoundError, UsageError } from '../errors.js';
import type { CheckReport, ManifestSummary, PruneReport } from '../repository/index.js';
import { expiredBackups, type RetentionCandidate, type RetentionPolicy } from '../rules/index.js';
import type { Secret } from '../util/secret.js';
import type { EngineContext } from './context.js';
import { newOperationId } from './ids.js';
import { withOperation } from './operation.js';
import {
  type ConfiguredRepository,
  openConfiguredRepository,
  repositoryConfig,
} from './repository-access.js';
import { applyRule } from './rule-errors.js';

/**
 * Repository maintenance (issue 8, SPEC 4): `repo init|check|prune|backups|forget|passwd` and the retention
 * of a task's copies in a repository. A repository is shared by design (SPEC 8): what it holds is decided
 * from its own manifests, never from this catalog's view; the catalog's copy rows follow.
 */

/** Opens repository `name` for `fn` and closes it (its worker threads) whatever happens. */
async function withRepository<T>(
  ctx: EngineContext,
  name: string,
  fn: (opened: ConfiguredRepository) => Promise<T>,
  options: { create?: boolean } = {},
): Promise<T> {
  const opened = await openConfiguredRepository(ctx, name, options);
  try {
    return await fn(opened);
  } finally {
    await opened.repository.close();
  }
}

export interface RepoInitResult {
  repository: string;
  id: string;
  backend: string;
}

/** Creates repository `name` where its configuration says (REPOSITORY_EXISTS, exit 3, when one is there). */
export function repoInit(ctx: EngineContext, name: string): Promise<RepoInitResult> {
  return withRepository(
    ctx,
    name,
    async ({ repository }) => ({
      repository: name,
      id: repository.id,
      backend: repository.backend.description,
    }),
    { create: true },
  );
}

export interface RepoCheckResult extends CheckReport {
  repository: string;
  readData: boolean;
}

/** Checks the structure, and with `readData` every byte (each blob decrypted and verified). */
export function repoCheck(
  ctx: EngineContext,
  name: string,
  options: { readData?: boolean; signal?: AbortSignal } = {},
): Promise<RepoCheckResult> {
  return withRepository(ctx, name, async ({ repository }) => {
    ctx.events.phase(options.readData === true ? 'check --read-data' : 'check');
    const report = await repository.check({
      readData: options.readData === true,
      ...(options.signal ? { signal: options.signal } : {}),
    });
    return { repository: name, readData: options.readData === true, ...report };
  });
}

export interface RepoPruneResult extends PruneReport {
  repository: string;
  safetyDelayHours: number;
}

/**
 * Garbage collection: data no manifest references and older than the safety delay (hours: the option, else
 * the repository's `safetyDelayHours`, else 24) is deleted, under the repository's exclusive lock (refused,
 * naming the holder, while another run holds it). Runs as an operation of kind `prune` in the catalog.
 */
export async function repoPrune(
  ctx: EngineContext,
  name: string,
  options: { safetyDelayHours?: number; signal?: AbortSignal } = {},
): Promise<RepoPruneResult> {
  const config = repositoryConfig(ctx, name);
  const hours = options.safetyDelayHours ?? config.safetyDelayHours ?? DEFAULT_SAFETY_DELAY_HOURS;
  if (!Number.isFinite(hours) || hours < 0) {
    throw new UsageError('USAGE', `--safety-delay: ${hours} is not a number of hours (0 or more)`);
  }
  return withRepository(ctx, name, ({ repository }) =>
    withOperation(
      ctx.catalog,
      { id: newOperationId('prune', ctx.now()), kind: 'prune', subject: name, locks: [] },
      async () => {
        ctx.events.phase('prune');
        const report = await repository.prune({
          safetyDelayMs: hours * 3_600_000,
          now: ctx.now(),
          ...(options.signal ? { signal: options.signal } : {}),
        });
        return { repository: name, safetyDelayHours: hours, ...report };
      },
    ),
  );
}

/** One backup a repository holds, as `repo backups` lists it. */
export interface RepoBackup extends ManifestSummary {
  /** The VMs and their bytes. */
  bytes: number;
  /** Whether this catalog made the backup (its catalog id), and whether it still has its record. */
  thisCatalog: boolean;
  inCatalog: boolean;
}

/**
 * What repository `name` holds, oldest first: every manifest, whichever catalog wrote it (the repository
 * alone describes its backups; with a new, empty catalog this is how they are found).
 */
export function repoBackups(ctx: EngineContext, name: string): Promise<RepoBackup[]> {
  return withRepository(ctx, name, async ({ repository }) => {
    const manifests = await repository.listManifests();
    const out: RepoBackup[] = [];
    for (const m of manifests.sort(
      (a, b) => a.startedAt.localeCompare(b.startedAt) || a.id.localeCompare(b.id),
    )) {
      const thisCatalog = m.catalogId === ctx.catalog.id;
      out.push({
        ...m,
        bytes: m.vms.reduce((n, v) => n + v.bytes, 0),
        thisCatalog,
        inCatalog: thisCatalog && (await ctx.catalog.findBackup(m.backupId)) !== undefined,
      });
    }
    return out;
  });
}

export interface ForgetResult {
  repository: string;
  dryRun: boolean;
  /** Manifests forgotten (or, dry, to be forgotten). */
  forgotten: { manifestId: string; backupId: string; reason: string }[];
  /** Copies of backups in use: kept. */
  skipped: { manifestId: string; backupId: string; reason: string }[];
}

/** Whether a backup is in use (a restore, mount, attach or offload holds it): its copy is never forgotten. */
async function inUse(ctx: EngineContext, backupId: string): Promise<string | undefined> {
  const holders = await ctx.catalog.lockHolders(`backup:${backupId}`);
  if (holders.length === 0) return undefined;
  return holders.map((h) => `${h.operation.kind} ${h.operation.id}`).join(', ');
}

/** Forgets manifests (the data stays until prune) and removes their copies from the catalog. */
async function forgetManifests(
  ctx: EngineContext,
  opened: ConfiguredRepository,
  chosen: { manifest: ManifestSummary; reason: string }[],
  dryRun: boolean,
): Promise<ForgetResult> {
  const result: ForgetResult = { repository: opened.name, dryRun, forgotten: [], skipped: [] };
  for (const { manifest, reason } of chosen) {
    const holder = manifest.catalogId === ctx.catalog.id ? await inUse(ctx, manifest.backupId) : undefined;
    const entry = { manifestId: manifest.id, backupId: manifest.backupId };
    if (holder !== undefined) {
      result.skipped.push({ ...entry, reason: `in use by ${holder}` });
      continue;
    }
    if (!dryRun) {
      await opened.repository.forget(manifest.id);
      if (manifest.catalogId === ctx.catalog.id) {
        await ctx.catalog.removeCopy(manifest.backupId, opened.repository.id).catch((err: unknown) => {
          if (!(err instanceof NotFoundError)) throw err;
        });
      }
    }
    result.forgotten.push({ ...entry, reason });
  }
  return result;
}

/**
 * `repo forget`: forgets the manifests named (by manifest id or backup id). Unknown ones are refused before
 * anything is forgotten (REPOSITORY_BACKUP_NOT_FOUND, exit 3); a backup in use is skipped and said so.
 */
export function repoForget(
  ctx: EngineContext,
  name: string,
  request: { ids: string[]; dryRun?: boolean },
): Promise<ForgetResult> {
  if (request.ids.length === 0)
    throw new UsageError('USAGE', 'name at least one manifest or backup id to forget');
  return withRepository(ctx, name, async (opened) => {
    const manifests = await opened.repository.listManifests();
    const chosen = request.ids.map((id) => {
      const found = manifests.filter((m) => m.id === id || m.backupId === id);
      if (found.length === 0) {
        throw new NotFoundError(
          'REPOSITORY_BACKUP_NOT_FOUND',
          `repository ${name} holds no backup or manifest ${id}`,
        );
      }
      return found.map((manifest) => ({ manifest, reason: 'asked for' }));
    });
    return forgetManifests(ctx, opened, chosen.flat(), request.dryRun === true);
  });
}

export interface RepositoryRetentionResult extends ForgetResult {
  task: string;
  policy: RetentionPolicy;
}

/**
 * The retention of a task's copies in a repository (the task's `offload.retention`), separate from the array
 * retention: the pure rule of src/rules/retention.ts over the manifests this catalog wrote for the task, each
 * a version; a copy whose backup is in use is pinned (kept, still counted).
 */
export async function applyRepositoryRetention(
  ctx: EngineContext,
  request: { task: string; repository: string; policy: RetentionPolicy; dryRun?: boolean },
): Promise<RepositoryRetentionResult> {
  return withRepository(ctx, request.repository, async (opened) => {
    const manifests = (await opened.repository.listManifests()).filter(
      (m) => m.task === request.task && m.catalogId === ctx.catalog.id,
    );
    const candidates: RetentionCandidate[] = [];
    for (const m of manifests) {
      candidates.push({
        id: m.id,
        task: m.task,
        state: 'complete' as const,
        startedAt: m.startedAt,
        pinned: (await inUse(ctx, m.backupId)) !== undefined,
      });
    }
    const expired = applyRule(() => expiredBackups(candidates, request.policy, ctx.now()));
    const byId = new Map(manifests.map((m) => [m.id, m]));
    const result = await forgetManifests(
      ctx,
      opened,
      expired.map((e) => ({ manifest: byId.get(e.id)!, reason: e.reason })),
      request.dryRun === true,
    );
    return { ...result, task: request.task, policy: request.policy };
  });
}

export interface PasswdResult {
  repository: string;
  id: string;
}

/** Re-wraps the repository's master key under a new passphrase: no data is rewritten. */
export function repoPasswd(ctx: EngineContext, name: string, newPassphrase: Secret): Promise<PasswdResult> {
  if (newPassphrase.reveal().trim() === '') {
    throw new UsageError('USAGE', 'the new passphrase is empty: it must hold at least one character');
  }
  return withRepository(ctx, name, async ({ repository }) => {
    await repository.changePassphrase(newPassphrase.reveal());
    return { repository: name, id: repository.id };
  });
}

/** Copies of one repository the catalog records (for `inquire` and `repo backups`). */
export function copiesIn(ctx: EngineContext, name: string): Promise<BackupCopy[]> {
  return ctx.catalog.listCopies({ repository: name });
}
