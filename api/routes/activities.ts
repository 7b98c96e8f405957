import type { FastifyInstance, FastifyPluginAsync } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { activityCommandSchemas } from '../../domain/activity/commands.ts';
import { ActivityKind } from '../../domain/activity/events.ts';
import { Id } from '../../domain/shared.ts';
import { activitySort } from '../../projections/queries/activities.ts';
import type { RouteContext } from '../route-context.ts';
import { commandRoute, personFieldsTakeMe, resolveMeInBody } from '../command-route.ts';
import { scopeOf } from '../auth/viewer.ts';
import type { Page, ReadModelQueries, ReadScope } from '../deps.ts';
import { awaitReadModels, CommandAccepted, CommandHeaders, executeCommand, IdParams } from '../http.ts';
import { ACTIVITY_PERSONAL_FIELDS, forCaller } from '../mask.ts';
import { ProblemError, problemResponses, validationProblem } from '../problems.ts';
import { BooleanQuery, getRoute, PageQuery, PageSchema, readModels, resolveMe, rolesNote, sealedPage, UserFilter } from '../query-route.ts';

const tags = ['activities'];

const ActivitySort = z.enum(['occurredAt', '-occurredAt', 'dueAt', '-dueAt']);

/** Filters of every activity list; without `sort`, open tasks come soonest due first (overdue first), the rest newest first. */
export const ActivityListFilters = {
  kind: ActivityKind.optional(),
  open: BooleanQuery.optional().describe('Only open tasks (true), or everything but open tasks (false)'),
  sort: ActivitySort.optional().describe('Field, `-` for descending. Default: `dueAt` with open=true (overdue first), else `-occurredAt`'),
};

/**
 * The body of `POST /customers/:id/activities` and `POST /deals/:id/activities`: the command's fields
 * without the parent (it is the path), plus an optional client-chosen `id` (alias `activityId`).
 */
const { customerId: _customer, dealId: _deal, activityId: _activity, ...logFields } = activityCommandSchemas.LogActivity.shape;
const LogActivityBody = z.strictObject({
  ...personFieldsTakeMe(logFields),
  id: Id.optional().describe('Client-chosen id (UUID); generated when absent'),
  activityId: Id.optional().describe('Alias of `id`'),
});

/** `POST /customers/:id/activities`, `POST /deals/:id/activities`: a creation (201, Location /activities/:id) under its parent. */
const logRoute = (app: FastifyInstance, context: RouteContext, url: string, parentField: 'customerId' | 'dealId', summary: string): void => {
  app.route({
    method: 'POST',
    url,
    schema: {
      operationId: parentField === 'customerId' ? 'logCustomerActivity' : 'logDealActivity',
      tags,
      summary,
      description: `Kinds: note, call, meeting (past facts; \`occurredAt\` is when it happened, default now) and task (open until completed; \`dueAt\`, tasks only). \`body\` is personal data. ${rolesNote('POST', url)}`,
      params: IdParams,
      headers: CommandHeaders,
      ifMatchHeader: 'forbidden',
      body: LogActivityBody,
      response: { 201: CommandAccepted, ...problemResponses(400, 401, 403, 404, 409, 413, 422, 429, 503) },
      responseHeaders: { 201: ['etag', 'location'] },
    },
    handler: async (request, reply) => {
      const { id, activityId, ...fields } = resolveMeInBody(request, request.body as Record<string, unknown>) as Record<string, unknown> & {
        id?: string;
        activityId?: string;
      };
      if (id !== undefined && activityId !== undefined && id !== activityId) {
        throw validationProblem([{ field: 'id', message: 'differs from activityId; send one of them' }]);
      }
      const chosen = id ?? activityId;
      return executeCommand(request, reply, context, {
        command: {
          type: 'LogActivity',
          ...fields,
          ...(chosen !== undefined ? { activityId: chosen } : {}),
          [parentField]: (request.params as { id: string }).id,
        },
        status: 201,
        ifMatch: 'forbidden',
        occurredAt: typeof fields.occurredAt === 'string' ? fields.occurredAt : undefined,
        location: (created) => `/activities/${created}`,
      });
    },
  });
};

