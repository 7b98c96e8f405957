import { sql, type RawBuilder } from 'kysely';
import { DEFAULT_BASE_CURRENCY } from '../../domain/exchange-rate/events.ts';
import { isMissingColumn, isMissingTable } from '../../shared/sql.ts';
import { iso, listOf, type Page, type ReadModelSource } from './page.ts';
import { inOneSnapshot } from './snapshot.ts';
import type { ExchangeRateHistoryRow, ExchangeRateRow } from '../read-models/exchange-rates.ts';

/**
 * Base-currency figures. Amounts stay in their own currency in the read models, each with its business
 * time; the base figure is computed at query time from `exchange_rates` (the latest rate with
 * `valid_from <=` the amount's business time, one index probe each). So a rate set late or corrected
 * reaches every figure at once, and a replay gives the same rows whatever order rates arrived in.
 * Each amount is converted and rounded to 4 decimals, then summed.
 */

export const baseCurrencyOf = (source: ReadModelSource): string => source.baseCurrency ?? DEFAULT_BASE_CURRENCY;

/** The rate (base units per unit of `currency`) valid at `at`; NULL when none has been set. */
export const rateAt = (source: ReadModelSource, currency: RawBuilder<unknown>, at: RawBuilder<unknown>): RawBuilder<unknown> =>
  sql`(SELECT r.rate FROM ${sql.id(source.schema, 'exchange_rates')} r
    WHERE r.base_currency = ${baseCurrencyOf(source)} AND r.currency = ${currency} AND r.valid_from <= ${at}
    ORDER BY r.valid_from DESC LIMIT 1)`;

/** `amount` in the base currency at `at`: itself in the base currency, NULL when the rate is missing. */
export const inBase = (source: ReadModelSource, amount: RawBuilder<unknown>, currency: RawBuilder<unknown>, at: RawBuilder<unknown>): RawBuilder<unknown> =>
  sql`(CASE WHEN ${currency} = ${baseCurrencyOf(source)} THEN ${amount} ELSE round(${amount} * ${rateAt(source, currency, at)}, 4) END)`;

/** 'JPY 2026-03': the currency and UTC month of an amount that had no rate. */
export const missingLabel = (currency: RawBuilder<unknown>, at: RawBuilder<unknown>): RawBuilder<unknown> =>
  sql`(rtrim(${currency}) || ' ' || to_char(${at} AT TIME ZONE 'UTC', 'YYYY-MM'))`;

/** The month ('2026-03') of a `missingLabel` ('JPY 2026-03'). */
export const monthOfMissingLabel = (label: string): string => label.slice(label.lastIndexOf(' ') + 1);

/**
 * Rows of a lines table (`revenue_lines`, `campaign_money_lines`: amount, currency, occurred_at) as
 * the subquery `y`, each with `base_amount` (NULL: no rate) and `missing` (its 'JPY 2026-03' label then).
 */
export const convertedLines = (source: ReadModelSource, table: string, where: RawBuilder<unknown>): RawBuilder<unknown> =>
  sql`(SELECT x.*, CASE WHEN x.base_amount IS NULL THEN ${missingLabel(sql`x.currency`, sql`x.occurred_at`)} END AS missing
    FROM (SELECT l.*, ${inBase(source, sql`l.amount`, sql`l.currency`, sql`l.occurred_at`)} AS base_amount
      FROM ${sql.id(source.schema, table)} l WHERE ${where}) x) y`;

/** Aggregates over rows that carry `base_amount` (NULL: missing rate) and `missing`: the sum, or NULL when any rate is missing, and the labels. */
export const baseSums = (columns: string[]): RawBuilder<unknown> =>
  sql.join(
    [
      ...columns.map((c) => sql`CASE WHEN bool_and(${sql.ref(c)} IS NOT NULL) THEN sum(${sql.ref(c)})::text END AS ${sql.ref(c)}`),
      sql`COALESCE(array_agg(DISTINCT missing ORDER BY missing) FILTER (WHERE missing IS NOT NULL), '{}') AS missing_rates`,
    ],
    sql`, `,
  );

/**
 * Runs a base-currency query, or answers `fallback()` while the read models it needs are not there
 * yet: after an upgrade the old tables keep serving while the new ones (with `revenue_lines`,
 * `amount_at`, ...) are rebuilt in a shadow schema, and queries must keep working meanwhile (invariant 6).
 */
export async function unlessRebuilding<T>(work: () => Promise<T>, fallback: () => T | Promise<T>): Promise<T> {
  try {
    return await work();
  } catch (error) {
    // The tables of the previous version: a table or a column of this one is not there.
    if (isMissingTable(error) || isMissingColumn(error)) return fallback();
    throw error;
  }
}

/** A base figure as JSON: a number, or null when a rate is missing. */
export const baseAmount = (value: unknown): number | null => (value === null || value === undefined ? null : Number(value));
export const missingRatesOf = (value: unknown): string[] => (Array.isArray(value) ? value.map(String) : []);

export type ExchangeRateView = {
  currency: string;
  baseCurrency: string;
  /** Units of the base currency per unit of `currency`. */
  rate: number;
  /** The same rate as its exact decimal text. */
  rateDecimal: string;
  validFrom: string;
  /** Business time it was set (for a correction: corrected). */
  setAt: string;
  /** The rate it corrected (same validFrom), when it is a correction. */
  previousRate: number | null;
  corrections: number;
};

export type ExchangeRateFact = Omit<ExchangeRateView, 'corrections'> & { actor: string; reason: string | null; position: string; eventId: string };

