import { sql, type QueryExecutorProvider } from 'kysely';
import { addCounts, type Row, type TableSpec } from '../projections/read-models/rows.ts';
import { addMonths, dayOf, dayToIsoDate, monthsBetween } from './models/time.ts';
import type { CohortRow, RetentionPeriod } from './models/retention.ts';

/**
 * The counts behind GET /analytics/retention, kept by the analytics projection so that the cohort
 * table and the CRR per month are read from a few rows per month instead of every customer's
 * purchase days (what `cohortTable` and `retentionRates` in models/retention.ts fold, and still do
 * for a fit as of a past day).
 *
 * Each customer keeps, in `analytics_customer.purchase_months`, the last purchase day of every month
 * they bought in (sorted). That is all the counts need:
 * - `analytics_cohort_activity`: customers of a cohort (first-purchase month) with a purchase in a
 *   month; the cohort's size is its count in its own month;
 * - `analytics_active_at`: customers active at the first day t of a month for the kept window W
 *   (365 days), i.e. with a purchase day in [t - W, t). Within a month before t's, some day is at or
 *   after t - W exactly when the month's last purchase day is.
 * - `analytics_listed_gap`: customers with a listed day m whose next listed day lies in the month
 *   starting n (none: the last one), for any other window W: a customer is active at t from such an m
 *   exactly when m < t <= min(m + W, n), since t is itself a month start. The count of (m, n) pairs
 *   is bounded by the calendar (days x months), not by the number of customers.
 * A customer's share of each is a function of their list; when the list changes (a purchase on a
 * new day of a month, a merge), the projection adds the difference between the new share and the
 * old. A share is bounded by the months a customer bought in, not by their number of purchases.
 * Rows whose count falls to 0 are deleted, so the tables are the same whatever the batch boundaries.
 */
export const KEPT_ACTIVE_WINDOW_DAYS = 365;

export const COHORT_ACTIVITY: TableSpec = {
  table: 'analytics_cohort_activity',
  key: 'cohort_month',
  keyType: 'text',
  columns: ['cohort_month', 'cohort', 'month', 'customers'],
};

export const ACTIVE_AT: TableSpec = {
  table: 'analytics_active_at',
  key: 'boundary',
  keyType: 'date',
  columns: ['boundary', 'customers'],
};

export const LISTED_GAP: TableSpec = {
  table: 'analytics_listed_gap',
  key: 'gap',
  keyType: 'text',
  columns: ['gap', 'listed_day', 'next_month', 'customers'],
};

export async function migrateRetentionCounts(db: QueryExecutorProvider, schema: string): Promise<void> {
  const t = (name: string) => sql.id(schema, name);
  await sql`ALTER TABLE ${t('analytics_customer')} ADD COLUMN IF NOT EXISTS purchase_months integer[] NOT NULL DEFAULT '{}'`.execute(db);
  await sql`CREATE TABLE IF NOT EXISTS ${t(COHORT_ACTIVITY.table)} (
    cohort_month text PRIMARY KEY,
    cohort text NOT NULL,
    month text NOT NULL,
    customers integer NOT NULL
  )`.execute(db);
  await sql`CREATE TABLE IF NOT EXISTS ${t(ACTIVE_AT.table)} (
    boundary date PRIMARY KEY,
    customers integer NOT NULL
  )`.execute(db);
  // Days as in purchase_months (days since 1970-01-01); next_month is the first day of a month, null for none.
  await sql`CREATE TABLE IF NOT EXISTS ${t(LISTED_GAP.table)} (
    gap text PRIMARY KEY,
    listed_day integer NOT NULL,
    next_month integer,
    customers integer NOT NULL
  )`.execute(db);
  // A query reads the pairs whose listed day falls in its months and the window before them.
  await sql`CREATE INDEX IF NOT EXISTS analytics_listed_gap_day_idx ON ${t(LISTED_GAP.table)} (listed_day)`.execute(db);
}

/**
 * Calendar helpers on integers, memoised: shares are computed for every purchase a batch applies, and
 * parsing dates there cost more than the rest of the projection (0.24 ms a change measured, most of it
 * in Date). Days and months are bounded (business years 1900-2200), and so are the maps.
 */
const monthIndexes = new Map<number, number>();
/** Months since year 0 of a calendar day (year x 12 + month - 1). */
const monthIndexOf = (day: number): number => {
  let index = monthIndexes.get(day);
  if (index === undefined) {
    const iso = dayToIsoDate(day);
    index = Number(iso.slice(0, 4)) * 12 + Number(iso.slice(5, 7)) - 1;
    monthIndexes.set(day, index);
  }
  return index;
};
const monthLabels = new Map<number, { month: string; firstDay: number; boundary: string }>();
const monthOf = (index: number) => {
  let month = monthLabels.get(index);
  if (!month) {
    const label = `${String(Math.floor(index / 12)).padStart(4, '0')}-${String((index % 12) + 1).padStart(2, '0')}`;
    const firstDay = dayOf(`${label}-01T00:00:00Z`);
    month = { month: label, firstDay, boundary: dayToIsoDate(firstDay) };
    monthLabels.set(index, month);
  }
  return month;
};

