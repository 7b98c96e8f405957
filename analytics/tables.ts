import { sql, type Kysely, type QueryExecutorProvider } from 'kysely';
import { MONEY_TYPE } from '../shared/money.ts';
import { ensureSchema, quoteIdentifier } from '../shared/sql.ts';
import type { TableSpec } from '../projections/read-models/rows.ts';
import { RATE_TYPE } from '../projections/read-models/exchange-rates.ts';
import { RETENTION_CLV_SQL } from './retention-clv.ts';
import { ACTIVE_AT, COHORT_ACTIVITY, LISTED_GAP, migrateRetentionCounts } from './retention-counts.ts';

/**
 * Analytics read-model tables (in the read schema). The aggregate tables are the projection's own
 * (rebuilt from events, compared by verify). `analytics_models` and `analytics_scores` depend on
 * when a model was fitted, so they are not a pure function of the events: they live beside the
 * aggregates but are not part of the projection's swap/verify set (see projection.ts).
 */

/**
 * Per-customer aggregates, each updated in O(1) per event. Money is net, in the base currency (every
 * purchase and refund converted at the rate valid at its business time); `currency` is the currency of
 * the first purchase in business time (`first_purchase_at`; the first code on a tie), as on the
 * customers read model, whatever order purchases were recorded in; `pending_amounts` counts amounts still waiting for a rate (valued 0 until then).
 */
/**
 * The counters of `analytics_customer`: each is a sum over the customer's events, so a merge adds the
 * duplicate's to the primary's (analytics/merge.ts); the other columns are merged one by one there.
 */
export const CUSTOMER_COUNTERS = [
  'orders',
  'refunds',
  'refund_value',
  'complaints',
  'complaints_open',
  'complaints_resolved',
  'resolution_seconds',
  'feedback_count',
  'csat_count',
  'csat_sum',
  'nps_count',
  'nps_sum',
  'responses_sent',
  'responses_opened',
  'responses_clicked',
  'responses_converted',
  'responses_unsubscribed',
  'deals_open',
  'deals_won',
  'deals_lost',
  'activities',
  'pending_amounts',
] as const;

export const CUSTOMER: TableSpec = {
  table: 'analytics_customer',
  key: 'customer_id',
  columns: [
    'customer_id',
    'registered_at',
    'currency',
    'cohort',
    'first_day',
    'last_day',
    'purchase_days',
    'total_value',
    'first_day_value',
    'last_event_at',
    'last_activity_day',
    'purchase_months',
    'first_purchase_at',
    ...CUSTOMER_COUNTERS,
  ],
};

/** Net purchase value per customer and calendar day (UTC): what RFM is computed from, at any cutoff. */
export const PURCHASE_DAY: TableSpec = {
  table: 'analytics_purchase_day',
  key: 'purchase_day_id',
  columns: ['purchase_day_id', 'customer_id', 'day', 'orders', 'value'],
};

/** Which day an order fell on, so that a refund lowers the value of that day. */
export const ORDER: TableSpec = {
  table: 'analytics_order',
  key: 'order_key',
  columns: ['order_key', 'customer_id', 'day', 'value', 'refunded'],
};

/**
 * Dated activity counts per customer: refunds, complaints, campaign responses by kind, and
 * `engagement` (notes, calls, meetings and tasks logged by staff), for as-of features.
 */
export const ACTIVITY: TableSpec = {
  table: 'analytics_activity',
  key: 'activity_id',
  columns: ['activity_id', 'customer_id', 'day', 'kind', 'count'],
};

export const FEEDBACK: TableSpec = {
  table: 'analytics_feedback',
  key: 'feedback_id',
  columns: ['feedback_id', 'customer_id', 'kind', 'channel', 'submitted_at', 'resolved_at', 'resolution_seconds', 'csat', 'csat_period', 'nps', 'nps_period'],
};

export const DEAL: TableSpec = {
  table: 'analytics_deal',
  key: 'deal_id',
  columns: ['deal_id', 'customer_id', 'status', 'opened_at', 'closed_at'],
};

/** Revenue per calendar day (all customers; net of refunds on the refund's own day). */
export const REVENUE_DAY: TableSpec = {
  table: 'analytics_revenue_day',
  key: 'day',
  columns: ['day', 'purchases', 'revenue', 'refunds'],
};

