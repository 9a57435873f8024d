import { readFileSync, statSync } from 'node:fs';
import type { Config } from '../config/load.js';
import type { RepositoryConfig } from '../config/repositories.js';
import { errorMessage, UsageError } from '../errors.js';
import {
  initRepository,
  LocalBackend,
  openRepository,
  type Repository,
  type RepositoryBackend,
  resolveS3Credentials,
  S3Backend,
  type S3Credentials,
} from '../repository/index.js';
import { Secret } from '../util/secret.js';

/**
 * How the engine reaches a configured repository (issue 8): the backend its configuration describes, opened
 * (or created) with the passphrase its configuration names. The passphrase is read here, at the point of
 * use, held in a `Secret` and given only to the repository layer: it never appears in a message, a log, the
 * journal or the catalog.
 *
 * The construction sits behind `RepositoryFactory` so that engine tests give the context a factory of memory
 * backends (`EngineParts.repositories`), as they give it a memory array.
 */
export interface RepositoryFactory {
  /** The backend a repository's configuration describes (nothing is read or written yet). */
  backend(config: RepositoryConfig): RepositoryBackend | Promise<RepositoryBackend>;
  /** Makes a new repository on an empty backend (REPOSITORY_EXISTS when one is there). */
  init(backend: RepositoryBackend, passphrase: Secret): Promise<Repository>;
  /** Opens the repository on a backend (REPOSITORY_NOT_FOUND, REPOSITORY_PASSPHRASE, REPOSITORY_FORMAT). */
  open(backend: RepositoryBackend, passphrase: Secret): Promise<Repository>;
}

/** What opening a repository needs of the engine context (kept structural: context.ts imports this file). */
export interface RepositoryAccess {
  config: Config;
  repositories(): RepositoryFactory;
}

/**
 * The keys of a shared-credentials style file (`aws_access_key_id = …`, `aws_secret_access_key = …`, from its
 * `[default]` section or the first one). UsageError S3_CREDENTIALS_INVALID naming the file, never a value.
 */
export function readCredentialsFile(name: string, file: string): S3Credentials {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new UsageError(
      'S3_CREDENTIALS_INVALID',
      `repository ${name}: cannot read credentialsFile ${file}: ${(err as NodeJS.ErrnoException).code ?? errorMessage(err)}`,
    );
  }
  const sections = new Map<string, Map<string, string>>();
  let current = new Map<string, string>();
  sections.set('', current);
  for (const raw of text.split(/\r?\n/)) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#') || line.startsWith(';')) continue;
    const header = /^\[(.+)\]$/.exec(line);
    if (header) {
      current = new Map();
      sections.set(header[1]!.trim(), current);
      continue;
    }
    const eq = line.indexOf('=');
    if (eq > 0) current.set(line.slice(0, eq).trim().toLowerCase(), line.slice(eq + 1).trim());
  }
  const pick =
    sections.get('default') ?? [...sections.values()].find((s) => s.has('aws_access_key_id')) ?? new Map();
  const accessKeyId = pick.get('aws_access_key_id');
  const secretAccessKey = pick.get('aws_secret_access_key');
  if (!accessKeyId || !secretAccessKey) {
    throw new UsageError(
      'S3_CREDENTIALS_INVALID',
      `repository ${name}: credentialsFile ${file} needs aws_access_key_id and aws_secret_access_key`,
    );
  }
  const sessionToken = pick.get('aws_session_token');
  return { accessKeyId, secretAccessKey, ...(sessionToken ? { sessionToken } : {}) };
}

/** Objects kept write-once under Object Lock: the data (packs), its indexes and the manifests. */
const RETAINED = /^(packs|index|manifests)\//;

/**
 * A backend whose data objects are saved under an Object Lock retention of `days` (compliance mode): nobody,
 * root account included, can delete or overwrite them before then. Locks and key files stay removable (a
 * writer's lock must go when it ends; `repo passwd` replaces a key file). `forget` and `prune` of retained
 * objects are refused by the bucket until their retention has passed.
 */
export function retaining(backend: RepositoryBackend, days: number): RepositoryBackend {
  return {
    description: backend.description,
    capabilities: backend.capabilities,
    save: (key, data, options = {}) =>
      backend.save(key, data, {
        ...options,
        ...(RETAINED.test(key) ? { retainUntil: new Date(Date.now() + days * 86_400_000) } : {}),
      }),
    load: (key, options) => backend.load(key, options),
    stat: (key, options) => backend.stat(key, options),
    list: (prefix, options) => backend.list(prefix, options),
    remove: (key, options) => backend.remove(key, options),
  };
}

