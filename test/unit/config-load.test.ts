import assert from 'node:assert/strict';
import { chmod, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { parseConfig } from '../../src/config/load.js';
import { ExitCode, UsageError } from '../../src/errors.js';

let dir: string;
before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'snapkeeper-config-'));
});
after(() => rm(dir, { recursive: true, force: true }));

const VCENTER_ENV = ['vcenter:', '  url: https://vc.example/sdk', '  user: u', '  passwordEnv: VC_PASSWORD'];
const ARRAYS = ['arrays:', '  - { name: array1, type: fs, path: /srv/array1 }'];

function config(lines: string[], vcenter = VCENTER_ENV): string {
  return [...vcenter, ...ARRAYS, ...lines, ''].join('\n');
}

/** The CONFIG_INVALID error of parsing `text`: exit 3, naming the file. */
function refused(text: string, env: NodeJS.ProcessEnv = { VC_PASSWORD: 'pw' }): UsageError {
  const file = join(dir, 'snapkeeper.yaml');
  let caught: unknown;
  try {
    parseConfig(text, file, env);
  } catch (err) {
    caught = err;
  }
  assert.ok(caught instanceof UsageError, `expected a UsageError, got ${String(caught)}`);
  assert.equal(caught.code, 'CONFIG_INVALID');
  assert.equal(caught.exitCode, ExitCode.usage);
  assert.ok(caught.message.includes(file), caught.message);
  return caught;
}

function task(fields: string): string[] {
  return ['tasks:', `  - ${fields}`];
}

describe('the vCenter password', () => {
  async function passwordFile(name: string, content: string, mode = 0o600): Promise<string[]> {
    const path = join(dir, name);
    await writeFile(path, content);
    await chmod(path, mode);
    return ['vcenter:', '  url: https://vc.example/sdk', '  user: u', `  passwordFile: ${path}`];
  }

  for (const [title, content] of [
    ['an empty password file', ''],
    ['a password file holding only a newline', '\n'],
    ['a password file holding only whitespace', ' \t \r\n'],
  ] as const) {
    it(`${title} is a config error naming it`, async () => {
      const vc = await passwordFile(`pw-${title.length}`, content);
      const err = refused(config([], vc));
      assert.match(err.message, /vcenter\.passwordFile: .*pw-\d+ is empty \(or only whitespace\)/);
    });
  }

  for (const value of ['', '   ', '\n']) {
    it(`a password variable set to ${JSON.stringify(value)} is a config error`, () => {
      const err = refused(config([]), { VC_PASSWORD: value });
      assert.match(err.message, /vcenter\.passwordEnv: environment variable VC_PASSWORD is empty/);
    });
  }

  it('a password file others can read works, with a warning that never shows the password', async () => {
    const vc = await passwordFile('pw-open', 's3cret-value\n', 0o644);
    const cfg = parseConfig(config([], vc), join(dir, 'snapkeeper.yaml'), {});
    assert.equal(cfg.vcenter.password.reveal(), 's3cret-value');
    assert.equal(cfg.warnings.length, 1);
    assert.equal(cfg.warnings[0]!.code, 'PASSWORD_FILE_READABLE');
    assert.match(cfg.warnings[0]!.message, /pw-open is readable by others \(mode 0644\)/);
    assert.doesNotMatch(JSON.stringify(cfg.warnings), /s3cret/);
  });

  it('a password file readable by its group only is named as such', async () => {
    const vc = await passwordFile('pw-group', 'pw', 0o640);
    const cfg = parseConfig(config([], vc), join(dir, 'snapkeeper.yaml'), {});
    assert.match(cfg.warnings[0]!.message, /readable by its group \(mode 0640\)/);
  });

  it('a password file only its owner can read gives no warning', async () => {
    const vc = await passwordFile('pw-closed', 'pw', 0o600);
    assert.deepEqual(parseConfig(config([], vc), join(dir, 'snapkeeper.yaml'), {}).warnings, []);
  });
});

describe('tasks', () => {
  it('a valid schedule with a time zone loads', () => {
    const cfg = parseConfig(
      config(
        task('{ name: nightly, select: { vms: [web01] }, schedule: "0 2 * * 1-5", timezone: Europe/Berlin }'),
      ),
      join(dir, 'snapkeeper.yaml'),
      { VC_PASSWORD: 'pw' },
    );
    assert.equal(cfg.tasks[0]!.timezone, 'Europe/Berlin');
    assert.equal(cfg.tasks[0]!.schedule, '0 2 * * 1-5');
  });

  for (const schedule of ['61 2 * * *', '0 2 * *', 'every night', '0 25 * * *', '* * * 13 *']) {
    it(`cron schedule ${JSON.stringify(schedule)} is refused at load, naming the task`, () => {
      const err = refused(config(task(`{ name: nightly, select: { vms: [a] }, schedule: "${schedule}" }`)));
      assert.match(err.message, /tasks\[0\]\.schedule \(task nightly\): invalid cron schedule/);
    });
  }

  it('an unknown time zone is refused', () => {
    const err = refused(
      config(task('{ name: nightly, select: { vms: [a] }, schedule: "0 2 * * *", timezone: Mars/Olympus }')),
    );
    assert.match(err.message, /tasks\[0\]\.timezone \(task nightly\): unknown time zone "Mars\/Olympus"/);
  });

  it('a time zone without a schedule is refused (it would be ignored)', () => {
    const err = refused(config(task('{ name: nightly, select: { vms: [a] }, timezone: UTC }')));
    assert.match(err.message, /tasks\[0\]\.timezone \(task nightly\): a time zone needs a schedule/);
  });

  for (const select of ['{}', '{ vms: [] }', '{ vms: [], folders: [] }']) {
    it(`an empty select ${select} is refused, naming the task`, () => {
      const err = refused(config(task(`{ name: nightly, select: ${select} }`)));
      assert.match(err.message, /tasks\[0\]\.select \(task nightly\): is empty/);
    });
  }

  it('duplicate task names are reported together with every other problem', () => {
    const err = refused(
      config([
        'tasks:',
        '  - { name: nightly, select: { vms: [a] } }',
        '  - { name: nightly, select: {} }',
        '  - { name: weekly, select: { vms: [b] }, schedule: "0 0 * * 8" }',
        '  - { name: weekly, select: { vms: [b] }, mode: FAST }',
      ]),
      {},
    );
    const lines = err.message.split('\n').slice(1);
    for (const expected of [
      /tasks\[1\]\.select \(task nightly\): is empty/,
      /tasks\[2\]\.schedule \(task weekly\): invalid cron schedule/,
      /tasks\[3\]\.mode \(task weekly\): /,
      /tasks\[1\]\.name: duplicate task name nightly/,
      /tasks\[3\]\.name: duplicate task name weekly/,
      /vcenter\.passwordEnv: environment variable VC_PASSWORD is not set/,
    ]) {
      assert.ok(
        lines.some((l) => expected.test(l)),
        `missing ${expected} in:\n${err.message}`,
      );
    }
    assert.equal(lines.length, 6, err.message);
  });

  it('duplicate array names come with the other problems too', () => {
    const err = refused(
      [
        ...VCENTER_ENV,
        '  thumbprint: "zz"',
        'arrays:',
        '  - { name: a1, type: fs, path: /x }',
        '  - { name: a1, type: fs, path: /y }',
        '',
      ].join('\n'),
    );
    assert.match(err.message, /arrays\[1\]\.name: duplicate array name a1/);
    assert.match(err.message, /vcenter\.thumbprint: must be a SHA-1 or SHA-256 fingerprint/);
  });
});
