import { sql, type Kysely } from 'kysely';
import type { Row } from '../projections/read-models/rows.ts';
import {
  aggregatesAsOf,
  customersBuyingBetween,
  customersWithMissingRates,
  monthlyBaseRevenueKept,
  monthlyBaseRevenueUpTo,
  monthlyRevenueUpTo,
  purchaseDaysUpTo,
} from './as-of.ts';
import { DEFAULT_BASE_CURRENCY } from '../domain/exchange-rate/events.ts';
import { missingLabel, monthOfMissingLabel, unlessRebuilding } from '../projections/queries/exchange-rates.ts';
import { loadLatestModel, loadModelRecord, saveModel, type FittedModel, type ModelRecord } from './model-store.ts';
import { aggregateFromRow, scoreRow } from './projection.ts';
import {
  churnFeaturesOf,
  isFiniteValue,
  rfmValuesOf,
  scoreCustomer,
  valueUnder,
  type CustomerAggregate,
  type ModelParams,
  type StoredModel,
} from './scoring.ts';
import { usableForSpend } from './models/gamma-gamma.ts';
import { openFittingThread, type FittingThread } from './fitting/thread.ts';
import { boundedProbability, CHURN_FEATURES, type ChurnExample, type ChurnTraining } from './models/churn.ts';
import { fitRfmCutoffs } from './models/segments.ts';
import { cohortTable, retentionRates } from './models/retention.ts';
import type { MonthlyValue } from './models/forecast.ts';
import { rfmOf } from './models/rfm.ts';
import { addMonths, dayOf, dayToIsoDate, monthOfDay, type TimeUnit } from './models/time.ts';
import { csat, nps } from './models/satisfaction.ts';
import {
  SCORE_TOTALS,
  upsertScores,
  type AnalyticsCohortRow,
  type AnalyticsForecastRow,
  type AnalyticsModelTables,
  type AnalyticsRetentionRow,
} from './tables.ts';
import { KEPT_ACTIVE_WINDOW_DAYS, keptRetention } from './retention-counts.ts';
import { customerRetentionClv, retentionClvFactor, retentionClvParams } from './retention-clv.ts';

/**
 * The forecast's code and its library (ml-regression): loaded by the first forecast, not by every
 * process that only scores, projects or imports. A model fit loads the fitting code (ml-kmeans,
 * ml-cart, ml-naivebayes, ml-logistic-regression: 10-20 MB of a process, measured) in its own thread.
 */
const forecasting = async () => {
  const { forecastRevenue } = await import('./models/forecast.ts');
  return { forecastRevenue };
};

/** Below this many held-out customers a churn model's test metrics come with a warning. */
const MIN_CHURN_TEST_SIZE = 30;

/**
 * Not enough history to fit (too few customers, or no churned/retained customers to learn from), or
 * too little variety for the model to give every customer a finite figure.
 */
export class InsufficientData extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'InsufficientData';
  }
}

/** The fit was stopped (its `signal`) before its model was stored: nothing changed. */
export class FitInterrupted extends Error {
  constructor() {
    super('The fit was interrupted before its model was stored; nothing changed');
    this.name = 'FitInterrupted';
  }
}

export interface FitOptions {
  /** Cutoff (calendar day, `YYYY-MM-DD`): fits see purchases up to the end of that day. Default: the observation end. */
  asOf?: string;
  timeUnit?: TimeUnit;
  /** CLV / expected purchases horizon, in `timeUnit`s. */
  horizon?: number;
  /** Discount rate per `timeUnit`. */
  discountRate?: number;
  /** Churn = no purchase in this many days after the training cutoff (asOf - window). */
  churnWindowDays?: number;
  clusters?: number;
  /** Months forecast ahead. */
  forecastHorizon?: number;
  /** Retention: a customer counts as active with a purchase in this many days before a date. */
  activeWindowDays?: number;
  /** Share of revenue that is margin, for the discounted-retention CLV (default 1: revenue). */
  marginRate?: number;
  /**
   * Ctrl-C: looked at between the fit's phases until the model is stored (FitInterrupted); once storing
   * began, the fit completes, so a stored model always has its scores.
   */
  signal?: AbortSignal;
}

export interface AnalyticsServiceOptions {
  db: Kysely<unknown>;
  /** Schema of the analytics aggregate tables (the read schema). */
  schema: string;
  /** Schema of analytics_models / analytics_scores; defaults to `schema`. */
  modelSchema?: string;
  /** Resolves once the analytics projection has applied every event recorded so far. */
  catchUp?: () => Promise<void>;
  /** fitted_at of a model (the composition root passes the real clock; tests a fixed one). */
  clock?: () => Date;
  /** ISO 4217 base currency (CRM_BASE_CURRENCY) of the base-currency forecast. Default EUR. */
  baseCurrency?: string;
}

export type ModelSummary = ReturnType<typeof summarise>;

/**
 * Said beside every figure scored with a model fitted in another base currency than today's
 * (CRM_BASE_CURRENCY changed since): the aggregates are rebuilt in the new base, but the fitted spend
 * (Gamma-Gamma), the churn regression's money feature and the RFM cutoffs are in the old one, so
 * CLV, expected spend, churn scores and segments would mix the two unsaid. Nothing for a model
 * stored before the fit recorded its currency.
 */
export const fittedCurrencyWarnings = (model: FittedModel | null, baseCurrency: string): string[] => {
  const fitted = model?.fittedCurrency ?? null;
  return model && fitted !== null && fitted !== baseCurrency
    ? [
        `model ${model.version} was fitted in ${fitted}, not in the base currency ${baseCurrency}: its CLV, expected spend, churn scores and segments ` +
          `read ${baseCurrency} amounts with ${fitted} parameters; refit (crm fit or POST /analytics/models)`,
      ]
    : [];
};

