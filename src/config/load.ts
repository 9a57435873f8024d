import { readFileSync, statSync } from 'node:fs';
import { dirname, isAbsolute, resolve } from 'node:path';
import { parseDocument } from 'yaml';
import type { z } from 'zod';
import { errorMessage, UsageError } from '../errors.js';
import type { Warning } from '../model/backup.js';
import { Secret } from '../util/secret.js';
import { type CatalogConfig, catalogSchema, resolveCatalogConfig } from './catalog.js';

export type { CatalogConfig, PostgresCatalogConfig, SqliteCatalogConfig } from './catalog.js';

import {
  type RepositoryConfig,
  repositoryPlacementWarnings,
  repositoryReferenceProblems,
} from './repositories.js';
import { type ArrayConfig, configSchema, type RawConfig, vcenterSchema } from './schema.js';
import { resolveServerPaths } from './server.js';

export interface VcenterConfig {
  url: string;
  user: string;
  password: Secret;
  thumbprint?: string;
  insecure: boolean;
  maxConcurrentRequests: number;
  timeoutSeconds: number;
}

/** The validated configuration, with paths made absolute and the password read. */
export interface Config extends Omit<RawConfig, 'vcenter' | 'catalog'> {
  file: string;
  vcenter: VcenterConfig;
  /** A SQLite file (`path`) or a PostgreSQL database (`url`, and its password); `path` names it either way. */
  catalog: CatalogConfig;
  arrays: ArrayConfig[];
  /** What works but should be fixed (a password file others can read): printed, never fatal. */
  warnings: Warning[];
}

export function defaultConfigPath(env: NodeJS.ProcessEnv = process.env): string {
  return env.SNAPKEEPER_CONFIG ?? resolve('snapkeeper.yaml');
}

function formatIssuePath(path: readonly PropertyKey[]): string {
  if (path.length === 0) return '(top level)';
  return path
    .map((p, i) => (typeof p === 'number' ? `[${p}]` : `${i === 0 ? '' : '.'}${String(p)}`))
    .join('');
}

/** One problem found in a configuration: where in the file, and what is wrong. */
interface ConfigProblem {
  path: string;
  message: string;
}

/**
 * The path of an issue, followed by the task's name for a path inside a task (`tasks[2].select (task
 * nightly)`), so a message about a task names it even when the problem is not in its name.
 */
function issuePath(path: readonly PropertyKey[], input: unknown): string {
  const text = formatIssuePath(path);
  if (path[0] !== 'tasks' || typeof path[1] !== 'number') return text;
  const task = (input as { tasks?: unknown[] } | undefined)?.tasks?.[path[1]];
  const name = (task as { name?: unknown } | undefined)?.name;
  return typeof name === 'string' ? `${text} (task ${name})` : text;
}

function configError(file: string, problems: readonly ConfigProblem[]): UsageError {
  const lines = problems.map((p) => `  ${p.path}: ${p.message}`);
  return new UsageError('CONFIG_INVALID', `invalid configuration ${file}:\n${lines.join('\n')}`);
}

/** One message naming the file, the path inside it and what is wrong, for every problem found. */
export function describeSchemaError(file: string, error: z.ZodError, input?: unknown): string {
  return configError(
    file,
    error.issues.map((issue) => ({ path: issuePath(issue.path, input), message: issue.message })),
  ).message;
}

/** Names given twice in a list of named entries (tasks, arrays), read from the raw document. */
function duplicateNames(input: unknown, list: 'tasks' | 'arrays', what: string): ConfigProblem[] {
  const entries = (input as Record<string, unknown> | undefined)?.[list];
  if (!Array.isArray(entries)) return [];
  const seen = new Set<string>();
  const problems: ConfigProblem[] = [];
  for (const [i, entry] of entries.entries()) {
    const name = (entry as { name?: unknown } | null)?.name;
    if (typeof name !== 'string') continue;
    if (seen.has(name))
      problems.push({ path: `${list}[${i}].name`, message: `duplicate ${what} name ${name}` });
    seen.add(name);
  }
  return problems;
}

/** A task's time zone only says how to read its schedule: alone it would be ignored. */
function timezoneWithoutSchedule(input: unknown): ConfigProblem[] {
  const tasks = (input as { tasks?: unknown } | undefined)?.tasks;
  if (!Array.isArray(tasks)) return [];
  return tasks.flatMap((task, i) => {
    const t = task as { timezone?: unknown; schedule?: unknown } | null;
    if (t?.timezone === undefined || t.schedule !== undefined) return [];
    return [
      {
        path: issuePath(['tasks', i, 'timezone'], input),
        message: 'a time zone needs a schedule to apply to (add schedule, or remove timezone)',
      },
    ];
  });
}

type RawVcenter = RawConfig['vcenter'];

