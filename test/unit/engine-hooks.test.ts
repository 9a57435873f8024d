import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { hookSchema } from '../../src/config/schema.js';
import {
  groupAlive,
  type HookProcess,
  hookEnvironment,
  hookTimeoutSeconds,
  killHookProcess,
  OUTPUT_LIMIT,
  runHook,
} from '../../src/engine/steps/hooks.js';

/** Whether a process runs (a zombie, killed and waiting to be reaped, does not). */
function processRuns(pid: number): boolean {
  try {
    return readFileSync(`/proc/${pid}/stat`, 'utf8').match(/\) (\S)/)?.[1] !== 'Z';
  } catch {
    return false;
  }
}

/** Whether the process group is gone by `ms` from now (polled: the kernel gives no event for it). */
async function goneWithin(pgid: number, ms: number): Promise<boolean> {
  const deadline = Date.now() + ms;
  while (groupAlive(pgid)) {
    if (Date.now() > deadline) return false;
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  return true;
}

const root = mkdtempSync(join(tmpdir(), 'snapkeeper-hooks-'));
after(() => rmSync(root, { recursive: true, force: true }));

const context = { backupId: 'bk-1', task: 'nightly', vms: ['web01', 'db 02'], secrets: ['s3cret-pw'] };

/** Runs `sh -c script` as a hook of `phase` and returns its record and the process group it was given. */
async function shHook(
  script: string,
  options: { phase?: 'before-prepare' | 'after-snapshot'; timeoutSeconds?: number } = {},
) {
  const hook = {
    phase: options.phase ?? 'before-prepare',
    run: ['/bin/sh', '-c', script],
    ...(options.timeoutSeconds !== undefined ? { timeoutSeconds: options.timeoutSeconds } : {}),
  } as const;
  let proc: HookProcess | undefined;
  const record = await runHook(hook, hookEnvironment(hook, context), async (p) => {
    proc = p;
  });
  return { record, proc };
}

describe('backup hook runner', () => {
  it('records the exit code and output of a hook that succeeds', async () => {
    const { record, proc } = await shHook('echo out; echo err >&2; exit 0');
    assert.equal(record.ok, true);
    assert.equal(record.exitCode, 0);
    assert.equal(record.timedOut, false);
    assert.match(record.output, /out\n/);
    assert.match(record.output, /err\n/);
    assert.equal(record.phase, 'before-prepare');
    assert.deepEqual(record.run, ['/bin/sh', '-c', 'echo out; echo err >&2; exit 0']);
    assert.ok(proc && proc.pid === proc.pgid, 'the hook leads its own process group');
  });

  it('passes the backup id, task, phase and VMs (JSON) and withholds secrets and snapkeeper settings', async () => {
    const envFile = join(root, 'env');
    process.env.HOOK_TEST_SECRET = 's3cret-pw';
    process.env.SNAPKEEPER_CRASH_AT = 'nowhere';
    try {
      const { record } = await shHook(`env > '${envFile}'`, { phase: 'after-snapshot' });
      assert.equal(record.ok, true);
    } finally {
      delete process.env.HOOK_TEST_SECRET;
      delete process.env.SNAPKEEPER_CRASH_AT;
    }
    const env = readFileSync(envFile, 'utf8');
    assert.match(env, /^SNAPKEEPER_BACKUP_ID=bk-1$/m);
    assert.match(env, /^SNAPKEEPER_TASK=nightly$/m);
    assert.match(env, /^SNAPKEEPER_PHASE=after-snapshot$/m);
    assert.match(env, /^SNAPKEEPER_VMS=\["web01","db 02"\]$/m);
    assert.doesNotMatch(env, /s3cret-pw/);
    assert.doesNotMatch(env, /SNAPKEEPER_CRASH_AT/);
    assert.match(env, /^PATH=/m, 'the rest of the environment is passed on');
  });

  it('takes no shell: an argument is passed as written', async () => {
    const hook = { phase: 'after-release', run: ['/bin/echo', '$(id); `id` | x'] } as const;
    const record = await runHook(hook, hookEnvironment(hook, context), async () => {});
    assert.equal(record.output, '$(id); `id` | x\n');
  });

  it('fails with the exit code of a hook that fails', async () => {
    const { record } = await shHook('echo broken >&2; exit 7');
    assert.equal(record.ok, false);
    assert.equal(record.exitCode, 7);
    assert.equal(record.error, 'exited with code 7');
    assert.match(record.output, /broken/);
  });

  it('fails a hook whose program does not exist, without throwing', async () => {
    const hook = { phase: 'on-failure', run: [join(root, 'no-such-program')] } as const;
    const record = await runHook(hook, hookEnvironment(hook, context), async () => {});
    assert.equal(record.ok, false);
    assert.equal(record.exitCode, null);
    assert.match(record.error ?? '', /could not start: .*ENOENT/);
  });

  it('kills a hook and everything it started at its timeout', async () => {
    const childPidFile = join(root, 'child-pid');
    const started = Date.now();
    const { record, proc } = await shHook(`sleep 60 & echo $! > '${childPidFile}'; echo waiting; wait`, {
      timeoutSeconds: 1,
    });
    const elapsed = Date.now() - started;
    assert.equal(record.ok, false);
    assert.equal(record.timedOut, true);
    assert.equal(record.signal, 'SIGKILL');
    assert.match(record.error ?? '', /timed out after 1 s/);
    assert.match(record.output, /waiting/);
    assert.ok(elapsed < 5000, `the timeout bounds the wait (${elapsed} ms)`);
    assert.ok(proc);
    assert.equal(groupAlive(proc.pgid), false, 'no process of the hook is left');
    const childPid = Number(readFileSync(childPidFile, 'utf8'));
    assert.ok(childPid > 0);
    assert.equal(processRuns(childPid), false, 'the process the hook started is gone too');
  });

  it('kills what a hook left running in its group when it exits', async () => {
    const childPidFile = join(root, 'bg-pid');
    const { record, proc } = await shHook(`sleep 60 >/dev/null 2>&1 & echo $! > '${childPidFile}'; exit 0`);
    assert.equal(record.ok, true);
    assert.ok(proc);
    assert.equal(groupAlive(proc.pgid), false);
    assert.equal(processRuns(Number(readFileSync(childPidFile, 'utf8'))), false);
  });

  it('keeps only the last 4 KiB of output', async () => {
    const { record } = await shHook(
      `i=0; while [ $i -lt 2000 ]; do echo "line $i"; i=$((i+1)); done; echo last-line`,
    );
    assert.equal(record.ok, true);
    assert.ok(Buffer.byteLength(record.output) <= OUTPUT_LIMIT, `${Buffer.byteLength(record.output)} bytes`);
    assert.ok(Buffer.byteLength(record.output) > OUTPUT_LIMIT - 20);
    assert.match(record.output, /last-line\n$/);
    assert.doesNotMatch(record.output, /^line 0$/m);
  });

  it('kills the group when the hook could not be journaled', async () => {
    const hook = { phase: 'before-prepare', run: ['/bin/sleep', '60'] } as const;
    let proc: HookProcess | undefined;
    const started = Date.now();
    const record = await runHook(hook, hookEnvironment(hook, context), async (p) => {
      proc = p;
      throw new Error('catalog is read-only');
    });
    assert.ok(Date.now() - started < 5000);
    assert.equal(record.ok, false);
    assert.match(record.error ?? '', /not journaled: catalog is read-only/);
    assert.ok(proc);
    assert.equal(groupAlive(proc.pgid), false);
  });

  it('recovery kills a journaled hook group, and leaves a reused pid alone', async () => {
    const hook = { phase: 'after-snapshot', run: ['/bin/sleep', '60'], timeoutSeconds: 60 } as const;
    let proc: HookProcess | undefined;
    let signalStarted: () => void = () => {};
    const running = new Promise<void>((resolve) => {
      signalStarted = resolve;
    });
    const done = runHook(hook, hookEnvironment(hook, context), async (p) => {
      proc = p;
      signalStarted();
    });
    await running;
    assert.ok(proc);
    assert.equal(groupAlive(proc.pgid), true);
    assert.equal(await killHookProcess({ ...proc, startTicks: (proc.startTicks ?? 0) + 1 }), false);
    assert.equal(groupAlive(proc.pgid), true, 'another start time: not ours, not killed');
    assert.equal(await killHookProcess(proc), true);
    const record = await done;
    assert.equal(record.ok, false);
    assert.equal(record.signal, 'SIGKILL');
    assert.equal(groupAlive(proc.pgid), false);
    assert.equal(await killHookProcess(proc), false, 'a second recovery finds nothing to kill');
  });
});

describe('a hook never outlives snapkeeper', () => {
  for (const signal of ['SIGTERM', null] as const) {
    it(`kills the hook's group when snapkeeper ${signal ? `gets ${signal}` : 'exits'}`, async () => {
      const pidFile = join(root, `pid-${signal ?? 'exit'}`);
      const hooksModule = new URL('../../src/engine/steps/hooks.js', import.meta.url).href;
      // A process that runs a long hook; it reports the hook's group on stdout, then dies of `signal` or exits.
      const script = `
        import { writeFileSync } from 'node:fs';
        import { runHook } from ${JSON.stringify(hooksModule)};
        runHook({ phase: 'after-snapshot', run: ['/bin/sleep', '60'], timeoutSeconds: 60 }, process.env, async (p) => {
          writeFileSync(${JSON.stringify(pidFile)}, String(p.pgid));
          console.log('started');
          ${signal ? '' : 'process.exit(0);'}
        });`;
      const child = spawn(process.execPath, ['--input-type=module', '-e', script], {
        stdio: ['ignore', 'pipe', 'inherit'],
      });
      await new Promise<void>((resolve) => child.stdout.once('data', () => resolve()));
      const pgid = Number(readFileSync(pidFile, 'utf8'));
      assert.ok(pgid > 0);
      if (signal) {
        assert.equal(groupAlive(pgid), true);
        child.kill(signal);
      }
      const [code, died] = await once(child, 'exit');
      if (signal) assert.equal(died, signal, 'snapkeeper still dies of the signal');
      else assert.equal(code, 0);
      // SIGKILL is sent before snapkeeper dies; the kernel ends the group a moment later.
      assert.equal(await goneWithin(pgid, 2000), true, 'the hook is gone with it');
    });
  }
});

describe('hooks in the task configuration', () => {
  it('defaults the timeout by phase: 30 s while VMs are held, 300 s otherwise', () => {
    assert.equal(hookTimeoutSeconds({ phase: 'after-snapshot' }), 30);
    assert.equal(hookTimeoutSeconds({ phase: 'before-prepare' }), 300);
    assert.equal(hookTimeoutSeconds({ phase: 'after-snapshot', timeoutSeconds: 5 }), 5);
    assert.equal(hookSchema.parse({ phase: 'after-release', run: ['/bin/true'] }).onError, 'fail');
  });

  it('refuses a hook that is not well formed, naming what is wrong', () => {
    const bad: [unknown, RegExp][] = [
      [{ phase: 'before-snapshot', run: ['/bin/true'] }, /phase/],
      [{ phase: 'after-release', run: [] }, /run/],
      [{ phase: 'after-release', run: '/bin/true' }, /run/],
      [{ phase: 'after-release', run: [''] }, /run/],
      [{ phase: 'after-release', run: ['/bin/true'], timeoutSeconds: 0 }, /timeoutSeconds/],
      [{ phase: 'after-release', run: ['/bin/true'], timeoutSeconds: 3601 }, /timeoutSeconds/],
      [{ phase: 'after-release', run: ['/bin/true'], onError: 'ignore' }, /onError/],
      [{ phase: 'after-release', run: ['/bin/true'], shell: true }, /shell/],
    ];
    for (const [input, field] of bad) {
      const result = hookSchema.safeParse(input);
      assert.equal(result.success, false, JSON.stringify(input));
      const said = result.error?.issues.map((i) => `${i.path.join('.')} ${i.message}`).join('; ') ?? '';
      assert.match(said, field, JSON.stringify(input));
    }
  });
});
