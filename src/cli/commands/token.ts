import { type Command, Option } from 'commander';
import { type CatalogHandle, openCatalog } from '../../catalog/index.js';
import { createToken, ROLE_NAMES } from '../../server/index.js';
import { type CliContext, ok } from '../context.js';
import { table } from '../table.js';
import type { Runner } from './runner.js';

/** The catalog of the configuration, for a command that only reads or writes the daemon's credentials. */
export async function withCatalog<T>(
  ctx: CliContext,
  fn: (catalog: CatalogHandle) => Promise<T>,
): Promise<T> {
  const catalog = await openCatalog(ctx.config().catalog);
  try {
    return await fn(catalog);
  } finally {
    await catalog.close();
  }
}

/** `snapkeeper token create|list|revoke`: API tokens of the daemon (stored as SHA-256, shown once). */
export function registerToken(program: Command, run: Runner): void {
  const token = program.command('token').description('API tokens of snapkeeper serve');

  token
    .command('create')
    .description('make an API token; it is printed once and only its hash is kept')
    .requiredOption('--name <name>', 'a name for the token (letters, digits, ".", "_", "-")')
    .addOption(new Option('--role <role>', 'what it may do').choices(ROLE_NAMES).makeOptionMandatory())
    .action(
      run(async (ctx, opts: { name: string; role: string }) =>
        withCatalog(ctx, async (catalog) => {
          const made = await createToken(catalog, opts);
          return ok(
            made,
            [
              `token ${made.name} (id ${made.id}, role ${made.role}):`,
              made.token,
              'Keep it now: it is not stored and cannot be shown again. Send it as "Authorization: Bearer <token>".',
            ].join('\n'),
          );
        }),
      ),
    );

  token
    .command('list')
    .description('list API tokens (never the tokens themselves)')
    .action(
      run(async (ctx) =>
        withCatalog(ctx, async (catalog) => {
          const tokens = await catalog.listTokens();
          return ok(
            tokens,
            tokens.length === 0
              ? 'no tokens'
              : table(
                  ['ID', 'NAME', 'ROLE', 'CREATED', 'LAST USED'],
                  tokens.map((t) => [t.id, t.name, t.role, t.createdAt, t.lastUsedAt ?? '-']),
                ),
          );
        }),
      ),
    );

  token
    .command('revoke')
    .description('revoke an API token (by id or name)')
    .argument('<id-or-name>', 'the token to revoke')
    .action(
      run(async (ctx, idOrName: string) =>
        withCatalog(ctx, async (catalog) => {
          const removed = await catalog.removeToken(idOrName);
          return ok({ revoked: removed }, `revoked token ${removed.name} (id ${removed.id})`);
        }),
      ),
    );
}