export interface ExchangeRateQuery {
  currency?: string;
  /** The rates valid at this instant (one per currency); without it, every rate and the history of corrections. */
  at?: string;
}

export type ExchangeRates = {
  baseCurrency: string;
  currency: string | null;
  at: string | null;
  rates: ExchangeRateView[];
  /** Without `at`: every fact recorded, corrections and superseded rates included, oldest first (the first 10 000). */
  history?: ExchangeRateFact[];
  /** False when the history has more facts than were returned: ask for one `currency` at a time. */
  historyComplete?: boolean;
};

/** Facts of the history in one answer (bounded; per currency it is rarely more than a few thousand). */
const HISTORY_LIMIT = 10_000;

/** A numeric(20,10) as its shortest decimal text ('1.0842000000' -> '1.0842'). */
const rateText = (text: string): string => (text.includes('.') ? text.replace(/0+$/, '').replace(/\.$/, '') : text);

const toRate = (r: Omit<ExchangeRateRow, 'rate_key' | 'event_id' | 'position'>): ExchangeRateView => ({
  currency: r.currency.trim(),
  baseCurrency: r.base_currency.trim(),
  rate: Number(r.rate),
  rateDecimal: rateText(r.rate),
  validFrom: iso(r.valid_from)!,
  setAt: iso(r.set_at)!,
  previousRate: r.previous_rate === null ? null : Number(r.previous_rate),
  corrections: r.corrections,
});

/** `GET /exchange-rates?currency=&at=`. */
export async function exchangeRates(source: ReadModelSource, query: ExchangeRateQuery = {}): Promise<ExchangeRates> {
  const base = baseCurrencyOf(source);
  const t = sql.id(source.schema, 'exchange_rates');
  const byCurrency = query.currency ? sql`AND r.currency = ${query.currency}` : sql``;
  if (query.at) {
    const { rows } = await sql<ExchangeRateRow>`SELECT DISTINCT ON (r.currency) r.* FROM ${t} r
      WHERE r.base_currency = ${base} ${byCurrency} AND r.valid_from <= ${query.at}::timestamptz
      ORDER BY r.currency, r.valid_from DESC`.execute(source.db);
    return { baseCurrency: base, currency: query.currency ?? null, at: query.at, rates: rows.map(toRate) };
  }
  // The rates and their history from one snapshot, so that the history holds every rate listed.
  const [rates, history] = await inOneSnapshot(source, ({ db }) =>
    Promise.all([
      sql<ExchangeRateRow>`SELECT r.* FROM ${t} r WHERE r.base_currency = ${base} ${byCurrency} ORDER BY r.currency, r.valid_from`.execute(db),
      sql<ExchangeRateHistoryRow>`SELECT r.* FROM ${sql.id(source.schema, 'exchange_rate_history')} r
        WHERE r.base_currency = ${base} ${byCurrency} ORDER BY r.position LIMIT ${HISTORY_LIMIT + 1}`.execute(db),
    ]),
  );
  return {
    baseCurrency: base,
    currency: query.currency ?? null,
    at: null,
    rates: rates.rows.map(toRate),
    historyComplete: history.rows.length <= HISTORY_LIMIT,
    history: history.rows.slice(0, HISTORY_LIMIT).map((r) => {
      const { corrections: _c, ...view } = toRate({ ...r, corrections: 0 });
      return { ...view, actor: r.actor, reason: r.reason, position: String(r.position), eventId: r.event_id };
    }),
  };
}

export interface ExchangeRateListQuery {
  currency?: string;
  limit?: number;
  cursor?: string;
}

/** A rate in force as a rates file holds it (`crm import-rates` reads it back): the exact decimal. */
export type ExchangeRateLine = { currency: string; rate: string; validFrom: string; reason: string | null; baseCurrency: string; setAt: string };

/**
 * `GET /exchange-rates/export`, `crm export exchange-rates`: every rate in force against the base
 * currency (a correction's, not the rate it corrected), oldest validFrom first. Imported into another
 * CRM it gives the same conversions, and imported again it records nothing (the same rates); the
 * corrections themselves stay in this CRM's history (`GET /exchange-rates`).
 */
export const listExchangeRates = (source: ReadModelSource, query: ExchangeRateListQuery = {}): Promise<Page<ExchangeRateLine>> => {
  const history = sql.id(source.schema, 'exchange_rate_history');
  const where: RawBuilder<unknown>[] = [
    sql`t.base_currency = ${baseCurrencyOf(source)}`,
    // The fact in force for its currency and validFrom: no later one corrected it.
    sql`NOT EXISTS (SELECT 1 FROM ${history} later WHERE later.base_currency = t.base_currency AND later.currency = t.currency
      AND later.valid_from = t.valid_from AND later.position > t.position)`,
  ];
  if (query.currency) where.push(sql`t.currency = ${query.currency}`);
  return listOf<ExchangeRateLine, ExchangeRateHistoryRow>(
    {
      source,
      table: 'exchange_rate_history',
      key: 'event_id',
      where,
      sorts: { validFrom: { expr: sql`t.valid_from`, type: 'timestamptz' } },
      defaultSort: 'validFrom',
    },
    query,
    (r) => ({
      currency: r.currency.trim(),
      rate: rateText(r.rate),
      validFrom: iso(r.valid_from)!,
      reason: r.reason,
      baseCurrency: r.base_currency.trim(),
      setAt: iso(r.set_at)!,
    }),
  );
};
