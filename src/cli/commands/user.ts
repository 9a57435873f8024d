import { readFileSync } from 'node:fs';
import { type Command, Option } from 'commander';
import { errorMessage, UsageError } from '../../errors.js';
import { checkName, checkRole, hashPassword, ROLE_NAMES } from '../../server/index.js';
import { type CliContext, ok } from '../context.js';
import { table } from '../table.js';
import type { Runner } from './runner.js';
import { withCatalog } from './token.js';

/** The first line of stdin (a pipe or a typed line): how a password is given without a file. */
async function firstLineOfStdin(): Promise<string> {
  if (process.stdin.isTTY) process.stderr.write('password: ');
  const chunks: Buffer[] = [];
  for await (const chunk of process.stdin) {
    chunks.push(chunk as Buffer);
    if ((chunk as Buffer).includes(10)) break;
  }
  return Buffer.concat(chunks).toString('utf8').split(/\r?\n/)[0] ?? '';
}

/** The password from --password-file (first line) or stdin; never echoed in any output or error. */
async function readPassword(ctx: CliContext, file: string | undefined): Promise<string> {
  void ctx;
  if (file === undefined) return firstLineOfStdin();
  try {
    return readFileSync(file, 'utf8').split(/\r?\n/)[0] ?? '';
  } catch (err) {
    throw new UsageError(
      'PASSWORD_FILE_UNREADABLE',
      `--password-file: cannot read ${file}: ${(err as NodeJS.ErrnoException).code ?? errorMessage(err)}`,
    );
  }
}

/** `snapkeeper user add|list|remove|passwd`: local users of the web UI (passwords hashed with scrypt). */
export function registerUser(program: Command, run: Runner): void {
  const user = program.command('user').description('local users of the web UI of snapkeeper serve');

  user
    .command('add')
    .description('add a user; the password comes from --password-file or stdin')
    .argument('<name>', 'user name (letters, digits, ".", "_", "-")')
    .addOption(new Option('--role <role>', 'what the user may do').choices(ROLE_NAMES).makeOptionMandatory())
    .option('--password-file <file>', 'read the password from the first line of this file (else stdin)')
    .action(
      run(async (ctx, name: string, opts: { role: string; passwordFile?: string }) => {
        const checked = checkName(name, 'user');
        const role = checkRole(opts.role);
        const passwordHash = await hashPassword(await readPassword(ctx, opts.passwordFile));
        return withCatalog(ctx, async (catalog) => {
          const added = await catalog.addUser({ name: checked, role, passwordHash });
          return ok(added, `added user ${added.name} (role ${added.role})`);
        });
      }),
    );

  user
    .command('list')
    .description('list users')
    .action(
      run(async (ctx) =>
        withCatalog(ctx, async (catalog) => {
          const users = await catalog.listUsers();
          return ok(
            users,
            users.length === 0
              ? 'no users'
              : table(
                  ['NAME', 'ROLE', 'CREATED', 'CHANGED'],
                  users.map((u) => [u.name, u.role, u.createdAt, u.updatedAt]),
                ),
          );
        }),
      ),
    );

  user
    .command('remove')
    .description('remove a user (and end its sessions)')
    .argument('<name>', 'the user')
    .action(
      run(async (ctx, name: string) =>
        withCatalog(ctx, async (catalog) => {
          await catalog.removeUser(name);
          return ok({ removed: name }, `removed user ${name}`);
        }),
      ),
    );

  user
    .command('passwd')
    .description('set a user’s password (from --password-file or stdin); ends its sessions')
    .argument('<name>', 'the user')
    .option('--password-file <file>', 'read the password from the first line of this file (else stdin)')
    .action(
      run(async (ctx, name: string, opts: { passwordFile?: string }) => {
        const passwordHash = await hashPassword(await readPassword(ctx, opts.passwordFile));
        return withCatalog(ctx, async (catalog) => {
          await catalog.setUserPassword(name, passwordHash);
          return ok({ user: name, changed: true }, `password of ${name} changed`);
        });
      }),
    );
}
