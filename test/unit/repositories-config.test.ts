import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { parseConfig } from '../../src/config/load.js';
import type { RepositoryConfig } from '../../src/config/repositories.js';
import { readCredentialsFile, readPassphrase, retaining } from '../../src/engine/repository-access.js';
import { ExitCode, UsageError } from '../../src/errors.js';
import { MemoryBackend } from '../../src/repository/index.js';

const FILE = '/etc/snapkeeper/snapkeeper.yaml';
const BASE = [
  'vcenter:',
  '  url: https://vc.example/sdk',
  '  user: u',
  '  passwordEnv: VC_PASSWORD',
  'arrays:',
  '  - { name: array1, type: fs, path: /srv/array1 }',
];

function parse(lines: string[]) {
  return parseConfig([...BASE, ...lines, ''].join('\n'), FILE, { VC_PASSWORD: 'pw' });
}

function refused(lines: string[]): string {
  let caught: unknown;
  try {
    parse(lines);
  } catch (err) {
    caught = err;
  }
  assert.ok(caught instanceof UsageError, `expected a UsageError, got ${String(caught)}`);
  assert.equal(caught.code, 'CONFIG_INVALID');
  assert.equal(caught.exitCode, ExitCode.usage);
  assert.ok(caught.message.includes(FILE), caught.message);
  return caught.message;
}

describe('repositories in the configuration', () => {
  it('reads a local and an S3 repository, paths made relative to the config file', () => {
    const config = parse([
      'repositories:',
      '  - { name: onsite, type: local, path: repo, passphraseFile: repo.pass, safetyDelayHours: 2 }',
      '  - name: offsite',
      '    type: s3',
      '    endpoint: http://127.0.0.1:9000',
      '    region: us-east-1',
      '    bucket: backups',
      '    prefix: snapkeeper/',
      '    pathStyle: true',
      '    accessKeyIdEnv: S3_KEY',
      '    secretAccessKeyEnv: S3_SECRET',
      '    objectLock: { days: 30 }',
      '    passphraseEnv: REPO_PASSPHRASE',
      'tasks:',
      '  - name: nightly',
      '    select: { vms: [web01] }',
      '    offload: { repository: offsite, retention: { versions: 7, days: 30 } }',
    ]);
    const [local, s3] = config.repositories;
    assert.deepEqual(local, {
      name: 'onsite',
      type: 'local',
      path: join('/etc/snapkeeper', 'repo'),
      passphraseFile: join('/etc/snapkeeper', 'repo.pass'),
      safetyDelayHours: 2,
    });
    assert.equal(s3?.type, 's3');
    assert.equal(s3?.type === 's3' && s3.pathStyle, true);
    assert.deepEqual(s3?.type === 's3' && s3.objectLock, { days: 30 });
    assert.deepEqual(config.tasks[0]?.offload, {
      repository: 'offsite',
      retention: { versions: 7, days: 30 },
    });
  });

  it('defaults to no repositories, and pathStyle to false', () => {
    assert.deepEqual(parse([]).repositories, []);
    const config = parse([
      'repositories:',
      '  - { name: s, type: s3, region: r, bucket: bkt, passphraseEnv: P }',
    ]);
    assert.equal(config.repositories[0]?.type === 's3' && config.repositories[0].pathStyle, false);
  });

  const cases: [string, string[], RegExp][] = [
    [
      'a task offloading to an unknown repository names the task',
      [
        'repositories: [{ name: onsite, type: local, path: /r, passphraseEnv: P }]',
        'tasks: [{ name: nightly, select: { vms: [a] }, offload: { repository: offsite } }]',
      ],
      /tasks\[0\]\.offload\.repository \(task nightly\): unknown repository offsite \(repositories: onsite\)/,
    ],
    [
      'no passphrase at all',
      ['repositories: [{ name: onsite, type: local, path: /r }]'],
      /repositories\[0\].*exactly one of passphraseFile and passphraseEnv/,
    ],
    [
      'both passphrase sources',
      ['repositories: [{ name: onsite, type: local, path: /r, passphraseEnv: P, passphraseFile: /p }]'],
      /exactly one of passphraseFile and passphraseEnv/,
    ],
    [
      'an unknown type',
      ['repositories: [{ name: onsite, type: ftp, path: /r, passphraseEnv: P }]'],
      /repositories\[0\].*type must be "local" or "s3"/,
    ],
    [
      'an unknown field',
      ['repositories: [{ name: onsite, type: local, path: /r, passphraseEnv: P, passphrase: x }]'],
      /repositories\[0\].*passphrase/,
    ],
    [
      'a duplicate name',
      [
        'repositories:',
        '  - { name: onsite, type: local, path: /r, passphraseEnv: P }',
        '  - { name: onsite, type: local, path: /q, passphraseEnv: P }',
      ],
      /repositories\[1\]\.name: duplicate repository name onsite/,
    ],
    [
      'an S3 repository without bucket',
      ['repositories: [{ name: s, type: s3, region: r, passphraseEnv: P }]'],
      /repositories\[0\]\.bucket/,
    ],
    [
      'only one of the S3 key variables',
      ['repositories: [{ name: s, type: s3, region: r, bucket: bkt, accessKeyIdEnv: K, passphraseEnv: P }]'],
      /accessKeyIdEnv and secretAccessKeyEnv go together/,
    ],
    [
      'a passphrase variable that is not a variable name',
      ['repositories: [{ name: s, type: local, path: /r, passphraseEnv: "my secret" }]'],
      /passphraseEnv: must be an environment variable name/,
    ],
    [
      'an Object Lock of zero days',
      [
        'repositories: [{ name: s, type: s3, region: r, bucket: bkt, objectLock: { days: 0 }, passphraseEnv: P }]',
      ],
      /objectLock\.days/,
    ],
    [
      'a task retention of zero versions',
      [
        'repositories: [{ name: onsite, type: local, path: /r, passphraseEnv: P }]',
        'tasks: [{ name: nightly, select: { vms: [a] }, offload: { repository: onsite, retention: { versions: 0 } } }]',
      ],
      /tasks\[0\]\.offload\.retention\.versions \(task nightly\)/,
    ],
  ];
  for (const [title, lines, expected] of cases) {
    it(`refuses ${title}`, () => {
      assert.match(refused(lines), expected);
    });
  }

  it('never shows a passphrase given by mistake in the message', () => {
    const message = refused([
      'repositories: [{ name: s, type: local, path: /r, passphraseEnv: P, passphrase: hunter2-secret }]',
    ]);
    assert.ok(!message.includes('hunter2-secret'), message);
  });
});

