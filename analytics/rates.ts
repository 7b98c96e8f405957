import { sql, type QueryExecutorProvider } from 'kysely';
import { minorOf, minorOfNumeric, numericOf } from '../shared/money.ts';

/**
 * Base-currency values in the analytics. Each purchase and refund is converted when it is applied, at
 * the latest rate with `valid_from <=` its business time that the log has set so far; an amount
 * without one is kept with a NULL base value (counted as a purchase, valued 0, named in
 * `missingRates`) until an `ExchangeRateSet` converts it. A rate set or corrected later converts
 * again exactly the amounts it governs (its currency, from its valid_from to the next rate's).
 */

const RATE_SCALE = 10_000_000_000n;

/** A rate's decimal text ('0.0061', '150.2500000000') as ten-billionths. */
const rateUnits = (rate: string): bigint => {
  const [whole = '0', fraction = ''] = rate.trim().split('.');
  return BigInt(whole || '0') * RATE_SCALE + BigInt((fraction + '0000000000').slice(0, 10));
};

/**
 * `amount` times `rate`, rounded to 4 decimals half away from zero: exactly what PostgreSQL's
 * `round(amount * rate, 4)` gives, so converting now (here) and again later (in SQL) agree.
 */
export function convertAmount(amount: number, rate: string): string {
  const product = minorOf(amount) * rateUnits(rate);
  const negative = product < 0n;
  const abs = negative ? -product : product;
  const rounded = (abs + RATE_SCALE / 2n) / RATE_SCALE;
  return numericOf(negative ? -rounded : rounded);
}

/** Sum of two stored numerics ('12.5000' + '-3.0000'). */
export const plusMoney = (a: unknown, b: unknown): string => numericOf(minorOfNumeric(a) + minorOfNumeric(b));
export const minusMoney = (a: unknown, b: unknown): string => numericOf(minorOfNumeric(a) - minorOfNumeric(b));

type Rate = { from: number; rate: string };

/**
 * The rates of the currencies a batch converts, loaded once per currency: those in force at some
 * moment between the batch's earliest and latest business time (one index range each).
 */
export class RateBook {
  private readonly byCurrency = new Map<string, Rate[]>();
  constructor(
    private readonly trx: QueryExecutorProvider,
    private readonly schema: string,
    private readonly from: string,
    private readonly to: string,
  ) {}

  /** The rate valid at `at` (base units per unit of `currency`), or null when none is set. */
  async rateAt(currency: string, at: string): Promise<string | null> {
    let rates = this.byCurrency.get(currency);
    if (!rates) {
      const t = sql.id(this.schema, 'analytics_rate');
      const { rows } = await sql<{ valid_from: Date; rate: string }>`SELECT valid_from, rate::text AS rate FROM ${t}
        WHERE currency = ${currency} AND valid_from <= ${this.to}::timestamptz
          AND valid_from >= coalesce((SELECT max(valid_from) FROM ${t} WHERE currency = ${currency} AND valid_from <= ${this.from}::timestamptz), '-infinity')
        ORDER BY valid_from DESC`.execute(this.trx);
      rates = rows.map((r) => ({ from: new Date(r.valid_from).getTime(), rate: String(r.rate) }));
      this.byCurrency.set(currency, rates);
    }
    const moment = new Date(at).getTime();
    return rates.find((r) => r.from <= moment)?.rate ?? null;
  }
}

/** One amount a new rate converted again: what it adds to the aggregates it counts in. */
export interface Reconverted {
  customerId: string;
  kind: 'purchase' | 'refund';
  orderKey: string;
  valueDay: string;
  occurredAt: string;
  /** New base value minus the old (the old counted 0 while pending). */
  delta: string;
  wasPending: boolean;
}

/**
 * Records the rate (a correction for the same valid_from replaces it) and converts again the amounts
 * of its currency with business time in [valid_from, next rate's valid_from): those pending and those
 * converted at the rate this one supersedes. Returns each amount's change. The cost is the number of
 * those amounts (index range on currency, occurred_at), not the size of the history.
 */
export async function setRate(trx: QueryExecutorProvider, schema: string, currency: string, validFrom: string, rate: string): Promise<Reconverted[]> {
  const t = (name: string) => sql.id(schema, name);
  const from = new Date(validFrom).toISOString();
  await sql`INSERT INTO ${t('analytics_rate')} (rate_id, currency, valid_from, rate) VALUES (${`${currency}|${from}`}, ${currency}, ${from}::timestamptz, ${rate}::numeric)
    ON CONFLICT (rate_id) DO UPDATE SET rate = EXCLUDED.rate`.execute(trx);
  const { rows } = await sql<{
    customer_id: string;
    kind: 'purchase' | 'refund';
    order_key: string;
    value_day: string;
    occurred_at: Date | string;
    delta: string;
    was_pending: boolean;
    amount_id: string;
  }>`WITH next AS (
      SELECT min(valid_from) AS valid_from FROM ${t('analytics_rate')} WHERE currency = ${currency} AND valid_from > ${from}::timestamptz
    ), old AS (
      SELECT a.amount_id, a.base_value FROM ${t('analytics_amount')} a, next
      WHERE a.currency = ${currency} AND a.occurred_at >= ${from}::timestamptz AND (next.valid_from IS NULL OR a.occurred_at < next.valid_from)
      FOR UPDATE OF a
    )
    UPDATE ${t('analytics_amount')} a SET base_value = round(a.amount * ${rate}::numeric, 4)
    FROM old WHERE a.amount_id = old.amount_id AND a.base_value IS DISTINCT FROM round(a.amount * ${rate}::numeric, 4)
    RETURNING a.customer_id::text AS customer_id, a.kind, a.order_key, to_char(a.value_day, 'YYYY-MM-DD') AS value_day, a.occurred_at,
      (a.base_value - coalesce(old.base_value, 0))::text AS delta, old.base_value IS NULL AS was_pending, a.amount_id`.execute(trx);
  // In a fixed order, so the aggregates are summed the same way on every replay.
  rows.sort((a, b) => (a.amount_id < b.amount_id ? -1 : a.amount_id > b.amount_id ? 1 : 0));
  return rows.map((r) => ({
    customerId: r.customer_id,
    kind: r.kind,
    orderKey: r.order_key,
    valueDay: r.value_day,
    occurredAt: new Date(r.occurred_at).toISOString(),
    delta: r.delta,
    wasPending: r.was_pending === true,
  }));
}
