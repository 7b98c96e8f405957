import type { FastifyInstance, FastifyRequest } from 'fastify';
import { z } from 'zod';
import { Id } from '../domain/shared.ts';
import type { RouteContext } from './route-context.ts';
import { CommandAccepted, CommandHeaders, executeCommand, IdParams, type IfMatchPolicy } from './http.ts';
import { problemResponses, validationProblem } from './problems.ts';
import { resolveMe } from './query-route.ts';
import { ruleFor } from './roles.ts';

/** A command payload schema from the domain's command catalogue: a strict object, possibly refined. */
type PayloadSchema = z.ZodObject<z.ZodRawShape>;

export interface CommandRouteSpec {
  method: 'POST' | 'PATCH';
  url: string;
  /** Command type, as `commands/schemas.ts` keys it (e.g. `RecordPurchase`). */
  type: string;
  payload: PayloadSchema;
  /**
   * The payload field that names the aggregate. On `/:id` routes it is filled from the path; on
   * creation routes it is the optional client-chosen `id` of the body.
   */
  idField: string;
  tags: string[];
  summary: string;
  description?: string;
}

const errorResponses = problemResponses(400, 401, 403, 404, 409, 413, 422, 428, 429, 503);

/**
 * Body fields naming a user (an owner, an assignee, a responder). Each also takes `me`, the user the
 * caller's key belongs to, as the lists' filters do (`resolveMe`): a phone app sending `"ownerId": "me"`
 * had the text `me` stored as the owner, whom no filter, scope or pipeline took for anyone. The
 * command layer refuses `me` (domain/shared.ts `PersonRef`), so it is resolved here or not at all.
 */
const PERSON_FIELDS = ['ownerId', 'assigneeId', 'responderId'] as const;

/** A body's shape with its person fields taking `me` too. */
export const personFieldsTakeMe = (shape: Record<string, z.core.$ZodType>): Record<string, z.core.$ZodType> => {
  const taking = { ...shape };
  for (const field of PERSON_FIELDS) {
    const schema = shape[field];
    if (schema)
      taking[field] = z
        .union([z.literal('me'), schema as z.ZodType], {
          // Not `me`: the refusal is the field's own (a control character, not a UUID), not "Invalid input".
          error: (issue) => (issue.code === 'invalid_union' ? issue.errors.at(-1)?.[0]?.message : undefined),
        })
        .describe('A user id, or `me` for the user the API key belongs to');
  }
  return taking;
};

/** The body with `me` in its person fields made the caller's user id; a key that belongs to no user gets a 400 naming the field. */
export const resolveMeInBody = (request: FastifyRequest, body: Record<string, unknown>): Record<string, unknown> =>
  PERSON_FIELDS.reduce((resolved, field) => resolveMe(request, resolved, field, 'body'), body);

/**
 * The HTTP body of a command: the domain payload's fields without the path id, strict (unknown
 * fields are refused and named). Refinements of the payload (e.g. "at least one field") are checked
 * again by the command layer, whose ZodError also becomes a 400 naming the field.
 */
const bodySchema = (spec: CommandRouteSpec, creation: boolean): z.ZodObject => {
  const shape = personFieldsTakeMe(spec.payload.shape);
  delete shape[spec.idField];
  if (creation) {
    shape.id = Id.optional().describe('Client-chosen id (UUID); generated when absent');
    shape[spec.idField] = Id.optional().describe('Alias of `id`');
  }
  return z.strictObject(shape);
};

/** Registers one command route: validate, build the command, execute, answer `{ id, revision, position }`. */
export const commandRoute = (app: FastifyInstance, context: RouteContext, spec: CommandRouteSpec): void => {
  const creation = !spec.url.includes('/:id');
  const rule = ruleFor(spec.method, spec.url);
  const ifMatch: IfMatchPolicy = creation ? 'forbidden' : (rule.ifMatch ?? 'optional');
  const status = creation ? 201 : 200;
  const collection = spec.url.split('/')[1];
  const body = bodySchema(spec, creation);
  const ifMatchNote =
    ifMatch === 'required'
      ? 'If-Match is required (428 without it; 409 with the current revision when it is stale).'
      : ifMatch === 'optional'
        ? 'If-Match is optional: when sent, a stale revision is refused with 409.'
        : '';
  // Untyped route: the body schema is built at runtime from the payload schema.
  app.route({
    method: spec.method,
    url: spec.url,
    schema: {
      // The command's name is the operation's: `recordPurchase`, as a generated client calls it.
      operationId: spec.type.charAt(0).toLowerCase() + spec.type.slice(1),
      tags: spec.tags,
      summary: spec.summary,
      description: [spec.description, ifMatchNote, `Roles: ${rule.access === 'public' ? 'public' : rule.access.join(', ')}.`].filter(Boolean).join(' '),
      ...(creation ? {} : { params: IdParams }),
      headers: CommandHeaders,
      ifMatchHeader: ifMatch,
      body,
      response: { [status]: CommandAccepted, ...errorResponses },
      // A stale If-Match's 409 names the current revision in its ETag.
      responseHeaders: { [status]: creation ? ['etag', 'location'] : ['etag'], ...(ifMatch === 'forbidden' ? {} : { 409: ['etag'] }) },
    },
    handler: async (request, reply) => {
      const input = resolveMeInBody(request, { ...(request.body as Record<string, unknown>) });
      if (creation) {
        const { id, [spec.idField]: alias } = input;
        if (id !== undefined && alias !== undefined && id !== alias) {
          throw validationProblem([{ field: 'id', message: `differs from ${spec.idField}; send one of them` }]);
        }
        delete input.id;
        if (id !== undefined || alias !== undefined) input[spec.idField] = id ?? alias;
      } else {
        input[spec.idField] = (request.params as { id: string }).id;
      }
      // A user registering a customer without naming an owner becomes its owner, so it stays in their scope.
      if (spec.type === 'RegisterCustomer' && input.ownerId === undefined && request.apiKey?.userId) input.ownerId = request.apiKey.userId;
      const occurredAt = typeof input.occurredAt === 'string' ? input.occurredAt : undefined;
      return executeCommand(request, reply, context, {
        command: { type: spec.type, ...input },
        status,
        ifMatch,
        occurredAt,
        location: (id) => `/${collection}/${id}`,
      });
    },
  });
};
