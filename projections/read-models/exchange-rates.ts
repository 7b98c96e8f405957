import { sql, type Kysely, type QueryExecutorProvider } from 'kysely';
import { DEFAULT_BASE_CURRENCY } from '../../domain/exchange-rate/events.ts';
import type { ProjectedEvent, Projection, ProjectionContext } from '../projection.ts';
import { viewsOf } from '../reporting.ts';
import { occurredAt, type Bigint, type Instant } from './common.ts';
import { ensureSchema, insertRows, RowSet, type TableSpec } from './rows.ts';

/** SQL type of a rate: 10 whole and 10 fractional digits, exact (domain/exchange-rate/events.ts). */
export const RATE_TYPE = 'numeric(20,10)';

/**
 * `exchange_rates`: the rate in force from each `valid_from`, per (base currency, currency); a
 * correction for the same `valid_from` replaces the row (`corrections` counts them). Base-currency
 * figures join it at query time (projections/queries/exchange-rates.ts), so a rate set late or
 * corrected reaches every figure at once and no other table depends on the order rates arrived in.
 * `exchange_rate_history`: every ExchangeRateSet, superseded ones included, for auditors.
 */
export type ExchangeRateRow = {
  /** `base:currency:validFrom` (rateKeyOf). */
  rate_key: string;
  base_currency: string;
  currency: string;
  valid_from: Instant;
  /** numeric(20,10): a decimal string. */
  rate: string;
  previous_rate: string | null;
  corrections: number;
  set_at: Instant;
  event_id: string;
  position: Bigint;
};

export type ExchangeRateHistoryRow = Omit<ExchangeRateRow, 'rate_key' | 'corrections'> & {
  actor: string;
  reason: string | null;
};

/** `base_currency`: one row, the configured base currency (see `ensureBaseCurrencyTable`). */
export type BaseCurrencyRow = {
  only_row: boolean;
  currency: string;
};

export const EXCHANGE_RATES: TableSpec<ExchangeRateRow> = {
  table: 'exchange_rates',
  key: 'rate_key',
  keyType: 'text',
  columns: ['rate_key', 'base_currency', 'currency', 'valid_from', 'rate', 'previous_rate', 'corrections', 'set_at', 'event_id', 'position'],
};

export const EXCHANGE_RATE_HISTORY: TableSpec<ExchangeRateHistoryRow> = {
  table: 'exchange_rate_history',
  key: 'event_id',
  keyType: 'uuid',
  columns: ['event_id', 'base_currency', 'currency', 'valid_from', 'rate', 'previous_rate', 'set_at', 'actor', 'reason', 'position'],
};

/** The tables this projection owns (and `base_currency`, see `ensureBaseCurrencyTable`), for kysely. */
export interface ExchangeRateTables {
  exchange_rates: ExchangeRateRow;
  exchange_rate_history: ExchangeRateHistoryRow;
  base_currency: BaseCurrencyRow;
}

async function migrate(db: Kysely<ExchangeRateTables>, schema: string): Promise<void> {
  await ensureSchema(db, schema);
  const t = sql.id(schema, 'exchange_rates');
  await sql`CREATE TABLE IF NOT EXISTS ${t} (
    rate_key text PRIMARY KEY,
    base_currency char(3) NOT NULL,
    currency char(3) NOT NULL,
    valid_from timestamptz NOT NULL,
    rate ${sql.raw(RATE_TYPE)} NOT NULL CHECK (rate > 0),
    previous_rate ${sql.raw(RATE_TYPE)},
    corrections integer NOT NULL,
    set_at timestamptz NOT NULL,
    event_id uuid NOT NULL,
    position bigint NOT NULL
  )`.execute(db);
  // The lookup of every conversion: the latest valid_from <= the amount's business time, one index probe.
  await sql`CREATE UNIQUE INDEX IF NOT EXISTS exchange_rates_lookup_idx ON ${t} (base_currency, currency, valid_from)`.execute(db);
  await sql`CREATE TABLE IF NOT EXISTS ${sql.id(schema, 'exchange_rate_history')} (
    event_id uuid PRIMARY KEY,
    base_currency char(3) NOT NULL,
    currency char(3) NOT NULL,
    valid_from timestamptz NOT NULL,
    rate ${sql.raw(RATE_TYPE)} NOT NULL,
    previous_rate ${sql.raw(RATE_TYPE)},
    set_at timestamptz NOT NULL,
    actor text NOT NULL,
    reason text,
    position bigint NOT NULL
  )`.execute(db);
  await ensureBaseCurrencyTable(db, schema);
  await sql`CREATE INDEX IF NOT EXISTS exchange_rate_history_currency_idx ON ${sql.id(schema, 'exchange_rate_history')} (currency, position)`.execute(db);
}

