import type {
  BackupRecord,
  BackupStat,
  BackupSummary,
  Dashboard,
  EngineEvent,
  Inventory,
  Job,
  MountItem,
  Page,
  Repository,
  RestoreRequest,
  Session,
  TaskConfig,
  TaskDetail,
  TaskListItem,
} from './types';

/**
 * The daemon's REST API (base /api/v1). The session cookie is HttpOnly, so the browser sends it by itself;
 * the CSRF token the login answer carries is kept in memory only (never in storage a script of another page
 * could read) and sent as X-CSRF-Token on every request that changes something.
 */

const BASE = '/api/v1';

let csrfToken: string | null = null;

/** An error answer of the API: `{ error: { code, message } }` with the HTTP status. */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
    this.name = 'ApiError';
  }
}

/** Called on a 401 so the app can show the login page again. */
let onUnauthorized: (() => void) | null = null;
export function setUnauthorizedHandler(handler: (() => void) | null): void {
  onUnauthorized = handler;
}

async function request<T>(method: string, path: string, body?: unknown): Promise<T> {
  const headers: Record<string, string> = { Accept: 'application/json' };
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  if (method !== 'GET' && csrfToken) headers['X-CSRF-Token'] = csrfToken;
  let res: Response;
  try {
    res = await fetch(BASE + path, {
      method,
      headers,
      credentials: 'same-origin',
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch (err) {
    throw new ApiError(
      0,
      'NETWORK',
      `the daemon did not answer (${err instanceof Error ? err.message : err})`,
    );
  }
  const text = await res.text();
  let data: unknown = null;
  if (text) {
    try {
      data = JSON.parse(text);
    } catch {
      data = null;
    }
  }
  if (!res.ok) {
    const e = (data as { error?: { code?: string; message?: string } } | null)?.error;
    if (res.status === 401 && path !== '/session') onUnauthorized?.();
    throw new ApiError(
      res.status,
      e?.code ?? `HTTP_${res.status}`,
      e?.message ?? `${res.status} ${res.statusText}`,
    );
  }
  return data as T;
}

function query(params: Record<string, string | number | undefined | null>): string {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params))
    if (v !== undefined && v !== null && v !== '') q.set(k, String(v));
  const s = q.toString();
  return s ? `?${s}` : '';
}

/** Some endpoints answer `{ items }`, older drafts a bare array: accept both. */
function items<T>(data: T[] | { items: T[] } | null): T[] {
  if (Array.isArray(data)) return data;
  return data?.items ?? [];
}

export const api = {
  async login(user: string, password: string): Promise<Session> {
    const s = await request<Session>('POST', '/session', { user, password });
    csrfToken = s.csrfToken;
    return s;
  },
  /** The current session (after a page reload the cookie is still there; the token comes back with it). */
  async session(): Promise<Session> {
    const s = await request<Session>('GET', '/session');
    csrfToken = s.csrfToken;
    return s;
  },
  async logout(): Promise<void> {
    try {
      await request('DELETE', '/session');
    } finally {
      csrfToken = null;
    }
  },
  dashboard: () => request<Dashboard>('GET', '/dashboard'),
  inventory: () => request<Inventory>('GET', '/inventory'),
  tasks: async () => items(await request<TaskListItem[] | Page<TaskListItem>>('GET', '/tasks')),
  task: (name: string) => request<TaskDetail>('GET', `/tasks/${encodeURIComponent(name)}`),
  createTask: (task: TaskConfig) => request<unknown>('POST', '/tasks', task),
  updateTask: (name: string, task: TaskConfig) =>
    request<unknown>('PUT', `/tasks/${encodeURIComponent(name)}`, task),
  deleteTask: (name: string) => request<unknown>('DELETE', `/tasks/${encodeURIComponent(name)}`),
  runTask: (name: string) => request<{ job: Job | string }>('POST', `/tasks/${encodeURIComponent(name)}/run`),
  backups: (filters: {
    task?: string;
    vm?: string;
    state?: string;
    since?: string;
    until?: string;
    limit?: number;
    cursor?: string;
  }) => request<Page<BackupSummary>>('GET', `/backups${query(filters)}`),
  backup: (id: string) => request<BackupRecord>('GET', `/backups/${encodeURIComponent(id)}`),
  deleteBackup: (id: string) => request<unknown>('DELETE', `/backups/${encodeURIComponent(id)}`),
  restore: (body: RestoreRequest) => request<{ job: Job | string }>('POST', '/restores', body),
  mount: (body: { backupId: string; host?: string }) =>
    request<{ job: Job | string }>('POST', '/mounts', body),
  mounts: async () => items(await request<MountItem[] | Page<MountItem>>('GET', '/mounts')),
  unmount: (id: string) => request<{ job: Job | string }>('DELETE', `/mounts/${encodeURIComponent(id)}`),
  detach: (id: string) => request<{ job: Job | string }>('DELETE', `/attaches/${encodeURIComponent(id)}`),
  events: async (limit = 20) =>
    items(await request<EngineEvent[] | Page<EngineEvent>>('GET', `/events${query({ limit })}`)),
  attach: (body: { backupId: string; vm: string; disks?: string[]; targetVm: string }) =>
    request<{ job: Job | string }>('POST', '/attaches', body),
  jobs: async (state?: string) => items(await request<Job[] | Page<Job>>('GET', `/jobs${query({ state })}`)),
  job: (id: string) => request<Job>('GET', `/jobs/${encodeURIComponent(id)}`),
  offload: (body: { backupId: string; repository: string }) =>
    request<{ job: Job | string }>('POST', '/offloads', body),
  repositories: () => request<Repository[]>('GET', '/repositories'),
  stats: async (task?: string, limit = 200) =>
    items(await request<BackupStat[] | Page<BackupStat>>('GET', `/stats/backups${query({ task, limit })}`)),
};

/** The job id out of a 202 answer (`{ job: { id } }` or `{ job: "id" }`). */
export function jobId(answer: { job: Job | string }): string {
  return typeof answer.job === 'string' ? answer.job : answer.job.id;
}

/** The URL of a job's event stream (text/event-stream; the cookie authenticates it). */
export function jobEventsUrl(id: string): string {
  return `${BASE}/jobs/${encodeURIComponent(id)}/events`;
}

export function errorText(err: unknown): string {
  if (err instanceof ApiError) return `${err.code}: ${err.message}`;
  return err instanceof Error ? err.message : String(err);
}
