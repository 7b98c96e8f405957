import { clvInfinite } from './models/clv.ts';
import type { PurchaseSummary } from './models/rfm.ts';
import type { TimeUnit } from './models/time.ts';

/**
 * The discounted-retention CLV (analytics/models/clv.ts, end-of-period timing, infinite horizon)
 * served beside the BG/NBD `clv`: CLV = m / (1 + d - r), per month, with
 * - r: the customer base's monthly retention, the mean CRR of the fit's last 12 complete calendar months (those
 *   that have one);
 * - m: the customer's margin per month, net value per month since the first purchase (at least one
 *   month) times `marginRate` (the share of revenue that is margin; 1 = revenue, the default);
 * - d: the model's discount rate per time unit, converted to a month.
 * The parameters travel with the model version, so every figure says which ones it used.
 */
export interface RetentionClvParams {
  period: 'month';
  retentionRate: number;
  marginRate: number;
  discountRate: number;
}

const DAYS_PER_MONTH = 365.25 / 12;
const UNITS_PER_MONTH: Record<TimeUnit, number> = { day: DAYS_PER_MONTH, week: DAYS_PER_MONTH / 7, month: 1 };

/** The parameters of a fit; null when none of its last 12 months has a retention rate. */
export function retentionClvParams(
  periods: readonly { crr: number | null }[],
  marginRate: number,
  discountRate: number,
  unit: TimeUnit,
): RetentionClvParams | null {
  // The last 12 calendar months, those with a rate: skipping months without one must not reach back
  // past them (a fit once averaged months two years old because its latest ones had no rate).
  const crr = periods
    .slice(-12)
    .map((p) => p.crr)
    .filter((c): c is number => c !== null && Number.isFinite(c));
  if (crr.length === 0) return null;
  // Bounded below 1: the series must converge, and a perfect month is not a perfect future.
  const retentionRate = Math.min(0.99, Math.max(0, crr.reduce((s, c) => s + c, 0) / crr.length));
  return { period: 'month', retentionRate, marginRate, discountRate: (1 + discountRate) ** UNITS_PER_MONTH[unit] - 1 };
}

/** The customer's margin per month and CLV at a day (the day of their BG/NBD score). */
export function customerRetentionClv(params: RetentionClvParams, purchases: PurchaseSummary, day: number): { clvRetention: number; marginPerMonth: number } {
  const months = Math.max(1, (Math.max(day, purchases.lastDay) - purchases.firstDay) / DAYS_PER_MONTH);
  const marginPerMonth = (Math.max(0, purchases.totalValue) / months) * params.marginRate;
  return { clvRetention: clvInfinite(marginPerMonth, { retention: params.retentionRate, discountRate: params.discountRate }), marginPerMonth };
}

/**
 * Net value per month since the first purchase, at the day of a score (its observation end): what
 * `RETENTION_CLV_SQL.clv` multiplies by `retentionClvFactor`. Stored with each score
 * (`analytics_scores.value_per_month`) so that a segment's mean is a sum kept per segment.
 */
export function valuePerMonth(purchases: PurchaseSummary, scoredDay: number): number {
  return Math.max(0, purchases.totalValue) / Math.max(1, (scoredDay - purchases.firstDay) / DAYS_PER_MONTH);
}

/** margin / (1 + d - r): the CLV per unit of `valuePerMonth`. */
export const retentionClvFactor = (params: RetentionClvParams): number => params.marginRate / (1 + params.discountRate - params.retentionRate);

/**
 * The same figure in SQL over `analytics_customer c` and `analytics_scores s` (for the segment figures
 * and the reporting view), with the parameters as `p.retention_rate`, `p.margin_rate`, `p.discount_rate`.
 */
export const RETENTION_CLV_SQL = {
  /** `valuePerMonth` in SQL (the net value per month before the margin). */
  valuePerMonth: `greatest(c.total_value, 0)::float / greatest(1.0, (s.observation_end - c.first_day) / ${DAYS_PER_MONTH})`,
  marginPerMonth: `greatest(c.total_value, 0)::float / greatest(1.0, (s.observation_end - c.first_day) / ${DAYS_PER_MONTH}) * p.margin_rate`,
  clv: `greatest(c.total_value, 0)::float / greatest(1.0, (s.observation_end - c.first_day) / ${DAYS_PER_MONTH}) * p.margin_rate / (1 + p.discount_rate - p.retention_rate)`,
  /** A one-row relation `p` with the parameters of a model version given as SQL (e.g. the latest). */
  params: (modelsTable: string, version: string) =>
    `(SELECT (params->'clvRetention'->>'retentionRate')::float AS retention_rate, (params->'clvRetention'->>'marginRate')::float AS margin_rate,
      (params->'clvRetention'->>'discountRate')::float AS discount_rate, version AS model_version FROM ${modelsTable} WHERE version = ${version}) p`,
};