/** The password, or the problem with it. Nothing here ever shows the password itself. */
function readPassword(
  vcenter: RawVcenter,
  abs: (p: string) => string,
  env: NodeJS.ProcessEnv,
  warnings: Warning[],
): { password: string } | { problem: ConfigProblem } {
  let password: string;
  let source: string;
  let path: string;
  if (vcenter.passwordFile !== undefined) {
    const pwFile = abs(vcenter.passwordFile);
    path = 'vcenter.passwordFile';
    source = pwFile;
    try {
      password = readFileSync(pwFile, 'utf8').replace(/\r?\n$/, '');
      const mode = statSync(pwFile).mode;
      if ((mode & 0o044) !== 0) {
        warnings.push({
          code: 'PASSWORD_FILE_READABLE',
          message: `${path}: ${pwFile} is readable by ${(mode & 0o004) !== 0 ? 'others' : 'its group'} (mode ${(mode & 0o777).toString(8).padStart(4, '0')}); restrict it with chmod 600`,
        });
      }
    } catch (err) {
      return {
        problem: {
          path,
          message: `cannot read ${pwFile}: ${(err as NodeJS.ErrnoException).code ?? errorMessage(err)}`,
        },
      };
    }
  } else {
    const name = vcenter.passwordEnv!;
    path = 'vcenter.passwordEnv';
    source = `environment variable ${name}`;
    const value = env[name];
    if (value === undefined) return { problem: { path, message: `environment variable ${name} is not set` } };
    password = value;
  }
  // vCenter would refuse an empty password, and every refused login counts toward the account's lockout.
  if (password.trim() === '') {
    return {
      problem: {
        path,
        message: `${source} is empty (or only whitespace): it must hold the vCenter password`,
      },
    };
  }
  return { password };
}

/** A pin only means something on HTTPS, and with insecure the certificate is not checked at all. */
function thumbprintProblem(vcenter: RawVcenter): ConfigProblem[] {
  if (vcenter.thumbprint === undefined) return [];
  const why = vcenter.url.toLowerCase().startsWith('http:')
    ? `a pinned thumbprint needs an https:// url (${vcenter.url} is plain HTTP)`
    : vcenter.insecure
      ? 'a pinned thumbprint and insecure: true contradict each other (remove one)'
      : undefined;
  return why === undefined ? [] : [{ path: 'vcenter.thumbprint', message: why }];
}

/**
 * Parses and validates YAML text. Throws one UsageError (exit 3) naming the file and every wrong path found:
 * schema problems, duplicate names, the password and the certificate pin together, so one edit fixes them all.
 */
export function parseConfig(text: string, file: string, env: NodeJS.ProcessEnv = process.env): Config {
  const doc = parseDocument(text, { prettyErrors: true, uniqueKeys: true });
  if (doc.errors.length > 0) {
    throw new UsageError('CONFIG_INVALID', `invalid YAML in ${file}: ${doc.errors[0]!.message}`);
  }
  const input: unknown = doc.toJS() ?? {};
  const base = dirname(file);
  const abs = (p: string) => (isAbsolute(p) ? p : resolve(base, p));
  const parsed = configSchema.safeParse(input);
  const problems: ConfigProblem[] = parsed.success
    ? []
    : parsed.error.issues.map((issue) => ({ path: issuePath(issue.path, input), message: issue.message }));
  problems.push(
    ...duplicateNames(input, 'tasks', 'task'),
    ...duplicateNames(input, 'arrays', 'array'),
    ...timezoneWithoutSchedule(input),
    ...repositoryReferenceProblems(input),
  );

  // The vCenter block is checked on its own, so its problems are reported even when another part is wrong.
  const warnings: Warning[] = [];
  const vcenter = vcenterSchema.safeParse((input as { vcenter?: unknown }).vcenter);
  let password: string | undefined;
  if (vcenter.success) {
    problems.push(...thumbprintProblem(vcenter.data));
    const read = readPassword(vcenter.data, abs, env, warnings);
    if ('problem' in read) problems.push(read.problem);
    else password = read.password;
  }
  // Checked on its own too, so a bad catalog URL is reported beside problems elsewhere.
  const rawCatalog = catalogSchema.optional().safeParse((input as { catalog?: unknown }).catalog);
  const catalog = rawCatalog.success
    ? resolveCatalogConfig(rawCatalog.data, abs, env, warnings)
    : { problems: [] };
  if ('problems' in catalog) problems.push(...catalog.problems);
  if (problems.length > 0 || !parsed.success || password === undefined || 'problems' in catalog) {
    throw configError(file, problems);
  }
  const raw = parsed.data;

  const { passwordFile: _f, passwordEnv: _e, ...vc } = raw.vcenter;
  const arrays = raw.arrays.map((a) => ({ ...a, path: abs(a.path) }));
  const repositories = raw.repositories.map((r) => absoluteRepositoryPaths(r, abs));
  warnings.push(...repositoryPlacementWarnings(repositories, arrays));
  return {
    ...raw,
    file,
    vcenter: { ...vc, password: new Secret(password) },
    catalog,
    arrays,
    repositories,
    server: resolveServerPaths(raw.server, abs),
    warnings,
  };
}

/** Paths in a repository's entry made absolute (relative ones are relative to the config file). */
function absoluteRepositoryPaths(r: RepositoryConfig, abs: (p: string) => string): RepositoryConfig {
  const passphrase = r.passphraseFile === undefined ? {} : { passphraseFile: abs(r.passphraseFile) };
  if (r.type === 'local') return { ...r, path: abs(r.path), ...passphrase };
  return {
    ...r,
    ...passphrase,
    ...(r.credentialsFile === undefined ? {} : { credentialsFile: abs(r.credentialsFile) }),
  };
}

export function loadConfig(file: string, env: NodeJS.ProcessEnv = process.env): Config {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new UsageError(
      'CONFIG_NOT_FOUND',
      code === 'ENOENT'
        ? `configuration file ${file} does not exist (use --config FILE or SNAPKEEPER_CONFIG, or run snapkeeper init)`
        : `cannot read configuration file ${file}: ${code ?? errorMessage(err)}`,
    );
  }
  return parseConfig(text, file, env);
}
