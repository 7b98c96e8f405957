import { sql, type QueryExecutorProvider, type Transaction } from 'kysely';
import type { Row } from './rows.ts';

/**
 * `pipeline_stages` and `pipeline_months`: the open deals counted and summed (amount, weighted amount)
 * per owner, stage or expected-close month, and currency. Kept by the deals projection in the batch's
 * transaction: before a batch it notes the share of each deal the batch touches, after it the share
 * each has then, and adds the difference (numeric sums, exact). Groups back at 0 are deleted, so the
 * rows are the same whatever the batch boundaries. GET /pipeline reads them (projections/queries/deals.ts)
 * instead of every open deal; the tables grow with owners, months and currencies, not with deals.
 */
export const PIPELINE_STAGES = 'pipeline_stages';
export const PIPELINE_MONTHS = 'pipeline_months';

const OPEN = `stage NOT IN ('won', 'lost')`;

export async function migratePipeline(db: QueryExecutorProvider, schema: string): Promise<void> {
  for (const [table, group] of [
    [PIPELINE_STAGES, 'stage'],
    [PIPELINE_MONTHS, 'month'],
  ] as const) {
    await sql`CREATE TABLE IF NOT EXISTS ${sql.id(schema, table)} (
      group_key text PRIMARY KEY,
      owner_id text NOT NULL,
      ${sql.id(group)} text NOT NULL,
      currency char(3) NOT NULL,
      deal_count integer NOT NULL,
      amount numeric NOT NULL,
      weighted_amount numeric NOT NULL
    )`.execute(db);
  }
  // Open deals in other currencies than the base one are converted one by one: found through this index.
  await sql`CREATE INDEX IF NOT EXISTS deals_open_currency_idx ON ${sql.id(schema, 'deals')} (currency) WHERE ${sql.raw(OPEN)}`.execute(db);
}

/** What a deal row counts for in the pipeline, as loaded before a batch (null: closed). */
export interface PipelineShare {
  owner_id: string;
  stage: string;
  month: string;
  currency: string;
  amount: string;
  probability: string;
}

export const pipelineShareOf = (row: Row): PipelineShare | null =>
  row.stage === 'won' || row.stage === 'lost'
    ? null
    : {
        owner_id: String(row.owner_id),
        stage: String(row.stage),
        month: String(row.expected_close_date).slice(0, 7),
        currency: String(row.currency),
        amount: String(row.amount),
        probability: String(row.probability),
      };

/**
 * Adds to the pipeline tables the shares the deals `ids` have now (read from `deals`, flushed) less
 * the shares they had before the batch.
 */
export async function applyPipelineChanges(trx: Transaction<any>, schema: string, before: readonly PipelineShare[], ids: readonly string[]): Promise<void> {
  if (before.length === 0 && ids.length === 0) return;
  const t = (name: string) => sql.id(schema, name);
  const changes = sql`(SELECT 1 AS n, owner_id, stage, to_char(expected_close_date, 'YYYY-MM') AS month, currency, amount, weighted_amount AS weighted
      FROM ${t('deals')} WHERE deal_id = ANY(CAST(${[...ids]} AS uuid[])) AND ${sql.raw(OPEN)}
    UNION ALL
    SELECT -1, b.owner_id, b.stage, b.month, b.currency::char(3), b.amount, round(b.amount * b.probability, 4)
      FROM jsonb_to_recordset(CAST(${JSON.stringify(before)} AS jsonb)) AS b(owner_id text, stage text, month text, currency text, amount numeric, probability numeric)) c`;
  for (const [table, group] of [
    [PIPELINE_STAGES, 'stage'],
    [PIPELINE_MONTHS, 'month'],
  ] as const) {
    const g = sql.id(group);
    await sql`INSERT INTO ${t(table)} AS p (group_key, owner_id, ${g}, currency, deal_count, amount, weighted_amount)
      SELECT jsonb_build_array(c.owner_id, c.${g}, c.currency)::text, c.owner_id, c.${g}, c.currency, sum(c.n), sum(c.n * c.amount), sum(c.n * c.weighted)
      FROM ${changes} GROUP BY c.owner_id, c.${g}, c.currency
      HAVING sum(c.n) <> 0 OR sum(c.n * c.amount) <> 0 OR sum(c.n * c.weighted) <> 0
      ON CONFLICT (group_key) DO UPDATE SET deal_count = p.deal_count + EXCLUDED.deal_count, amount = p.amount + EXCLUDED.amount,
        weighted_amount = p.weighted_amount + EXCLUDED.weighted_amount`.execute(trx);
    await sql`DELETE FROM ${t(table)} WHERE deal_count = 0`.execute(trx);
  }
}