/** The list with a purchase on `day` added: a new month, or a later last day of its month. */
export function withPurchaseDay(list: readonly number[], day: number): number[] {
  const month = monthIndexOf(day);
  const i = list.findIndex((d) => monthIndexOf(d) >= month);
  if (i === -1) return [...list, day];
  if (monthIndexOf(list[i]!) !== month) return [...list.slice(0, i), day, ...list.slice(i)];
  return list[i]! >= day ? [...list] : [...list.slice(0, i), day, ...list.slice(i + 1)];
}

/** A gap's key: the listed day, and the first day of the next listed day's month ('' for none). */
const gapKey = (listed: number, next: number | undefined): string => `${listed}|${next === undefined ? '' : monthOf(monthIndexOf(next)).firstDay}`;

/**
 * A customer's share of the counts: keys of `analytics_cohort_activity`, boundaries (ISO dates) of
 * `analytics_active_at` and keys of `analytics_listed_gap`.
 */
export function retentionShare(list: readonly number[]): { cohortMonths: string[]; boundaries: string[]; gaps: string[] } {
  if (list.length === 0) return { cohortMonths: [], boundaries: [], gaps: [] };
  const cohort = monthOf(monthIndexOf(list[0]!)).month;
  const boundaries = new Set<number>();
  for (const last of list) {
    // Month starts t with last < t <= last + W.
    for (let index = monthIndexOf(last) + 1; monthOf(index).firstDay <= last + KEPT_ACTIVE_WINDOW_DAYS; index++) boundaries.add(index);
  }
  return {
    cohortMonths: list.map((d) => `${cohort}|${monthOf(monthIndexOf(d)).month}`),
    boundaries: [...boundaries].map((index) => monthOf(index).boundary),
    gaps: list.map((d, i) => gapKey(d, list[i + 1])),
  };
}

/** A new `analytics_listed_gap` row from its key. */
const gapRow = (key: string): Row => {
  const [listed, next] = key.split('|');
  return { gap: key, listed_day: Number(listed), next_month: next === '' ? null : Number(next) };
};

/** Count changes per key, from customers' lists before and after. */
export class RetentionDeltas {
  readonly cohortMonths = new Map<string, number>();
  readonly boundaries = new Map<string, number>();
  readonly gaps = new Map<string, number>();

  add(list: readonly number[], sign: 1 | -1): void {
    const share = retentionShare(list);
    for (const key of share.cohortMonths) this.cohortMonths.set(key, (this.cohortMonths.get(key) ?? 0) + sign);
    for (const key of share.boundaries) this.boundaries.set(key, (this.boundaries.get(key) ?? 0) + sign);
    for (const key of share.gaps) this.gaps.set(key, (this.gaps.get(key) ?? 0) + sign);
  }

  change(before: readonly number[], after: readonly number[]): void {
    this.add(before, -1);
    this.add(after, 1);
  }

  /** Adds the changes to the tables (one statement per table, and one more where a count comes to 0). */
  async apply(trx: QueryExecutorProvider, schema: string): Promise<void> {
    for (const [spec, deltas, init] of [
      [
        COHORT_ACTIVITY,
        this.cohortMonths,
        (key: string) => ({ cohort_month: key, cohort: key.slice(0, key.indexOf('|')), month: key.slice(key.indexOf('|') + 1) }),
      ],
      [ACTIVE_AT, this.boundaries, (key: string) => ({ boundary: key })],
      [LISTED_GAP, this.gaps, gapRow],
    ] as const) {
      const changed = [...deltas].filter(([, delta]) => delta !== 0);
      deltas.clear();
      if (changed.length > 0)
        await addCounts(
          trx,
          schema,
          spec,
          'customers',
          changed.map(([key, delta]) => ({ ...init(key), customers: delta })),
        );
    }
  }
}

/** Customers active at each month start from `fromMonth` to the month after `lastMonth`, kept window. */
async function keptActiveAt(db: QueryExecutorProvider, schema: string, fromMonth: string, lastMonth: string): Promise<Map<string, number>> {
  const { rows } = await sql<{ boundary: string; customers: number }>`SELECT to_char(boundary, 'YYYY-MM-DD') AS boundary, customers
    FROM ${sql.id(schema, ACTIVE_AT.table)} WHERE boundary >= ${`${fromMonth}-01`}::date AND boundary <= ${`${addMonths(lastMonth, 1)}-01`}::date`.execute(db);
  return new Map(rows.map((r) => [r.boundary.slice(0, 7), Number(r.customers)]));
}

