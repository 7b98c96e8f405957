import { z } from 'zod';

/**
 * The largest global position: every read side keeps positions in PostgreSQL `bigint`s (checkpoints,
 * seals, cursors), so a larger number names nothing that could ever exist.
 */
export const MAX_GLOBAL_POSITION = 2n ** 63n - 1n;

/** Decimal digits of a position as written (no sign, no leading zero). */
const POSITION_DIGITS = /^(0|[1-9][0-9]{0,18})$/;

/**
 * A global position as clients write it: a decimal string (JSON numbers lose precision past 2^53, and
 * PostgreSQL positions are `xid << 20`). The bound is checked only on digits: zod runs a refinement
 * even after the pattern failed, and `BigInt` of any other text throws (a 500 for `"abc"`).
 */
export const GlobalPositionText = z
  .string()
  .regex(POSITION_DIGITS, `a global position as a decimal string from 0 to ${MAX_GLOBAL_POSITION}, e.g. "123"`)
  .refine((text) => !POSITION_DIGITS.test(text) || BigInt(text) <= MAX_GLOBAL_POSITION, `a global position from 0 to ${MAX_GLOBAL_POSITION}`);
