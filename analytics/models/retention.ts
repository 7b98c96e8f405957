import { addMonths, monthOfDay, monthsBetween } from './time.ts';

/** A customer's purchase days (calendar days, any order). */
export interface PurchaseDays {
  days: readonly number[];
}

export interface CohortRow {
  /** First-purchase month, `YYYY-MM`. */
  cohort: string;
  size: number;
  /** active[k] = members with a purchase in month cohort + k (active[0] = size). */
  active: number[];
  /** active[k] / size. */
  retention: number[];
}

/** Cohort table by first-purchase month, up to `lastMonth` (inclusive). */
export function cohortTable(customers: readonly PurchaseDays[], lastMonth: string): CohortRow[] {
  const cohorts = new Map<string, { size: number; active: number[] }>();
  for (const c of customers) {
    if (c.days.length === 0) continue;
    const first = Math.min(...c.days);
    const cohort = monthOfDay(first);
    if (cohort > lastMonth) continue;
    const row = cohorts.get(cohort) ?? { size: 0, active: new Array<number>(monthsBetween(cohort, lastMonth) + 1).fill(0) };
    cohorts.set(cohort, row);
    row.size++;
    const months = new Set(c.days.map(monthOfDay));
    for (const m of months) {
      const k = monthsBetween(cohort, m);
      if (k >= 0 && k < row.active.length) row.active[k]!++;
    }
  }
  return [...cohorts.entries()]
    .sort(([a], [b]) => (a < b ? -1 : 1))
    .map(([cohort, { size, active }]) => ({ cohort, size, active, retention: active.map((a) => a / size) }));
}

export interface RetentionPeriod {
  /** The month, `YYYY-MM`. */
  period: string;
  /** Customers at the start of the period. */
  S: number;
  /** Customers at the end of the period. */
  E: number;
  /** New customers acquired during the period. */
  N: number;
  /** Customer retention rate (E - N) / S; null when S = 0. */
  crr: number | null;
}

const firstDayOfMonth = (month: string): number => Math.floor(Date.parse(`${month}-01T00:00:00Z`) / 86_400_000);

/**
 * CRR = (E - N) / S per month. "A customer at time t" = acquired before t and not lapsed: at least
 * one purchase in the `activeWindowDays` before t (a non-contractual business has no cancellation
 * event, so lapse must be defined by inactivity). N counts first purchases in the period. A lapsed
 * customer who comes back within the period counts in E, so CRR can exceed the survivors' share.
 */
export function retentionRates(customers: readonly PurchaseDays[], fromMonth: string, toMonth: string, activeWindowDays = 365): RetentionPeriod[] {
  const sorted = customers.filter((c) => c.days.length > 0).map((c) => [...c.days].sort((a, b) => a - b));
  const months: string[] = [];
  for (let m = fromMonth; m <= toMonth; m = addMonths(m, 1)) months.push(m);
  const activeAt = (days: number[], t: number): boolean => {
    // any purchase day d with t - W <= d < t: find the first d >= t - W by binary search
    let lo = 0;
    let hi = days.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (days[mid]! < t - activeWindowDays) lo = mid + 1;
      else hi = mid;
    }
    return lo < days.length && days[lo]! < t;
  };
  return months.map((period) => {
    const start = firstDayOfMonth(period);
    const end = firstDayOfMonth(addMonths(period, 1));
    let S = 0;
    let E = 0;
    let N = 0;
    for (const days of sorted) {
      if (activeAt(days, start)) S++;
      if (activeAt(days, end)) E++;
      if (days[0]! >= start && days[0]! < end) N++;
    }
    return { period, S, E, N, crr: S > 0 ? (E - N) / S : null };
  });
}
