import { sql, type QueryExecutorProvider } from 'kysely';
import { dayOfDate } from './projection.ts';
import type { CustomerAggregate } from './scoring.ts';
import { dayToIsoDate } from './models/time.ts';
import { baseSums, convertedLines, missingLabel, missingRatesOf } from '../projections/queries/exchange-rates.ts';

/**
 * Customer aggregates as they stood at the end of a calendar day, rebuilt from the dated detail
 * tables (per-day purchases, dated activity, feedback and deal times). Fitting uses these so that a
 * model trained "as of" a cutoff sees nothing after it. A refund lowers the value of its order's day
 * from its own business time on: the days' values hold every refund, so those recorded after the
 * cutoff (`analytics_amount`, kind refund) are added back. Known approximation: a complaint reopened
 * after the cutoff counts by its latest resolution.
 */
export async function aggregatesAsOf(db: QueryExecutorProvider, schema: string, day: number, customerId?: string): Promise<Map<string, CustomerAggregate>> {
  const cutoff = dayToIsoDate(day);
  // One customer (GET /analytics/customers/:id?asOf=) or all of them (fitting).
  const only = customerId === undefined ? sql`true` : sql`customer_id = ${customerId}::uuid`;
  const end = `${dayToIsoDate(day + 1)}T00:00:00Z`;
  const t = (name: string) => sql.id(schema, name);
  const result = new Map<string, CustomerAggregate>();
  const get = (id: string): CustomerAggregate => {
    let a = result.get(id);
    if (!a) {
      a = {
        customerId: id,
        purchases: null,
        refunds: 0,
        complaints: 0,
        complaintsOpen: 0,
        complaintsResolved: 0,
        resolutionSeconds: 0,
        responsesOpened: 0,
        responsesClicked: 0,
        responsesConverted: 0,
        responsesUnsubscribed: 0,
        dealsOpen: 0,
        dealsWon: 0,
        dealsLost: 0,
        activities: 0,
        lastActivityDay: null,
      };
      result.set(id, a);
    }
    return a;
  };
  // Refunds after the cutoff of orders on days up to it: not made yet at the end of the day.
  const purchases = await sql<Record<string, unknown>>`
    WITH later_refunds AS (
      SELECT customer_id, value_day AS day, sum(coalesce(base_value, 0)) AS value FROM ${t('analytics_amount')}
       WHERE kind = 'refund' AND occurred_at >= ${end}::timestamptz AND value_day <= ${cutoff}::date AND ${only} GROUP BY 1, 2),
    days AS (
      SELECT p.customer_id, p.day, p.value + coalesce(l.value, 0) AS value FROM ${t('analytics_purchase_day')} p
        LEFT JOIN later_refunds l ON l.customer_id = p.customer_id AND l.day = p.day
       WHERE p.day <= ${cutoff}::date AND ${customerId === undefined ? sql`true` : sql`p.customer_id = ${customerId}::uuid`})
    SELECT customer_id::text AS id, min(day) AS first_day, max(day) AS last_day, count(*)::int AS days, sum(value)::float AS total,
      (array_agg(value ORDER BY day))[1]::float AS first_value
    FROM days GROUP BY customer_id`.execute(db);
  for (const r of purchases.rows) {
    get(String(r.id)).purchases = {
      firstDay: dayOfDate(r.first_day),
      lastDay: dayOfDate(r.last_day),
      purchaseDays: Number(r.days),
      totalValue: Number(r.total),
      firstDayValue: Number(r.first_value),
    };
  }
  const activity = await sql<{ id: string; kind: string; n: number }>`
    SELECT customer_id::text AS id, kind, sum(count)::int AS n FROM ${t('analytics_activity')} WHERE day <= ${cutoff}::date AND ${only} GROUP BY 1, 2`.execute(
    db,
  );
  for (const r of activity.rows) {
    const a = result.get(r.id);
    if (!a) continue; // activity of customers who never bought is not modelled
    if (r.kind === 'refund') a.refunds = r.n;
    else if (r.kind === 'opened') a.responsesOpened = r.n;
    else if (r.kind === 'clicked') a.responsesClicked = r.n;
    else if (r.kind === 'converted') a.responsesConverted = r.n;
    else if (r.kind === 'unsubscribed') a.responsesUnsubscribed = r.n;
  }
  const engagement = await sql<{ id: string; n: number; last_day: unknown }>`
    SELECT customer_id::text AS id, sum(count)::int AS n, max(day) AS last_day FROM ${t('analytics_activity')}
     WHERE kind = 'engagement' AND day <= ${cutoff}::date AND ${only} GROUP BY 1`.execute(db);
  for (const r of engagement.rows) {
    const a = result.get(r.id);
    if (!a) continue;
    a.activities = r.n;
    a.lastActivityDay = dayOfDate(r.last_day);
  }
  const complaints = await sql<Record<string, unknown>>`
    SELECT customer_id::text AS id, count(*)::int AS complaints,
      count(*) FILTER (WHERE resolved_at IS NULL OR resolved_at >= ${end}::timestamptz)::int AS open,
      count(*) FILTER (WHERE resolved_at < ${end}::timestamptz)::int AS resolved,
      coalesce(sum(resolution_seconds) FILTER (WHERE resolved_at < ${end}::timestamptz), 0)::float AS seconds
    FROM ${t('analytics_feedback')} WHERE kind = 'complaint' AND submitted_at < ${end}::timestamptz AND ${only} GROUP BY 1`.execute(db);
  for (const r of complaints.rows) {
    const a = result.get(String(r.id));
    if (!a) continue;
    a.complaints = Number(r.complaints);
    a.complaintsOpen = Number(r.open);
    a.complaintsResolved = Number(r.resolved);
    a.resolutionSeconds = Number(r.seconds);
  }
  const deals = await sql<Record<string, unknown>>`
    SELECT customer_id::text AS id,
      count(*) FILTER (WHERE status = 'open' OR closed_at >= ${end}::timestamptz)::int AS open,
      count(*) FILTER (WHERE status = 'won' AND closed_at < ${end}::timestamptz)::int AS won,
      count(*) FILTER (WHERE status = 'lost' AND closed_at < ${end}::timestamptz)::int AS lost
    FROM ${t('analytics_deal')} WHERE opened_at < ${end}::timestamptz AND ${only} GROUP BY 1`.execute(db);
  for (const r of deals.rows) {
    const a = result.get(String(r.id));
    if (!a) continue;
    a.dealsOpen = Number(r.open);
    a.dealsWon = Number(r.won);
    a.dealsLost = Number(r.lost);
  }
  return result;
}

