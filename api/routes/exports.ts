import { Readable } from 'node:stream';
import type { FastifyPluginAsync, FastifyRequest } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { Currency } from '../../domain/money.ts';
import { IsoDateTime } from '../../domain/shared.ts';
import { EXPORT_COLUMNS, EXPORT_KINDS, exportLines, type CsvLayout, type ExportFormat, type ExportKind } from '../../projections/queries/export.ts';
import type { AuditServices } from '../../audit/index.ts';
import type { RouteContext } from '../route-context.ts';
import type { Page, ReadModelQueries, ReadRecord, ReadScope } from '../deps.ts';
import { scopeOf } from '../auth/viewer.ts';
import { ACTIVITY_PERSONAL_FIELDS, CUSTOMER_PERSONAL_FIELDS, FEEDBACK_PERSONAL_FIELDS, forCaller } from '../mask.ts';
import { acceptableFormat, awaitReadModels, varyByAccept, WaitForQuery } from '../http.ts';
import { problemResponses, validationProblem } from '../problems.ts';
import { BooleanQuery, refuseInvertedRanges, refusePersonalFilters, resolveMe, UserFilter } from '../query-route.ts';
import { ActivityListFilters } from './activities.ts';
import { CampaignListFilters } from './campaigns.ts';
import { CUSTOMER_PERSONAL_SORTS, CustomerListFilters } from './customers.ts';
import { DealListFilters } from './deals.ts';
import { FeedbackListFilters } from './feedback.ts';

/**
 * `GET /customers/export`, `/deals/export`, `/feedback/export`, `/activities/export`, `/purchases/export`, `/refunds/export`,
 * `/campaigns/export`, `/responses/export`, `/costs/export`, `/exchange-rates/export`: the whole list (with the list's filters) as CSV or NDJSON,
 * streamed page by page, personal fields masked as the caller's list is.
 */

/** Campaign responses (costs): of one campaign, in a business-time range. */
const campaignRecordFilters = (what: 'Responses' | 'Costs') => ({
  campaignId: z.uuid().toLowerCase().optional().describe(`One campaign's ${what.toLowerCase()}`),
  from: IsoDateTime.optional().describe(`${what} at or after this business time`),
  to: IsoDateTime.optional().describe(`${what} at or before this business time`),
});

/** Purchases (refunds): of one customer (with the duplicates merged into it), in a business-time range. */
const orderHistoryFilters = (what: 'Purchases' | 'Refunds') => ({
  customerId: z.uuid().optional().describe(`A customer's ${what.toLowerCase()}, with those of the duplicates merged into it`),
  from: IsoDateTime.optional().describe(`${what} at or after this business time`),
  to: IsoDateTime.optional().describe(`${what} at or before this business time`),
});

/** How a CSV answer is laid out (CsvLayout): for a spreadsheet in a locale whose list separator is `;`, and Excel's UTF-8. */
const CsvLayoutQuery = {
  delimiter: z
    .enum([',', ';'])
    .optional()
    .describe(
      "CSV: ',' (the default) or ';' (numbers then with a decimal comma), for a spreadsheet whose list separator it is (German, French, ...); crm import reads both",
    ),
  bom: BooleanQuery.optional().describe('CSV: true starts the file with a UTF-8 byte order mark, so that Excel reads it as UTF-8'),
};

const CONTENT_TYPES: Record<ExportFormat, string> = { csv: 'text/csv; charset=utf-8', ndjson: 'application/x-ndjson' };

type Scope = ReadScope | null;

/** Where exports read: the read models, and the events for what no read model keeps. */
export interface ExportSources {
  queries: ReadModelQueries;
  audit: Pick<AuditServices, 'feedbackTexts' | 'campaignResponses' | 'campaignCosts'>;
}

/**
 * A page whose records name a merged duplicate's customer with the primary at the end of its chain
 * (`mergedInto`), as the purchases export does: the duplicate is not exported (nor imported), and its
 * deals and feedback were refused elsewhere as naming no customer, without a word of where they belong.
 */
const withAccounts = async (queries: ReadModelQueries, page: Page<ReadRecord>): Promise<Page<ReadRecord>> => {
  const accounts = await queries.accountsOf(page.items.flatMap((item) => (typeof item.customerId === 'string' ? [item.customerId] : [])));
  return { ...page, items: page.items.map((item) => ({ ...item, mergedInto: accounts.get(String(item.customerId)) ?? null })) };
};