/** Rating counts per month and feedback channel (CSAT/NPS are ratios of these). */
export const SATISFACTION: TableSpec = {
  table: 'analytics_satisfaction',
  key: 'satisfaction_id',
  columns: ['satisfaction_id', 'period', 'channel', 'csat_responses', 'csat_satisfied', 'nps_responses', 'promoters', 'detractors'],
};

/** One row: the observation end for live scoring = the latest business time seen in any event. */
export const STATE: TableSpec = {
  table: 'analytics_state',
  key: 'id',
  columns: ['id', 'observation_end', 'events', 'base_currency'],
};

/**
 * Rates to the base currency as the log has set them so far, folded from `ExchangeRateSet` by this
 * projection itself (not read from `exchange_rates`), so that its rows do not depend on how far
 * another projection has got: a replay gives the same rows. A correction replaces the rate.
 */
export const RATE: TableSpec = {
  table: 'analytics_rate',
  key: 'rate_id',
  keyType: 'text',
  columns: ['rate_id', 'currency', 'valid_from', 'rate'],
};

/**
 * Every purchase and refund amount (keyed by its event id) with its value in the base currency,
 * NULL while no rate is set for its currency at its business time. A rate set or corrected later
 * converts the amounts it governs again (analytics/rates.ts), through the (currency, occurred_at) index.
 * `value_day` is the purchase day the amount counts on (for a refund, its order's day).
 */
export const AMOUNT: TableSpec = {
  table: 'analytics_amount',
  key: 'amount_id',
  keyType: 'text',
  columns: ['amount_id', 'customer_id', 'kind', 'order_key', 'value_day', 'occurred_at', 'currency', 'amount', 'base_value'],
};

export const AGGREGATE_TABLES = [
  CUSTOMER,
  PURCHASE_DAY,
  ORDER,
  ACTIVITY,
  FEEDBACK,
  DEAL,
  REVENUE_DAY,
  SATISFACTION,
  STATE,
  RATE,
  AMOUNT,
  COHORT_ACTIVITY,
  ACTIVE_AT,
  LISTED_GAP,
].map((t) => t.table);

export const SCORES: TableSpec = {
  table: 'analytics_scores',
  key: 'customer_id',
  columns: [
    'customer_id',
    'model_version',
    'observation_end',
    'frequency',
    'recency',
    't',
    'monetary',
    'clv',
    'expected_purchases',
    'p_alive',
    'expected_spend',
    'churn_score',
    'r_score',
    'f_score',
    'm_score',
    'segment',
    'cluster',
    'value_per_month',
  ],
};

