/**
 * Analytics routes (owned by analytics/). Registered by api/app.ts like every route plugin; roles
 * come from the matrix in api/roles.ts (`POST /analytics/models`: admin, analyst; `GET /analytics/*`).
 *
 * - POST /analytics/models            fit every model on the events recorded so far (201 + the model)
 * - GET  /analytics/models/latest     the latest fitted model (same shape)
 * - GET  /analytics/models/:version   one fitted version (same shape)
 * - GET  /analytics/customers/:id     { clv, expectedPurchases, pAlive, churnScore, segment, rfm, ... }
 * - GET  /analytics/clv               customers ranked by CLV, filtered
 * - GET  /analytics/churn             customers ranked by churn score, with the model's metrics
 * - GET  /analytics/retention         cohort table and CRR per month (computed from current aggregates)
 * - GET  /analytics/satisfaction      CSAT and NPS per month and/or channel
 * - GET  /analytics/segments          RFM segments and k-means clusters
 * - GET  /analytics/forecast          monthly revenue forecast with backtest errors
 * Definitions: analytics/ANALYTICS.md.
 */
import type { FastifyPluginAsync, FastifyRequest } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { BUSINESS_TIME_SKEW_MS, hasBegun, IsoDate, IsoMonth } from '../../domain/shared.ts';
import { InsufficientData } from '../../analytics/service.ts';
import { TIME_UNITS } from '../../analytics/models/time.ts';
import { RFM_SEGMENTS } from '../../analytics/models/segments.ts';
import { FeedbackChannel } from '../../domain/feedback/events.ts';
import type { RouteContext } from '../route-context.ts';
import { scopeOf } from '../auth/viewer.ts';
import { awaitReadModels, decimalNumber, IdParams, WaitForQuery } from '../http.ts';
import { cursorScope, PageQuery } from '../query-route.ts';
import { ProblemError, problemResponses, validationProblem } from '../problems.ts';

const tags = ['analytics'];

/**
 * A cutoff day that has begun (`hasBegun`): a model fitted on a later cutoff took the days still to
 * come for days without purchases. Refused as a past state at a later instant is.
 */
const BegunDay = IsoDate.refine(
  (day) => hasBegun(day, Date.now()),
  `a day that has begun (UTC, ${BUSINESS_TIME_SKEW_MS / 60_000} minutes of clock skew allowed): figures at the end of a later day are not known yet`,
);
const errors = problemResponses(400, 401, 403, 404, 429, 503);

export const FitModelsBody = z
  .strictObject({
    asOf: BegunDay.optional().describe('Cutoff day: fit on purchases up to the end of it (default: the latest business time seen)'),
    timeUnit: z.enum(TIME_UNITS).optional().describe('Unit of recency, T and the horizon (default week)'),
    horizon: z
      .number()
      .int()
      .min(1)
      .max(3650)
      .optional()
      .describe('CLV and expected-purchases horizon, in time units (default 52 weeks / 12 months / 365 days)'),
    discountRate: z.number().min(0).lt(1).optional().describe('Discount rate per time unit (at least 0, below 1)'),
    churnWindowDays: z.number().int().min(7).max(730).optional().describe('Churned = no purchase within this many days (default 90)'),
    clusters: z.number().int().min(2).max(12).optional().describe('k of k-means (default 4)'),
    forecastHorizon: z.number().int().min(1).max(36).optional().describe('Months to forecast (default 6)'),
    activeWindowDays: z.number().int().min(1).max(3650).optional().describe('Retention: active = a purchase within this many days (default 365)'),
    marginRate: z
      .number()
      .min(0)
      .max(1)
      .optional()
      .describe('Share of revenue that is margin, for the discounted-retention CLV `clvRetention` (default 1: revenue)'),
  })
  .nullish();

