import { sql, type QueryExecutorProvider } from 'kysely';
import { CUSTOMER_COUNTERS } from './tables.ts';

/**
 * `CustomerMerged`: the primary absorbs the duplicate's analytics (they are one person). The
 * duplicate's purchase days and dated activity are added to the primary's (same day: values and
 * counts summed), its feedback and deals now count for the primary, its counters are added and the
 * primary's purchase summary is recomputed from the merged days. Then the duplicate's rows go.
 *
 * This is the one event whose cost grows with history (the duplicate's days are moved); merges are
 * rare. Runs in SQL on flushed tables, so the caller must flush its row cache before and drop it after.
 */
export async function mergeCustomers(trx: QueryExecutorProvider, schema: string, primaryId: string, duplicateId: string, modelSchema: string): Promise<void> {
  if (primaryId === duplicateId) return;
  const t = (name: string) => sql.id(schema, name);
  const { rows } = await sql<{ n: number }>`SELECT count(*)::int AS n FROM ${t('analytics_customer')} WHERE customer_id = ${duplicateId}::uuid`.execute(trx);
  if (rows[0]!.n === 0) return;
  // A primary with no analytics row yet (no event of its own) starts empty.
  await sql`INSERT INTO ${t('analytics_customer')} (customer_id) VALUES (${primaryId}::uuid) ON CONFLICT (customer_id) DO NOTHING`.execute(trx);

  await sql`INSERT INTO ${t('analytics_purchase_day')} AS pd (purchase_day_id, customer_id, day, orders, value)
    SELECT ${primaryId} || '|' || to_char(day, 'YYYY-MM-DD'), ${primaryId}::uuid, day, orders, value
    FROM ${t('analytics_purchase_day')} WHERE customer_id = ${duplicateId}::uuid
    ON CONFLICT (purchase_day_id) DO UPDATE SET orders = pd.orders + EXCLUDED.orders, value = pd.value + EXCLUDED.value`.execute(trx);
  await sql`DELETE FROM ${t('analytics_purchase_day')} WHERE customer_id = ${duplicateId}::uuid`.execute(trx);

  await sql`INSERT INTO ${t('analytics_activity')} AS a (activity_id, customer_id, day, kind, count)
    SELECT ${primaryId} || '|' || to_char(day, 'YYYY-MM-DD') || '|' || kind, ${primaryId}::uuid, day, kind, count
    FROM ${t('analytics_activity')} WHERE customer_id = ${duplicateId}::uuid
    ON CONFLICT (activity_id) DO UPDATE SET count = a.count + EXCLUDED.count`.execute(trx);
  await sql`DELETE FROM ${t('analytics_activity')} WHERE customer_id = ${duplicateId}::uuid`.execute(trx);

  // Orders keep the duplicate's key (a later refund of one is recorded on the duplicate, whose stream
  // holds the order) but count for the primary: such a refund finds there whose figures it lowers.
  // Feedback and deals move to the primary.
  await sql`UPDATE ${t('analytics_order')} SET customer_id = ${primaryId}::uuid WHERE customer_id = ${duplicateId}::uuid`.execute(trx);
  await sql`UPDATE ${t('analytics_feedback')} SET customer_id = ${primaryId}::uuid WHERE customer_id = ${duplicateId}::uuid`.execute(trx);
  await sql`UPDATE ${t('analytics_deal')} SET customer_id = ${primaryId}::uuid WHERE customer_id = ${duplicateId}::uuid`.execute(trx);
  // The duplicate's amounts count for the primary now: a rate set later converts them into the primary's figures.
  await sql`UPDATE ${t('analytics_amount')} SET customer_id = ${primaryId}::uuid WHERE customer_id = ${duplicateId}::uuid`.execute(trx);

  await sql`UPDATE ${t('analytics_customer')} p SET
      ${sql.join(CUSTOMER_COUNTERS.map((c) => sql`${sql.id(c)} = p.${sql.id(c)} + d.${sql.id(c)}`))},
      currency = CASE WHEN d.first_purchase_at IS NOT NULL AND (p.first_purchase_at IS NULL
          OR (d.first_purchase_at, d.currency) < (p.first_purchase_at, p.currency)) THEN d.currency ELSE p.currency END,
      first_purchase_at = least(p.first_purchase_at, d.first_purchase_at),
      registered_at = least(p.registered_at, d.registered_at),
      last_activity_day = greatest(p.last_activity_day, d.last_activity_day),
      last_event_at = greatest(p.last_event_at, d.last_event_at)
    FROM ${t('analytics_customer')} d WHERE p.customer_id = ${primaryId}::uuid AND d.customer_id = ${duplicateId}::uuid`.execute(trx);
  // The purchase summary from the merged days (first/last day, days, net value, first day's value).
  await sql`UPDATE ${t('analytics_customer')} p SET
      first_day = s.first_day, last_day = s.last_day, purchase_days = s.days, total_value = s.total, first_day_value = s.first_value,
      cohort = to_char(s.first_day, 'YYYY-MM')
    FROM (SELECT min(day) AS first_day, max(day) AS last_day, count(*)::int AS days, sum(value) AS total,
            (array_agg(value ORDER BY day))[1] AS first_value
          FROM ${t('analytics_purchase_day')} WHERE customer_id = ${primaryId}::uuid) s
    WHERE p.customer_id = ${primaryId}::uuid AND s.days > 0`.execute(trx);
  // The last purchase day of each month, from the merged days (analytics/retention-counts.ts).
  await sql`UPDATE ${t('analytics_customer')} SET purchase_months = coalesce((SELECT array_agg(m.last ORDER BY m.last)
      FROM (SELECT max(day) - DATE '1970-01-01' AS last FROM ${t('analytics_purchase_day')} WHERE customer_id = ${primaryId}::uuid
        GROUP BY to_char(day, 'YYYY-MM')) m), '{}') WHERE customer_id = ${primaryId}::uuid`.execute(trx);
  await sql`DELETE FROM ${t('analytics_customer')} WHERE customer_id = ${duplicateId}::uuid`.execute(trx);
  await sql`DELETE FROM ${sql.id(modelSchema, 'analytics_scores')} WHERE customer_id = ${duplicateId}::uuid`.execute(trx);
}
