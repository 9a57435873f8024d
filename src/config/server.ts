import { z } from 'zod';
import { UsageError } from '../errors.js';

/** Where `snapkeeper serve` listens unless told otherwise: this host only, on snapkeeper's port. */
export const DEFAULT_LISTEN = '127.0.0.1:8470';

/** The shortest `server.leaseSeconds` accepted. */
export const LEASE_SECONDS_MIN = 3;

/** The events a webhook can be sent for: a run or job that failed, a backup that completed with warnings. */
export const WEBHOOK_EVENTS = ['failure', 'warning'] as const;
export type WebhookEvent = (typeof WEBHOOK_EVENTS)[number];

/**
 * `HOST:PORT` (an IPv6 host in brackets: `[::1]:8470`) to `{ host, port }`; UsageError LISTEN_INVALID naming
 * what is wrong otherwise.
 */
export function parseListen(value: string): { host: string; port: number } {
  const m = /^(?:\[([0-9A-Fa-f:.]+)\]|([A-Za-z0-9.-]+)):(\d{1,5})$/.exec(value);
  const port = m ? Number(m[3]) : Number.NaN;
  if (!m || port > 65535) {
    throw new UsageError(
      'LISTEN_INVALID',
      `listen address ${JSON.stringify(value)} is not HOST:PORT (e.g. ${DEFAULT_LISTEN}, [::1]:8470, 0.0.0.0:8470) with a port of 0-65535`,
    );
  }
  return { host: (m[1] ?? m[2])!, port };
}

const listen = z.string().superRefine((value, ctx) => {
  try {
    parseListen(value);
  } catch (err) {
    ctx.addIssue({ code: 'custom', message: (err as Error).message });
  }
});

const webhookSchema = z
  .object({
    url: z.url({ protocol: /^https?$/ }),
    /** A file holding the HMAC-SHA256 key the body is signed with (read when the daemon starts). */
    secretFile: z.string().min(1),
    events: z.array(z.enum(WEBHOOK_EVENTS)).min(1).default(['failure', 'warning']),
    /** Deliveries tried at most this many times (first one included). */
    attempts: z.number().int().min(1).max(20).default(6),
    /** Wait before the first retry; doubled after each failure. */
    backoffSeconds: z.number().positive().max(3600).default(1),
  })
  .strict();

/** The `server:` section: what `snapkeeper serve` does besides the engine's work. */
export const serverSchema = z
  .object({
    listen: listen.default(DEFAULT_LISTEN),
    /** Serve HTTPS with this certificate and key (PEM files); plain HTTP without. */
    tls: z
      .object({ cert: z.string().min(1), key: z.string().min(1) })
      .strict()
      .optional(),
    /** Whether /metrics needs a token (or session), as the API does. Default: open, as exporters are. */
    metricsAuth: z.boolean().default(false),
    /** Whether /healthz needs a token. Default: open. */
    healthAuth: z.boolean().default(false),
    webhooks: z.array(webhookSchema).default([]),
    /** How long a web login lasts. */
    sessionHours: z
      .number()
      .positive()
      .max(24 * 30)
      .default(12),
    /** Failed logins allowed per user and client address in the window; beyond, 429 until it passes. */
    loginRateLimit: z
      .object({
        attempts: z.number().int().min(1).max(1000).default(5),
        windowSeconds: z.number().int().min(1).max(86400).default(300),
      })
      .strict()
      .prefault({}),
    /** Structured logs (JSON lines) go to this file; default stderr. */
    logFile: z.string().min(1).optional(),
    /** The built web UI (default: web/dist of this installation). */
    webRoot: z.string().min(1).optional(),
    /** How often the scheduler looks at the task schedules (croner patterns may have seconds). */
    scheduleTickSeconds: z.number().positive().max(60).default(1),
    /**
     * The lease of a daemon's membership and of the schedules' leadership: a daemon whose heartbeat is older
     * is dead (its jobs INTERRUPTED, its leadership taken over). Renewed every leaseSeconds/12, at most every
     * 5 s. At least 3 s: a shorter lease would let a busy event loop or a slow catalog write depose a live
     * leader.
     */
    leaseSeconds: z.number().int().min(LEASE_SECONDS_MIN).max(3600).default(60),
    /**
     * Run an offload worker inside the daemon, as `snapkeeper worker` does (`serve --worker [N]` too): it takes
     * disk jobs from the PostgreSQL job queue (`workers.queue`, or the catalog's database). `concurrency`
     * defaults to `workers.concurrency`.
     */
    worker: z
      .object({ concurrency: z.number().int().min(1).max(64).optional() })
      .strict()
      .optional(),
  })
  .strict();

export type ServerConfig = z.infer<typeof serverSchema>;
export type WebhookConfig = z.infer<typeof webhookSchema>;

/** The section with its file paths made absolute (relative to the configuration file). */
export function resolveServerPaths(server: ServerConfig, abs: (p: string) => string): ServerConfig {
  return {
    ...server,
    ...(server.tls ? { tls: { cert: abs(server.tls.cert), key: abs(server.tls.key) } } : {}),
    webhooks: server.webhooks.map((w) => ({ ...w, secretFile: abs(w.secretFile) })),
    ...(server.logFile ? { logFile: abs(server.logFile) } : {}),
    ...(server.webRoot ? { webRoot: abs(server.webRoot) } : {}),
  };
}
