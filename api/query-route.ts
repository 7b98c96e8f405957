import { createHash } from 'node:crypto';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import { z } from 'zod';
import type { RouteContext } from './route-context.ts';
import { MAX_CURSOR_LENGTH } from './cursor-seal.ts';
import type { RecordKind } from '../audit/records.ts';
import type { Page, ReadModelQueries, ReadRecord } from './deps.ts';
import { AsOfInstant, AsOfTimeAxis, awaitReadModels, decimalNumber, etagOf, IdParams, WaitForQuery } from './http.ts';
import { forCaller } from './mask.ts';
import { ProblemError, problemResponses, validationProblem, type FieldLocation } from './problems.ts';
import { ruleFor, seesPersonalData } from './roles.ts';
import { scopeOf } from './auth/viewer.ts';

/** Page parameters of every list. The cursor is opaque: pass back `nextCursor`. */
export const PageQuery = {
  limit: decimalNumber(z.number().int().min(1).max(500)).default(50).describe('Page size (1-500, default 50)'),
  cursor: z.string().min(1).max(MAX_CURSOR_LENGTH).optional().describe('`nextCursor` of the previous page (opaque; valid for the same list and sort)'),
  ...WaitForQuery,
};

/** Lists answer `{ items, nextCursor }`; items are read-model rows (documented in the README's read-model section). */
export const PageSchema = z.object({ items: z.array(z.looseObject({})), nextCursor: z.string().nullable() });
const RecordSchema = z.looseObject({});

const errorResponses = problemResponses(400, 401, 403, 404, 429, 503);

/** `true`/`false` in a query string. */
export const BooleanQuery = z.enum(['true', 'false']).transform((v) => v === 'true');

/** A user id, or `me` for the user the API key belongs to (lists and their exports take it alike). */
export const UserFilter = z
  .union([z.literal('me'), z.uuid().toLowerCase()])
  .optional()
  .describe('A user id, or `me`');

/**
 * The query (or a command's body, `where`) with its `field` made the user it names: `me` is the
 * caller's own; a key that belongs to no user has none.
 */
export const resolveMe = <Q extends Record<string, unknown>>(request: FastifyRequest, query: Q, field: keyof Q & string, where: FieldLocation = 'query'): Q => {
  if (query[field] !== 'me') return query;
  const me = request.apiKey?.userId ?? null;
  if (me === null) throw validationProblem([{ field, in: where, message: "'me' needs an API key that belongs to a user" }]);
  return { ...query, [field]: me };
};

export const readModels = (context: RouteContext): ReadModelQueries => context.deps.queries;

export const rolesNote = (method: string, url: string): string => {
  const rule = ruleFor(method, url);
  return `Roles: ${rule.access === 'public' ? 'public' : rule.access.join(', ')}.`;
};

/**
 * What a cursor is valid for: the list and its order, and for a caller who sees only some owners'
 * records, those owners (the same for every member of a team, so a link stays shareable in it). A
 * cursor from another team's walk placed this one at the other team's last row, which told where it
 * sorted among this team's.
 */
export const cursorScope = (request: FastifyRequest, list: string): string => {
  const owners = scopeOf(request)?.owners;
  if (!owners) return list;
  return `${list} owners=${createHash('sha256')
    .update([...owners].sort().join(','))
    .digest('base64url')}`;
};

/**
 * A page of a list with the client's sealed cursor opened for the query and the next one sealed
 * (api/cursor-seal.ts), valid for `list` (the list and its order) as the caller sees it (`cursorScope`).
 */
export const sealedPage = async <P extends Page | undefined>(
  context: RouteContext,
  request: FastifyRequest,
  list: string,
  cursor: string | undefined,
  fetch: (position: string | undefined) => Promise<P>,
): Promise<P> => {
  const scope = cursorScope(request, list);
  const page = await fetch(cursor === undefined ? undefined : context.cursors.open(cursor, scope));
  if (!page || page.nextCursor === null) return page;
  return { ...page, nextCursor: context.cursors.seal(page.nextCursor, scope) };
};

export interface ListRouteSpec<Q extends z.ZodRawShape> {
  url: string;
  /** The operation's name in the API description (`listCustomers`). */
  operationId: string;
  tags: string[];
  summary: string;
  /** Filters beyond paging and waitFor. */
  filters: Q;
  personalFields: readonly string[];
  /** Filters that match on personal data: refused for roles that see it masked (they could re-identify people). */
  personalFilters?: readonly string[];
  /** Sort keys that are personal data (either direction): refused alike, since the order tells the masked values apart. */
  personalSorts?: readonly string[];
  fetch: (queries: ReadModelQueries, query: Record<string, unknown>, request: FastifyRequest) => Promise<Page>;
}

/**
 * A role that sees personal data masked may not filter or sort on it either: a search would reveal
 * it, and a page sorted by masked names gives their alphabetical order.
 */
export const refusePersonalFilters = (
  request: FastifyRequest,
  query: Record<string, unknown>,
  personalFilters: readonly string[],
  personalSorts: readonly string[] = [],
): void => {
  const role = request.apiKey?.role;
  const refused = personalFilters.filter((name) => query[name] !== undefined);
  if (typeof query.sort === 'string' && personalSorts.includes(query.sort.replace(/^-/, ''))) refused.push('sort');
  if (role !== undefined && !seesPersonalData(role) && refused.length > 0) {
    throw new ProblemError('forbidden', `The ${role} role sees personal data masked and may not filter or sort on it (${refused.join(', ')}).`, {
      errors: refused.map((field) => ({ field, message: field === 'sort' ? 'sorts by personal data' : 'filters on personal data' })),
    });
  }
};