/** `GET /customers/:id/activities`, `GET /deals/:id/activities`: 404 when the parent is unknown. */
const parentListRoute = (
  app: FastifyInstance,
  context: RouteContext,
  url: string,
  parent: 'customer' | 'deal',
  fetch: (queries: ReadModelQueries, id: string, query: Record<string, unknown>, scope: ReadScope | null) => Promise<Page | undefined>,
): void => {
  app.withTypeProvider<ZodTypeProvider>().get(
    url,
    {
      schema: {
        operationId: parent === 'customer' ? 'listCustomerActivities' : 'listDealActivities',
        tags,
        summary: `Activities of one ${parent}, newest first by default`,
        description: rolesNote('GET', url),
        params: IdParams,
        querystring: z.strictObject({ ...ActivityListFilters, ...PageQuery }),
        response: { 200: PageSchema, ...problemResponses(400, 401, 403, 404, 429, 503) },
      },
    },
    async (request) => {
      const { waitFor, cursor, ...filters } = request.query;
      await awaitReadModels(context.deps.projections, waitFor, context.waitForTimeoutMs);
      const { id } = request.params;
      const scope = `GET ${url.replace(':id', id)} sort=${activitySort(filters)} open=${String(filters.open)}`;
      const page = await sealedPage(context, request, scope, cursor, (position) =>
        fetch(readModels(context), id, position === undefined ? filters : { ...filters, cursor: position }, scopeOf(request)),
      );
      if (!page) throw new ProblemError('not_found', `No ${parent} ${id}.`);
      return forCaller(request, page, ACTIVITY_PERSONAL_FIELDS);
    },
  );
};

export const activityRoutes: FastifyPluginAsync<RouteContext> = async (app, context) => {
  const s = activityCommandSchemas;
  logRoute(app, context, '/customers/:id/activities', 'customerId', 'Log a note, call, meeting or task on a customer');
  logRoute(app, context, '/deals/:id/activities', 'dealId', "Log a note, call, meeting or task on a deal (it belongs to the deal's customer)");
  commandRoute(app, context, {
    method: 'PATCH',
    url: '/activities/:id',
    type: 'ChangeActivity',
    payload: s.ChangeActivity,
    idField: 'activityId',
    tags,
    summary: 'Change subject, body, due time (tasks) or assignee; null clears body, dueAt and assigneeId',
  });
  commandRoute(app, context, {
    method: 'POST',
    url: '/activities/:id/complete',
    type: 'CompleteActivity',
    payload: s.CompleteActivity,
    idField: 'activityId',
    tags,
    summary: 'Complete a task (again: nothing changes); notes, calls and meetings are refused with 409',
  });

  parentListRoute(app, context, '/customers/:id/activities', 'customer', (q, id, query, scope) => q.customerActivities(id, query, scope));
  parentListRoute(app, context, '/deals/:id/activities', 'deal', (q, id, query, scope) => q.dealActivities(id, query, scope));

  app.withTypeProvider<ZodTypeProvider>().get(
    '/activities',
    {
      schema: {
        operationId: 'listActivities',
        tags,
        summary: 'Activities by assignee: `?assigneeId=me&open=true` are my open tasks, overdue first',
        description: `\`assigneeId\` is a user id, or \`me\` for the user the API key belongs to (400 for a key of no user). ${rolesNote('GET', '/activities')}`,
        querystring: z.strictObject({
          ...ActivityListFilters,
          assigneeId: UserFilter,
          ...PageQuery,
        }),
        response: { 200: PageSchema, ...problemResponses(400, 401, 403, 429, 503) },
      },
    },
    async (request) => {
      const { waitFor, cursor, ...filters } = request.query;
      const query = resolveMe(request, filters, 'assigneeId');
      await awaitReadModels(context.deps.projections, waitFor, context.waitForTimeoutMs);
      const scope = `GET /activities assignee=${query.assigneeId ?? ''} sort=${activitySort(query)} open=${String(query.open)}`;
      const page = await sealedPage(context, request, scope, cursor, (position) =>
        readModels(context).listActivities(position === undefined ? query : { ...query, cursor: position }, scopeOf(request)),
      );
      return forCaller(request, page, ACTIVITY_PERSONAL_FIELDS);
    },
  );

  getRoute(app, context, {
    url: '/activities/:id',
    operationId: 'getActivity',
    tags,
    summary: 'One activity (also ?asOf=)',
    kind: 'activity',
    personalFields: ACTIVITY_PERSONAL_FIELDS,
    fetch: (q, id, request) => q.getActivity(id, scopeOf(request)),
  });
};