export async function migrateAggregates(db: QueryExecutorProvider, schema: string): Promise<void> {
  await ensureSchema(db, schema);
  const money = sql.raw(MONEY_TYPE);
  // Values in the base currency: an accepted amount (up to 9e11) times an accepted rate (up to 1e10),
  // summed over many purchases, can pass numeric(28,4)'s 24 whole digits. Unbounded numeric keeps
  // them exact (4 decimals, rounded by the projection) so no accepted event can jam the projection.
  const base = sql.raw('numeric');
  const t = (name: string) => sql.id(schema, name);
  await sql`CREATE TABLE IF NOT EXISTS ${t('analytics_customer')} (
    customer_id uuid PRIMARY KEY,
    registered_at timestamptz,
    currency char(3),
    cohort text,
    first_day date,
    last_day date,
    purchase_days integer NOT NULL DEFAULT 0,
    orders integer NOT NULL DEFAULT 0,
    total_value ${base} NOT NULL DEFAULT 0.0000,
    first_day_value ${base} NOT NULL DEFAULT 0.0000,
    refunds integer NOT NULL DEFAULT 0,
    refund_value ${base} NOT NULL DEFAULT 0.0000,
    complaints integer NOT NULL DEFAULT 0,
    complaints_open integer NOT NULL DEFAULT 0,
    complaints_resolved integer NOT NULL DEFAULT 0,
    resolution_seconds double precision NOT NULL DEFAULT 0,
    feedback_count integer NOT NULL DEFAULT 0,
    csat_count integer NOT NULL DEFAULT 0,
    csat_sum integer NOT NULL DEFAULT 0,
    nps_count integer NOT NULL DEFAULT 0,
    nps_sum integer NOT NULL DEFAULT 0,
    responses_sent integer NOT NULL DEFAULT 0,
    responses_opened integer NOT NULL DEFAULT 0,
    responses_clicked integer NOT NULL DEFAULT 0,
    responses_converted integer NOT NULL DEFAULT 0,
    responses_unsubscribed integer NOT NULL DEFAULT 0,
    deals_open integer NOT NULL DEFAULT 0,
    deals_won integer NOT NULL DEFAULT 0,
    deals_lost integer NOT NULL DEFAULT 0,
    last_event_at timestamptz,
    activities integer NOT NULL DEFAULT 0,
    last_activity_day date
  )`.execute(db);
  // Engagement (activities) came with version 3 of the projection: tables made before gain the columns
  // (the version bump then rebuilds them from the events).
  await sql`ALTER TABLE ${t('analytics_customer')} ADD COLUMN IF NOT EXISTS activities integer NOT NULL DEFAULT 0`.execute(db);
  await sql`ALTER TABLE ${t('analytics_customer')} ADD COLUMN IF NOT EXISTS last_activity_day date`.execute(db);
  // Base-currency values came with version 4: amounts waiting for a rate, and the base currency itself.
  await sql`ALTER TABLE ${t('analytics_customer')} ADD COLUMN IF NOT EXISTS pending_amounts integer NOT NULL DEFAULT 0`.execute(db);
  // Version 7: the headline currency is the first purchase's in business time.
  await sql`ALTER TABLE ${t('analytics_customer')} ADD COLUMN IF NOT EXISTS first_purchase_at timestamptz`.execute(db);
  await sql`CREATE INDEX IF NOT EXISTS analytics_customer_cohort_idx ON ${t('analytics_customer')} (cohort)`.execute(db);
  await sql`CREATE TABLE IF NOT EXISTS ${t('analytics_purchase_day')} (
    purchase_day_id text PRIMARY KEY,
    customer_id uuid NOT NULL,
    day date NOT NULL,
    orders integer NOT NULL,
    value ${base} NOT NULL
  )`.execute(db);
  await sql`CREATE INDEX IF NOT EXISTS analytics_purchase_day_customer_idx ON ${t('analytics_purchase_day')} (customer_id, day)`.execute(db);
  await sql`CREATE INDEX IF NOT EXISTS analytics_purchase_day_day_idx ON ${t('analytics_purchase_day')} (day)`.execute(db);
  await sql`CREATE TABLE IF NOT EXISTS ${t('analytics_order')} (
    order_key text PRIMARY KEY,
    customer_id uuid NOT NULL,
    day date NOT NULL,
    value ${base} NOT NULL,
    refunded ${base} NOT NULL DEFAULT 0
  )`.execute(db);
  await sql`CREATE TABLE IF NOT EXISTS ${t('analytics_activity')} (
    activity_id text PRIMARY KEY,
    customer_id uuid NOT NULL,
    day date NOT NULL,
    kind text NOT NULL,
    count integer NOT NULL
  )`.execute(db);
  await sql`CREATE INDEX IF NOT EXISTS analytics_activity_customer_idx ON ${t('analytics_activity')} (customer_id, day)`.execute(db);
  await sql`CREATE TABLE IF NOT EXISTS ${t('analytics_feedback')} (
    feedback_id uuid PRIMARY KEY,
    customer_id uuid NOT NULL,
    kind text NOT NULL,
    channel text NOT NULL,
    submitted_at timestamptz NOT NULL,
    resolved_at timestamptz,
    resolution_seconds double precision,
    csat smallint,
    csat_period text,
    nps smallint,
    nps_period text
  )`.execute(db);
  await sql`CREATE INDEX IF NOT EXISTS analytics_feedback_customer_idx ON ${t('analytics_feedback')} (customer_id)`.execute(db);
  await sql`CREATE TABLE IF NOT EXISTS ${t('analytics_deal')} (
    deal_id uuid PRIMARY KEY,
    customer_id uuid NOT NULL,
    status text NOT NULL,
    opened_at timestamptz NOT NULL,
    closed_at timestamptz
  )`.execute(db);
  await sql`CREATE INDEX IF NOT EXISTS analytics_deal_customer_idx ON ${t('analytics_deal')} (customer_id)`.execute(db);
  await sql`CREATE TABLE IF NOT EXISTS ${t('analytics_revenue_day')} (
    day date PRIMARY KEY,
    purchases integer NOT NULL,
    revenue ${base} NOT NULL,
    refunds ${base} NOT NULL
  )`.execute(db);
  await sql`CREATE TABLE IF NOT EXISTS ${t('analytics_satisfaction')} (
    satisfaction_id text PRIMARY KEY,
    period text NOT NULL,
    channel text NOT NULL,
    csat_responses integer NOT NULL,
    csat_satisfied integer NOT NULL,
    nps_responses integer NOT NULL,
    promoters integer NOT NULL,
    detractors integer NOT NULL
  )`.execute(db);
  await sql`CREATE TABLE IF NOT EXISTS ${t('analytics_state')} (
    id text PRIMARY KEY,
    observation_end timestamptz,
    events bigint NOT NULL,
    base_currency char(3)
  )`.execute(db);
  await sql`ALTER TABLE ${t('analytics_state')} ADD COLUMN IF NOT EXISTS base_currency char(3)`.execute(db);
  await sql`CREATE TABLE IF NOT EXISTS ${t('analytics_rate')} (
    rate_id text PRIMARY KEY,
    currency char(3) NOT NULL,
    valid_from timestamptz NOT NULL,
    rate ${sql.raw(RATE_TYPE)} NOT NULL
  )`.execute(db);
  await sql`CREATE UNIQUE INDEX IF NOT EXISTS analytics_rate_lookup_idx ON ${t('analytics_rate')} (currency, valid_from)`.execute(db);
  await sql`CREATE TABLE IF NOT EXISTS ${t('analytics_amount')} (
    amount_id text PRIMARY KEY,
    customer_id uuid NOT NULL,
    kind text NOT NULL CHECK (kind IN ('purchase', 'refund')),
    order_key text NOT NULL,
    value_day date NOT NULL,
    occurred_at timestamptz NOT NULL,
    currency char(3) NOT NULL,
    amount ${money} NOT NULL,
    base_value ${base}
  )`.execute(db);
  // A rate converts again the amounts of its currency from its valid_from to the next rate's.
  await sql`CREATE INDEX IF NOT EXISTS analytics_amount_currency_idx ON ${t('analytics_amount')} (currency, occurred_at)`.execute(db);
  // A customer's missing rates: their amounts still without a base value.
  await sql`CREATE INDEX IF NOT EXISTS analytics_amount_pending_idx ON ${t('analytics_amount')} (customer_id) WHERE base_value IS NULL`.execute(db);
  // A customer's refunds by business time: those after an as-of day come off the values of their orders' days (analytics/as-of.ts).
  await sql`CREATE INDEX IF NOT EXISTS analytics_amount_refunds_idx ON ${t('analytics_amount')} (customer_id, occurred_at) WHERE kind = 'refund'`.execute(db);
  // Version 5: the retention counts (analytics/retention-counts.ts); version 6: their gaps between listed days.
  await migrateRetentionCounts(db, schema);
}

