import type { FastifyPluginAsync } from 'fastify';
import { z } from 'zod';
import { dealCommandSchemas } from '../../domain/deal/commands.ts';
import { DealStage } from '../../domain/deal/events.ts';
import type { RouteContext } from '../route-context.ts';
import { commandRoute } from '../command-route.ts';
import { awaitReadModels, WaitForQuery } from '../http.ts';
import { Currency } from '../../domain/money.ts';
import { IsoDate, PersonRef } from '../../domain/shared.ts';
import { ProblemError, problemResponses } from '../problems.ts';
import { getRoute, listRoute, resolveMe } from '../query-route.ts';
import { scopeOf } from '../auth/viewer.ts';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';

const tags = ['deals'];

export const DealListFilters = {
  stage: DealStage.optional(),
  status: z.enum(['open', 'won', 'lost']).optional(),
  ownerId: PersonRef.optional().describe('An owner (a user id), or `me`'),
  customerId: z.uuid().optional(),
  expectedCloseFrom: IsoDate.optional(),
  expectedCloseTo: IsoDate.optional(),
  currency: Currency.optional().describe(
    "The deal's currency: with `sort=amount`, a ranking of amounts in one currency (the sort compares amounts as written, not in the base currency)",
  ),
  sort: z.enum(['expectedCloseDate', '-expectedCloseDate', 'amount', '-amount', 'updatedAt', '-updatedAt', 'createdAt', '-createdAt']).default('-createdAt'),
};

export const dealRoutes: FastifyPluginAsync<RouteContext> = async (app, context) => {
  const s = dealCommandSchemas;
  const base = { idField: 'dealId', tags } as const;
  commandRoute(app, context, {
    ...base,
    method: 'POST',
    url: '/deals',
    type: 'OpenDeal',
    payload: s.OpenDeal,
    summary: 'Open a deal for an existing customer',
  });
  commandRoute(app, context, {
    ...base,
    method: 'PATCH',
    url: '/deals/:id',
    type: 'ChangeDeal',
    payload: s.ChangeDeal,
    summary: 'Change amount, owner, expected close or probability while open',
  });
  commandRoute(app, context, {
    ...base,
    method: 'POST',
    url: '/deals/:id/stage',
    type: 'MoveDealStage',
    payload: s.MoveDealStage,
    summary: 'Move the deal to another open stage',
  });
  commandRoute(app, context, { ...base, method: 'POST', url: '/deals/:id/won', type: 'WinDeal', payload: s.WinDeal, summary: 'Mark the deal won' });
  commandRoute(app, context, {
    ...base,
    method: 'POST',
    url: '/deals/:id/lost',
    type: 'LoseDeal',
    payload: s.LoseDeal,
    summary: 'Mark the deal lost (a reason is required)',
  });
  commandRoute(app, context, {
    ...base,
    method: 'POST',
    url: '/deals/:id/reopen',
    type: 'ReopenDeal',
    payload: s.ReopenDeal,
    summary: 'Reopen a won or lost deal',
  });

  listRoute(app, context, {
    url: '/deals',
    operationId: 'listDeals',
    tags,
    summary: 'List deals',
    filters: DealListFilters,
    personalFields: [],
    // `me`: the caller's user (a deal's owner is a user id, or a name an import gave).
    fetch: (q, query, request) => q.listDeals(resolveMe(request, query, 'ownerId'), scopeOf(request)),
  });
  getRoute(app, context, {
    url: '/deals/:id',
    operationId: 'getDeal',
    tags,
    summary: 'One deal',
    kind: 'deal',
    personalFields: [],
    fetch: (q, id, request) => q.getDeal(id, scopeOf(request)),
  });

  app.withTypeProvider<ZodTypeProvider>().get(
    '/pipeline',
    {
      schema: {
        operationId: 'getPipeline',
        tags,
        summary: 'Pipeline summary: open deals by stage, owner and expected-close month, with weighted amounts; won and lost deals with the win rate',
        querystring: z
          .strictObject({
            ownerId: PersonRef.optional(),
            currency: z
              .string()
              .regex(/^[A-Z]{3}$/)
              .optional(),
            closedFrom: IsoDate.optional().describe('won and lost deals closed on or after this UTC date (the `closed` figures)'),
            closedTo: IsoDate.optional().describe('won and lost deals closed on or before this UTC date'),
            ...WaitForQuery,
          })
          .refine((q) => !q.closedFrom || !q.closedTo || q.closedFrom <= q.closedTo, { path: ['closedTo'], message: 'on or after closedFrom' }),
        response: { 200: z.looseObject({}), ...problemResponses(400, 401, 403, 429, 503) },
      },
    },
    async (request) => {
      const { waitFor, ...asked } = request.query;
      const query = resolveMe(request, asked, 'ownerId');
      await awaitReadModels(context.deps.projections, waitFor, context.waitForTimeoutMs);
      if (!context.deps.queries) throw new ProblemError('unavailable', 'The read models are not configured in this process.');
      return context.deps.queries.pipeline(query, scopeOf(request));
    },
  );
};