function summarise(record: ModelRecord, baseCurrency: string) {
  const m = record.metrics;
  return {
    version: record.version,
    fittedAt: record.fittedAt,
    asOf: record.asOf,
    timeUnit: record.timeUnit,
    horizon: record.horizon,
    discountRate: record.discountRate,
    customers: m.customers as number,
    bgnbd: { ...record.params.bgnbd },
    gammaGamma: { ...record.params.gammaGamma },
    churn: m.churn as { auc: number | null; logLoss: number | null; [metric: string]: unknown },
    fits: m.fits as Record<string, unknown>,
    segments: m.segments as Record<string, unknown>,
    retention: m.retention as Record<string, unknown>,
    forecast: m.forecast as Record<string, unknown>,
    scored: (m.scored as number | undefined) ?? null,
    /** Figures of the fit not to be trusted (none for models stored before 2026-12-07), and a base currency changed since the fit. */
    warnings: [...((m.warnings as string[] | undefined) ?? []), ...fittedCurrencyWarnings(record, baseCurrency)],
    timings: (m.timings as Record<string, number> | undefined) ?? null,
  };
}

export function createAnalyticsService(options: AnalyticsServiceOptions) {
  const { db, schema } = options;
  const modelSchema = options.modelSchema ?? schema;
  const clock = options.clock ?? (() => new Date());
  const t = (name: string) => sql.id(schema, name);
  const m = (name: string) => sql.id(modelSchema, name);
  const baseCurrency = options.baseCurrency ?? DEFAULT_BASE_CURRENCY;
  /** What the answers scored with `model` must say beside their figures. */
  const warningsOf = (model: FittedModel | null): string[] => fittedCurrencyWarnings(model, baseCurrency);

  /** The observation end: the latest business time the projection has seen (a calendar day), or null with no events. */
  async function observationEndDay(): Promise<number | null> {
    const { rows } = await sql<{ observation_end: Date | null }>`SELECT observation_end FROM ${t('analytics_state')} WHERE id = 'observation'`.execute(db);
    const end = rows[0]?.observation_end;
    return end ? dayOf(new Date(end)) : null;
  }

  async function rescoreAll(model: StoredModel, day: number): Promise<number> {
    let scored = 0;
    let after = '00000000-0000-0000-0000-000000000000';
    for (;;) {
      const { rows } = await sql<Row>`SELECT * FROM ${t('analytics_customer')} WHERE customer_id > ${after}::uuid AND purchase_days > 0
        ORDER BY customer_id LIMIT 5000`.execute(db);
      if (rows.length === 0) return scored;
      const scores = rows.flatMap((r) => {
        const aggregate = aggregateFromRow(r);
        const s = scoreCustomer(model, aggregate, day);
        return s && aggregate.purchases ? [scoreRow(s, aggregate.purchases)] : [];
      });
      await upsertScores(db, modelSchema, scores);
      scored += scores.length;
      after = String(rows[rows.length - 1]!.customer_id);
    }
  }

  async function fitModels(fit: FitOptions = {}): Promise<ModelSummary> {
    let storing = false;
    const stopIfAsked = () => {
      if (!storing && fit.signal?.aborted) throw new FitInterrupted();
    };
    await options.catchUp?.();
    stopIfAsked();
    const thread = openFittingThread();
    try {
      return await fitOn(thread, fit, stopIfAsked, () => (storing = true));
    } finally {
      await thread.close();
    }
  }

  async function fitOn(thread: FittingThread, fit: FitOptions, stopIfAsked: () => void, startStoring: () => void): Promise<ModelSummary> {
    const timings: Record<string, number> = {};
    let mark = performance.now();
    const lap = (name: string) => {
      const now = performance.now();
      timings[name] = Math.round(now - mark);
      mark = now;
      stopIfAsked();
    };
    const end = await observationEndDay();
    if (end === null) throw new InsufficientData('No purchases recorded yet: nothing to fit.');
    const asOfDay = fit.asOf ? dayOf(`${fit.asOf}T00:00:00Z`) : end;
    const timeUnit = fit.timeUnit ?? 'week';
    const horizon = fit.horizon ?? (timeUnit === 'day' ? 365 : timeUnit === 'week' ? 52 : 12);
    const discountRate = fit.discountRate ?? (timeUnit === 'day' ? 0.0003 : timeUnit === 'week' ? 0.002 : 0.01);
    const churnWindowDays = fit.churnWindowDays ?? 90;

    // Customer base as of the cutoff (first purchase on or before it).
    const asOf = await aggregatesAsOf(db, schema, asOfDay);
    const buyers = [...asOf.values()].filter((a): a is CustomerAggregate & { purchases: NonNullable<CustomerAggregate['purchases']> } => a.purchases !== null);
    if (buyers.length < 10)
      throw new InsufficientData(
        `Only ${buyers.length} customer${buyers.length === 1 ? ' has' : 's have'} purchases by ${dayToIsoDate(asOfDay)}; at least 10 are needed.`,
      );
    const rfm = buyers.map((b) => rfmOf(b.purchases, asOfDay, timeUnit));
    lap('loadMs');

    const bgnbd = await thread.run('fitBgNbd', rfm);
    lap('bgnbdMs');
    // Spend is fitted only on customers whose every amount has its rate: a pending amount (valued 0) would understate it.
    const pending = await unlessRebuilding(
      () => customersWithMissingRates(db, schema, asOfDay),
      () => new Set<string>(),
    );
    const spend = rfm.filter((r, i) => usableForSpend(r) && !pending.has(buyers[i]!.customerId));
    const leftOutMissingRates = buyers.filter((b) => pending.has(b.customerId)).length;
    if (spend.length < 3) throw new InsufficientData('Fewer than 3 customers with repeat purchases of positive value: Gamma-Gamma cannot be fitted.');
    const gammaGamma = await thread.run('fitGammaGamma', spend);
    // A fit at the edge of its parameters (customers all buying at one pace: r and alpha in the
    // millions) gives some customers no finite value (0 x Infinity in its series). Stored, its scores
    // were NaN, and the totals of /analytics/clv and /analytics/segments stayed null through every later fit.
    const fitted = { bgnbd: bgnbd.params, gammaGamma: gammaGamma.params, horizon, discountRate };
    const unscorable = rfm.filter((r) => !isFiniteValue(valueUnder(fitted, r))).length;
    if (unscorable > 0) {
      const { r, alpha, a, b } = bgnbd.params;
      const shown = (x: number) => Number(x.toPrecision(3));
      throw new InsufficientData(
        `The fitted model (BG/NBD r=${shown(r)}, alpha=${shown(alpha)}, a=${shown(a)}, b=${shown(b)}) gives no finite value for ${unscorable} of ${rfm.length} customers over ${horizon} ${timeUnit}s: the parameters are at the edge of the model (customers buying at one pace) or the horizon is too long for them. Fit with a shorter horizon or another time unit, or once the history varies more; the model in use is unchanged.`,
      );
    }
    lap('gammaGammaMs');

    // Churn: features at asOf - window, label = no purchase in (asOf - window, asOf].
    const trainingCutoff = asOfDay - churnWindowDays;
    const atTraining = await aggregatesAsOf(db, schema, trainingCutoff);
    const retained = await customersBuyingBetween(db, schema, trainingCutoff, asOfDay);
    const examples: ChurnExample[] = [...atTraining.values()].flatMap((a) =>
      a.purchases
        ? [
            {
              customerId: a.customerId,
              features: churnFeaturesOf({ ...a, purchases: a.purchases }, trainingCutoff),
              churned: retained.has(a.customerId) ? 0 : 1,
            },
          ]
        : [],
    );
    let training: ChurnTraining;
    try {
      training = await thread.run('trainChurnModels', examples);
    } catch (error) {
      // Too little history for a churn model (e.g. the window reaches before most first purchases):
      // the other models are still worth having, so churn falls back to the base rate, said plainly.
      training = baseRateChurn(
        examples,
        `${(error as Error).message} (${examples.length} customers had bought by ${dayToIsoDate(trainingCutoff)}, the training cutoff asOf - ${churnWindowDays} days); churn scores are the base rate`,
      );
    }

    lap('churnMs');
    const values = buyers.map((b) => rfmValuesOf(b.purchases, asOfDay));
    const rfmCutoffs = fitRfmCutoffs(values);
    const clusters = await thread.run('fitClusters', values, fit.clusters ?? 4);
    lap('segmentsMs');

    const purchaseDays = await purchaseDaysUpTo(db, schema, asOfDay);
    const lastMonth = monthOfDay(asOfDay);
    const cohorts = cohortTable(purchaseDays, lastMonth);
    const firstMonth = cohorts[0]?.cohort ?? lastMonth;
    const periods = retentionRates(purchaseDays, firstMonth, lastMonth, fit.activeWindowDays ?? 365);
    const { months: monthly, partialMonth } = completeMonths(await monthlyRevenueUpTo(db, schema, asOfDay), asOfDay, dayOf(clock()));
    const forecast = await thread.run('forecastRevenue', monthly, fit.forecastHorizon ?? 6);
    lap('retentionForecastMs');

    // Complete months only, as the forecast: a month still running has had less time to lose anyone.
    const completeUpTo = lastCompleteMonth(asOfDay, dayOf(clock()));
    const clvRetention = retentionClvParams(
      periods.filter((p) => p.period <= completeUpTo),
      fit.marginRate ?? 1,
      discountRate,
      timeUnit,
    );
    const params: ModelParams = {
      timeUnit,
      horizon,
      discountRate,
      churnWindowDays,
      bgnbd: bgnbd.params,
      gammaGamma: gammaGamma.params,
      churn: training.model,
      rfmCutoffs,
      clusters,
      clvRetention,
    };
    // What the figures cannot be trusted for, said with the model rather than left to its convergence flags.
    const warnings = [
      ...(bgnbd.converged ? [] : ['BG/NBD did not converge: expected purchases, pAlive and CLV from it may be off']),
      ...(gammaGamma.converged ? [] : ['Gamma-Gamma did not converge: expected spend and CLV from it may be off']),
      ...(training.metrics.testSize > 0 && training.metrics.testSize < MIN_CHURN_TEST_SIZE
        ? [`the churn model was tested on ${training.metrics.testSize} customers: its AUC and log loss say little below ${MIN_CHURN_TEST_SIZE}`]
        : []),
    ];
    const metrics = {
      customers: buyers.length,
      warnings,
      fits: {
        bgnbd: { logLikelihood: bgnbd.logLikelihood, standardErrors: bgnbd.standardErrors, customers: bgnbd.customers, converged: bgnbd.converged },
        gammaGamma: {
          logLikelihood: gammaGamma.logLikelihood,
          standardErrors: gammaGamma.standardErrors,
          customers: gammaGamma.customers,
          converged: gammaGamma.converged,
          // Customers left out because an amount of theirs still waits for a rate (named by GET /analytics/customers/:id).
          leftOutMissingRates,
          baseCurrency,
        },
      },
      churn: {
        ...training.metrics,
        trainingCutoff: dayToIsoDate(trainingCutoff),
        windowDays: churnWindowDays,
        features: CHURN_FEATURES,
        coefficients: Object.fromEntries(CHURN_FEATURES.map((f, j) => [f, training.model.logistic.weights[j + 1]])),
        intercept: training.model.logistic.weights[0],
        comparison: training.comparison,
      },
      segments: { rfmCutoffs, clusters: clusters.profiles.map((p, i) => ({ cluster: i, customers: clusters.sizes[i], ...p })) },
      retention: {
        cohorts: cohorts.length,
        periods: periods.length,
        activeWindowDays: fit.activeWindowDays ?? 365,
        lastCrr: periods[periods.length - 1]?.crr ?? null,
      },
      forecast: {
        months: monthly.length,
        lastCompleteMonth: monthly.at(-1)?.month ?? null,
        partialMonth,
        methods: forecast.methods.map((f) => ({ method: f.method, backtest: f.backtest, parameters: f.parameters })),
      },
    };

    stopIfAsked();
    startStoring();
    const version = await db
      .withTables<AnalyticsModelTables>()
      .transaction()
      .execute(async (trx) => {
        const v = await saveModel(trx, modelSchema, { fittedAt: clock().toISOString(), asOf: dayToIsoDate(asOfDay), params, metrics });
        const retentionRows = periods.map((p): AnalyticsRetentionRow => ({
          model_version: v,
          period: p.period,
          customers_start: p.S,
          customers_end: p.E,
          customers_new: p.N,
          crr: p.crr,
        }));
        const cohortRows = cohorts.flatMap((c) =>
          c.active.map((a, k): AnalyticsCohortRow => ({
            model_version: v,
            cohort: c.cohort,
            period_offset: k,
            cohort_size: c.size,
            active_customers: a,
            // `retention` is `active` over the size, index for index.
            retention_rate: c.retention[k]!,
          })),
        );
        const forecastRows = forecast.methods.flatMap((f): AnalyticsForecastRow[] => [
          ...monthly.map((h) => ({ model_version: v, method: f.method, month: h.month, kind: 'actual' as const, revenue: h.value })),
          ...f.forecast.map((h) => ({ model_version: v, method: f.method, month: h.month, kind: 'forecast' as const, revenue: h.value })),
        ]);
        const models = trx.withSchema(modelSchema);
        for (let i = 0; i < retentionRows.length; i += 2000)
          await models
            .insertInto('analytics_retention')
            .values(retentionRows.slice(i, i + 2000))
            .execute();
        for (let i = 0; i < cohortRows.length; i += 2000)
          await models
            .insertInto('analytics_cohorts')
            .values(cohortRows.slice(i, i + 2000))
            .execute();
        for (let i = 0; i < forecastRows.length; i += 2000)
          await models
            .insertInto('analytics_forecast')
            .values(forecastRows.slice(i, i + 2000))
            .execute();
        return v;
      });
    // Live scores use the latest business time seen, like the projection's incremental scoring.
    lap('storeMs');
    const scored = await rescoreAll({ version, params }, end);
    // Every score was just written: the ranked lists are planned on statistics of these rows (projections/statistics.ts).
    await sql`ANALYZE ${m('analytics_scores')}`.execute(db);
    lap('rescoreMs');
    await db
      .withTables<AnalyticsModelTables>()
      .withSchema(modelSchema)
      .updateTable('analytics_models')
      .set({ metrics: sql`metrics || ${JSON.stringify({ timings, scored })}::jsonb` })
      .where('version', '=', version)
      .execute();
    return summarise((await loadModelRecord(db, modelSchema, version))!, baseCurrency);
  }

  /** The latest model, or the given version. */
  async function latestModel(version?: number): Promise<ModelSummary | null> {
    const record = await loadModelRecord(db, modelSchema, version);
    return record ? summarise(record, baseCurrency) : null;
  }

  /** One customer's figures, computed now from the aggregates and the latest model (null figures before the first fit). */
  async function customer(customerId: string) {
    const { rows } = await sql<Row>`SELECT * FROM ${t('analytics_customer')} WHERE customer_id = ${customerId}::uuid`.execute(db);
    const row = rows[0];
    if (!row) return null;
    const aggregate = aggregateFromRow(row);
    const model = await loadLatestModel(db, modelSchema);
    const end = (await observationEndDay()) ?? 0;
    return {
      customerId,
      modelVersion: model?.version ?? null,
      observationEnd: end ? dayToIsoDate(end) : null,
      ...figuresOf(model, aggregate, end),
      ...(await moneyOf(customerId)),
      warnings: warningsOf(model),
      cohort: (row.cohort as string | null) ?? null,
      refunds: aggregate.refunds,
      complaints: aggregate.complaints,
      openComplaints: aggregate.complaintsOpen,
    };
  }

  /**
   * A customer's scores at the end of `asOf` (a calendar day): aggregates rebuilt from the events with
   * business time up to that day, scored with the latest model or the given version. Null when the
   * customer is unknown to the analytics or the model version does not exist; null figures when the
   * customer had not bought by then.
   */
  async function customerAsOf(customerId: string, asOf: string, version?: number) {
    const known = await sql<{ n: number }>`SELECT count(*)::int AS n FROM ${t('analytics_customer')} WHERE customer_id = ${customerId}::uuid`.execute(db);
    if (known.rows[0]!.n === 0) return null;
    const model = version === undefined ? await loadLatestModel(db, modelSchema) : await loadModelRecord(db, modelSchema, version);
    if (version !== undefined && !model) return null;
    const day = dayOf(`${asOf}T00:00:00Z`);
    const aggregate = (await aggregatesAsOf(db, schema, day, customerId)).get(customerId);
    return {
      customerId,
      asOf,
      modelVersion: model?.version ?? null,
      ...figuresOf(model, aggregate, day),
      ...(await moneyOf(customerId, day)),
      warnings: warningsOf(model),
    };
  }

  /**
   * The currency of the customers' money figures (the base currency; null while the previous
   * version's tables serve during a rebuild) and, per customer, the amounts still waiting for a rate
   * ('JPY 2026-03'), counted as purchases but valued 0 until the rate is set (up to the end of `day`
   * when given). Index-backed: only pending amounts are read.
   */
  async function moneyIn(
    customerIds: readonly string[],
    day?: number,
  ): Promise<{ baseCurrency: string | null; missingRates: (customerId: string) => string[] }> {
    const upTo = day === undefined ? sql`true` : sql`occurred_at < (${dayToIsoDate(day)}::date + 1)::timestamp AT TIME ZONE 'UTC'`;
    const label = missingLabel(sql`currency`, sql`occurred_at`);
    const missing = await unlessRebuilding(
      async () => {
        if (customerIds.length === 0) return new Map<string, string[]>();
        const { rows } = await sql<{ id: string; missing: string[] }>`SELECT customer_id::text AS id, array_agg(DISTINCT ${label} ORDER BY ${label}) AS missing
          FROM ${t('analytics_amount')} WHERE base_value IS NULL AND customer_id = ANY(CAST(${[...customerIds]} AS uuid[])) AND ${upTo} GROUP BY 1`.execute(db);
        return new Map(rows.map((r) => [r.id, r.missing.map(String)]));
      },
      // The previous version's tables serve while the analytics rebuild: their values are not in the base currency.
      () => null,
    );
    return { baseCurrency: missing ? baseCurrency : null, missingRates: (id) => missing?.get(id) ?? [] };
  }

  const moneyOf = async (customerId: string, day?: number) => {
    const money = await moneyIn([customerId], day);
    return { baseCurrency: money.baseCurrency, missingRates: money.missingRates(customerId) };
  };

  const scoreItem = (r: Row) => ({
    customerId: String(r.customer_id),
    clv: Number(r.clv),
    expectedPurchases: Number(r.expected_purchases),
    pAlive: Number(r.p_alive),
    expectedSpend: Number(r.expected_spend),
    churnScore: Number(r.churn_score),
    segment: String(r.segment),
    cluster: Number(r.cluster),
    cohort: (r.cohort as string | null) ?? null,
    scoredAt: String(r.observation_end),
    modelVersion: Number(r.model_version),
  });

  /** Where a page of a ranking ends: the score and id of its last customer (`nextCursor`, sealed by the API). */
  interface ScoreCursor {
    score: number;
    customerId: string;
  }

  interface ScoreFilters {
    segment?: string;
    cohort?: string;
    cluster?: number;
    minClv?: number;
    maxClv?: number;
    minChurnScore?: number;
    maxChurnScore?: number;
    limit?: number;
    offset?: number;
    /** Keyset paging: the page after this customer of the ranking (the last of the page before: its score and id). */
    after?: ScoreCursor;
    /** The caller's scope (api/auth/viewer.ts): only customers whose account owner is one of these users; absent: all. */
    owners?: readonly string[] | null;
  }

  async function scores(filters: ScoreFilters, orderBy: 'clv' | 'churn_score') {
    // The filters first, the cursor's bound apart (below): the totals count every customer the filters match.
    const where = [sql`true`];
    if (filters.segment !== undefined) where.push(sql`s.segment = ${filters.segment}`);
    if (filters.cohort !== undefined) where.push(sql`c.cohort = ${filters.cohort}`);
    if (filters.cluster !== undefined) where.push(sql`s.cluster = ${filters.cluster}`);
    if (filters.minClv !== undefined) where.push(sql`s.clv >= ${filters.minClv}`);
    if (filters.maxClv !== undefined) where.push(sql`s.clv <= ${filters.maxClv}`);
    if (filters.minChurnScore !== undefined) where.push(sql`s.churn_score >= ${filters.minChurnScore}`);
    if (filters.maxChurnScore !== undefined) where.push(sql`s.churn_score <= ${filters.maxChurnScore}`);
    // After the last of the page before in the ranking's order (score down, then id): a customer whose
    // score did not change is on exactly one page however the others' move (an offset skipped or repeated them).
    const ranked = sql.ref(`s.${orderBy}`);
    const after = filters.after
      ? sql`(${ranked} < ${filters.after.score} OR (${ranked} = ${filters.after.score} AND s.customer_id > CAST(${filters.after.customerId} AS uuid)))`
      : sql`true`;
    // Ranked lists name customers: a restricted caller's list and totals hold only their scope's.
    if (filters.owners)
      where.push(sql`s.customer_id IN (SELECT v.customer_id FROM ${t('customers')} v WHERE v.owner_id = ANY(CAST(${[...filters.owners]} AS uuid[])))`);
    const condition = sql.join(where, sql` AND `);
    const from = sql`${m('analytics_scores')} s LEFT JOIN ${t('analytics_customer')} c USING (customer_id)`;
    const limit = filters.limit ?? 50;
    const offset = filters.offset ?? 0;
    // The totals are of every customer the filters match, the page of those after the cursor.
    const { rows } = await sql<Row>`SELECT s.*, c.cohort FROM ${from} WHERE ${condition} AND ${after}
      ORDER BY ${ranked} DESC, s.customer_id LIMIT ${limit} OFFSET ${offset}`.execute(db);
    const last = rows.length === limit ? rows.at(-1) : undefined;
    const nextCursor: ScoreCursor | null = last ? { score: Number(last[orderBy]), customerId: String(last.customer_id) } : null;
    // Everyone, one segment or one cluster: the totals kept per segment and cluster (analytics/tables.ts);
    // any other filter counts the matching scores.
    const kept =
      filters.cohort === undefined &&
      [filters.minClv, filters.maxClv, filters.minChurnScore, filters.maxChurnScore].every((v) => v === undefined) &&
      !filters.owners &&
      (filters.segment === undefined || filters.cluster === undefined);
    const summary = kept
      ? await sql<Row>`SELECT coalesce(sum(customers), 0)::int AS customers, coalesce(sum(clv), 0)::float AS total_clv,
          (sum(clv) / nullif(sum(customers), 0))::float AS mean_clv, (sum(churn_score) / nullif(sum(customers), 0))::float AS mean_churn_score,
          (sum(p_alive) / nullif(sum(customers), 0))::float AS mean_p_alive
          FROM ${m(SCORE_TOTALS)} WHERE ${
            filters.cluster !== undefined
              ? sql`kind = 'cluster' AND key = ${String(filters.cluster)}`
              : filters.segment !== undefined
                ? sql`kind = 'segment' AND key = ${filters.segment}`
                : sql`kind = 'segment'`
          }`.execute(db)
      : await sql<Row>`SELECT count(*)::int AS customers, coalesce(sum(s.clv), 0)::float AS total_clv, avg(s.clv)::float AS mean_clv,
          avg(s.churn_score)::float AS mean_churn_score, avg(s.p_alive)::float AS mean_p_alive FROM ${from} WHERE ${condition}`.execute(db);
    const sRow = summary.rows[0]!;
    const money = await moneyIn(rows.map((r) => String(r.customer_id)));
    return {
      baseCurrency: money.baseCurrency,
      items: rows.map((r) => ({ ...scoreItem(r), missingRates: money.missingRates(String(r.customer_id)) })),
      total: Number(sRow.customers),
      limit,
      offset,
      nextCursor,
      summary: {
        totalClv: Number(sRow.total_clv),
        meanClv: sRow.mean_clv === null ? null : Number(sRow.mean_clv),
        meanChurnScore: sRow.mean_churn_score === null ? null : Number(sRow.mean_churn_score),
        meanPAlive: sRow.mean_p_alive === null ? null : Number(sRow.mean_p_alive),
      },
    };
  }

  async function clv(filters: ScoreFilters = {}) {
    const model = await loadModelRecord(db, modelSchema);
    return {
      modelVersion: model?.version ?? null,
      timeUnit: model?.timeUnit ?? null,
      horizon: model?.horizon ?? null,
      discountRate: model?.discountRate ?? null,
      warnings: warningsOf(model),
      ...(await scores(filters, 'clv')),
    };
  }

  async function churn(filters: ScoreFilters = {}) {
    const record = await loadModelRecord(db, modelSchema);
    return {
      modelVersion: record?.version ?? null,
      model: record ? summarise(record, baseCurrency).churn : null,
      warnings: warningsOf(record),
      ...(await scores(filters, 'churn_score')),
    };
  }

  /**
   * Cohorts and CRR, always current (no fit needed), from what the projection keeps
   * (analytics/retention-counts.ts): for the kept activity window (365 days, the default) the counts
   * per month, for another window the customers' kept lists of monthly last purchase days. From every
   * customer's purchase days only while those tables are being rebuilt.
   */
  async function retention(filters: { from?: string; to?: string; activeWindowDays?: number } = {}) {
    const end = await observationEndDay();
    if (end === null) return { cohorts: [], periods: [], activeWindowDays: filters.activeWindowDays ?? 365, partialMonth: null };
    const to = filters.to && filters.to < monthOfDay(end) ? filters.to : monthOfDay(end);
    // The month still running (by the data or the calendar), when the answer reaches it: its E and
    // active counts are provisional, and the fit's retention rate leaves it out, as the forecast does.
    const running = addMonths(lastCompleteMonth(end, dayOf(clock())), 1);
    const partialMonth = to >= running ? running : null;
    const window = filters.activeWindowDays ?? KEPT_ACTIVE_WINDOW_DAYS;
    // Without the counts while the tables of the previous version serve (they are rebuilt after an upgrade).
    const kept = await unlessRebuilding(
      () => keptRetention(db, schema, to, filters.from, window),
      () => null,
    );
    if (kept) return { activeWindowDays: window, ...kept, partialMonth };
    const customers = await purchaseDaysUpTo(db, schema, end);
    const cohorts = cohortTable(customers, to).filter((c) => !filters.from || c.cohort >= filters.from);
    const from = filters.from ?? cohorts[0]?.cohort ?? to;
    const activeWindowDays = filters.activeWindowDays ?? 365;
    return { activeWindowDays, cohorts, periods: from <= to ? retentionRates(customers, from, to, activeWindowDays) : [], partialMonth };
  }

  /**
   * The months (YYYY-MM) a satisfaction row covers: its quarter or year cut by `from` and `to`. A
   * quarter asked from November read "2026-Q4" and held November and December only, with nothing to say so.
   * A row of every period (`groupBy=channel`) spans `from` to `to`, and where one is not given, the
   * first or last month of its ratings (`data`; both were null without them).
   */
  const monthsCovered = (
    period: string,
    filters: { from?: string; to?: string },
    data: { firstMonth: string | null; lastMonth: string | null },
  ): { firstMonth: string | null; lastMonth: string | null } => {
    const quarter = /^(\d{4})-Q([1-4])$/.exec(period);
    const [start, end] = quarter
      ? [`${quarter[1]}-${String(Number(quarter[2]) * 3 - 2).padStart(2, '0')}`, `${quarter[1]}-${String(Number(quarter[2]) * 3).padStart(2, '0')}`]
      : /^\d{4}$/.test(period)
        ? [`${period}-01`, `${period}-12`]
        : /^\d{4}-\d{2}$/.test(period)
          ? [period, period]
          : [data.firstMonth, data.lastMonth];
    if (period === 'all') return { firstMonth: filters.from ?? start, lastMonth: filters.to ?? end };
    const later = (a: string | null, b: string | undefined) => (a === null ? (b ?? null) : b !== undefined && b > a ? b : a);
    const earlier = (a: string | null, b: string | undefined) => (a === null ? (b ?? null) : b !== undefined && b < a ? b : a);
    return { firstMonth: later(start, filters.from), lastMonth: earlier(end, filters.to) };
  };

  async function satisfaction(
    filters: {
      from?: string;
      to?: string;
      channel?: string;
      groupBy?: 'period' | 'channel' | 'period_channel';
      granularity?: 'month' | 'quarter' | 'year';
    } = {},
  ) {
    const where = [sql`true`];
    if (filters.from) where.push(sql`period >= ${filters.from}`);
    if (filters.to) where.push(sql`period <= ${filters.to}`);
    if (filters.channel) where.push(sql`channel = ${filters.channel}`);
    const groupBy = filters.groupBy ?? 'period_channel';
    // Periods are stored per month (YYYY-MM); quarters read YYYY-Qn, years YYYY.
    const granularity = filters.granularity ?? 'month';
    const period =
      granularity === 'year'
        ? sql`substr(period, 1, 4)`
        : granularity === 'quarter'
          ? sql`substr(period, 1, 4) || '-Q' || ((substr(period, 6, 2)::int + 2) / 3)`
          : sql`period`;
    const keys =
      groupBy === 'period'
        ? // One channel asked for: its rows are that channel's, and say so (a spreadsheet of chat alone read "all").
          sql`${period} AS period, ${filters.channel ?? 'all'}::text AS channel`
        : groupBy === 'channel'
          ? sql`'all'::text AS period, channel`
          : sql`${period} AS period, channel`;
    const group = groupBy === 'period' ? sql`1` : groupBy === 'channel' ? sql`channel` : sql`1, channel`;
    const { rows } = await sql<Row>`SELECT ${keys}, sum(csat_responses)::int AS csat_responses, sum(csat_satisfied)::int AS csat_satisfied,
      sum(nps_responses)::int AS nps_responses, sum(promoters)::int AS promoters, sum(detractors)::int AS detractors,
      min(period) FILTER (WHERE csat_responses + nps_responses > 0) AS first_month,
      max(period) FILTER (WHERE csat_responses + nps_responses > 0) AS last_month
      FROM ${t('analytics_satisfaction')} WHERE ${sql.join(where, sql` AND `)} GROUP BY ${group} ORDER BY 1, 2`.execute(db);
    const items = rows.map((r) => {
      const counts = {
        csatResponses: Number(r.csat_responses),
        csatSatisfied: Number(r.csat_satisfied),
        npsResponses: Number(r.nps_responses),
        promoters: Number(r.promoters),
        detractors: Number(r.detractors),
      };
      return {
        period: String(r.period),
        channel: String(r.channel),
        ...monthsCovered(String(r.period), filters, {
          firstMonth: r.first_month as string | null,
          lastMonth: r.last_month as string | null,
        }),
        ...counts,
        csat: csat(counts),
        nps: nps(counts),
      };
    });
    const total = items.reduce(
      (s, i) => ({
        csatResponses: s.csatResponses + i.csatResponses,
        csatSatisfied: s.csatSatisfied + i.csatSatisfied,
        npsResponses: s.npsResponses + i.npsResponses,
        promoters: s.promoters + i.promoters,
        detractors: s.detractors + i.detractors,
      }),
      { csatResponses: 0, csatSatisfied: 0, npsResponses: 0, promoters: 0, detractors: 0 },
    );
    return { items, total: { ...total, csat: csat(total), nps: nps(total) } };
  }

  async function segments() {
    const model = await loadModelRecord(db, modelSchema);
    const clvRetention = model?.params.clvRetention ?? null;
    // From the totals kept per segment and cluster (analytics/tables.ts), a few rows whatever the
    // number of customers. The discounted-retention CLV with the latest model's parameters (null
    // without them); scores of older versions count with today's parameters.
    const factor = clvRetention ? retentionClvFactor(clvRetention) : null;
    const { rows: totals } = await sql<Row>`SELECT kind, key, sum(customers)::int AS customers, (sum(clv) / sum(customers))::float AS mean_clv,
      sum(clv)::float AS total_clv, (sum(churn_score) / sum(customers))::float AS mean_churn_score,
      (sum(value_per_month) / sum(customers))::float AS mean_value_per_month
      FROM ${m(SCORE_TOTALS)} GROUP BY kind, key HAVING sum(customers) > 0
      ORDER BY kind DESC, CASE WHEN kind = 'segment' THEN -sum(customers) END, CASE WHEN kind = 'cluster' THEN key::int END, key`.execute(db);
    const rows = totals.filter((r) => r.kind === 'segment');
    const clusters = totals.filter((r) => r.kind === 'cluster');
    return {
      modelVersion: model?.version ?? null,
      rfmCutoffs: model?.params.rfmCutoffs ?? null,
      clvRetentionParameters: clvRetention,
      warnings: warningsOf(model),
      segments: rows.map((r) => ({
        segment: String(r.key),
        customers: Number(r.customers),
        meanClv: Number(r.mean_clv),
        totalClv: Number(r.total_clv),
        meanClvRetention: factor === null ? null : Number(r.mean_value_per_month) * factor,
        meanChurnScore: Number(r.mean_churn_score),
      })),
      clusters: clusters.map((r) => {
        const i = Number(r.key);
        return { cluster: i, customers: Number(r.customers), meanClv: Number(r.mean_clv), centroid: model?.params.clusters.profiles[i] ?? null };
      }),
    };
  }

  /** Revenue forecast computed now from the daily revenue (complete months only). */
  async function forecast(filters: { horizon?: number; holdout?: number; from?: string } = {}) {
    const end = await observationEndDay();
    if (end === null) return { history: [], methods: [], lastCompleteMonth: null, partialMonth: null };
    const { months, partialMonth } = completeMonths(await monthlyRevenueUpTo(db, schema, end), end, dayOf(clock()));
    const monthly = months.filter((h) => !filters.from || h.month >= filters.from);
    const { forecastRevenue } = await forecasting();
    // Fitted and backtested on complete months only; the running month is named, not used.
    return {
      ...forecastRevenue(monthly, filters.horizon ?? 6, filters.holdout),
      lastCompleteMonth: months.at(-1)?.month ?? null,
      partialMonth,
      base: await baseForecast(end, filters),
    };
  }

  /**
   * The same forecast on every purchase and refund, whatever its currency, in the base currency. While
   * a rate is missing the history cannot be summed: `history` and `methods` are null and
   * `missingRates` names what to set (POST /exchange-rates); the figures follow once it is set.
   */
  async function baseForecast(end: number, filters: { horizon?: number; holdout?: number; from?: string }) {
    const currency = baseCurrency;
    // From the analytics' own daily revenue; converting every revenue line of the customers read model
    // only when the analytics hold another base currency. Null when those read models are not beside the
    // analytics (or are being rebuilt): nothing to convert.
    const base = await unlessRebuilding(
      async () => (await monthlyBaseRevenueKept(db, schema, end, currency)) ?? (await monthlyBaseRevenueUpTo(db, schema, end, currency)),
      () => null,
    );
    if (base === null) return null;
    const { months: rows, missingRates } = base;
    const { months } = completeMonths(rows, end, dayOf(clock()));
    const monthly = months.filter((h) => !filters.from || h.month >= filters.from);
    // Only the months the forecast uses need their rates (not the running month, nor those before `from`).
    const used = new Set(monthly.map((h) => h.month));
    const missing = missingRates.filter((label) => used.has(monthOfMissingLabel(label)));
    if (missing.length > 0) return { currency, missingRates: missing, history: null, methods: null };
    const { forecastRevenue } = await forecasting();
    return { currency, missingRates: missing, ...forecastRevenue(monthly, filters.horizon ?? 6, filters.holdout) };
  }

  return {
    fitModels,
    latestModel,
    model: (version: number) => latestModel(version),
    customer,
    customerAsOf,
    clv,
    churn,
    retention,
    satisfaction,
    segments,
    forecast,
    observationEndDay,
  };
}