/** An `analytics_models` row: one fit. */
export type AnalyticsModelRow = {
  version: number;
  fitted_at: string | Date;
  /** A `date`: 'YYYY-MM-DD' when written. */
  as_of: string | Date;
  time_unit: string;
  horizon: number;
  discount_rate: number;
  params: unknown;
  metrics: unknown;
};

/** An `analytics_retention` row: CRR = (E - N) / S of one period of a fit. */
export type AnalyticsRetentionRow = {
  model_version: number;
  period: string;
  customers_start: number;
  customers_end: number;
  customers_new: number;
  crr: number | null;
};

/** An `analytics_cohorts` row: a first-purchase cohort `period_offset` months later. */
export type AnalyticsCohortRow = {
  model_version: number;
  cohort: string;
  period_offset: number;
  cohort_size: number;
  active_customers: number;
  retention_rate: number;
};

/** An `analytics_forecast` row: a month's revenue, actual or forecast by one method. */
export type AnalyticsForecastRow = {
  model_version: number;
  method: string;
  month: string;
  kind: 'actual' | 'forecast';
  revenue: number;
};

/** The tables of a fit written through kysely's query builder (analytics/service.ts). */
export type AnalyticsModelTables = {
  analytics_models: AnalyticsModelRow;
  analytics_retention: AnalyticsRetentionRow;
  analytics_cohorts: AnalyticsCohortRow;
  analytics_forecast: AnalyticsForecastRow;
};

