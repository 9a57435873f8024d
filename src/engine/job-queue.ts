import { readFileSync, statSync } from 'node:fs';
import { dirname, isAbsolute, resolve } from 'node:path';
import type { Config } from '../config/load.js';
import { errorMessage, UsageError } from '../errors.js';
import { PgBossJobQueue } from '../jobs/index.js';
import { Secret } from '../util/secret.js';

/**
 * Where a configuration's disk jobs go (docs/workers.md): `workers.queue.url` (password from its
 * passwordFile or passwordEnv), else the catalog's URL when the catalog is on PostgreSQL (its password), else
 * nowhere: the offloading process runs its disk jobs itself (the in-process queue).
 */
export interface QueueTarget {
  /** The URL without a password: fit for messages. */
  url: string;
  password?: Secret;
  schema: string;
  /** `workers.queue` or `catalog`: where the URL came from, for messages. */
  from: string;
}

function readPassword(file: string | undefined, env: string | undefined, base: string): Secret | undefined {
  if (file !== undefined) {
    const path = isAbsolute(file) ? file : resolve(base, file);
    let value: string;
    try {
      if (!statSync(path).isFile()) throw new Error('not a regular file');
      value = readFileSync(path, 'utf8').replace(/\r?\n$/, '');
    } catch (err) {
      throw new UsageError(
        'JOB_QUEUE_PASSWORD_UNAVAILABLE',
        `workers.queue.passwordFile ${path}: cannot read it (${(err as NodeJS.ErrnoException).code ?? errorMessage(err)})`,
      );
    }
    if (value === '') {
      throw new UsageError('JOB_QUEUE_PASSWORD_UNAVAILABLE', `workers.queue.passwordFile ${path} is empty`);
    }
    return new Secret(value);
  }
  if (env !== undefined) {
    const value = process.env[env];
    if (value === undefined || value === '') {
      throw new UsageError(
        'JOB_QUEUE_PASSWORD_UNAVAILABLE',
        `workers.queue.passwordEnv: environment variable ${env} is not set`,
      );
    }
    return new Secret(value);
  }
  return undefined;
}

/** The PostgreSQL queue a configuration names, or undefined (in-process). Reads the password: exit 3 if it cannot. */
export function queueTarget(config: Config): QueueTarget | undefined {
  const q = config.workers.queue;
  if (q !== undefined) {
    const password = readPassword(q.passwordFile, q.passwordEnv, dirname(config.file));
    return { url: q.url, ...(password ? { password } : {}), schema: q.schema, from: 'workers.queue' };
  }
  // A catalog on PostgreSQL (its `url`, its password already read by the loader) carries the queue too.
  const catalog = config.catalog as { url?: string; password?: Secret };
  if (typeof catalog.url === 'string') {
    return {
      url: catalog.url,
      ...(catalog.password ? { password: catalog.password } : {}),
      schema: 'snapkeeper_jobs',
      from: 'catalog',
    };
  }
  return undefined;
}

/** Opens (and starts: connects, creates its schema) the PostgreSQL queue of `target`. */
export async function openQueue(
  target: QueueTarget,
  options: { maintenanceSeconds?: number; connections?: number } = {},
): Promise<PgBossJobQueue> {
  const queue = new PgBossJobQueue({
    url: target.url,
    ...(target.password ? { password: target.password } : {}),
    schema: target.schema,
    ...options,
  });
  try {
    await queue.start();
  } catch (err) {
    await queue.close();
    throw err;
  }
  return queue;
}