/** The kept list of a customer row as the projection holds it (pg parses integer[] to numbers; a new row has []). */
export const purchaseMonthsOf = (value: unknown): number[] => (Array.isArray(value) ? value.map(Number) : []);

/**
 * Customers active at each month start from `fromMonth` to the month after `lastMonth` for a window
 * other than the kept one, from the counted gaps rather than every customer. A customer is active at
 * t when a listed day m has t - W <= m < t. For t between a listed day m and the next one m' (m <
 * t <= m'), m is the last listed day before t, so each listed day stands for the customer on
 * (m, min(m + W, m')]: one interval per listed day, none overlapping another of the same customer;
 * as t is a month start, m' may be taken as its month's first day. The database returns how many
 * customers' intervals open and close on each day; active(t) is the sum of those changes before t.
 * Only the pairs open at some month start asked for are read (listed from W days before the first).
 */
async function activeAtForWindow(
  db: QueryExecutorProvider,
  schema: string,
  activeWindowDays: number,
  fromMonth: string,
  lastMonth: string,
): Promise<Map<string, number>> {
  const firstBoundary = dayOf(`${fromMonth}-01T00:00:00Z`);
  const lastBoundary = dayOf(`${addMonths(lastMonth, 1)}-01T00:00:00Z`);
  const { rows } = await sql<{ day: number; delta: number }>`
    SELECT change.day, sum(change.delta)::int AS delta
      FROM ${sql.id(schema, LISTED_GAP.table)} g
     CROSS JOIN LATERAL (VALUES (g.listed_day, g.customers), (least(g.listed_day + ${activeWindowDays}::int, g.next_month), -g.customers)) AS change(day, delta)
     WHERE g.listed_day >= ${firstBoundary - activeWindowDays}::int AND g.listed_day < ${lastBoundary}::int
       AND (g.next_month IS NULL OR g.next_month >= ${firstBoundary}::int)
     GROUP BY change.day ORDER BY change.day`.execute(db);
  const active = new Map<string, number>();
  let at = 0;
  let running = 0;
  for (let month = fromMonth; month <= addMonths(lastMonth, 1); month = addMonths(month, 1)) {
    const firstDay = dayOf(`${month}-01T00:00:00Z`);
    while (at < rows.length && Number(rows[at]!.day) < firstDay) running += Number(rows[at++]!.delta);
    active.set(month, running);
  }
  return active;
}

/**
 * Cohort table and CRR per month from the kept counts, as `cohortTable` and `retentionRates` give
 * them over every customer's purchase days up to `lastMonth`: for the kept window from the counts
 * kept per month start, for another one (`activeWindowDays`) from the counted gaps between listed days.
 */
export async function keptRetention(
  db: QueryExecutorProvider,
  schema: string,
  lastMonth: string,
  fromMonth: string | undefined,
  activeWindowDays = KEPT_ACTIVE_WINDOW_DAYS,
): Promise<{ cohorts: CohortRow[]; periods: RetentionPeriod[] }> {
  const t = (name: string) => sql.id(schema, name);
  const { rows: activity } = await sql<{ cohort: string; month: string; customers: number }>`SELECT cohort, month, customers
    FROM ${t(COHORT_ACTIVITY.table)} WHERE cohort <= ${lastMonth} AND month <= ${lastMonth} ORDER BY cohort, month`.execute(db);
  const byCohort = new Map<string, number[]>();
  for (const r of activity) {
    let active = byCohort.get(r.cohort);
    if (!active) byCohort.set(r.cohort, (active = new Array<number>(monthsBetween(r.cohort, lastMonth) + 1).fill(0)));
    active[monthsBetween(r.cohort, r.month)] = Number(r.customers);
  }
  const all = [...byCohort.entries()].map(([cohort, active]) => ({ cohort, size: active[0]!, active, retention: active.map((a) => a / active[0]!) }));
  const cohorts = all.filter((c) => !fromMonth || c.cohort >= fromMonth);
  const from = fromMonth ?? cohorts[0]?.cohort ?? lastMonth;
  if (from > lastMonth) return { cohorts, periods: [] };
  const activeAt =
    activeWindowDays === KEPT_ACTIVE_WINDOW_DAYS
      ? await keptActiveAt(db, schema, from, lastMonth)
      : await activeAtForWindow(db, schema, activeWindowDays, from, lastMonth);
  const sizes = new Map(all.map((c) => [c.cohort, c.size]));
  const periods: RetentionPeriod[] = [];
  for (let period = from; period <= lastMonth; period = addMonths(period, 1)) {
    const S = activeAt.get(period) ?? 0;
    const E = activeAt.get(addMonths(period, 1)) ?? 0;
    const N = sizes.get(period) ?? 0;
    periods.push({ period, S, E, N, crr: S > 0 ? (E - N) / S : null });
  }
  return { cohorts, periods };
}