export async function migrateModels(db: Kysely<unknown>, schema: string): Promise<void> {
  await ensureSchema(db, schema);
  await sql`CREATE TABLE IF NOT EXISTS ${sql.id(schema, 'analytics_models')} (
    version integer PRIMARY KEY,
    fitted_at timestamptz NOT NULL,
    as_of date NOT NULL,
    time_unit text NOT NULL,
    horizon integer NOT NULL,
    discount_rate double precision NOT NULL,
    params jsonb NOT NULL,
    metrics jsonb NOT NULL
  )`.execute(db);
  await sql`CREATE TABLE IF NOT EXISTS ${sql.id(schema, 'analytics_scores')} (
    customer_id uuid PRIMARY KEY,
    model_version integer NOT NULL,
    observation_end date NOT NULL,
    frequency integer NOT NULL,
    recency double precision NOT NULL,
    t double precision NOT NULL,
    monetary double precision NOT NULL,
    clv double precision NOT NULL,
    expected_purchases double precision NOT NULL,
    p_alive double precision NOT NULL,
    expected_spend double precision NOT NULL,
    churn_score double precision NOT NULL,
    r_score smallint NOT NULL,
    f_score smallint NOT NULL,
    m_score smallint NOT NULL,
    segment text NOT NULL,
    cluster smallint NOT NULL
  )`.execute(db);
  await addValuePerMonth(db, schema);
  // Rescoring rewrites every row: vacuum and analyse after 2% of the rows changed (not the default
  // 20%), and leave room on each page so updates stay on their page (HOT) instead of bloating it.
  await sql`ALTER TABLE ${sql.id(schema, 'analytics_scores')} SET (autovacuum_vacuum_scale_factor = 0.02,
    autovacuum_analyze_scale_factor = 0.02, autovacuum_vacuum_cost_delay = 0, fillfactor = 80)`.execute(db);
  await sql`CREATE INDEX IF NOT EXISTS analytics_scores_segment_idx ON ${sql.id(schema, 'analytics_scores')} (segment) INCLUDE (clv, churn_score)`.execute(db);
  // Figures computed at fit time, per model version (retention periods, cohorts, forecasts).
  await sql`CREATE TABLE IF NOT EXISTS ${sql.id(schema, 'analytics_retention')} (
    model_version integer NOT NULL,
    period text NOT NULL,
    customers_start integer NOT NULL,
    customers_end integer NOT NULL,
    customers_new integer NOT NULL,
    crr double precision,
    PRIMARY KEY (model_version, period)
  )`.execute(db);
  await sql`CREATE TABLE IF NOT EXISTS ${sql.id(schema, 'analytics_cohorts')} (
    model_version integer NOT NULL,
    cohort text NOT NULL,
    period_offset integer NOT NULL,
    cohort_size integer NOT NULL,
    active_customers integer NOT NULL,
    retention_rate double precision NOT NULL,
    PRIMARY KEY (model_version, cohort, period_offset)
  )`.execute(db);
  await sql`CREATE TABLE IF NOT EXISTS ${sql.id(schema, 'analytics_forecast')} (
    model_version integer NOT NULL,
    method text NOT NULL,
    month text NOT NULL,
    kind text NOT NULL CHECK (kind IN ('actual', 'forecast')),
    revenue double precision NOT NULL,
    PRIMARY KEY (model_version, method, month)
  )`.execute(db);
  await sql`CREATE INDEX IF NOT EXISTS analytics_scores_segment_idx ON ${sql.id(schema, 'analytics_scores')} (segment)`.execute(db);
  await sql`CREATE INDEX IF NOT EXISTS analytics_scores_clv_idx ON ${sql.id(schema, 'analytics_scores')} (clv DESC, customer_id)`.execute(db);
  await sql`CREATE INDEX IF NOT EXISTS analytics_scores_churn_idx ON ${sql.id(schema, 'analytics_scores')} (churn_score DESC, customer_id)`.execute(db);
  await migrateScoreTotals(db, schema);
}

/**
 * `value_per_month`: the customer's net value per month since their first purchase at the score's
 * observation end (analytics/retention-clv.ts `valuePerMonth`), kept with the score so that the
 * discounted-retention CLV of a segment is a sum over the segment's scores. Tables made before it
 * existed gain the column, filled from the aggregates as the reporting views compute it.
 */
