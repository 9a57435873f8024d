import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import fastifyStatic from '@fastify/static';
import Fastify, { type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import type { z } from 'zod';
import {
  AuthenticationError,
  ConflictError,
  errorMessage,
  LockedError,
  NotFoundError,
  SnapkeeperError,
  UsageError,
} from '../errors.js';
import { roleAllows } from './credentials.js';
import type { Logger } from './log.js';
import type { Metrics } from './metrics.js';
import type { Access, Principal, Route } from './route.js';
import { HttpError, type Sessions } from './sessions.js';

export interface HttpOptions {
  routes: readonly Route[];
  sessions: Sessions;
  log: Logger;
  metrics: Metrics;
  healthAuth: boolean;
  metricsAuth: boolean;
  tls?: { cert: string; key: string };
  /** Directory of the built web UI (index.html); a placeholder page is served when it is absent. */
  webRoot: string;
  /** Extra JSON routes registered outside the table (the OpenAPI document itself). */
  extra?: (app: FastifyInstance) => void;
}

/** The HTTP status of an error, by the class the CLI maps to an exit code. */
export function statusOf(err: unknown): number {
  if (err instanceof HttpError) return err.status;
  if (err instanceof NotFoundError) return 404;
  if (err instanceof LockedError || err instanceof ConflictError) return 409;
  // vCenter refused the daemon's own login: an upstream failure, not the API caller's bad input.
  if (err instanceof AuthenticationError) return 502;
  if (err instanceof UsageError) return 400;
  return 500;
}

function issuesText(error: z.ZodError, where: string): string {
  return error.issues
    .map((i) => `${where}${i.path.length > 0 ? `.${i.path.join('.')}` : ''}: ${i.message}`)
    .join('; ');
}

function parseInput<T>(schema: z.ZodType<T> | undefined, value: unknown, where: string): T {
  if (schema === undefined) return undefined as T;
  const parsed = schema.safeParse(value ?? (where === 'body' ? undefined : {}));
  if (!parsed.success) throw new HttpError(400, 'BAD_REQUEST', issuesText(parsed.error, where));
  return parsed.data;
}

/** The placeholder shown at / when web/dist has not been built. */
const PLACEHOLDER = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>snapkeeper</title></head>
<body><main><h1>snapkeeper</h1>
<p>The web UI is not built in this installation. Build it with <code>npm run build:web</code> (it goes to
<code>web/dist</code>), then restart <code>snapkeeper serve</code>.</p>
<p>The REST API answers at <code>/api/v1</code>; its description is at <a href="/openapi.json">/openapi.json</a>.</p>
</main></body></html>
`;

const principals = new WeakMap<FastifyRequest, Principal>();

/**
 * The daemon's HTTP server (fastify): registers the route table with authentication, role checks, zod
 * validation of every input and every JSON response, the API's error shape, security headers, a request
 * log line and the latency metric per route, and the web UI's files.
 */
export async function buildHttp(options: HttpOptions): Promise<FastifyInstance> {
  const app = Fastify({
    logger: false,
    bodyLimit: 1024 * 1024,
    ...(options.tls
      ? { https: { cert: readFileSync(options.tls.cert), key: readFileSync(options.tls.key) } }
      : {}),
  }) as unknown as FastifyInstance;

  const effective = (access: Access): Exclude<Access, 'health' | 'metrics'> =>
    access === 'health'
      ? options.healthAuth
        ? 'read-only'
        : 'public'
      : access === 'metrics'
        ? options.metricsAuth
          ? 'read-only'
          : 'public'
        : access;

  app.addHook('onRequest', async (_request, reply) => {
    reply.header('x-content-type-options', 'nosniff');
    reply.header('x-frame-options', 'DENY');
    reply.header('referrer-policy', 'no-referrer');
    reply.header(
      'content-security-policy',
      "default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; frame-ancestors 'none'",
    );
  });

  app.addHook('onResponse', async (request, reply) => {
    const route = request.routeOptions.url ?? 'unmatched';
    const seconds = reply.elapsedTime / 1000;
    options.metrics.apiLatency.observe(
      { method: request.method, route, code: `${String(reply.statusCode)[0]}xx` },
      seconds,
    );
    const who = principals.get(request);
    options.log.info('request', {
      method: request.method,
      route,
      path: request.url.split('?')[0],
      status: reply.statusCode,
      ms: Math.round(reply.elapsedTime * 10) / 10,
      ip: request.ip,
      ...(who ? { principal: `${who.kind}:${who.name}` } : {}),
    });
  });

  app.setErrorHandler(async (err: unknown, request: FastifyRequest, reply: FastifyReply) => {
    let status = statusOf(err);
    let code = err instanceof SnapkeeperError ? err.code : 'INTERNAL';
    let message = err instanceof SnapkeeperError ? err.message : 'internal error (see the daemon’s log)';
    const fastifyStatus = (err as { statusCode?: number }).statusCode;
    if (!(err instanceof SnapkeeperError) && fastifyStatus !== undefined && fastifyStatus < 500) {
      status = fastifyStatus;
      code = status === 415 ? 'UNSUPPORTED_MEDIA_TYPE' : status === 413 ? 'BODY_TOO_LARGE' : 'BAD_REQUEST';
      message = errorMessage(err);
    }
    if (status >= 500) {
      options.log.error('request failed', {
        route: request.routeOptions.url ?? 'unmatched',
        code,
        reason: errorMessage(err),
      });
    }
    const details = err instanceof SnapkeeperError && err.details ? { details: err.details } : {};
    return reply
      .code(status)
      .type('application/json')
      .send({ error: { code, message, ...details } });
  });

  for (const r of options.routes) {
    const access = effective(r.access);
    app.route({
      method: r.method,
      url: r.path.replace(/\{(\w+)\}/g, ':$1'),
      handler: async (request, reply) => {
        let principal: Principal | undefined;
        if (access !== 'public') {
          principal = await options.sessions.authenticate(request);
          if (!principal) {
            throw new HttpError(
              401,
              'UNAUTHENTICATED',
              'authentication needed: an API token (Authorization: Bearer) or a login',
            );
          }
          principals.set(request, principal);
          if (access !== 'authenticated' && !roleAllows(principal.role, access)) {
            throw new HttpError(
              403,
              'FORBIDDEN',
              `${r.method} ${r.path} needs role ${access}; ${principal.kind} ${principal.name} has ${principal.role}`,
            );
          }
        }
        const params = parseInput(r.params, request.params, 'path');
        const query = parseInput(r.query, request.query, 'query');
        const body = parseInput(r.body, request.body, 'body');
        const result = await r.handler({
          params: params as never,
          query: query as never,
          body: body as never,
          principal,
          request,
          reply,
        });
        if (r.contentType === 'text/event-stream') return reply;
        if (r.contentType !== undefined)
          return reply
            .code(r.status ?? 200)
            .type(r.contentType)
            .send(result);
        if (r.response) {
          const checked = r.response.safeParse(result);
          if (!checked.success) {
            options.log.error('response does not match its schema', {
              route: r.path,
              problem: issuesText(checked.error, 'response'),
            });
            throw new SnapkeeperError(
              'RESPONSE_INVALID',
              `the daemon made a response that does not match ${r.method} ${r.path}'s schema`,
            );
          }
        }
        return reply
          .code(r.status ?? 200)
          .type('application/json')
          .send(result);
      },
    });
  }
  options.extra?.(app);

  const hasUi = existsSync(join(options.webRoot, 'index.html'));
  if (hasUi) await app.register(fastifyStatic, { root: options.webRoot, prefix: '/', wildcard: false });
  app.setNotFoundHandler(async (request, reply) => {
    const path = request.url.split('?')[0] ?? '/';
    if (request.method !== 'GET' || path.startsWith('/api/') || path === '/openapi.json') {
      return reply
        .code(404)
        .type('application/json')
        .send({ error: { code: 'NOT_FOUND', message: `no route ${request.method} ${path}` } });
    }
    // The web UI's own paths (client-side routing) all load its index.html.
    if (hasUi) return reply.type('text/html').sendFile('index.html');
    return reply.type('text/html').send(PLACEHOLDER);
  });
  return app;
}