/** What a kind's export reads and masks. */
interface ExportSpec {
  filters: Record<string, z.ZodType>;
  /** The projection whose read model the export reads (`crm export` says when it is behind); none when it reads the events. */
  projection?: string;
  personalFields: readonly string[];
  personalFilters: string[];
  /** Sort keys that are personal data (ListRouteSpec.personalSorts). */
  personalSorts?: readonly string[];
  list: (sources: ExportSources, scope: Scope) => (query: Record<string, unknown>) => Promise<Page<ReadRecord>>;
  /** Filters that name the caller (`assigneeId=me`), made the ids they stand for. */
  forCaller?: (request: FastifyRequest, query: Record<string, unknown>) => Record<string, unknown>;
  /** What a listed page lacks that a file should hold, read elsewhere (feedback: its body, from the events). */
  complete?: (sources: ExportSources) => (page: Page<ReadRecord>) => Promise<Page<ReadRecord>>;
}

/** The completion of the kinds whose records name a customer and nothing else to add: withAccounts. */
const namingAccounts =
  ({ queries }: ExportSources) =>
  (page: Page<ReadRecord>): Promise<Page<ReadRecord>> =>
    withAccounts(queries, page);

/**
 * Purchases or refunds: the customers projection keeps them in `revenue_lines`, with no personal data
 * (a line names its customer by id), scoped to the caller's customers.
 */
const orderHistory = (
  what: 'Purchases' | 'Refunds',
  lines: (queries: ReadModelQueries, query: Record<string, unknown>, scope: Scope) => Promise<Page<ReadRecord>>,
): ExportSpec => ({
  filters: orderHistoryFilters(what),
  projection: 'customers',
  personalFields: [],
  personalFilters: [],
  list:
    ({ queries }, scope) =>
    (query) =>
      lines(queries, query, scope),
});

/** Each kind's export: the routes here and `crm export` (unmasked, no scope) take it. */
export const exportSpecs: Record<ExportKind, ExportSpec> = {
  customers: {
    filters: CustomerListFilters,
    forCaller: (request, query) => resolveMe(request, query, 'ownerId'),
    projection: 'customers',
    personalFields: CUSTOMER_PERSONAL_FIELDS,
    personalFilters: ['search'],
    personalSorts: CUSTOMER_PERSONAL_SORTS,
    // Forgotten customers stay out (README, "Bulk import and export"): their row holds nothing an
    // import could register again, and the customers import refuses it.
    list:
      ({ queries }, scope) =>
      (query) =>
        queries.listCustomers({ ...query, withoutForgotten: true }, scope),
  },
  deals: {
    filters: DealListFilters,
    projection: 'deals',
    personalFields: [],
    personalFilters: [],
    forCaller: (request, query) => resolveMe(request, query, 'ownerId'),
    list:
      ({ queries }, scope) =>
      (query) =>
        queries.listDeals(query, scope),
    complete: namingAccounts,
  },
  feedback: {
    filters: FeedbackListFilters,
    projection: 'feedback',
    // The first reply, the resolution and the rating comment are personal as the events hold them
    // (encrypted, erased with the customer; resolutions recorded before they were stay in clear).
    personalFields: [...FEEDBACK_PERSONAL_FIELDS, 'firstResponse', 'ratingComment'],
    personalFilters: [],
    forCaller: (request, query) => resolveMe(request, query, 'assigneeId'),
    list:
      ({ queries }, scope) =>
      (query) =>
        queries.listFeedback(query, scope),
    complete:
      ({ audit, queries }) =>
      async (listed) => {
        const page = await withAccounts(queries, listed);
        const texts = await audit.feedbackTexts(page.items.map((item) => String(item.id)));
        // The body beside the subject; the replies, resolution and rating comment as the import reads them.
        const items = page.items.map((item) => {
          const found = texts.get(String(item.id));
          return {
            ...item,
            body: found?.body ?? null,
            firstResponse: found?.firstResponse ?? null,
            resolution: found?.resolution ?? null,
            ratingComment: found?.ratingComment ?? null,
          };
        });
        return { ...page, items };
      },
  },
  // Notes, calls, meetings and tasks, logged on customers or their deals: what the list shows, the
  // body masked for analysts as there.
  activities: {
    filters: { ...ActivityListFilters, assigneeId: UserFilter },
    forCaller: (request, query) => resolveMe(request, query, 'assigneeId'),
    projection: 'activities',
    personalFields: ACTIVITY_PERSONAL_FIELDS,
    personalFilters: [],
    list:
      ({ queries }, scope) =>
      (query) =>
        queries.listActivities(query, scope),
    complete: namingAccounts,
  },
  purchases: orderHistory('Purchases', (queries, query, scope) => queries.listPurchases(query, scope)),
  // A refund's reason is the staff's note on the order (not a personal field of the event catalogue).
  refunds: orderHistory('Refunds', (queries, query, scope) => queries.listRefunds(query, scope)),
  // Campaigns belong to no owner: every caller's export holds them all, as their list does.
  campaigns: {
    filters: CampaignListFilters,
    projection: 'campaigns',
    personalFields: [],
    personalFilters: [],
    list:
      ({ queries }) =>
      (query) =>
        queries.listCampaigns(query),
    // The responses by kind as columns of their own (the list nests them), in file order.
    complete: () => (page) =>
      Promise.resolve({
        ...page,
        items: page.items.map(({ responses, ...campaign }) => ({ ...campaign, ...(responses as ReadRecord) })),
      }),
  },
  // Read from the events (the campaigns read model keeps counts, not each response). A response names
  // its customer: a restricted caller gets those of the customers they see.
  responses: {
    filters: campaignRecordFilters('Responses'),
    personalFields: [],
    personalFilters: [],
    list:
      ({ queries, audit }, scope) =>
      async (query) => {
        const page = await audit.campaignResponses(query);
        if (!scope) return page;
        const visible = await queries.customersInScope(
          page.items.map((r) => r.customerId),
          scope,
        );
        return { ...page, items: page.items.filter((r) => visible.has(r.customerId)) };
      },
  },
  // Read from the events (the read model keeps their sum). Costs name no customer: every caller's
  // export holds them all, as every caller's campaign list holds their sum.
  costs: {
    filters: campaignRecordFilters('Costs'),
    personalFields: [],
    personalFilters: [],
    list:
      ({ audit }) =>
      (query) =>
        audit.campaignCosts(query),
  },
  // The rates in force against the base currency: a rates file (`crm import-rates`), so that a move to
  // another CRM keeps its base-currency figures. Rates name no customer: every caller's holds them all.
  'exchange-rates': {
    filters: { currency: Currency.optional().describe("One currency's rates") },
    projection: 'exchange_rates',
    personalFields: [],
    personalFilters: [],
    list:
      ({ queries }) =>
      (query) =>
        queries.listExchangeRates(query),
  },
};