async function addValuePerMonth(db: QueryExecutorProvider, schema: string): Promise<void> {
  const { rows } = await sql<{ n: number }>`SELECT count(*)::int AS n FROM information_schema.columns
    WHERE table_schema = ${schema} AND table_name = 'analytics_scores' AND column_name = 'value_per_month'`.execute(db);
  if (rows[0]!.n > 0) return;
  const scores = sql.id(schema, 'analytics_scores');
  await sql`ALTER TABLE ${scores} ADD COLUMN IF NOT EXISTS value_per_month double precision`.execute(db);
  const { rows: aggregates } = await sql<{ name: string | null }>`SELECT to_regclass(${`${quoteIdentifier(schema)}.analytics_customer`})::text AS name`.execute(
    db,
  );
  if (aggregates[0]?.name)
    await sql`UPDATE ${scores} s SET value_per_month = ${sql.raw(RETENTION_CLV_SQL.valuePerMonth)}
      FROM ${sql.id(schema, 'analytics_customer')} c WHERE c.customer_id = s.customer_id AND s.value_per_month IS NULL`.execute(db);
}

/**
 * Counts and sums of the scores per RFM segment and per k-means cluster (`kind`, `key`), so that
 * GET /analytics/segments, and the totals of /analytics/clv and /analytics/churn over everyone, a
 * segment or a cluster, read a few rows instead of aggregating every score.
 *
 * Kept by statement triggers on `analytics_scores`, in the transaction of the statement that changes
 * the scores, whoever writes them (live scoring, a fit rescoring everyone, a merge dropping the
 * duplicate's score). Each statement adds its change as delta rows (count and sums of the rows it
 * inserted, minus those it replaced or deleted): rows are only ever inserted, so writers never wait
 * for one another here. Past `SCORE_TOTALS_COMPACT_AT` rows, a writer folds the rows no other
 * transaction holds (SKIP LOCKED, so again no waiting) into one per key. Readers sum the rows per
 * key. Sums are numeric: a score counted and later taken out cancels exactly (float sums would
 * drift); each double enters as its 15-digit decimal.
 */
export const SCORE_TOTALS = 'analytics_score_totals';
export const SCORE_TOTALS_COMPACT_AT = 256;

const SUMS = ['clv', 'churn_score', 'p_alive', 'value_per_month'] as const;