/** The real factory: local directories and S3 buckets through the repository layer. */
export const configuredRepositoryFactory: RepositoryFactory = {
  async backend(config) {
    if (config.type === 'local') return new LocalBackend({ path: config.path });
    const credentials =
      config.credentialsFile !== undefined
        ? readCredentialsFile(config.name, config.credentialsFile)
        : await resolveS3Credentials({
            ...(config.accessKeyIdEnv !== undefined ? { accessKeyIdEnv: config.accessKeyIdEnv } : {}),
            ...(config.secretAccessKeyEnv !== undefined
              ? { secretAccessKeyEnv: config.secretAccessKeyEnv }
              : {}),
          });
    const backend = new S3Backend({
      ...(config.endpoint !== undefined ? { endpoint: config.endpoint } : {}),
      region: config.region,
      bucket: config.bucket,
      ...(config.prefix !== undefined ? { prefix: config.prefix } : {}),
      pathStyle: config.pathStyle,
      objectLock: config.objectLock !== undefined,
      ...(credentials ? { credentials } : {}),
    });
    return config.objectLock ? retaining(backend, config.objectLock.days) : backend;
  },
  init: (backend, passphrase) => initRepository(backend, passphrase.reveal()),
  open: (backend, passphrase) => openRepository(backend, passphrase.reveal()),
};

/** A repository opened for one operation, with the name and configuration it was opened by. */
export interface ConfiguredRepository {
  name: string;
  config: RepositoryConfig;
  repository: Repository;
}

/** The configuration of repository `name`; UsageError REPOSITORY_UNKNOWN (exit 3) listing the known ones. */
export function repositoryConfig(ctx: { config: Config }, name: string): RepositoryConfig {
  const found = ctx.config.repositories.find((r) => r.name === name);
  if (found) return found;
  const known = ctx.config.repositories.map((r) => r.name);
  throw new UsageError(
    'REPOSITORY_UNKNOWN',
    `repository ${name} is not configured in ${ctx.config.file} (${known.length > 0 ? `repositories: ${known.join(', ')}` : 'it configures no repository'})`,
  );
}

/**
 * The passphrase of a repository, from its file or environment variable. UsageError REPOSITORY_PASSPHRASE_
 * UNAVAILABLE (exit 3) naming the repository and the file or variable, never the value, when it cannot be read
 * or is empty. A trailing newline in a file is not part of the passphrase.
 */
export function readPassphrase(config: RepositoryConfig, env: NodeJS.ProcessEnv = process.env): Secret {
  const problem = (why: string) =>
    new UsageError('REPOSITORY_PASSPHRASE_UNAVAILABLE', `repository ${config.name}: ${why}`);
  let value: string;
  let source: string;
  if (config.passphraseFile !== undefined) {
    source = `passphrase file ${config.passphraseFile}`;
    try {
      if (!statSync(config.passphraseFile).isFile()) throw problem(`${source} is not a regular file`);
      value = readFileSync(config.passphraseFile, 'utf8').replace(/\r?\n$/, '');
    } catch (err) {
      if (err instanceof UsageError) throw err;
      throw problem(`cannot read ${source}: ${(err as NodeJS.ErrnoException).code ?? errorMessage(err)}`);
    }
  } else {
    const name = config.passphraseEnv!;
    source = `environment variable ${name}`;
    const found = env[name];
    if (found === undefined) throw problem(`${source} (passphraseEnv) is not set`);
    value = found;
  }
  if (value.trim() === '') throw problem(`${source} is empty: it must hold the repository's passphrase`);
  return new Secret(value);
}

/**
 * Opens configured repository `name` (with `create`, initialises it first: `repo init`). Errors, all before
 * anything is written: REPOSITORY_UNKNOWN, REPOSITORY_PASSPHRASE_UNAVAILABLE (exit 3, naming the repository);
 * then what the repository layer says (wrong passphrase, another format: exit 3; an unreachable backend:
 * exit 2), each message naming the repository.
 */
export async function openConfiguredRepository(
  ctx: RepositoryAccess,
  name: string,
  options: { create?: boolean } = {},
): Promise<ConfiguredRepository> {
  const config = repositoryConfig(ctx, name);
  const passphrase = readPassphrase(config);
  const factory = ctx.repositories();
  const backend = await factory.backend(config);
  const repository = await (options.create === true
    ? factory.init(backend, passphrase)
    : factory.open(backend, passphrase));
  return { name, config, repository };
}