/** Customers with a purchase day in (fromDay, toDay]: the "not churned" label of the training window. */
export async function customersBuyingBetween(db: QueryExecutorProvider, schema: string, fromDay: number, toDay: number): Promise<Set<string>> {
  const { rows } = await sql<{ id: string }>`SELECT DISTINCT customer_id::text AS id FROM ${sql.id(schema, 'analytics_purchase_day')}
    WHERE day > ${dayToIsoDate(fromDay)}::date AND day <= ${dayToIsoDate(toDay)}::date`.execute(db);
  return new Set(rows.map((r) => r.id));
}

/** Customers with an amount up to the end of a day still waiting for a rate (its value counts 0 until then). */
export async function customersWithMissingRates(db: QueryExecutorProvider, schema: string, day: number): Promise<Set<string>> {
  const { rows } = await sql<{ id: string }>`SELECT DISTINCT customer_id::text AS id FROM ${sql.id(schema, 'analytics_amount')}
    WHERE base_value IS NULL AND value_day <= ${dayToIsoDate(day)}::date`.execute(db);
  return new Set(rows.map((r) => r.id));
}

/** Every customer's purchase days up to a day (retention tables). */
export async function purchaseDaysUpTo(db: QueryExecutorProvider, schema: string, day: number): Promise<{ days: number[] }[]> {
  const { rows } = await sql<{ days: number[] }>`SELECT array_agg(day - DATE '1970-01-01' ORDER BY day) AS days
    FROM ${sql.id(schema, 'analytics_purchase_day')} WHERE day <= ${dayToIsoDate(day)}::date GROUP BY customer_id`.execute(db);
  return rows.map((r) => ({ days: r.days.map(Number) }));
}