describe('reading a repository passphrase', () => {
  const local = (fields: Record<string, string>) =>
    ({ name: 'onsite', type: 'local', path: '/r', ...fields }) as RepositoryConfig;

  it('reads a file without its trailing newline, and a variable as it is', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'snapkeeper-pass-'));
    try {
      await writeFile(join(dir, 'p'), 'pass phrase\n', { mode: 0o600 });
      assert.equal(readPassphrase(local({ passphraseFile: join(dir, 'p') })).reveal(), 'pass phrase');
      assert.equal(readPassphrase(local({ passphraseEnv: 'P' }), { P: ' spaced ' }).reveal(), ' spaced ');
      // Held as a secret: what prints it shows a mask.
      assert.equal(
        JSON.stringify({ p: readPassphrase(local({ passphraseEnv: 'P' }), { P: 'x1' }) }),
        '{"p":"***"}',
      );
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  for (const [what, fields, env, expected] of [
    [
      'a missing file',
      { passphraseFile: '/nonexistent/p' },
      {},
      /repository onsite: cannot read passphrase file \/nonexistent\/p: ENOENT/,
    ],
    [
      'an unset variable',
      { passphraseEnv: 'NOPE' },
      {},
      /repository onsite: environment variable NOPE \(passphraseEnv\) is not set/,
    ],
    [
      'an empty variable',
      { passphraseEnv: 'E' },
      { E: '  ' },
      /repository onsite: environment variable E is empty/,
    ],
  ] as const) {
    it(`refuses ${what} with exit 3, naming the repository`, () => {
      assert.throws(
        () => readPassphrase(local(fields as Record<string, string>), env as NodeJS.ProcessEnv),
        (e: unknown) =>
          e instanceof UsageError &&
          e.code === 'REPOSITORY_PASSPHRASE_UNAVAILABLE' &&
          expected.test(e.message),
      );
    });
  }
});

describe('S3 repository helpers', () => {
  it('reads the keys of a shared-credentials file, never showing them in an error', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'snapkeeper-cred-'));
    try {
      const file = join(dir, 'credentials');
      await writeFile(
        file,
        '[other]\naws_access_key_id = OTHER\n[default]\naws_access_key_id = AKIA1\naws_secret_access_key = s3cr3t-value\n',
      );
      assert.deepEqual(readCredentialsFile('offsite', file), {
        accessKeyId: 'AKIA1',
        secretAccessKey: 's3cr3t-value',
      });
      await writeFile(file, '[default]\naws_access_key_id = AKIA1\n');
      assert.throws(
        () => readCredentialsFile('offsite', file),
        (e: unknown) =>
          e instanceof UsageError &&
          e.code === 'S3_CREDENTIALS_INVALID' &&
          /repository offsite: credentialsFile .* needs aws_access_key_id and aws_secret_access_key/.test(
            e.message,
          ),
      );
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('keeps packs, indexes and manifests under Object Lock retention, never locks or key files', async () => {
    const saved: { key: string; retainUntil?: Date }[] = [];
    const inner = new MemoryBackend('m');
    const recording: typeof inner = Object.assign(Object.create(inner), {
      save: (key: string, data: Uint8Array, options: { retainUntil?: Date } = {}) => {
        saved.push({ key, ...(options.retainUntil ? { retainUntil: options.retainUntil } : {}) });
        return inner.save(key, data);
      },
    });
    const backend = retaining(recording, 30);
    for (const key of ['packs/ab/abcd', 'index/1', 'manifests/2', 'locks/3', 'keys/4', 'config']) {
      await backend.save(key, Buffer.from('x'));
    }
    const days = (d?: Date) => (d ? Math.round((d.getTime() - Date.now()) / 86_400_000) : undefined);
    assert.deepEqual(
      saved.map((s) => [s.key, days(s.retainUntil)]),
      [
        ['packs/ab/abcd', 30],
        ['index/1', 30],
        ['manifests/2', 30],
        ['locks/3', undefined],
        ['keys/4', undefined],
        ['config', undefined],
      ],
    );
  });
});
