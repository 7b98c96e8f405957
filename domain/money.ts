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

export const Amount = z
  .number()
  .finite()
  .nonnegative()
  .max(MAX_AMOUNT)
  .refine((n) => Number.isInteger(Math.round(n * MONEY_SCALE)) && Math.abs(n * MONEY_SCALE - Math.round(n * MONEY_SCALE)) < 1e-6, {
    message: 'at most 4 decimal places',
  })
  .overwrite(toFourDecimals);

export const Currency = SafeText.regex(/^[A-Z]{3}$/, 'an ISO 4217 code such as EUR');