const ModelSchema = z
  .looseObject({
    version: z.number().int(),
    fittedAt: z.string(),
    asOf: z.string(),
    timeUnit: z.string(),
    horizon: z.number(),
    discountRate: z.number(),
    customers: z.number().int(),
    bgnbd: z.object({ r: z.number(), alpha: z.number(), a: z.number(), b: z.number() }),
    gammaGamma: z.object({ p: z.number(), q: z.number(), v: z.number() }),
    churn: z.looseObject({ auc: z.number().nullable(), logLoss: z.number().nullable() }),
  })
  .meta({ id: 'AnalyticsModel' });

const Paging = {
  limit: decimalNumber(z.number().int().min(1).max(500)).default(50).describe('Page size (1-500, default 50)'),
  cursor: PageQuery.cursor,
  offset: decimalNumber(z.number().int().min(0).max(1_000_000))
    .default(0)
    .describe('Customers to skip; `cursor` instead walks a ranking whose scores move without skipping or repeating a customer whose score did not'),
};
const ScoreFilters = {
  segment: z.enum(RFM_SEGMENTS).optional().describe('RFM segment name'),
  cohort: IsoMonth.optional().describe('First-purchase month'),
  cluster: decimalNumber(z.number().int().min(0).max(11)).optional(),
  ...Paging,
  ...WaitForQuery,
};
const Score = decimalNumber(z.number().min(0).max(1));
const Loose = z.looseObject({});

/** The score and id a sealed ranking cursor holds (written by `ranking` below, so only ours open). */
const rankingCursorOf = (text: string): { score: number; customerId: string } => {
  const [score, customerId] = JSON.parse(text) as [number, string];
  return { score, customerId };
};

const ordered = (from: string | number | undefined, to: string | number | undefined, fromField: string, toField: string) => {
  if (from !== undefined && to !== undefined && from > to)
    throw validationProblem([{ field: fromField, in: 'query', message: `${fromField} must not be after ${toField}` }]);
};

