import { existsSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { resolve } from 'node:path';
import { createInterface } from 'node:readline/promises';
import { connect as tlsConnect } from 'node:tls';
import { type Command, Option } from 'commander';
import YAML from 'yaml';
import { openArray } from '../../arrays/index.js';
import { openCatalog } from '../../catalog/index.js';
import { parseConfig } from '../../config/load.js';
import { applyRule } from '../../engine/index.js';
import { ConflictError, UsageError } from '../../errors.js';
import { BACKUP_MODES, type BackupMode } from '../../model/modes.js';
import { mapDatastoresToVolumes } from '../../rules/index.js';
import { connect } from '../../vsphere/index.js';
import { type CliContext, ok } from '../context.js';
import { table } from '../table.js';
import type { Runner } from './runner.js';

interface InitOptions {
  url?: string;
  user?: string;
  passwordFile?: string;
  passwordEnv?: string;
  thumbprint?: string;
  trustServerCertificate?: boolean;
  insecure?: boolean;
  arrayPath?: string;
  arrayName: string;
  mode?: BackupMode;
  output?: string;
  force?: boolean;
}

/** SHA-256 fingerprint of the certificate a TLS server presents, for pinning on first use. */
export function fetchServerThumbprint(url: string): Promise<string> {
  const u = new URL(url);
  return new Promise((resolvePromise, reject) => {
    const socket = tlsConnect(
      { host: u.hostname, port: Number(u.port || 443), servername: u.hostname, rejectUnauthorized: false },
      () => {
        const fp = socket.getPeerCertificate().fingerprint256;
        socket.end();
        if (fp) resolvePromise(fp);
        else reject(new UsageError('TLS_NO_CERTIFICATE', `${u.host} presented no certificate`));
      },
    );
    socket.setTimeout(10_000, () => socket.destroy(new Error('timed out')));
    socket.on('error', (err) =>
      reject(new UsageError('VCENTER_UNREACHABLE', `cannot reach ${u.host}: ${err.message}`, { cause: err })),
    );
  });
}

/**
 * Asks for what flags did not give, on a terminal only; without a terminal a missing value is a usage error,
 * so scripts never hang on a prompt.
 */
async function ask(ctx: CliContext, flag: string, question: string, fallback?: string): Promise<string> {
  if (!process.stdin.isTTY || ctx.json) {
    if (fallback !== undefined) return fallback;
    throw new UsageError('USAGE', `${flag} is required when not running on a terminal`);
  }
  const rl = createInterface({ input: process.stdin, output: process.stderr });
  try {
    const answer = (await rl.question(`${question}${fallback ? ` [${fallback}]` : ''}: `)).trim();
    return answer === '' && fallback !== undefined ? fallback : answer;
  } finally {
    rl.close();
  }
}

/** Pairs of init options where one would silently win over the other: both given is a usage error. */
function refuseIgnoredInitOptions(ctx: CliContext, opts: InitOptions): void {
  const conflicts: [boolean, string][] = [
    [opts.passwordFile !== undefined && opts.passwordEnv !== undefined, '--password-file and --password-env'],
    [
      opts.thumbprint !== undefined && opts.trustServerCertificate === true,
      '--thumbprint and --trust-server-certificate',
    ],
    [
      opts.insecure === true && opts.trustServerCertificate === true,
      '--insecure and --trust-server-certificate',
    ],
    [opts.output !== undefined && ctx.configGiven, '--output and --config'],
  ];
  const both = conflicts.filter(([given]) => given).map(([, flags]) => flags);
  if (both.length > 0) {
    throw new UsageError('USAGE', `init takes one of ${both.join('; one of ')}: the other would be ignored`);
  }
  if (opts.url?.toLowerCase().startsWith('http:') && opts.trustServerCertificate) {
    throw new UsageError(
      'USAGE',
      `--trust-server-certificate needs an https:// --url (${opts.url} is plain HTTP)`,
    );
  }
}

export function registerInit(program: Command, run: Runner): void {
  program
    .command('init')
    .description('guided first configuration: test the vCenter connection, match datastores to array volumes')
    .option('--url <url>', 'vCenter SDK URL, e.g. https://vcenter.example/sdk')
    .option('--user <user>', 'vCenter user')
    .option('--password-file <file>', 'file holding the vCenter password')
    .option('--password-env <var>', 'environment variable holding the vCenter password')
    .option('--thumbprint <sha256>', 'pin this server certificate fingerprint')
    .option('--trust-server-certificate', 'pin the fingerprint the server presents now (trust on first use)')
    .option('--insecure', 'do not verify the server certificate at all (not recommended)')
    .option('--array-path <dir>', 'root directory of the file-system array')
    .option('--array-name <name>', 'name of the array', 'array1')
    .addOption(new Option('--mode <mode>', 'default backup mode').choices(BACKUP_MODES))
    .option('--output <file>', 'where to write the configuration (default: --config or ./snapkeeper.yaml)')
    .option('--force', 'overwrite an existing configuration file')
    .action(
      run(async (ctx, opts: InitOptions) => {
        refuseIgnoredInitOptions(ctx, opts);
        const output = resolve(opts.output ?? ctx.configPath);
        if (existsSync(output) && !opts.force) {
          throw new ConflictError('CONFIG_EXISTS', `${output} already exists (use --force to overwrite)`);
        }
        const url = opts.url ?? (await ask(ctx, '--url', 'vCenter SDK URL (https://HOST/sdk)'));
        const user = opts.user ?? (await ask(ctx, '--user', 'vCenter user', 'administrator@vsphere.local'));
        let passwordFile = opts.passwordFile;
        const passwordEnv = opts.passwordEnv;
        if (passwordFile === undefined && passwordEnv === undefined) {
          passwordFile = await ask(
            ctx,
            '--password-file',
            'file holding the password (not the password itself)',
          );
        }
        let thumbprint = opts.thumbprint;
        if (url.startsWith('https:') && thumbprint === undefined && !opts.insecure) {
          const presented = await fetchServerThumbprint(url);
          const trust =
            opts.trustServerCertificate === true ||
            (await ask(
              ctx,
              '--trust-server-certificate',
              `server certificate SHA-256 ${presented}; pin it? (yes/no)`,
              'no',
            )) === 'yes';
          if (!trust) {
            throw new UsageError(
              'TLS_NOT_TRUSTED',
              `the server certificate (SHA-256 ${presented}) was not pinned; pass --thumbprint or --trust-server-certificate`,
            );
          }
          thumbprint = presented;
        }
        const arrayPath = resolve(
          opts.arrayPath ?? (await ask(ctx, '--array-path', 'root directory of the file-system array')),
        );
        const mode =
          opts.mode ??
          ((await ask(
            ctx,
            '--mode',
            `default backup mode (${BACKUP_MODES.join(', ')})`,
            'SNAPSHOT_EXCL_MEM',
          )) as BackupMode);

        const doc = {
          vcenter: {
            url,
            user,
            ...(passwordFile !== undefined ? { passwordFile: resolve(passwordFile) } : { passwordEnv }),
            ...(thumbprint !== undefined ? { thumbprint } : {}),
            ...(opts.insecure ? { insecure: true } : {}),
          },
          arrays: [{ name: opts.arrayName, type: 'fs', path: arrayPath }],
          catalog: { path: resolve(output, '..', 'snapkeeper.db') },
          defaults: { mode },
          tasks: [],
        };
        const text = YAML.stringify(doc);
        // Validate exactly as every later command will read it, before anything is written.
        const config = parseConfig(text, output, ctx.env);

        ctx.progress.update('init', 'testing the vCenter connection');
        const vc = await connect(config.vcenter);
        let inventory: Awaited<ReturnType<typeof vc.inventory>>;
        try {
          inventory = await vc.inventory();
        } finally {
          await vc.logout();
        }
        ctx.progress.update('init', 'matching datastores to array volumes');
        const array = await openArray(config.arrays[0]!);
        const volumes = await array.listVolumes();
        const mapping = applyRule(() =>
          mapDatastoresToVolumes(inventory.datastores, [{ name: opts.arrayName, volumes }]),
        );
        await writeFile(output, text, { mode: 0o600 });
        await (await openCatalog(config.catalog, { create: true })).close();

        const rows = inventory.datastores.map((d) => {
          const m = mapping.mapped.get(d.name);
          return [d.name, d.type, m ? `${m.array}/${m.volumes.join(',')}` : '(not on this array)'];
        });
        const summary = [
          `connected to ${new URL(url).host}: ${inventory.vms.length} VMs, ${inventory.datastores.length} datastores`,
          `array ${opts.arrayName} at ${arrayPath}: driver ${array.driver}, ${volumes.length} volumes`,
          '',
          table(['DATASTORE', 'TYPE', 'VOLUME'], rows),
          '',
          `wrote ${output}; add tasks with: snapkeeper --config ${output} task create NAME --vm 'GLOB'`,
        ];
        return ok(
          {
            config: output,
            vms: inventory.vms.length,
            driver: array.driver,
            datastores: inventory.datastores.map((d) => ({
              name: d.name,
              volumes: mapping.mapped.get(d.name)?.volumes ?? [],
            })),
            unmapped: mapping.unmapped,
          },
          summary.join('\n'),
        );
      }),
    );
}
