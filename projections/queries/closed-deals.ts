import { sql, type RawBuilder } from 'kysely';
import { baseAmount, baseCurrencyOf, baseSums, inBase, missingLabel, missingRatesOf } from './exchange-rates.ts';
import type { ReadModelSource } from './page.ts';

/** Which closed deals `GET /pipeline` counts: closed (won or lost) from `closedFrom` to `closedTo`, UTC dates, both included. */
export interface ClosedDealsQuery {
  ownerId?: string;
  currency?: string;
  closedFrom?: string;
  closedTo?: string;
}

/** Won and lost deals of a group, and the share won. */
export type ClosedGroup = {
  won: number;
  lost: number;
  /** won / (won + lost), rounded to 4 decimals; null when nothing closed. */
  winRate: number | null;
  /** The won deals' amounts in the base currency, each at the rate valid when it was stated; null when a rate is missing. */
  wonAmount: number | null;
  missingRates: string[];
};

export type ClosedDeals = {
  closedFrom: string | null;
  closedTo: string | null;
  currency: string;
  totals: ClosedGroup & { wonByCurrency: { currency: string; dealCount: number; amount: number }[] };
  byOwner: (ClosedGroup & { ownerId: string })[];
  /** Month closed, 'YYYY-MM' (UTC). */
  byMonth: (ClosedGroup & { month: string })[];
};

type Counts = { won: number; lost: number; won_base: string | null; missing_rates: string[] };

/**
 * The win rate beside the open pipeline: deals won and lost, in total, by owner and by month closed.
 * `where` holds the conditions every deal row `t` must meet (the caller's scope, owner and currency
 * filters); this adds the closed stages and the period. Runs on the caller's snapshot, so the deals
 * counted here are not also among the open ones.
 */
export async function closedDeals(source: ReadModelSource, query: ClosedDealsQuery, where: RawBuilder<unknown>[]): Promise<ClosedDeals> {
  const conditions = [sql`t.stage IN ('won', 'lost')`, ...where];
  if (query.closedFrom) conditions.push(sql`t.closed_at >= (${query.closedFrom}::date)::timestamp AT TIME ZONE 'UTC'`);
  if (query.closedTo) conditions.push(sql`t.closed_at < (${query.closedTo}::date + 1)::timestamp AT TIME ZONE 'UTC'`);
  // A lost deal adds nothing to the amount won, and needs no rate.
  const rows = sql`(SELECT x.owner_id, x.stage, x.closed_at, x.currency, x.amount,
      CASE WHEN x.stage = 'won' THEN x.amount_base ELSE 0 END AS won_base,
      CASE WHEN x.stage = 'won' AND x.amount_base IS NULL THEN ${missingLabel(sql`x.currency`, sql`x.amount_at`)} END AS missing
    FROM (SELECT t.owner_id, t.stage, t.closed_at, t.currency, t.amount, t.amount_at,
        ${inBase(source, sql`t.amount`, sql`t.currency`, sql`t.amount_at`)} AS amount_base
      FROM ${sql.id(source.schema, 'deals')} t WHERE ${sql.join(conditions, sql` AND `)}) x) y`;
  const counts = sql`count(*) FILTER (WHERE y.stage = 'won')::integer AS won, count(*) FILTER (WHERE y.stage = 'lost')::integer AS lost, ${baseSums(['won_base'])}`;
  const [totals, byCurrency, byOwner, byMonth] = [
    await sql<Counts>`SELECT ${counts} FROM ${rows}`.execute(source.db),
    await sql<{ currency: string; deal_count: number; amount: string }>`SELECT y.currency, count(*)::integer AS deal_count, sum(y.amount)::text AS amount
      FROM ${rows} WHERE y.stage = 'won' GROUP BY y.currency ORDER BY y.currency`.execute(source.db),
    await sql<Counts & { key: string }>`SELECT y.owner_id AS key, ${counts} FROM ${rows} GROUP BY y.owner_id ORDER BY y.owner_id`.execute(source.db),
    await sql<Counts & { key: string }>`SELECT to_char(y.closed_at AT TIME ZONE 'UTC', 'YYYY-MM') AS key, ${counts} FROM ${rows} GROUP BY 1 ORDER BY 1`.execute(
      source.db,
    ),
  ];
  return {
    closedFrom: query.closedFrom ?? null,
    closedTo: query.closedTo ?? null,
    currency: baseCurrencyOf(source),
    totals: {
      ...groupOf(totals.rows[0] ?? { won: 0, lost: 0, won_base: '0', missing_rates: [] }),
      wonByCurrency: byCurrency.rows.map((r) => ({ currency: r.currency.trim(), dealCount: r.deal_count, amount: Number(r.amount) })),
    },
    byOwner: byOwner.rows.map((r) => ({ ownerId: r.key, ...groupOf(r) })),
    byMonth: byMonth.rows.map((r) => ({ month: r.key, ...groupOf(r) })),
  };
}

const groupOf = (r: Counts): ClosedGroup => {
  const closed = r.won + r.lost;
  return {
    won: r.won,
    lost: r.lost,
    winRate: closed === 0 ? null : Math.round((r.won / closed) * 10_000) / 10_000,
    // Nothing won sums to 0, not to "unknown".
    wonAmount: r.won === 0 ? 0 : baseAmount(r.won_base),
    missingRates: missingRatesOf(r.missing_rates),
  };
};