/**
 * `base_currency`: the configured base currency, for the reporting views. Not event-sourced: the
 * composition root records CRM_BASE_CURRENCY here at start (EUR until then); outside the projection's
 * `tables`, so rebuilds and swaps leave it in place.
 */
async function ensureBaseCurrencyTable(db: QueryExecutorProvider, schema: string): Promise<void> {
  await sql`CREATE TABLE IF NOT EXISTS ${sql.id(schema, 'base_currency')} (
    only_row boolean PRIMARY KEY DEFAULT true CHECK (only_row),
    currency char(3) NOT NULL
  )`.execute(db);
  await sql`INSERT INTO ${sql.id(schema, 'base_currency')} (currency) VALUES (${DEFAULT_BASE_CURRENCY}) ON CONFLICT DO NOTHING`.execute(db);
}

/** Records the configured base currency where the reporting views read it (cli/app.ts, at start). */
export async function recordBaseCurrency(db: QueryExecutorProvider, schema: string, currency: string): Promise<void> {
  await ensureSchema(db, schema);
  await ensureBaseCurrencyTable(db, schema);
  await sql`INSERT INTO ${sql.id(schema, 'base_currency')} (only_row, currency) VALUES (true, ${currency})
    ON CONFLICT (only_row) DO UPDATE SET currency = EXCLUDED.currency`.execute(db);
}

/** One row per (base, currency, instant): '+01:00' and 'Z' spellings of one instant are the same rate. */
export const rateKeyOf = (baseCurrency: string, currency: string, validFrom: string): string =>
  `${baseCurrency}:${currency}:${new Date(validFrom).toISOString()}`;

async function apply({ trx, schema }: ProjectionContext, events: ProjectedEvent[]): Promise<void> {
  const rates = new RowSet(trx, schema, EXCHANGE_RATES);
  const history: ExchangeRateHistoryRow[] = [];
  const keys: string[] = [];
  for (const { event } of events)
    if (event.type === 'ExchangeRateSet') keys.push(rateKeyOf(event.data.baseCurrency, event.data.currency, event.data.validFrom));
  await rates.load(keys);
  for (const e of events) {
    if (e.event.type !== 'ExchangeRateSet') continue;
    const d = e.event.data;
    const key = rateKeyOf(d.baseCurrency, d.currency, d.validFrom);
    const before = rates.get(key);
    rates.put({
      rate_key: key,
      base_currency: d.baseCurrency,
      currency: d.currency,
      valid_from: new Date(d.validFrom).toISOString(),
      rate: d.rate,
      previous_rate: d.previousRate,
      corrections: before ? before.corrections + 1 : 0,
      set_at: occurredAt(e),
      event_id: e.id,
      position: e.position.toString(),
    });
    history.push({
      event_id: e.id,
      base_currency: d.baseCurrency,
      currency: d.currency,
      valid_from: new Date(d.validFrom).toISOString(),
      rate: d.rate,
      previous_rate: d.previousRate,
      set_at: occurredAt(e),
      actor: e.metadata.actor.userId,
      reason: e.metadata.reason ?? null,
      position: e.position.toString(),
    });
  }
  await rates.flush();
  if (history.length > 0) await insertRows(trx, schema, EXCHANGE_RATE_HISTORY, history);
}

export const exchangeRatesProjection: Projection = {
  name: 'exchange_rates',
  version: 1,
  tables: ['exchange_rates', 'exchange_rate_history'],
  filter: { streamPrefixes: ['exchangerate-'] },
  migrate,
  apply,
  reportingViews: viewsOf('exchange_rates'),
};
