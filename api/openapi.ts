import type { FastifyDynamicSwaggerOptions, SwaggerTransform, SwaggerTransformObject } from '@fastify/swagger';
import { jsonSchemaTransform, jsonSchemaTransformObject } from 'fastify-type-provider-zod';

/** Headers that one route's answers carry, declared beside its schema (`responseHeaders`). */
export type RouteHeader = 'etag' | 'location';

/**
 * What a route's schema says for the API description only. A route that reads its body as a stream has
 * no body schema (Fastify would validate the stream), so it names the media types it reads instead.
 */
declare module 'fastify' {
  interface FastifySchema {
    /** Headers an answer of that status carries, beyond those every answer carries (`x-request-id`, `ratelimit-*`). */
    responseHeaders?: Partial<Record<number, readonly RouteHeader[]>>;
    streamedBody?: { mediaTypes: readonly string[]; description: string };
    /** A 200 streamed as a file (an export): no schema serialises it, so its media types are named here. */
    streamedAnswer?: { mediaTypes: readonly string[]; description: string };
    /**
     * What the command does with `If-Match`: documented as required where a missing one is a 428 (the
     * schema keeps it optional, so that the 428 answers, not a 400), and left out where it is refused.
     */
    ifMatchHeader?: 'required' | 'optional' | 'forbidden';
  }
}

/** As @fastify/swagger takes a response header: its schema, with the description beside the type (it moves it out). */
const ROUTE_HEADERS: Record<RouteHeader, [name: string, header: { type: 'string'; description: string }]> = {
  etag: ['ETag', { type: 'string', description: 'The revision of the record, quoted: send it back as If-Match' }],
  location: ['Location', { type: 'string', description: 'Where the record (or job) can be read' }],
};

/** Headers that every answer (or every answer of a keyed route) may carry, declared once and referred to. */
const COMMON_HEADERS = {
  'X-Request-Id': { description: 'The id of this request: the one sent in X-Request-Id, else a generated UUID', schema: { type: 'string' } },
  'RateLimit-Limit': { description: "The key's requests per window (sent when a rate limit applies)", schema: { type: 'integer' } },
  'RateLimit-Remaining': { description: 'Requests left in the window (sent when a rate limit applies)', schema: { type: 'integer' } },
  'RateLimit-Reset': { description: 'Seconds until the window starts again (sent when a rate limit applies)', schema: { type: 'integer' } },
  'Retry-After': { description: 'Seconds to wait before sending again', schema: { type: 'integer' } },
} as const;
const RATE_LIMIT_HEADERS = ['RateLimit-Limit', 'RateLimit-Remaining', 'RateLimit-Reset'] as const;

/** The route's own additions: its answers' headers, and the body it streams, as @fastify/swagger reads them. */
const transform: SwaggerTransform = (route) => {
  const { responseHeaders, streamedBody, streamedAnswer, ifMatchHeader, ...schema } = route.schema;
  const transformed = jsonSchemaTransform({ ...route, schema });
  const out = transformed.schema as Record<string, unknown> & { response?: Record<string, Record<string, unknown>> };
  for (const [status, names] of Object.entries<readonly RouteHeader[] | undefined>(responseHeaders ?? {})) {
    const response = out.response?.[status];
    if (!response || !names) throw new Error(`${route.url}: responseHeaders names status ${status}, which the route does not declare`);
    response.headers = Object.fromEntries(names.map((name) => ROUTE_HEADERS[name]));
  }
  if (streamedAnswer) {
    out.response = {
      ...out.response,
      200: {
        description: streamedAnswer.description,
        content: Object.fromEntries(streamedAnswer.mediaTypes.map((type) => [type, { schema: { type: 'string' } }])),
        headers: { 'Content-Disposition': { type: 'string', description: 'attachment, with a file name' } },
      },
    };
  }
  const headers = out.headers as { properties?: Record<string, unknown>; required?: string[] } | undefined;
  if (headers?.properties?.['if-match'] !== undefined) {
    if (ifMatchHeader === 'required') headers.required = [...(headers.required ?? []), 'if-match'];
    if (ifMatchHeader === 'forbidden') delete headers.properties['if-match'];
  }
  if (streamedBody) {
    out.body = { type: 'string', description: streamedBody.description };
    out.consumes = [...streamedBody.mediaTypes];
  }
  return transformed;
};

interface Operation {
  security?: unknown[];
  responses?: Record<string, { headers?: Record<string, unknown>; content?: Record<string, unknown> }>;
}

/** Every answer's headers, referred to from components: the request id always, rate limits on keyed routes, Retry-After on 429s and 503 problems. */
const transformObject: SwaggerTransformObject = (document) => {
  const object = jsonSchemaTransformObject(document) as {
    components?: Record<string, unknown>;
    paths?: Record<string, Record<string, Operation>>;
  };
  const ref = (name: keyof typeof COMMON_HEADERS) => ({ $ref: `#/components/headers/${name}` });
  for (const methods of Object.values(object.paths ?? {})) {
    for (const operation of Object.values(methods)) {
      // Keyed routes inherit the document's security; the probes and the description say `security: []`.
      const keyed = operation.security === undefined;
      for (const [status, response] of Object.entries(operation.responses ?? {})) {
        const headers: Record<string, unknown> = { 'X-Request-Id': ref('X-Request-Id') };
        if (keyed) for (const name of RATE_LIMIT_HEADERS) headers[name] = ref(name);
        // On refusals (problems): `/ready`'s 503 is its own report, and sends none.
        if (status === '429' || (status === '503' && response.content?.['application/problem+json'])) headers['Retry-After'] = ref('Retry-After');
        response.headers = { ...headers, ...response.headers };
      }
    }
  }
  return { ...object, components: { ...object.components, headers: COMMON_HEADERS } };
};

export const describeApi = (version: string): FastifyDynamicSwaggerOptions => ({
  openapi: {
    openapi: '3.1.0',
    info: {
      title: 'CRM API',
      version,
      description:
        'Event-sourced CRM. Commands answer { id, revision, position }; send the revision back as If-Match, ' +
        'and the position as ?waitFor= on queries to read your own writes. Errors are application/problem+json.',
    },
    components: { securitySchemes: { apiKey: { type: 'http', scheme: 'bearer', description: 'An API key' } } },
    security: [{ apiKey: [] }],
  },
  transform,
  transformObject,
});
