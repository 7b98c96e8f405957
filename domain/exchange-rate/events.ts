import { z } from 'zod';
import { Currency } from '../money.ts';
import { IsoDateTime, SafeText } from '../shared.ts';

/** One stream per currency (`exchangerate-JPY`): its rates against the base currency, every fact kept. */
export const ExchangeRateStreamPrefix = 'exchangerate-';

/** The base currency when CRM_BASE_CURRENCY is not set: the one the demo data and most customers use. */
export const DEFAULT_BASE_CURRENCY = 'EUR';

/** Digits of a rate: at most 10 before and 10 after the point (numeric(20,10) in the read models). */
export const RATE_DECIMALS = 10;
export const MAX_RATE = 9_999_999_999;

/**
 * A rate as stored: a canonical positive decimal string ('0.0061', '1.0842'), never a binary float,
 * so sums in SQL convert with exact decimal arithmetic.
 */
export const RateDecimal = SafeText.regex(/^(0|[1-9]\d{0,9})(\.\d{0,9}[1-9])?$/, 'a positive decimal with at most 10 decimals').refine(
  (s) => /[1-9]/.test(s),
  'must be greater than 0',
);

/**
 * `rate` units of `baseCurrency` buy one unit of `currency` from `validFrom` (business time) until the
 * next rate's `validFrom`. Setting a rate again for the same `validFrom` is a correction: the newer
 * fact supersedes the earlier one (`previousRate`), and both stay in the history.
 */
export const ExchangeRateSet = z.object({
  currency: Currency,
  baseCurrency: Currency,
  rate: RateDecimal,
  validFrom: IsoDateTime,
  /** The rate this one corrects (same `validFrom`), null for a new rate. */
  previousRate: RateDecimal.nullable(),
});

export const exchangeRateEventSchemas = { ExchangeRateSet } as const;

type Schemas = typeof exchangeRateEventSchemas;
export type ExchangeRateEvent = { [K in keyof Schemas]: { type: K; data: z.infer<Schemas[K]> } }[keyof Schemas];