export type AnalyticsService = ReturnType<typeof createAnalyticsService>;

/** A customer's scores, RFM and both CLVs at a day, from their aggregate (null figures before a model or a purchase). */
function figuresOf(model: StoredModel | null, aggregate: CustomerAggregate | undefined, day: number) {
  const p = aggregate?.purchases ?? null;
  const score = model && aggregate && p ? scoreCustomer(model, aggregate, day) : null;
  const unit = model?.params.timeUnit ?? 'week';
  return {
    clv: score?.clv ?? null,
    ...retentionClvOf(model, p, day),
    expectedPurchases: score?.expectedPurchases ?? null,
    pAlive: score?.pAlive ?? null,
    expectedSpend: score?.expectedSpend ?? null,
    churnScore: score?.churnScore ?? null,
    segment: score?.segment ?? null,
    cluster: score?.cluster ?? null,
    rfm: p ? { ...rfmOf(p, day, unit), timeUnit: unit, scores: score?.rfmScore ?? null } : null,
    firstPurchaseDay: p ? dayToIsoDate(p.firstDay) : null,
    lastPurchaseDay: p ? dayToIsoDate(p.lastDay) : null,
    netValue: p?.totalValue ?? 0,
  };
}

/** `clvRetention` beside the BG/NBD `clv`, with the parameters it used (nulls without a model that has them or without purchases). */
function retentionClvOf(model: StoredModel | null, purchases: CustomerAggregate['purchases'], day: number) {
  const params = model?.params.clvRetention ?? null;
  if (!params || !purchases) return { clvRetention: null, clvRetentionParameters: params, marginPerMonth: null };
  return { ...customerRetentionClv(params, purchases, Math.max(day, purchases.lastDay)), clvRetentionParameters: params };
}

