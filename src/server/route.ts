import type { FastifyReply, FastifyRequest } from 'fastify';
import type { z } from 'zod';
import type { Role } from '../catalog/index.js';

/** Who made a request: an API token or a web session (whose id the CSRF check needs). */
export interface Principal {
  kind: 'token' | 'session';
  name: string;
  role: Role;
  sessionId?: string;
}

export interface RouteRequest<P, Q, B> {
  params: P;
  query: Q;
  body: B;
  principal: Principal | undefined;
  request: FastifyRequest;
  reply: FastifyReply;
}

/**
 * Who may call a route: a role (and every role above it), anyone (`public`), or as configured
 * (`health`: /healthz, `metrics`: /metrics, public unless server.healthAuth / metricsAuth say otherwise),
 * `authenticated`: any token or session.
 */
export type Access = Role | 'public' | 'authenticated' | 'health' | 'metrics';

/** One row of the route table: what the HTTP layer registers and the OpenAPI document describes. */
export interface Route {
  method: 'GET' | 'POST' | 'PUT' | 'DELETE';
  /** OpenAPI form: `/api/v1/backups/{id}`. */
  path: string;
  access: Access;
  summary: string;
  tag: string;
  params?: z.ZodType;
  query?: z.ZodType;
  body?: z.ZodType;
  /** Success status (default 200). */
  status?: number;
  /** JSON routes: the response body's schema (checked before it is sent). */
  response?: z.ZodType;
  /** Non-JSON routes: their content type (the handler writes the reply itself or returns text). */
  contentType?: 'text/plain; version=0.0.4' | 'text/event-stream';
  handler(req: RouteRequest<never, never, never>): Promise<unknown>;
}

/** Types a route's handler from its request schemas (the response is checked at run time) and erases them. */
export function route<P extends z.ZodType, Q extends z.ZodType, B extends z.ZodType>(def: {
  method: Route['method'];
  path: string;
  access: Access;
  summary: string;
  tag: string;
  params?: P;
  query?: Q;
  body?: B;
  status?: number;
  response?: z.ZodType;
  contentType?: Route['contentType'];
  handler(req: RouteRequest<z.output<P>, z.output<Q>, z.output<B>>): Promise<unknown>;
}): Route {
  return def as unknown as Route;
}
