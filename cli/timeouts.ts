import { z } from 'zod';
import type { DatabaseTimeouts } from '../runtime/config.ts';

export type { DatabaseTimeouts } from '../runtime/config.ts';

export const millis = (min: number, max: number, fallback: number) =>
  z.preprocess(
    (value: unknown) => (typeof value === 'string' && value.trim() === '' ? undefined : value),
    z.coerce
      .number({ error: `milliseconds from ${min} to ${max}` })
      .int(`milliseconds from ${min} to ${max}`)
      .min(min, `milliseconds from ${min} to ${max}`)
      .max(max, `milliseconds from ${min} to ${max}`)
      .default(fallback),
  );

const HOUR = 3_600_000;

/** Part of cli/config.ts's environment schema. */
export const DATABASE_TIMEOUT_VARIABLES = {
  CRM_DB_STATEMENT_TIMEOUT_MS: millis(100, HOUR, 5_000),
  CRM_DB_LONG_STATEMENT_TIMEOUT_MS: millis(1_000, 24 * HOUR, 600_000),
  CRM_DB_LOCK_TIMEOUT_MS: millis(100, HOUR, 2_000),
  CRM_DB_IDLE_IN_TRANSACTION_TIMEOUT_MS: millis(1_000, 24 * HOUR, 60_000),
  CRM_DB_CONNECT_TIMEOUT_MS: millis(100, 600_000, 3_000),
  CRM_REQUEST_TIMEOUT_MS: millis(500, HOUR, 10_000),
};

type TimeoutEnv = { [K in keyof typeof DATABASE_TIMEOUT_VARIABLES]: number };

export const databaseTimeouts = (env: TimeoutEnv): DatabaseTimeouts => ({
  statementMs: env.CRM_DB_STATEMENT_TIMEOUT_MS,
  longStatementMs: env.CRM_DB_LONG_STATEMENT_TIMEOUT_MS,
  lockMs: env.CRM_DB_LOCK_TIMEOUT_MS,
  idleInTransactionMs: env.CRM_DB_IDLE_IN_TRANSACTION_TIMEOUT_MS,
  connectMs: env.CRM_DB_CONNECT_TIMEOUT_MS,
  requestMs: env.CRM_REQUEST_TIMEOUT_MS,
});
