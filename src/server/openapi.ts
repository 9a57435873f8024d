import { z } from 'zod';
import { VERSION } from '../version.js';
import type { Route } from './route.js';
import { errorSchema } from './schemas.js';

type JsonSchema = Record<string, unknown>;

/** A zod schema as JSON Schema 2020-12 (OpenAPI 3.1's dialect), without the `$schema` key. */
function jsonSchema(schema: z.ZodType, io: 'input' | 'output'): JsonSchema {
  const { $schema: _s, ...rest } = z.toJSONSchema(schema, {
    target: 'draft-2020-12',
    io,
    unrepresentable: 'any',
    reused: 'inline',
  }) as JsonSchema;
  return rest;
}

function parameters(schema: z.ZodType | undefined, where: 'path' | 'query'): JsonSchema[] {
  if (schema === undefined) return [];
  const js = jsonSchema(schema, 'input') as { properties?: Record<string, JsonSchema>; required?: string[] };
  return Object.entries(js.properties ?? {}).map(([name, prop]) => {
    const { description, ...rest } = prop as { description?: string };
    return {
      name,
      in: where,
      required: where === 'path' || (js.required ?? []).includes(name),
      ...(description ? { description } : {}),
      schema: rest,
    };
  });
}

const ROLE_TEXT: Record<string, string> = {
  public: 'no authentication',
  authenticated: 'any token or session',
  'read-only': 'role read-only or above',
  operator: 'role operator or admin',
  admin: 'role admin',
};

/**
 * The OpenAPI 3.1 document of the routes, generated from the zod schemas that validate them: request
 * bodies and parameters as their input types, responses as their output types, errors as `Error`.
 */
export function openApiDocument(
  routes: readonly Route[],
  options: { healthOpen: boolean; metricsOpen: boolean },
) {
  const paths: Record<string, Record<string, unknown>> = {};
  const errorRef = { $ref: '#/components/schemas/Error' };
  for (const r of routes) {
    const access =
      r.access === 'health'
        ? options.healthOpen
          ? 'public'
          : 'read-only'
        : r.access === 'metrics'
          ? options.metricsOpen
            ? 'public'
            : 'read-only'
          : r.access;
    const status = String(r.status ?? 200);
    const content =
      r.contentType !== undefined
        ? { [r.contentType.split(';')[0]!]: { schema: { type: 'string' } } }
        : r.response
          ? { 'application/json': { schema: jsonSchema(r.response, 'output') } }
          : undefined;
    const errors: Record<string, unknown> = {
      '400': {
        description: 'bad input (the CLI’s exit 3)',
        content: { 'application/json': { schema: errorRef } },
      },
    };
    if (access !== 'public') {
      errors['401'] = {
        description: 'no or wrong credentials',
        content: { 'application/json': { schema: errorRef } },
      };
      errors['403'] = {
        description: 'role too low, or CSRF header missing',
        content: { 'application/json': { schema: errorRef } },
      };
    }
    if (r.path.includes('{'))
      errors['404'] = { description: 'not found', content: { 'application/json': { schema: errorRef } } };
    if (r.method !== 'GET')
      errors['409'] = {
        description: 'locked or in conflict',
        content: { 'application/json': { schema: errorRef } },
      };
    if (r.path === '/api/v1/session' && r.method === 'POST')
      errors['429'] = {
        description: 'too many failed logins',
        content: { 'application/json': { schema: errorRef } },
      };
    errors['500'] = { description: 'failed', content: { 'application/json': { schema: errorRef } } };
    const op: Record<string, unknown> = {
      operationId: `${r.method.toLowerCase()}${r.path.replace(/\{(\w+)\}/g, 'By_$1').replace(/[^A-Za-z0-9]+(.)?/g, (_m, c: string | undefined) => (c ? c.toUpperCase() : ''))}`,
      summary: r.summary,
      description: `Access: ${ROLE_TEXT[access] ?? access}.`,
      tags: [r.tag],
      security: access === 'public' ? [] : [{ bearer: [] }, { session: [] }],
      parameters: [...parameters(r.params, 'path'), ...parameters(r.query, 'query')],
      ...(r.body
        ? {
            requestBody: {
              required: true,
              content: { 'application/json': { schema: jsonSchema(r.body, 'input') } },
            },
          }
        : {}),
      responses: { [status]: { description: 'success', ...(content ? { content } : {}) }, ...errors },
    };
    paths[r.path] ??= {};
    paths[r.path]![r.method.toLowerCase()] = op;
  }
  return {
    openapi: '3.1.0',
    info: {
      title: 'snapkeeper',
      version: VERSION,
      description:
        'The REST API of snapkeeper serve. Errors are { "error": { "code", "message" } } with the CLI’s stable codes. Requests with the session cookie need the X-CSRF-Token header on every non-GET call.',
    },
    servers: [{ url: '/' }],
    paths,
    components: {
      schemas: { Error: jsonSchema(errorSchema, 'output') },
      securitySchemes: {
        bearer: { type: 'http', scheme: 'bearer', description: 'an API token (snapkeeper token create)' },
        session: {
          type: 'apiKey',
          in: 'cookie',
          name: 'snapkeeper_session',
          description: 'a web login (POST /api/v1/session)',
        },
      },
    },
  };
}