async function migrateScoreTotals(db: Kysely<unknown>, schema: string): Promise<void> {
  const scores = `${quoteIdentifier(schema)}.analytics_scores`;
  const totals = `${quoteIdentifier(schema)}.${SCORE_TOTALS}`;
  const delta = (rows: string) => `INSERT INTO ${totals} (kind, key, customers, ${SUMS.join(', ')})
      SELECT g.kind, g.key, sum(d.n), ${SUMS.map((c) => `sum(d.n * coalesce(d.${c}, 0)::numeric)`).join(', ')}
      FROM (${rows}) d CROSS JOIN LATERAL (VALUES ('segment', d.segment), ('cluster', d.cluster::text)) g(kind, key)
      GROUP BY g.kind, g.key
      HAVING sum(d.n) <> 0 OR ${SUMS.map((c) => `sum(d.n * coalesce(d.${c}, 0)::numeric) <> 0`).join(' OR ')};`;
  const rowsOf = (sign: 1 | -1, table: string) => `SELECT ${sign} AS n, segment, cluster, ${SUMS.join(', ')} FROM ${table}`;
  const fold = `INSERT INTO ${totals} (kind, key, customers, ${SUMS.join(', ')})
      SELECT kind, key, sum(customers), ${SUMS.map((c) => `sum(${c})`).join(', ')} FROM gone GROUP BY kind, key
      HAVING sum(customers) <> 0 OR ${SUMS.map((c) => `sum(${c}) <> 0`).join(' OR ')}`;
  const body = `
    BEGIN
      IF TG_OP = 'TRUNCATE' THEN
        DELETE FROM ${totals};
        RETURN NULL;
      ELSIF TG_OP = 'INSERT' THEN
        ${delta(rowsOf(1, 'new_rows'))}
      ELSIF TG_OP = 'UPDATE' THEN
        ${delta(`${rowsOf(1, 'new_rows')} UNION ALL ${rowsOf(-1, 'old_rows')}`)}
      ELSE
        ${delta(rowsOf(-1, 'old_rows'))}
      END IF;
      IF (SELECT count(*) FROM ${totals}) > ${SCORE_TOTALS_COMPACT_AT} THEN
        WITH held AS (SELECT ctid FROM ${totals} FOR UPDATE SKIP LOCKED),
          gone AS (DELETE FROM ${totals} t USING held WHERE t.ctid = held.ctid RETURNING t.*)
        ${fold};
      END IF;
      RETURN NULL;
    END`;
  if (body.includes('$fn$')) throw new Error(`Schema name ${schema} cannot be used in a function body`);
  const fn = `${quoteIdentifier(schema)}.analytics_score_totals_keep`;
  await db.transaction().execute(async (trx) => {
    // Scores stand still while the table is filled from them and the triggers are created.
    await sql`LOCK TABLE ${sql.raw(scores)} IN SHARE ROW EXCLUSIVE MODE`.execute(trx);
    const { rows } = await sql<{ name: string | null }>`SELECT to_regclass(${totals})::text AS name`.execute(trx);
    const created = !rows[0]?.name;
    if (created) {
      await sql`CREATE TABLE ${sql.raw(totals)} (
        kind text NOT NULL CHECK (kind IN ('segment', 'cluster')),
        key text NOT NULL,
        customers bigint NOT NULL,
        ${sql.raw(SUMS.map((c) => `${c} numeric NOT NULL`).join(', '))}
      )`.execute(trx);
      await sql.raw(delta(rowsOf(1, scores)).replace(/;$/, '')).execute(trx);
    }
    await sql.raw(`CREATE OR REPLACE FUNCTION ${fn}() RETURNS trigger LANGUAGE plpgsql AS $fn$${body}$fn$`).execute(trx);
    const { rows: triggers } = await sql<{ name: string }>`SELECT tgname AS name FROM pg_trigger WHERE tgrelid = to_regclass(${scores})`.execute(trx);
    const has = new Set(triggers.map((t) => t.name));
    const create = (name: string, clause: string) =>
      has.has(name) ? undefined : sql.raw(`CREATE TRIGGER ${name} AFTER ${clause} EXECUTE FUNCTION ${fn}()`).execute(trx);
    await create('analytics_score_totals_insert', `INSERT ON ${scores} REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT`);
    await create('analytics_score_totals_update', `UPDATE ON ${scores} REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT`);
    await create('analytics_score_totals_delete', `DELETE ON ${scores} REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT`);
    await create('analytics_score_totals_truncate', `TRUNCATE ON ${scores} FOR EACH STATEMENT`);
    // Scores stored as NaN or Infinity before 2026-12-07 (a fit at the edge of its parameters): taken
    // out (the customer unscored until the next fit or purchase, as before a fit), and the totals, which
    // a NaN spoils for good (no later delta cancels it), counted again from the scores.
    const notFinite = (column: string) => `NOT (${column} BETWEEN -1e300 AND 1e300)`;
    const figures = ['clv', 'expected_purchases', 'p_alive', 'expected_spend', 'churn_score', 'value_per_month'];
    await sql.raw(`DELETE FROM ${scores} WHERE ${figures.map(notFinite).join(' OR ')}`).execute(trx);
    const { rows: spoilt } = await sql<{ spoilt: boolean }>`SELECT EXISTS (SELECT 1 FROM ${sql.raw(totals)}
      WHERE ${sql.raw(SUMS.map(notFinite).join(' OR '))}) AS spoilt`.execute(trx);
    if (spoilt[0]?.spoilt) {
      await sql`DELETE FROM ${sql.raw(totals)}`.execute(trx);
      await sql.raw(delta(rowsOf(1, scores)).replace(/;$/, '')).execute(trx);
    }
  });
}

/**
 * Writes scores, never replacing a score of a newer model version: a projection batch that loaded
 * the previous model just before a fit committed must not overwrite the fit's rescoring.
 */
export async function upsertScores(db: QueryExecutorProvider, schema: string, rows: Record<string, unknown>[]): Promise<void> {
  const cols = SCORES.columns;
  const updates = cols.filter((c) => c !== SCORES.key).map((c) => sql`${sql.id(c)} = EXCLUDED.${sql.id(c)}`);
  const chunk = Math.floor(30_000 / cols.length);
  for (let i = 0; i < rows.length; i += chunk) {
    const values = rows.slice(i, i + chunk).map((r) => sql`(${sql.join(cols.map((c) => sql`${r[c] ?? null}`))})`);
    await sql`INSERT INTO ${sql.id(schema, SCORES.table)} (${sql.join(cols.map((c) => sql.id(c)))}) VALUES ${sql.join(values)}
      ON CONFLICT (customer_id) DO UPDATE SET ${sql.join(updates)}
      WHERE ${sql.id(schema, SCORES.table)}.model_version <= EXCLUDED.model_version`.execute(db);
  }
}
