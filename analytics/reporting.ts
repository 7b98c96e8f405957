/**
 * The documented `reporting` views over the analytics tables (BI tools read these, not the tables).
 * Model-dependent views read the latest model version. Returned as SQL statements, as the
 * projection runner's `reportingViews` hook expects; `createAnalyticsReportingViews` runs them directly.
 */
import { sql, type QueryExecutorProvider } from 'kysely';
import { replaceViewStatement } from '../projections/reporting-kept.ts';
import { RETENTION_CLV_SQL } from './retention-clv.ts';
import { quoteIdentifier } from '../shared/sql.ts';

const q = quoteIdentifier;

export function analyticsReportingViews(readSchema: string, reportingSchema: string): string[] {
  const r = (t: string) => `${q(readSchema)}.${q(t)}`;
  const v = (t: string) => `${q(reportingSchema)}.${q(t)}`;
  const latest = `(SELECT max(version) FROM ${r('analytics_models')})`;
  const retentionParams = RETENTION_CLV_SQL.params(r('analytics_models'), latest);
  // `missing_rates` holds `missingLabel`s (projections/queries/exchange-rates.ts), written out here: a view is plain SQL text.
  const statements = [
    `CREATE OR REPLACE VIEW ${v('analytics_customers')} AS
      SELECT c.customer_id, c.cohort, c.first_day AS first_purchase_day, c.last_day AS last_purchase_day,
        c.purchase_days, greatest(c.purchase_days - 1, 0) AS repeat_purchase_days, c.orders, c.total_value AS net_value, c.currency,
        c.refunds, c.refund_value, c.complaints, c.complaints_open, c.complaints_resolved,
        CASE WHEN c.complaints_resolved > 0 THEN c.resolution_seconds / c.complaints_resolved / 86400 END AS mean_resolution_days,
        c.responses_sent, c.responses_opened, c.responses_clicked, c.responses_converted, c.responses_unsubscribed,
        c.deals_open, c.deals_won, c.deals_lost,
        CASE WHEN c.csat_count > 0 THEN c.csat_sum::float / c.csat_count END AS mean_csat,
        s.model_version, s.observation_end AS scored_at, s.frequency, s.recency, s.t, s.monetary, s.clv,
        s.expected_purchases, s.p_alive, s.expected_spend, s.churn_score, s.r_score, s.f_score, s.m_score, s.segment, s.cluster,
        c.activities, c.last_activity_day,
        (SELECT st.base_currency FROM ${r('analytics_state')} st WHERE st.id = 'observation') AS base_currency,
        c.pending_amounts,
        ARRAY(SELECT DISTINCT rtrim(a.currency) || ' ' || to_char(a.occurred_at AT TIME ZONE 'UTC', 'YYYY-MM') FROM ${r('analytics_amount')} a
          WHERE a.customer_id = c.customer_id AND a.base_value IS NULL ORDER BY 1) AS missing_rates
      FROM ${r('analytics_customer')} c LEFT JOIN ${r('analytics_scores')} s USING (customer_id)`,
    `CREATE OR REPLACE VIEW ${v('analytics_revenue_monthly')} AS
      SELECT to_char(day, 'YYYY-MM') AS month, sum(purchases)::int AS purchases, sum(revenue) AS revenue,
        sum(refunds) AS refunds, sum(revenue) - sum(refunds) AS net_revenue
      FROM ${r('analytics_revenue_day')} GROUP BY 1`,
    `CREATE OR REPLACE VIEW ${v('analytics_satisfaction')} AS
      SELECT period, channel, csat_responses, csat_satisfied,
        CASE WHEN csat_responses > 0 THEN csat_satisfied::float / csat_responses END AS csat,
        nps_responses, promoters, detractors,
        CASE WHEN nps_responses > 0 THEN (100.0 * (promoters - detractors) / nps_responses)::float END AS nps
      FROM ${r('analytics_satisfaction')}`,
    `CREATE OR REPLACE VIEW ${v('analytics_segments')} AS
      SELECT s.segment, count(*)::int AS customers, avg(s.clv) AS mean_clv, sum(s.clv) AS total_clv,
        avg(s.churn_score) AS mean_churn_score, avg(s.p_alive) AS mean_p_alive, avg(${RETENTION_CLV_SQL.clv}) AS mean_clv_retention
      FROM ${r('analytics_scores')} s JOIN ${r('analytics_customer')} c USING (customer_id) LEFT JOIN ${retentionParams} ON true
      GROUP BY s.segment`,
    `CREATE OR REPLACE VIEW ${v('analytics_clv_retention')} AS
      SELECT s.customer_id, s.segment, s.clv, ${RETENTION_CLV_SQL.clv} AS clv_retention, ${RETENTION_CLV_SQL.marginPerMonth} AS margin_per_month,
        p.retention_rate, p.margin_rate, p.discount_rate, p.model_version, s.observation_end AS scored_at
      FROM ${r('analytics_scores')} s JOIN ${r('analytics_customer')} c USING (customer_id) LEFT JOIN ${retentionParams} ON true`,
    `CREATE OR REPLACE VIEW ${v('analytics_models')} AS
      SELECT version, fitted_at, as_of, time_unit, horizon, discount_rate,
        (params->'bgnbd'->>'r')::float AS bgnbd_r, (params->'bgnbd'->>'alpha')::float AS bgnbd_alpha,
        (params->'bgnbd'->>'a')::float AS bgnbd_a, (params->'bgnbd'->>'b')::float AS bgnbd_b,
        (params->'gammaGamma'->>'p')::float AS gg_p, (params->'gammaGamma'->>'q')::float AS gg_q, (params->'gammaGamma'->>'v')::float AS gg_v,
        (metrics->'churn'->>'auc')::float AS churn_auc, (metrics->'churn'->>'logLoss')::float AS churn_log_loss, metrics
      FROM ${r('analytics_models')}`,
    `CREATE OR REPLACE VIEW ${v('analytics_retention')} AS
      SELECT period, customers_start, customers_end, customers_new, crr FROM ${r('analytics_retention')} WHERE model_version = ${latest}`,
    `CREATE OR REPLACE VIEW ${v('analytics_cohorts')} AS
      SELECT cohort, period_offset, cohort_size, active_customers, retention_rate FROM ${r('analytics_cohorts')} WHERE model_version = ${latest}`,
    `CREATE OR REPLACE VIEW ${v('analytics_forecast')} AS
      SELECT method, month, kind, revenue FROM ${r('analytics_forecast')} WHERE model_version = ${latest}`,
  ];
  const descriptions: Record<string, string> = {
    analytics_customers:
      'One row per customer: running aggregates and the latest scores (CLV, expected purchases, P(alive), churn, RFM, segment, cluster). Money (net_value, refund_value, monetary, clv) is in base_currency; currency is the first purchase currency; amounts still without a rate count 0 and are named in missing_rates. mean_csat is the mean 1-5 score, not CSAT (the share of 4-5 ratings). Definitions: analytics/ANALYTICS.md',
    analytics_revenue_monthly:
      'Purchases, revenue, refunds and net revenue per month (business time, UTC), in the base currency (amounts without a rate count 0)',
    analytics_satisfaction: 'CSAT (share of 4-5 on 1-5) and NPS (promoters 9-10 minus detractors 0-6, points) per month and feedback channel',
    analytics_segments: 'Customers, CLV (BG/NBD and discounted-retention) and churn per RFM segment (latest scores)',
    analytics_clv_retention:
      'Per customer: discounted-retention CLV = margin_per_month / (1 + discount_rate - retention_rate) (monthly, infinite horizon, end of period) beside the BG/NBD clv, with the parameters of the latest model',
    analytics_models: 'Fitted model versions: BG/NBD and Gamma-Gamma parameters, churn AUC and log loss, all metrics as JSON',
    analytics_retention: 'CRR = (E - N) / S per month, from the latest model fit',
    analytics_cohorts: 'Cohorts by first-purchase month: active customers and retention rate k months later, from the latest model fit',
    analytics_forecast: 'Monthly net revenue, actual and forecast, per method, from the latest model fit',
  };
  // In place where the columns allow it; dropped and made anew when a later version changes them.
  return statements.flatMap((statement) => {
    const name = /CREATE OR REPLACE VIEW (\S+)/.exec(statement)![1]!;
    const short = /\."([^"]+)"$/.exec(name)![1]!;
    return [replaceViewStatement(name, statement), `COMMENT ON VIEW ${name} IS '${(descriptions[short] ?? '').replace(/'/g, "''")}'`];
  });
}

export async function createAnalyticsReportingViews(db: QueryExecutorProvider, names: { readSchema: string; reportingSchema: string }): Promise<void> {
  await sql.raw(`CREATE SCHEMA IF NOT EXISTS ${q(names.reportingSchema)}`).execute(db);
  for (const statement of analyticsReportingViews(names.readSchema, names.reportingSchema)) await sql.raw(statement).execute(db);
}