export const exportRoutes: FastifyPluginAsync<RouteContext> = async (plugin, context) => {
  const app = plugin.withTypeProvider<ZodTypeProvider>();
  for (const kind of EXPORT_KINDS) {
    const spec = exportSpecs[kind];
    app.get(`/${kind}/export`, {
      schema: {
        // exportCustomers, exportExchangeRates
        operationId: `export${kind.replace(/(?:^|-)([a-z])/g, (_, letter: string) => letter.toUpperCase())}`,
        tags: [kind],
        summary: `Every ${kind} record as CSV or NDJSON (Accept: text/csv or application/x-ndjson, or ?format=)`,
        description:
          'Streamed; takes the filters of the list. Personal fields are masked for roles that may not see them. ?format= wins over Accept; an Accept that takes neither text/csv nor application/x-ndjson (nor */*) is a 406. For a spreadsheet whose list separator is `;` (German, French, ...): `delimiter=;` (decimal commas) and `bom=true`.',
        // waitFor: a sync job exports right after its own writes, as it reads a list after them.
        querystring: z.strictObject({ ...spec.filters, format: z.enum(['csv', 'ndjson']).optional(), ...CsvLayoutQuery, ...WaitForQuery }),
        response: problemResponses(400, 401, 403, 406, 429, 503),
        streamedAnswer: {
          mediaTypes: ['text/csv', 'application/x-ndjson'],
          description: `The ${kind} file: a header row then one record per line, or one JSON object per line`,
        },
      },
      handler: async (request, reply) => {
        const {
          format: asked,
          waitFor,
          delimiter,
          bom,
          ...filters
        } = request.query as Record<string, unknown> & { format?: ExportFormat; waitFor?: string } & Partial<CsvLayout>;
        const query = spec.forCaller ? spec.forCaller(request, filters) : filters;
        refusePersonalFilters(request, query, spec.personalFilters, spec.personalSorts);
        refuseInvertedRanges(query);
        const format = asked ?? acceptableFormat(request.headers.accept, ['csv', 'ndjson'], 'csv');
        // Said of NDJSON, they would be ignored without a word.
        if (format === 'ndjson') {
          const given = Object.entries({ delimiter, bom }).filter(([, value]) => value !== undefined);
          if (given.length > 0) throw validationProblem(given.map(([field]) => ({ field, in: 'query', message: 'lays out a CSV answer; this one is NDJSON' })));
        }
        await awaitReadModels(context.deps.projections, waitFor, context.waitForTimeoutMs);
        // The caller's scope: an export holds exactly the records their list shows.
        const complete = spec.complete?.(context.deps);
        const lines = await exportLines(
          spec.list(context.deps, scopeOf(request)),
          query,
          format,
          EXPORT_COLUMNS[kind],
          async (page) => forCaller(request, complete ? await complete(page) : page, spec.personalFields),
          { delimiter: delimiter ?? ',', bom: bom ?? false },
        );
        return varyByAccept(reply)
          .type(CONTENT_TYPES[format])
          .header('content-disposition', `attachment; filename="${kind}.${format === 'csv' ? 'csv' : 'ndjson'}"`)
          .send(Readable.from(lines) as never);
      },
    });
  }
};
