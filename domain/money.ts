import { z } from 'zod';
import { SafeText } from './shared.ts';

/**
 * Money travels as a JSON number in major units (120.5) with at most 4 decimals (every ISO 4217
 * currency fits). Domain arithmetic works in integer ten-thousandths so sums never drift.
 */
export const MONEY_SCALE = 10_000;
// Amounts in ten-thousandths stay below 2^53 (9.007e15), so integer arithmetic on them is exact.
export const MAX_AMOUNT = 900_000_000_000;

export const toMinor = (amount: number): number => Math.round(amount * MONEY_SCALE);
export const fromMinor = (minor: number): number => minor / MONEY_SCALE;

/**
 * An amount within float noise of 4 decimals (`0.1 + 0.2` is 0.30000000000000004) is accepted as those
 * 4 decimals, and carried so: the read models hold numeric(28,4), so an event keeping 0.30000000000000004,
 * 1.00000000001 or 1e-320 showed in the audit history, the subject access export and integration events
 * an amount no read model, export or report had (0.3, 1, 0). `-0` is 0. A deal's probability
 * (numeric(5,4)) is carried at the same 4 decimals.
 */
export const toFourDecimals = (value: number): number => fromMinor(toMinor(value)) + 0;

/**
 * Whether `value` is a number of at most 4 decimals, up to the noise of binary floats. The noise grows
 * with the value (a double carries about 16 significant digits: 1234567.89 times 10,000 is
 * 12345678899.999998), so the tolerance does too: a fixed 1e-6 refused about one in 18 two-decimal
 * amounts between one and two million ("at most 4 decimal places" for 1234567.89). Four units in the
 * last place of the scaled value, at least 1e-6; a fifth decimal (0.1 of a scaled unit) stays refused.
 */
export const hasAtMostFourDecimals = (value: number): boolean => {
  const scaled = value * MONEY_SCALE;
  return Math.abs(scaled - Math.round(scaled)) < Math.max(1e-6, Math.abs(scaled) * 4 * Number.EPSILON);
};

export const Amount = z
  .number()
  .finite()
  .nonnegative()
  .max(MAX_AMOUNT)
  .refine(hasAtMostFourDecimals, { message: 'at most 4 decimal places' })
  .overwrite(toFourDecimals);

export const Currency = SafeText.regex(/^[A-Z]{3}$/, 'an ISO 4217 code such as EUR');