/** Revenue net of refunds per month up to a day, zero-filled between the first and the last month. */
export async function monthlyRevenueUpTo(db: QueryExecutorProvider, schema: string, day: number): Promise<{ month: string; value: number }[]> {
  const { rows } = await sql<{ month: string; value: number }>`SELECT to_char(day, 'YYYY-MM') AS month, (sum(revenue) - sum(refunds))::float AS value
    FROM ${sql.id(schema, 'analytics_revenue_day')} WHERE day <= ${dayToIsoDate(day)}::date GROUP BY 1 ORDER BY 1`.execute(db);
  return rows.map((r) => ({ month: r.month, value: Number(r.value) }));
}

/**
 * The months of `monthlyBaseRevenueUpTo` from the analytics' own daily revenue, which is in the base
 * currency already (every purchase and refund at the rate valid at its business time, converted again
 * when a rate is set or corrected later), with the amounts still waiting for a rate named: a row per
 * day and one per such amount, not one per purchase. A month whose amounts all have their rates sums to
 * the same value; a month with a missing rate is named, and its value is not used. Null when the
 * analytics were built in another base currency (the lines are converted then).
 */
export async function monthlyBaseRevenueKept(
  db: QueryExecutorProvider,
  schema: string,
  day: number,
  baseCurrency: string,
): Promise<{ months: { month: string; value: number }[]; missingRates: string[] } | null> {
  const t = (name: string) => sql.id(schema, name);
  const { rows: state } = await sql<{ base: string | null }>`SELECT rtrim(base_currency) AS base FROM ${t('analytics_state')} WHERE id = 'observation'`.execute(
    db,
  );
  if (state[0] && state[0].base !== baseCurrency) return null;
  const months = await monthlyRevenueUpTo(db, schema, day);
  // Through the index of the amounts without a base value.
  const { rows } = await sql<{ label: string }>`SELECT DISTINCT ${missingLabel(sql`currency`, sql`occurred_at`)} AS label
    FROM ${t('analytics_amount')} WHERE base_value IS NULL AND occurred_at < (${dayToIsoDate(day)}::date + 1)::timestamp AT TIME ZONE 'UTC'`.execute(db);
  return { months, missingRates: rows.map((r) => r.label).sort() };
}

/**
 * Revenue net of refunds per month up to a day in the base currency: every purchase and refund of the
 * customers read model (`revenue_lines`, all currencies) converted at the rate valid at its business
 * time (projections/queries/exchange-rates.ts). Months an amount of which lacks a rate are named in
 * `missingRates` ('JPY 2026-03').
 */
export async function monthlyBaseRevenueUpTo(
  db: QueryExecutorProvider,
  schema: string,
  day: number,
  baseCurrency: string,
): Promise<{ months: { month: string; value: number }[]; missingRates: string[] }> {
  const source = { db, schema, baseCurrency };
  const lines = convertedLines(source, 'revenue_lines', sql`l.occurred_at < (${dayToIsoDate(day)}::date + 1)::timestamp AT TIME ZONE 'UTC'`);
  const { rows } = await sql<{
    month: string;
    base_amount: string | null;
    missing_rates: string[];
  }>`SELECT to_char(y.occurred_at AT TIME ZONE 'UTC', 'YYYY-MM') AS month, ${baseSums(['base_amount'])}
    FROM ${lines} GROUP BY 1 ORDER BY 1`.execute(db);
  return {
    months: rows.map((r) => ({ month: r.month, value: Number(r.base_amount ?? 0) })),
    missingRates: [...new Set(rows.flatMap((r) => missingRatesOf(r.missing_rates)))].sort(),
  };
}