const analyticsRoutes: FastifyPluginAsync<RouteContext> = async (instance, context) => {
  const app = instance.withTypeProvider<ZodTypeProvider>();
  const analytics = context.deps.analytics;
  const wait = (waitFor: string | undefined) => awaitReadModels(context.deps.projections, waitFor, context.waitForTimeoutMs);

  app.post(
    '/analytics/models',
    {
      config: { longWork: true },
      schema: {
        operationId: 'fitModels',
        tags,
        summary: 'Fit every analytics model (BG/NBD, Gamma-Gamma, churn, segments, retention, forecast) and rescore all customers',
        body: FitModelsBody,
        response: { 201: ModelSchema, ...errors, ...problemResponses(409) },
        responseHeaders: { 201: ['location'] },
      },
    },
    async (request, reply) => {
      try {
        const model = await analytics.fitModels(request.body ?? {});
        reply.code(201).header('location', `/analytics/models/${model.version}`);
        return model;
      } catch (error) {
        if (error instanceof InsufficientData) throw new ProblemError('invalid_state', error.message, { code: 'analytics.insufficient_data' });
        throw error;
      }
    },
  );

  app.get(
    '/analytics/models/latest',
    {
      schema: {
        operationId: 'getLatestModel',
        tags,
        summary: 'The latest fitted model: parameters and evaluation metrics',
        querystring: z.strictObject({ ...WaitForQuery }),
        response: { 200: ModelSchema, ...errors },
      },
    },
    async (request) => {
      await wait(request.query.waitFor);
      const model = await analytics.latestModel();
      if (!model) throw new ProblemError('not_found', 'No model has been fitted yet: POST /analytics/models.');
      return model;
    },
  );

  app.get(
    '/analytics/models/:version',
    {
      schema: {
        operationId: 'getModel',
        tags,
        summary: 'One fitted model version',
        params: z.strictObject({ version: decimalNumber(z.number().int().min(1).max(2_147_483_647)) }),
        querystring: z.strictObject({ ...WaitForQuery }),
        response: { 200: ModelSchema, ...errors },
      },
    },
    async (request) => {
      await wait(request.query.waitFor);
      const model = await analytics.model(request.params.version);
      if (!model) throw new ProblemError('not_found', `No model version ${request.params.version}.`);
      return model;
    },
  );

  app.get(
    '/analytics/customers/:id',
    {
      schema: {
        operationId: 'getCustomerAnalytics',
        tags,
        summary: "A customer's CLV, expected purchases, P(alive), churn score, segment and RFM, at the latest business time seen or at the end of `asOf`",
        description:
          'With `asOf=YYYY-MM-DD`: the figures at the end of that day, from events with business time up to it, scored with the latest model or `model=<version>`. ' +
          'Money (netValue, rfm.monetary, clv, expectedSpend) is in `baseCurrency` (CRM_BASE_CURRENCY): every purchase and refund, whatever its currency, at the rate valid at its business time; ' +
          '`missingRates` names amounts still without a rate (counted as purchases, valued 0 until the rate is set).',
        params: IdParams,
        querystring: z.strictObject({
          asOf: BegunDay.optional().describe('Day (YYYY-MM-DD): the scores at its end'),
          model: decimalNumber(z.number().int().min(1).max(2_147_483_647))
            .optional()
            .describe('Model version to score with (default: the latest); only with asOf'),
          ...WaitForQuery,
        }),
        response: { 200: Loose, ...errors },
      },
    },
    async (request) => {
      const { asOf, model } = request.query;
      if (model !== undefined && asOf === undefined) throw validationProblem([{ field: 'model', message: 'only with asOf' }]);
      await wait(request.query.waitFor);
      const { id } = request.params;
      const unknown = () => new ProblemError('not_found', `No analytics for customer ${id} (unknown, or no analytics event yet).`);
      // A customer outside the caller's scope has no figures for them (404, as an unknown customer).
      const scope = scopeOf(request);
      const customer = scope ? await context.deps.queries?.getCustomer(id, scope) : undefined;
      if (scope && !customer) throw unknown();
      /** None found: a merged duplicate's figures count under its primary (the analytics fold the two into one). */
      const noFigures = async () => {
        const merged = (customer ?? (await context.deps.queries?.getCustomer(id)))?.mergedInto;
        return merged
          ? new ProblemError(
              'not_found',
              `Customer ${id} was merged into ${merged}: its figures count under that customer (GET /analytics/customers/${merged}).`,
              { code: 'customer.merged', details: { customerId: id, primaryId: merged } },
            )
          : unknown();
      };
      if (asOf !== undefined) {
        if (model !== undefined && !(await analytics.model(model))) throw new ProblemError('not_found', `No model version ${model}.`);
        const past = await analytics.customerAsOf(id, asOf, model);
        if (!past) throw await noFigures();
        return past;
      }
      const figures = await analytics.customer(id);
      if (!figures) throw await noFigures();
      return figures;
    },
  );

  /**
   * A GET of figures from the service: the query validated, its `[from, to]` range (when named)
   * checked to be in order, then the wait for `waitFor`, then the figures.
   */
  const figures = <S extends z.ZodObject<z.ZodRawShape & typeof WaitForQuery>>(
    url: string,
    summary: string,
    querystring: S,
    answer: (filters: Omit<z.output<S>, 'waitFor'>, request: FastifyRequest) => Promise<z.output<typeof Loose>>,
    range?: readonly [keyof z.output<S> & string, keyof z.output<S> & string],
  ) =>
    app.get(
      url,
      {
        schema: {
          // getAnalyticsClv, getAnalyticsSegments
          operationId: `getAnalytics${url.replace(/^\/analytics\/([a-z])/, (_, letter: string) => letter.toUpperCase())}`,
          tags,
          summary,
          querystring,
          response: { 200: Loose, ...errors },
        },
      },
      async (request) => {
        const { waitFor, ...filters } = request.query as z.output<S> & { waitFor?: string };
        if (range) {
          const [fromField, toField] = range;
          const bounds = filters as Record<string, string | number | undefined>;
          ordered(bounds[fromField], bounds[toField], fromField, toField);
        }
        await wait(waitFor);
        return answer(filters, request);
      },
    );

  /**
   * A page of a ranking (CLV, churn): from the start, an offset, or the sealed `nextCursor` of the page
   * before (the score and id of its last customer, valid for this ranking only).
   */
  const ranking =
    <F extends { cursor?: string | undefined; offset?: number }, P extends { nextCursor: { score: number; customerId: string } | null }>(
      url: string,
      rank: (filters: Omit<F, 'cursor'> & { after?: { score: number; customerId: string }; owners: readonly string[] | null }) => Promise<P>,
    ) =>
    async ({ cursor, ...filters }: F, request: FastifyRequest) => {
      if (cursor !== undefined && filters.offset)
        throw validationProblem([{ field: 'offset', in: 'query', message: 'not with cursor: the cursor says where the page starts' }]);
      const scope = cursorScope(request, url);
      const after = cursor === undefined ? undefined : rankingCursorOf(context.cursors.open(cursor, scope));
      const page = await rank({ ...filters, ...(after ? { after } : {}), owners: scopeOf(request)?.owners ?? null });
      const next = page.nextCursor;
      return { ...page, nextCursor: next ? context.cursors.seal(JSON.stringify([next.score, next.customerId]), scope) : null };
    };

  figures(
    '/analytics/clv',
    'Customers ranked by CLV (BG/NBD + Gamma-Gamma over the model horizon), with totals',
    z.strictObject({ ...ScoreFilters, minClv: decimalNumber(z.number()).optional(), maxClv: decimalNumber(z.number()).optional() }),
    ranking('/analytics/clv', (filters) => analytics.clv(filters)),
    ['minClv', 'maxClv'],
  );

  figures(
    '/analytics/churn',
    'Customers ranked by churn score, with the churn model metrics (AUC, log loss, calibration, model comparison)',
    z.strictObject({ ...ScoreFilters, minChurnScore: Score.optional(), maxChurnScore: Score.optional() }),
    ranking('/analytics/churn', (filters) => analytics.churn(filters)),
    ['minChurnScore', 'maxChurnScore'],
  );

  figures(
    '/analytics/retention',
    'Cohorts by first-purchase month and CRR = (E - N) / S per month',
    z.strictObject({
      from: IsoMonth.optional(),
      to: IsoMonth.optional(),
      activeWindowDays: decimalNumber(z.number().int().min(1).max(3650)).optional().describe('Active = a purchase within this many days (default 365)'),
      ...WaitForQuery,
    }),
    (filters) => analytics.retention(filters),
    ['from', 'to'],
  );

  figures(
    '/analytics/satisfaction',
    'CSAT (share of 4-5 ratings) and NPS (promoters - detractors, points) per month and channel',
    z.strictObject({
      from: IsoMonth.optional(),
      to: IsoMonth.optional(),
      channel: FeedbackChannel.optional(),
      groupBy: z.enum(['period', 'channel', 'period_channel']).default('period_channel'),
      granularity: z.enum(['month', 'quarter', 'year']).default('month').describe('Length of a period'),
      ...WaitForQuery,
    }),
    (filters) => analytics.satisfaction(filters),
    ['from', 'to'],
  );

  figures('/analytics/segments', 'RFM segments and k-means clusters with sizes, CLV and churn', z.strictObject({ ...WaitForQuery }), () =>
    analytics.segments(),
  );

  figures(
    '/analytics/forecast',
    'Monthly net revenue forecast: trend + seasonal regression and exponential smoothing, each with a backtest (MAPE, RMSE), fitted on complete months only (`partialMonth` names the running month left out)',
    z.strictObject({
      horizon: decimalNumber(z.number().int().min(1).max(36)).default(6).describe('Months ahead'),
      holdout: decimalNumber(z.number().int().min(1).max(24)).optional().describe('Months held out for the backtest (default min(6, n/4))'),
      from: IsoMonth.optional().describe('First month of history to use'),
      ...WaitForQuery,
    }),
    (filters) => analytics.forecast(filters),
  );
};

export default analyticsRoutes;
