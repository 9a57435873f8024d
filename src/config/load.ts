import { readFileSync } from 'node:fs';
import { dirname, isAbsolute, resolve } from 'node:path';
import { parseDocument } from 'yaml';
import type { z } from 'zod';
import { errorMessage, UsageError } from '../errors.js';
import { Secret } from '../util/secret.js';
import { type ArrayConfig, configSchema, type RawConfig } from './schema.js';

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
  catalog: { path: string };
  arrays: ArrayConfig[];
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

/** One message naming the file, the path inside it and what is wrong, for every problem found. */
export function describeSchemaError(file: string, error: z.ZodError): string {
  const lines = error.issues.map((issue) => `  ${formatIssuePath(issue.path)}: ${issue.message}`);
  return `invalid configuration ${file}:\n${lines.join('\n')}`;
}

/** Parses and validates YAML text. Throws UsageError (exit 3) naming the file and each wrong path. */
export function parseConfig(text: string, file: string, env: NodeJS.ProcessEnv = process.env): Config {
  const doc = parseDocument(text, { prettyErrors: true, uniqueKeys: true });
  if (doc.errors.length > 0) {
    throw new UsageError('CONFIG_INVALID', `invalid YAML in ${file}: ${doc.errors[0]!.message}`);
  }
  const parsed = configSchema.safeParse(doc.toJS() ?? {});
  if (!parsed.success) throw new UsageError('CONFIG_INVALID', describeSchemaError(file, parsed.error));
  const raw = parsed.data;
  const base = dirname(file);
  const abs = (p: string) => (isAbsolute(p) ? p : resolve(base, p));

  let password: string;
  if (raw.vcenter.passwordFile !== undefined) {
    const pwFile = abs(raw.vcenter.passwordFile);
    try {
      password = readFileSync(pwFile, 'utf8').replace(/\r?\n$/, '');
    } catch (err) {
      throw new UsageError(
        'CONFIG_INVALID',
        `invalid configuration ${file}:\n  vcenter.passwordFile: cannot read ${pwFile}: ${(err as NodeJS.ErrnoException).code ?? errorMessage(err)}`,
      );
    }
  } else {
    const name = raw.vcenter.passwordEnv!;
    const value = env[name];
    if (value === undefined) {
      throw new UsageError(
        'CONFIG_INVALID',
        `invalid configuration ${file}:\n  vcenter.passwordEnv: environment variable ${name} is not set`,
      );
    }
    password = value;
  }

  // A pin only means something on HTTPS, and with insecure the certificate is not checked at all: either
  // combination would silently drop the pin, so it is refused here.
  if (raw.vcenter.thumbprint !== undefined) {
    const why = raw.vcenter.url.toLowerCase().startsWith('http:')
      ? `a pinned thumbprint needs an https:// url (${raw.vcenter.url} is plain HTTP)`
      : raw.vcenter.insecure
        ? 'a pinned thumbprint and insecure: true contradict each other (remove one)'
        : undefined;
    if (why !== undefined) {
      throw new UsageError('CONFIG_INVALID', `invalid configuration ${file}:\n  vcenter.thumbprint: ${why}`);
    }
  }

  const names = new Set<string>();
  for (const [i, t] of raw.tasks.entries()) {
    if (names.has(t.name)) {
      throw new UsageError(
        'CONFIG_INVALID',
        `invalid configuration ${file}:\n  tasks[${i}].name: duplicate task name ${t.name}`,
      );
    }
    names.add(t.name);
  }
  const arrayNames = new Set<string>();
  for (const [i, a] of raw.arrays.entries()) {
    if (arrayNames.has(a.name)) {
      throw new UsageError(
        'CONFIG_INVALID',
        `invalid configuration ${file}:\n  arrays[${i}].name: duplicate array name ${a.name}`,
      );
    }
    arrayNames.add(a.name);
  }

  const { passwordFile: _f, passwordEnv: _e, ...vc } = raw.vcenter;
  return {
    ...raw,
    file,
    vcenter: { ...vc, password: new Secret(password) },
    catalog: { path: abs(raw.catalog?.path ?? 'snapkeeper.db') },
    arrays: raw.arrays.map((a) => ({ ...a, path: abs(a.path) })),
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
