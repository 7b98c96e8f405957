import { divideRounded, minorOfNumeric, numericOf } from '../shared/money.ts';
import { RATE_DECIMALS } from '../domain/exchange-rate/events.ts';
import { ratioOf } from '../projections/read-models/campaign-fold.ts';
import type { ProjectedEvent } from '../projections/projection.ts';

/**
 * Base-currency figures of a record as of an instant, converted in memory as the live views convert in
 * SQL (projections/queries/exchange-rates.ts): each amount at the latest rate with `validFrom` at or
 * before its business time, rounded half away from zero to 4 decimals, then summed; an amount in the
 * base currency as it is; one no rate covers makes the sum unknown (null) and is named
 * ('JPY 2026-03'). Which rates count is the caller's (audit/as-of.ts): those recorded by then on the
 * record axis, as `crm replay --as-of` has them; every rate known now on the business axis.
 */

/** An amount in its own currency at its business time. */
export type MoneyLine = { currency: string; minor: bigint; at: number };

/** A currency's rates against the base currency, by `validFrom` (the latest fact for each), oldest first. */
export type Rates = ReadonlyMap<string, readonly { validFrom: number; rate: bigint }[]>;

/** What an as-of answer needs to convert: the base currency and the rates that count. */
export type Conversion = { baseCurrency: string; rates: Rates };

const RATE_SCALE = 10n ** BigInt(RATE_DECIMALS);

/** '1.0842' -> 10842000000 (units of 10^-10). */
const scaledRate = (rate: string): bigint => {
  const [whole = '0', fraction = ''] = rate.split('.');
  return BigInt(whole) * RATE_SCALE + BigInt(fraction.padEnd(RATE_DECIMALS, '0').slice(0, RATE_DECIMALS) || '0');
};

/** The rates of `ExchangeRateSet` events against `baseCurrency`, in the order given (a later fact for the same `validFrom` corrects the earlier). */
export const ratesOf = (events: readonly ProjectedEvent[], baseCurrency: string): Rates => {
  const byCurrency = new Map<string, Map<number, bigint>>();
  for (const { event } of events) {
    if (event.type !== 'ExchangeRateSet' || event.data.baseCurrency !== baseCurrency) continue;
    const facts = byCurrency.get(event.data.currency) ?? new Map<number, bigint>();
    facts.set(Date.parse(event.data.validFrom), scaledRate(event.data.rate));
    byCurrency.set(event.data.currency, facts);
  }
  return new Map(
    [...byCurrency].map(([currency, facts]) => [
      currency,
      [...facts].map(([validFrom, rate]) => ({ validFrom, rate })).sort((a, b) => a.validFrom - b.validFrom),
    ]),
  );
};

/** 'JPY 2026-03': the currency and UTC month of an amount no rate covers. */
const missingLabelOf = (line: MoneyLine): string => `${line.currency} ${new Date(line.at).toISOString().slice(0, 7)}`;

/** An amount in the base currency (ten-thousandths), or null when no rate covers it. */
const inBaseOf = (line: MoneyLine, { baseCurrency, rates }: Conversion): bigint | null => {
  if (line.currency === baseCurrency) return line.minor;
  const valid = (rates.get(line.currency) ?? []).filter((r) => r.validFrom <= line.at).at(-1);
  return valid ? divideRounded(line.minor * valid.rate, RATE_SCALE) : null;
};

/** The sum in the base currency (ten-thousandths; null while a rate is missing) and the missing rates' labels. */
export const baseSumOf = (lines: readonly MoneyLine[], conversion: Conversion): { sum: bigint | null; missingRates: string[] } => {
  let sum: bigint | null = 0n;
  const missing = new Set<string>();
  for (const line of lines) {
    const converted = inBaseOf(line, conversion);
    if (converted === null) missing.add(missingLabelOf(line));
    else if (sum !== null) sum += converted;
  }
  return { sum: missing.size > 0 ? null : sum, missingRates: [...missing].sort() };
};

/** The net amount in each currency the lines are in, currencies in alphabetical order, major units. */
export const sumsByCurrency = (lines: readonly MoneyLine[]): Record<string, number> => {
  const sums = new Map<string, bigint>();
  for (const { currency, minor } of lines) sums.set(currency, (sums.get(currency) ?? 0n) + minor);
  return Object.fromEntries([...sums].sort(([a], [b]) => (a < b ? -1 : 1)).map(([currency, minor]) => [currency, Number(numericOf(minor))]));
};

/** Ten-thousandths as the API gives a base figure: a number, or null. */
export const baseNumber = (minor: bigint | null): number | null => (minor === null ? null : Number(numericOf(minor)));

/** A money line of a stored numeric amount at an instant. */
export const moneyLine = (currency: string, amount: unknown, at: string | Date): MoneyLine => ({
  currency: currency.trim(),
  minor: minorOfNumeric(amount),
  at: new Date(at).getTime(),
});

/** (revenue - costs) / costs, 6 decimals, as the live campaign view: null without costs or while a rate is missing. */
export const roiOf = (revenue: bigint | null, costs: bigint | null): number | null =>
  revenue === null || costs === null || costs === 0n ? null : Number(ratioOf(revenue - costs, costs));