/** An intercept-only churn model at the observed churn rate (0.5 with no examples), with null metrics. */
function baseRateChurn(examples: readonly ChurnExample[], reason: string): ChurnTraining {
  const rate = examples.length ? examples.reduce((s, e) => s + e.churned, 0) / examples.length : 0.5;
  const clipped = boundedProbability(rate);
  const none = { auc: null, logLoss: null, brier: null, accuracy: null } as unknown as ChurnTraining['comparison']['naiveBayes'];
  return {
    model: {
      featureNames: CHURN_FEATURES,
      standardiser: { means: CHURN_FEATURES.map(() => 0), sds: CHURN_FEATURES.map(() => 1) },
      logistic: { weights: [Math.log(clipped / (1 - clipped)), ...CHURN_FEATURES.map(() => 0)] },
    },
    metrics: {
      ...(none as object),
      trainSize: examples.length,
      testSize: 0,
      churnRate: rate,
      labelledChurnRate: rate,
      calibration: [],
      newtonMaxWeightGap: 0,
      unavailable: reason,
    } as unknown as ChurnTraining['metrics'],
    comparison: { decisionTree: { ...none, trainSize: 0 }, naiveBayes: none, mlNaiveBayesDisagreement: 0 },
  };
}

/** The last month both the data (up to `day`, the observation end) and the calendar (`today`) have passed the end of. */
export function lastCompleteMonth(day: number, today: number): string {
  const byData = monthOfDay(day + 1) !== monthOfDay(day) ? monthOfDay(day) : addMonths(monthOfDay(day), -1);
  const byCalendar = addMonths(monthOfDay(today), -1);
  return byData < byCalendar ? byData : byCalendar;
}

/**
 * Months from the first with revenue to the last complete one (months without revenue as 0), and the
 * month left out because it is still running. A month is complete when the data reach its last day
 * (`day`, the observation end) and the calendar has passed it (`today`): a month still running would
 * look like a collapse and wreck both the fit and the backtest.
 */
export function completeMonths(rows: readonly MonthlyValue[], day: number, today: number): { months: MonthlyValue[]; partialMonth: string | null } {
  const last = lastCompleteMonth(day, today);
  const partial = addMonths(last, 1);
  const partialMonth = rows.some((r) => r.month >= partial) ? partial : null;
  if (rows.length === 0) return { months: [], partialMonth };
  const byMonth = new Map(rows.map((r) => [r.month, r.value]));
  const months: MonthlyValue[] = [];
  for (let month = rows[0]!.month; month <= last; month = addMonths(month, 1)) months.push({ month, value: byMonth.get(month) ?? 0 });
  return { months, partialMonth };
}
