import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { existsSync, readdirSync, statSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { type Browser, chromium, type Locator, type Page } from 'playwright-core';
import { CLI, runCli } from './cli.js';

/** The repository root (this file runs from dist/test/helpers). */
export const REPO = fileURLToPath(new URL('../../../', import.meta.url));

/** Debian's Chromium: the browser tests drive it through playwright-core, never a downloaded browser. */
export const CHROMIUM = process.env.SNAPKEEPER_CHROMIUM ?? '/usr/bin/chromium';
export const hasChromium = existsSync(CHROMIUM);

/** Where screenshots go (gitignored); each path is printed in the test output. */
export const ARTIFACTS = join(REPO, 'test-artifacts', 'browser');

/** Headless Chromium with no network of its own (no updates, no sync, no QUIC). */
export function launchBrowser(): Promise<Browser> {
  return chromium.launch({
    executablePath: CHROMIUM,
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
  });
}

/** The newest modification time of the files under `dir` (0 when there is none). */
function newest(dir: string): number {
  let t = 0;
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    t = Math.max(t, e.isDirectory() ? newest(p) : statSync(p).mtimeMs);
  }
  return t;
}

/**
 * Builds the web UI into web/dist when it is not there or older than a file of web/src or web/index.html (the
 * daemon serves it at `/`, and a test must not run against a stale build). vite's build is offline, about a
 * second.
 */
export function ensureWebBuilt(): void {
  const built = join(REPO, 'web', 'dist', 'index.html');
  if (
    existsSync(built) &&
    statSync(built).mtimeMs >=
      Math.max(newest(join(REPO, 'web', 'src')), statSync(join(REPO, 'web', 'index.html')).mtimeMs)
  )
    return;
  const r = spawnSync('npm', ['run', '--silent', 'build:web'], { cwd: REPO, encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`npm run build:web failed:\n${r.stdout}\n${r.stderr}`);
}

/** A TCP port nobody listens on right now (the kernel picks it). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const addr = s.address();
      const port = typeof addr === 'object' && addr ? addr.port : 0;
      s.close(() => resolve(port));
    });
  });
}

/** A `snapkeeper serve` child process on the lab's configuration. */
export interface Daemon {
  url: string;
  child: ChildProcess;
  /** Everything it wrote to stdout and stderr so far (its JSON log lines). */
  output(): string;
  /** SIGTERM, then waits for the exit. Safe to call twice. */
  stop(): Promise<void>;
}

/**
 * Starts `snapkeeper serve --listen 127.0.0.1:PORT` on `configPath` and waits until `/healthz` answers (the
 * daemon starts listening only after it has opened its catalog and repaired what a crash left), at most
 * `timeoutMs`. The wait polls readiness; no test asserts on timing.
 */
export async function startDaemon(configPath: string, timeoutMs = 60_000): Promise<Daemon> {
  ensureWebBuilt();
  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  const child = spawn(
    process.execPath,
    [CLI, '--config', configPath, 'serve', '--listen', `127.0.0.1:${port}`],
    {
      cwd: REPO,
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  let out = '';
  child.stdout?.on('data', (b: Buffer) => {
    out += b.toString('utf8');
  });
  child.stderr?.on('data', (b: Buffer) => {
    out += b.toString('utf8');
  });
  let exited: number | null | undefined;
  const exit = new Promise<void>((resolve) =>
    child.on('exit', (code) => {
      exited = code;
      resolve();
    }),
  );
  const daemon: Daemon = {
    url,
    child,
    output: () => out,
    async stop() {
      if (exited === undefined) child.kill('SIGTERM');
      await exit;
    },
  };
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (exited !== undefined)
      throw new Error(`snapkeeper serve exited (${exited}) before it answered:\n${out}`);
    try {
      const res = await fetch(`${url}/healthz`);
      if (res.ok) return daemon;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) {
      await daemon.stop();
      throw new Error(`snapkeeper serve did not answer /healthz within ${timeoutMs} ms:\n${out}`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** Adds a web UI user with the CLI (`snapkeeper user add NAME --role ROLE --password-file FILE`). */
export async function addUser(
  configPath: string,
  dir: string,
  user: string,
  role: 'read-only' | 'operator' | 'admin',
  password: string,
): Promise<void> {
  const file = join(dir, `${user}.password`);
  await writeFile(file, `${password}\n`, { mode: 0o600 });
  const r = await runCli([
    '--config',
    configPath,
    'user',
    'add',
    user,
    '--role',
    role,
    '--password-file',
    file,
  ]);
  if (r.code !== 0) throw new Error(`user add ${user} failed (${r.code}): ${r.stdout}${r.stderr}`);
}

/** Saves a full-page screenshot as test-artifacts/browser/NAME.png and returns its path. */
export async function screenshot(page: Page, name: string): Promise<string> {
  await mkdir(ARTIFACTS, { recursive: true });
  const path = join(ARTIFACTS, `${name}.png`);
  await page.screenshot({ path, fullPage: true });
  console.log(`screenshot: ${path}`);
  return path;
}

/** Whether this checkout has the daemon (`snapkeeper serve`): the browser tests need it. */
export function hasServe(): boolean {
  const r = spawnSync(process.execPath, [CLI, '--help'], { encoding: 'utf8' });
  return r.status === 0 && /^\s+serve\b/m.test(r.stdout);
}

/** An element's text with runs of white space made one space (what a reader sees, near enough). */
export async function text(locator: Locator): Promise<string> {
  return ((await locator.textContent()) ?? '').replace(/\s+/g, ' ').trim();
}
