import type { FastifyPluginAsync } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { customerCommandSchemas } from '../../domain/customer/commands.ts';
import { Currency } from '../../domain/money.ts';
import { inNfc, Tag } from '../../domain/shared.ts';
import type { RouteContext } from '../route-context.ts';
import { commandRoute } from '../command-route.ts';
import { awaitReadModels, decimalNumber, IdParams } from '../http.ts';
import { CUSTOMER_PERSONAL_FIELDS, forCaller } from '../mask.ts';
import { ProblemError, problemResponses } from '../problems.ts';
import { scopeOf } from '../auth/viewer.ts';
import { BooleanQuery, getRoute, listRoute, PageQuery, PageSchema, resolveMe, sealedPage, UserFilter } from '../query-route.ts';

const tags = ['customers'];

export const CustomerStatus = z.enum(['active', 'inactive', 'merged', 'forgotten']);
/** Sort keys of customers that are personal data. */
export const CUSTOMER_PERSONAL_SORTS = ['name'] as const;

export const CustomerSort = z.enum([
  'name',
  '-name',
  'createdAt',
  '-createdAt',
  'revenue',
  '-revenue',
  'lastPurchaseAt',
  '-lastPurchaseAt',
  'orderCount',
  '-orderCount',
]);

/** Filters of `GET /customers`; `search` matches name or email (case-insensitive, partial). */
export const CustomerListFilters = {
  search: z.string().trim().overwrite(inNfc).min(1).max(200).optional().describe('Part of the name or email (read in NFC, as names are stored)'),
  status: CustomerStatus.optional(),
  tag: Tag.optional().describe('A tag, read as tags are stored (trimmed, in NFC)'),
  source: z.string().min(1).max(100).optional(),
  marketingConsent: BooleanQuery.optional().describe('true: the customers who consent to marketing (an audience list); false: those who do not'),
  ownerId: UserFilter.describe('Account owner: a user id, or `me` for the user the API key belongs to (400 for a key of no user)'),
  currency: Currency.optional().describe(
    "Headline currency (`currency`, the first purchase's in business time): with `minRevenue`/`maxRevenue`, amounts in one currency",
  ),
  minRevenue: decimalNumber(z.number().nonnegative())
    .optional()
    .describe(
      "Net revenue at least this, in each customer's headline `currency`, not the base currency (1000 matches 1000 JPY too): add `currency=` to compare like with like",
    ),
  maxRevenue: decimalNumber(z.number().nonnegative())
    .optional()
    .describe("Net revenue at most this, in each customer's headline `currency`, not the base currency: add `currency=` to compare like with like"),
  sort: CustomerSort.default('-createdAt').describe('Field, `-` for descending'),
};

