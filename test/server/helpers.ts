import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { createServer } from 'node:net';
import { CLI, runJson } from '../helpers/cli.js';

/** A port nobody listens on right now (the daemon binds it a moment later). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address() as { port: number };
      s.close(() => resolve(port));
    });
  });
}

export interface Served {
  url: string;
  port: number;
  child: ChildProcess;
  /** Everything the daemon wrote to stderr so far (its JSON log lines). */
  stderr(): string;
  stdout(): string;
  /** The JSON log lines parsed (lines that are not JSON are skipped). */
  // biome-ignore lint/suspicious/noExplicitAny: log lines are free-form JSON objects
  logs(): any[];
  /** Resolves when a log line satisfies `test` (no timers: it is checked on every new line). */
  // biome-ignore lint/suspicious/noExplicitAny: log lines are free-form JSON objects
  waitForLog(test: (line: any) => boolean): Promise<any>;
  /** Sends the signal and waits for the exit. */
  stop(signal?: NodeJS.Signals): Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

/**
 * Starts `snapkeeper serve` as a child process on a free port and waits until it says it listens (or exits,
 * which fails with its output).
 */
export async function serve(
  configPath: string,
  options: { port?: number; env?: Record<string, string>; args?: string[] } = {},
): Promise<Served> {
  const port = options.port ?? (await freePort());
  const child = spawn(
    process.execPath,
    [CLI, '--config', configPath, 'serve', '--listen', `127.0.0.1:${port}`, ...(options.args ?? [])],
    {
      env: { ...process.env, ...options.env },
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  let err = '';
  let out = '';
  // biome-ignore lint/suspicious/noExplicitAny: see Served
  const waiters: { test: (l: any) => boolean; resolve: (l: any) => void }[] = [];
  const parsed = () =>
    err
      .split('\n')
      .filter((l) => l.startsWith('{'))
      .flatMap((l) => {
        try {
          return [JSON.parse(l)];
        } catch {
          return [];
        }
      });
  const check = () => {
    const lines = parsed();
    for (const w of [...waiters]) {
      const hit = lines.find(w.test);
      if (hit !== undefined) {
        waiters.splice(waiters.indexOf(w), 1);
        w.resolve(hit);
      }
    }
  };
  child.stderr!.on('data', (b: Buffer) => {
    err += b.toString('utf8');
    check();
  });
  child.stdout!.on('data', (b: Buffer) => {
    out += b.toString('utf8');
  });
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.on('exit', (code, signal) => resolve({ code, signal })),
  );
  const served: Served = {
    url: `http://127.0.0.1:${port}`,
    port,
    child,
    stderr: () => err,
    stdout: () => out,
    logs: parsed,
    waitForLog: (test) =>
      new Promise((resolve, reject) => {
        waiters.push({ test, resolve });
        check();
        void exited.then(() => {
          check();
          if (waiters.some((w) => w.test === test)) reject(new Error(`daemon exited; stderr:\n${err}`));
        });
      }),
    stop: async (signal = 'SIGTERM') => {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
      return exited;
    },
    exited,
  };
  await served.waitForLog((l) => l.msg === 'listening');
  return served;
}

export interface ApiResponse {
  status: number;
  headers: Headers;
  text: string;
  // biome-ignore lint/suspicious/noExplicitAny: tests read the documents loosely
  json: any;
}

/** One API call with a token or a session cookie (and its CSRF header). */
export async function api(
  base: string,
  method: string,
  path: string,
  options: {
    token?: string;
    cookie?: string;
    csrf?: string;
    body?: unknown;
    headers?: Record<string, string>;
  } = {},
): Promise<ApiResponse> {
  const headers: Record<string, string> = { ...options.headers };
  if (options.token) headers.authorization = `Bearer ${options.token}`;
  if (options.cookie) headers.cookie = options.cookie;
  if (options.csrf) headers['x-csrf-token'] = options.csrf;
  if (options.body !== undefined) headers['content-type'] = 'application/json';
  const res = await fetch(`${base}${path}`, {
    method,
    headers,
    ...(options.body !== undefined ? { body: JSON.stringify(options.body) } : {}),
  });
  const text = await res.text();
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    json = undefined;
  }
  return { status: res.status, headers: res.headers, text, json };
}

/** A token of that role made with the CLI (`token create --json`). */
export async function makeToken(configPath: string, name: string, role: string): Promise<string> {
  const run = await runJson(configPath, 'token', 'create', '--name', name, '--role', role);
  assert.equal(run.code, 0, run.stdout + run.stderr);
  assert.match(run.json.token, /^skt_/);
  return run.json.token as string;
}

export interface SseEvent {
  event: string;
  // biome-ignore lint/suspicious/noExplicitAny: event data is free-form JSON
  data: any;
}

/**
 * Reads a job's event stream until it ends (`done` or `failed`), calling `onEvent` for each event as it
 * comes; returns them all.
 */
export async function jobEvents(
  base: string,
  jobId: string,
  token: string,
  onEvent: (e: SseEvent) => void = () => {},
): Promise<SseEvent[]> {
  const res = await fetch(`${base}/api/v1/jobs/${jobId}/events`, {
    headers: { authorization: `Bearer ${token}` },
  });
  assert.equal(res.status, 200);
  assert.match(res.headers.get('content-type') ?? '', /text\/event-stream/);
  const events: SseEvent[] = [];
  const decoder = new TextDecoder();
  let buffer = '';
  for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
    buffer += decoder.decode(chunk, { stream: true });
    let end = buffer.indexOf('\n\n');
    while (end >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      const event = /^event: (.*)$/m.exec(block)?.[1] ?? 'message';
      const data = /^data: (.*)$/m.exec(block)?.[1];
      const e = { event, data: data === undefined ? undefined : JSON.parse(data) };
      events.push(e);
      onEvent(e);
      end = buffer.indexOf('\n\n');
    }
  }
  return events;
}

/** Waits for a job to end through its event stream, then returns the job document. */
// biome-ignore lint/suspicious/noExplicitAny: the job document is read loosely
export async function finishedJob(base: string, jobId: string, token: string): Promise<any> {
  const events = await jobEvents(base, jobId, token);
  const last = events[events.length - 1];
  assert.ok(last && (last.event === 'done' || last.event === 'failed'), `stream ended with ${last?.event}`);
  const job = await api(base, 'GET', `/api/v1/jobs/${jobId}`, { token });
  assert.equal(job.status, 200);
  return job.json;
}
