import { z } from 'zod';
import { isIsoCurrency } from './currencies.ts';
import { SafeText } from './shared.ts';

/**
 * Money travels as a JSON number in major units (120.5) with at most 4 decimals (every ISO 4217
 * currency fits). Domain arithmetic works in integer ten-thousandths so sums never drift.
 */
export const MONEY_SCALE = 10_000;
// Amounts in ten-thousandths stay below 2^53 (9.007e15), so integer arithmetic on them is exact.
export const MAX_AMOUNT = 900_000_000_000;

/** Below this, `amount * 10_000` rounds to the right ten-thousandths with room to spare (its error stays under 0.02). */
const SCALED_EXACTLY_BELOW = 2 ** 33;
/** Major units and at most 4 decimals, as a number's shortest spelling writes them (`899999999999.001`). */
const FOUR_DECIMALS_SPELT = /^(-?)(\d+)(?:\.(\d{1,4}))?$/;

/**
 * An amount in ten-thousandths. Large amounts are read from their spelling, as PostgreSQL's numeric
 * reads the JSON an event holds: scaled by a multiplication, 17% of the 3-decimal amounts above
 * 2^39 came out a ten-thousandth off (899999999990.003 as 8999999999900031), so a refund of a whole
 * order could be refused as exceeding what was left.
 */
export const toMinor = (amount: number): number => {
  if (Math.abs(amount) < SCALED_EXACTLY_BELOW) return Math.round(amount * MONEY_SCALE);
  const spelt = FOUR_DECIMALS_SPELT.exec(String(amount));
  if (!spelt) return Math.round(amount * MONEY_SCALE);
  const minor = Number(spelt[2]) * MONEY_SCALE + Number((spelt[3] ?? '').padEnd(4, '0'));
  return spelt[1] ? -minor : minor;
};
export const fromMinor = (minor: number): number => minor / MONEY_SCALE;

/**
 * An amount within float noise of 4 decimals (`0.1 + 0.2` is 0.30000000000000004) is accepted as those
 * 4 decimals, and carried so: the read models hold numeric(28,4), so an event keeping 0.30000000000000004,
 * 1.00000000001 or 1e-320 showed in the audit history, the subject access export and integration events
 * an amount no read model, export or report had (0.3, 1, 0). `-0` is 0. A deal's probability
 * (numeric(5,4)) is carried at the same 4 decimals.
 */
export const toFourDecimals = (value: number): number => fromMinor(toMinor(value)) + 0;

/** Decimals of a number's shortest spelling (how JSON.parse read it back, `1234567.89`); undefined in exponent form. */
const spelledDecimals = (value: number): number | undefined => {
  const text = String(value);
  if (text.includes('e')) return undefined;
  const point = text.indexOf('.');
  return point < 0 ? 0 : text.length - point - 1;
};

/**
 * Whether `value` is a number of at most 4 decimals. A number read from JSON is the double nearest
 * the text sent, whose shortest spelling is that text (`1234567.89`, though times 10,000 it is
 * 12345678899.999998): its decimals are counted. An amount computed by the client (`0.1 + 0.2` is
 * 0.30000000000000004) is taken within float noise of 4 decimals: four units in the last place of
 * the scaled value, at least 1e-6, and never as much as a twentieth of a ten-thousandth, so that a
 * fifth decimal stays refused at any size (a tolerance growing with the value took
 * 123456789012.34567 and stored 123456789012.3457). Above about 10^11 a double cannot hold every
 * fifth decimal apart from its neighbours: 899999999999.99995 is read as 900000000000 before any check.
 */
export const hasAtMostFourDecimals = (value: number): boolean => {
  const decimals = spelledDecimals(value);
  if (decimals !== undefined && decimals <= 4) return true;
  const scaled = value * MONEY_SCALE;
  return Math.abs(scaled - Math.round(scaled)) < Math.min(0.05, Math.max(1e-6, Math.abs(scaled) * 4 * Number.EPSILON));
};

export const Amount = z
  .number()
  .finite()
  .nonnegative()
  .max(MAX_AMOUNT)
  .refine(hasAtMostFourDecimals, { message: 'at most 4 decimal places' })
  .overwrite(toFourDecimals);

/** From 2^39 up, doubles lie further apart than a ten-thousandth: a fourth decimal sent there arrives as its neighbour's. */
export const FOURTH_DECIMAL_CARRIED_BELOW = 2 ** 39;

/**
 * An amount as commands take it: from 549,755,813,888 up at most 3 decimals, since a JSON number
 * cannot carry a fourth there (899999999999.0003 was read, and recorded, as 899999999999.0002).
 * Events keep `Amount`: those recorded before this rule stay readable.
 */
export const CommandAmount = Amount.refine((value) => value < FOURTH_DECIMAL_CARRIED_BELOW || (spelledDecimals(value) ?? 4) <= 3, {
  message: `at most 3 decimal places from ${FOURTH_DECIMAL_CARRIED_BELOW.toLocaleString('en')} up: a JSON number cannot carry a fourth decimal there`,
});

/** A currency as events hold it: three capitals (events recorded before commands checked the code stay readable). */
// Aborting: a value that is not three capitals is told so once, not also that ISO 4217 lacks it.
export const Currency = SafeText.regex(/^[A-Z]{3}$/, { message: 'an ISO 4217 code such as EUR', abort: true });

/** A currency as commands take it: a code ISO 4217 lists (domain/currencies.ts). */
export const IsoCurrency = Currency.refine(isIsoCurrency, { message: 'not an ISO 4217 currency code: write one such as EUR, USD or JPY' });