export const customerRoutes: FastifyPluginAsync<RouteContext> = async (app, context) => {
  const s = customerCommandSchemas;
  commandRoute(app, context, {
    method: 'POST',
    url: '/customers',
    type: 'RegisterCustomer',
    payload: s.RegisterCustomer,
    idField: 'customerId',
    tags,
    summary: 'Register a customer',
  });
  commandRoute(app, context, {
    method: 'PATCH',
    url: '/customers/:id',
    type: 'ChangeCustomerDetails',
    payload: s.ChangeCustomerDetails,
    idField: 'customerId',
    tags,
    summary: 'Change contact details or marketing consent',
  });
  commandRoute(app, context, {
    method: 'POST',
    url: '/customers/:id/purchases',
    type: 'RecordPurchase',
    payload: s.RecordPurchase,
    idField: 'customerId',
    tags,
    summary: 'Record a purchase',
    description: 'The same orderId twice is one purchase. `occurredAt` is the business time (default: now).',
  });
  commandRoute(app, context, {
    method: 'POST',
    url: '/customers/:id/refunds',
    type: 'RefundPurchase',
    payload: s.RefundPurchase,
    idField: 'customerId',
    tags,
    summary: 'Refund part or all of a purchase (never more than paid)',
  });
  commandRoute(app, context, {
    method: 'POST',
    url: '/customers/:id/merge',
    type: 'MergeCustomer',
    payload: s.MergeCustomer,
    idField: 'customerId',
    tags,
    summary: 'Merge a duplicate (`duplicateId`) into this customer',
    description: 'If-Match is the revision of this (the primary) customer.',
  });
  commandRoute(app, context, {
    method: 'POST',
    url: '/customers/:id/forget',
    type: 'ForgetCustomer',
    payload: s.ForgetCustomer,
    idField: 'customerId',
    tags,
    summary: "Forget the customer: their data key is deleted and personal fields read as '[erased]'",
  });
  commandRoute(app, context, {
    method: 'POST',
    url: '/customers/:id/tags',
    type: 'TagCustomer',
    payload: s.TagCustomer,
    idField: 'customerId',
    tags,
    summary: 'Tag the customer',
  });
  commandRoute(app, context, {
    method: 'POST',
    url: '/customers/:id/untag',
    type: 'UntagCustomer',
    payload: s.UntagCustomer,
    idField: 'customerId',
    tags,
    summary: 'Remove a tag',
  });
  commandRoute(app, context, {
    method: 'POST',
    url: '/customers/:id/deactivate',
    type: 'DeactivateCustomer',
    payload: s.DeactivateCustomer,
    idField: 'customerId',
    tags,
    summary: 'Deactivate the customer',
  });
  commandRoute(app, context, {
    method: 'POST',
    url: '/customers/:id/owner',
    type: 'AssignCustomerOwner',
    payload: s.AssignCustomerOwner,
    idField: 'customerId',
    tags,
    summary: 'Assign the account owner (a registered, active user)',
    description: 'Who may see the customer under own/team visibility follows its owner: handing a customer to someone outside your scope hides it from you.',
  });
  commandRoute(app, context, {
    method: 'POST',
    url: '/customers/:id/reactivate',
    type: 'ReactivateCustomer',
    payload: s.ReactivateCustomer,
    idField: 'customerId',
    tags,
    summary: 'Reactivate the customer',
  });

  listRoute(app, context, {
    url: '/customers',
    operationId: 'listCustomers',
    tags,
    summary: 'List customers: filters, search by name or email, sort, cursor pagination',
    filters: CustomerListFilters,
    personalFields: CUSTOMER_PERSONAL_FIELDS,
    personalFilters: ['search'],
    personalSorts: CUSTOMER_PERSONAL_SORTS,
    fetch: (queries, query, request) => queries.listCustomers(resolveMe(request, query, 'ownerId'), scopeOf(request)),
  });
  getRoute(app, context, {
    url: '/customers/:id',
    operationId: 'getCustomer',
    tags,
    summary: 'One customer',
    kind: 'customer',
    personalFields: CUSTOMER_PERSONAL_FIELDS,
    fetch: (queries, id, request) => queries.getCustomer(id, scopeOf(request)),
  });

  app.withTypeProvider<ZodTypeProvider>().get(
    '/customers/duplicates',
    {
      schema: {
        operationId: 'listDuplicateCustomers',
        tags,
        summary: 'Likely duplicates for a merge: customers sharing a normalised email, a phone number or a name',
        description:
          'Groups of active or inactive customers; `reason` is `email` (trimmed, case-insensitive), `phone` (same digits) or `name` (case, punctuation and word order ignored). Oldest registration first in each group.',
        querystring: z.strictObject({ limit: PageQuery.limit, waitFor: PageQuery.waitFor }),
        response: {
          200: z.object({ items: z.array(z.object({ reason: z.enum(['email', 'phone', 'name']), customers: z.array(z.record(z.string(), z.unknown())) })) }),
          ...problemResponses(400, 401, 403, 429, 503),
        },
      },
    },
    async (request) => {
      await awaitReadModels(context.deps.projections, request.query.waitFor, context.waitForTimeoutMs);
      const queries = context.deps.queries;
      return forCaller(request, await queries.likelyDuplicates({ limit: request.query.limit }, scopeOf(request)), CUSTOMER_PERSONAL_FIELDS);
    },
  );

  app.withTypeProvider<ZodTypeProvider>().get(
    '/customers/:id/timeline',
    {
      schema: {
        operationId: 'getCustomerTimeline',
        tags,
        summary: 'Every event about the customer as a readable entry (when, who, what)',
        params: IdParams,
        querystring: z.strictObject({ ...PageQuery, order: z.enum(['asc', 'desc']).default('asc').describe('Oldest first (asc) or newest first') }),
        response: { 200: PageSchema, ...problemResponses(400, 401, 403, 404, 429, 503) },
      },
    },
    async (request) => {
      const { waitFor, ...query } = request.query;
      await awaitReadModels(context.deps.projections, waitFor, context.waitForTimeoutMs);
      const queries = context.deps.queries;
      const { cursor, ...order } = query;
      const scope = `GET /customers/${request.params.id}/timeline order=${order.order}`;
      const page = await sealedPage(context, request, scope, cursor, (position) =>
        queries.customerTimeline(request.params.id, position === undefined ? order : { ...order, cursor: position }, scopeOf(request)),
      );
      if (!page) throw new ProblemError('not_found', `No customer ${request.params.id}.`);
      return forCaller(request, page, CUSTOMER_PERSONAL_FIELDS);
    },
  );
};