/** The other end of a range filter named as a pair (`minRevenue`/`maxRevenue`, `expectedCloseFrom`/`expectedCloseTo`, `from`/`to`). */
const upperEndOf = (name: string): string | undefined =>
  name === 'from' ? 'to' : name.endsWith('From') ? `${name.slice(0, -4)}To` : /^min[A-Z]/.test(name) ? `max${name.slice(3)}` : undefined;

/**
 * An inverted range (`minRevenue` above `maxRevenue`, a `from` after its `to`) is a 400 naming its
 * upper end, as /pipeline, the analytics and the audit log refuse one: it matched nothing, and a
 * list or export answered empty as though nothing were there.
 */
export const refuseInvertedRanges = (query: Record<string, unknown>): void => {
  const errors: { field: string; in: 'query'; message: string }[] = [];
  for (const [lower, low] of Object.entries(query)) {
    const upper = upperEndOf(lower);
    const high = upper === undefined ? undefined : query[upper];
    if (upper === undefined) continue;
    if (typeof low === 'number' && typeof high === 'number') {
      if (low > high) errors.push({ field: upper, in: 'query', message: `must not be below ${lower}` });
    } else if (typeof low === 'string' && typeof high === 'string' && Date.parse(low) > Date.parse(high))
      errors.push({ field: upper, in: 'query', message: `must not be before ${lower}` });
  }
  if (errors.length > 0) throw validationProblem(errors);
};

export const listRoute = <Q extends z.ZodRawShape>(app: FastifyInstance, context: RouteContext, spec: ListRouteSpec<Q>): void => {
  app.withTypeProvider<ZodTypeProvider>().get(
    spec.url,
    {
      schema: {
        operationId: spec.operationId,
        tags: spec.tags,
        summary: spec.summary,
        description: rolesNote('GET', spec.url),
        querystring: z.strictObject({ ...spec.filters, ...PageQuery }),
        response: { 200: PageSchema, ...errorResponses },
      },
    },
    async (request) => {
      const { waitFor, ...query } = request.query as Record<string, unknown> & { waitFor?: string };
      refusePersonalFilters(request, query, spec.personalFilters ?? [], spec.personalSorts);
      refuseInvertedRanges(query);
      await awaitReadModels(context.deps.projections, waitFor, context.waitForTimeoutMs);
      const { cursor, ...filters } = query;
      const scope = `GET ${spec.url} sort=${typeof query.sort === 'string' ? query.sort : ''}`;
      const page = await sealedPage(context, request, scope, cursor as string | undefined, (position) =>
        spec.fetch(readModels(context), position === undefined ? filters : { ...filters, cursor: position }, request),
      );
      return forCaller(request, page, spec.personalFields);
    },
  );
};

export interface GetRouteSpec {
  url: string;
  /** The operation's name in the API description (`getCustomer`). */
  operationId: string;
  tags: string[];
  summary: string;
  kind: RecordKind;
  personalFields: readonly string[];
  fetch: (queries: ReadModelQueries, id: string, request: FastifyRequest) => Promise<ReadRecord | undefined>;
}

/** One record by id, with `?waitFor=` and `?asOf=` (the record as it stood then, folded from its events). */
export const getRoute = (app: FastifyInstance, context: RouteContext, spec: GetRouteSpec): void => {
  app.withTypeProvider<ZodTypeProvider>().get(
    spec.url,
    {
      schema: {
        operationId: spec.operationId,
        tags: spec.tags,
        summary: spec.summary,
        description: `${rolesNote('GET', spec.url)} The ETag is the revision to send as If-Match.`,
        params: IdParams,
        querystring: z.strictObject({
          ...WaitForQuery,
          asOf: AsOfInstant.optional(),
          time: AsOfTimeAxis,
        }),
        response: { 200: RecordSchema, ...errorResponses },
        // Not on a read `asOf`: a past revision is no precondition for a command.
        responseHeaders: { 200: ['etag'] },
      },
    },
    async (request, reply) => {
      const { id } = request.params;
      const { waitFor, asOf, time } = request.query;
      if (time !== undefined && asOf === undefined) throw validationProblem([{ field: 'time', message: 'only with asOf' }]);
      // Before either read: a restricted caller's past view is scoped by the read models as they stand now.
      await awaitReadModels(context.deps.projections, waitFor, context.waitForTimeoutMs);
      let record: ReadRecord | undefined;
      let revision: unknown;
      if (asOf !== undefined) {
        // A restricted caller sees the past of records in their scope now, and nothing of the others.
        if (scopeOf(request) && !(await spec.fetch(readModels(context), id, request)))
          throw new ProblemError('not_found', `No ${spec.kind} ${id} as of ${asOf} (${time ?? 'record'} time).`);
        const history = context.deps.pointInTime;
        if (!history) throw new ProblemError('unavailable', 'Point-in-time reads are not configured in this process.');
        const past = await history.stateAt(spec.kind, id, new Date(asOf), time);
        record = past ? { ...past.state, revision: past.revision, asOf } : undefined;
        revision = past?.revision;
      } else {
        record = await spec.fetch(readModels(context), id, request);
        revision = record?.revision;
      }
      if (!record) throw new ProblemError('not_found', `No ${spec.kind} ${id}${asOf ? ` as of ${asOf} (${time ?? 'record'} time)` : ''}.`);
      if (typeof revision === 'number' && asOf === undefined) reply.header('etag', etagOf(revision));
      return forCaller(request, record, spec.personalFields);
    },
  );
};
