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

export const DATABASE_TIMEOUT_DOCS: readonly { name: string; default: string; meaning: string }[] = [
  { name: 'CRM_DB_STATEMENT_TIMEOUT_MS', default: '5000', meaning: 'statement_timeout of API and projection connections' },
  { name: 'CRM_DB_LONG_STATEMENT_TIMEOUT_MS', default: '600000', meaning: 'statement_timeout of rebuild, replay, verify and fit connections' },
  { name: 'CRM_DB_LOCK_TIMEOUT_MS', default: '2000', meaning: 'lock_timeout of every connection' },
  {
    name: 'CRM_DB_IDLE_IN_TRANSACTION_TIMEOUT_MS',
    default: '60000',
    meaning: 'idle_in_transaction_session_timeout: the server ends a session left in a transaction this long (a client gone without a word)',
  },
  { name: 'CRM_DB_CONNECT_TIMEOUT_MS', default: '3000', meaning: 'longest wait to open a connection or get a free one from the pool' },
  {
    name: 'CRM_REQUEST_TIMEOUT_MS',
    default: '10000',
    meaning: 'an HTTP request not answered by then gets 503 (commands: outcome unknown, retry with the same Idempotency-Key)',
  },
];
