import { z } from 'zod';
import { SafeText } from './shared.ts';

/**
 * Money travels as a JSON number in major units (120.5) with at most 4 decimals (every ISO 4217
 * currency fits). Domain arithmetic works in integer ten-thousandths so sums never drift.
 */
export const MONEY_SCALE = 10_000;
// Amounts in ten-thousandths stay below 2^53 (9.007e15), so integer arithmetic on them is exact.
export const MAX_AMOUNT = 900_000_000_000;

export const Amount = z
  .number()
  .finite()
  .nonnegative()
  .max(MAX_AMOUNT)
  .refine((n) => Number.isInteger(Math.round(n * MONEY_SCALE)) && Math.abs(n * MONEY_SCALE - Math.round(n * MONEY_SCALE)) < 1e-6, {
    message: 'at most 4 decimal places',
  });

export const Currency = SafeText.regex(/^[A-Z]{3}$/, 'an ISO 4217 code such as EUR');

export const toMinor = (amount: number): number => Math.round(amount * MONEY_SCALE);
export const fromMinor = (minor: number): number => minor / MONEY_SCALE;
