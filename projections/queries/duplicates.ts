import { sql } from 'kysely';
import type { ReadModelSource } from './page.ts';
import type { ReadScope } from './scope.ts';

export type DuplicateReason = 'email' | 'phone' | 'name';

export interface DuplicateGroup {
  /** What the customers share: the normalised email, the phone's digits, or the same name (case, punctuation and word order ignored). */
  reason: DuplicateReason;
  /** Oldest registration first: the usual primary of a merge. */
  customers: { id: string; name: string; email: string; phone: string | null; status: string; registeredAt: string; orderCount: number }[];
}

/**
 * `GET /customers/duplicates`: groups of active or inactive customers who are likely one person, for a
 * merge. Computed from the read model (which holds the decrypted profile until a forget erases it);
 * a full scan grouped three ways, which suits an occasional clean-up report, not a hot path.
 */
export async function likelyDuplicates(
  source: ReadModelSource,
  query: { limit?: number } = {},
  scope?: ReadScope | null,
): Promise<{ items: DuplicateGroup[] }> {
  // Only customers the caller may see are compared: a group never reveals a customer outside their scope.
  const visible = scope ? sql`AND owner_id = ANY(CAST(${[...scope.owners]} AS uuid[]))` : sql``;
  const limit = Math.min(Math.max(query.limit ?? 50, 1), 500);
  const t = sql.id(source.schema, 'customers');
  const { rows } = await sql<{ reason: DuplicateReason; ids: string[] }>`
    WITH c AS (
      SELECT customer_id, registered_at,
        lower(trim(email)) AS email_key,
        regexp_replace(coalesce(phone, ''), '[^0-9]', '', 'g') AS phone_key,
        array_to_string(ARRAY(SELECT w FROM unnest(regexp_split_to_array(lower(regexp_replace(name, '[^[:alnum:][:space:]]', ' ', 'g')), '[[:space:]]+')) AS w
          WHERE w <> '' ORDER BY w), ' ') AS name_key
      FROM ${t} WHERE status IN ('active', 'inactive') ${visible}
    ), groups AS (
      SELECT 'email' AS reason, array_agg(customer_id::text ORDER BY registered_at, customer_id) AS ids FROM c GROUP BY email_key HAVING count(*) > 1
      UNION ALL
      SELECT 'phone', array_agg(customer_id::text ORDER BY registered_at, customer_id) FROM c WHERE length(phone_key) >= 6 GROUP BY phone_key HAVING count(*) > 1
      UNION ALL
      SELECT 'name', array_agg(customer_id::text ORDER BY registered_at, customer_id) FROM c WHERE name_key <> '' GROUP BY name_key HAVING count(*) > 1
    )
    SELECT reason, ids FROM groups ORDER BY CASE reason WHEN 'email' THEN 0 WHEN 'phone' THEN 1 ELSE 2 END, ids[1] LIMIT ${limit}`.execute(source.db);
  const ids = [...new Set(rows.flatMap((r) => r.ids))];
  if (ids.length === 0) return { items: [] };
  const { rows: customers } = await sql<{
    customer_id: string;
    name: string;
    email: string;
    phone: string | null;
    status: string;
    registered_at: Date;
    order_count: number;
  }>`
    SELECT customer_id::text, name, email, phone, status, registered_at, order_count FROM ${t} WHERE customer_id = ANY(CAST(${ids} AS uuid[]))`.execute(
    source.db,
  );
  const byId = new Map(customers.map((c) => [c.customer_id, c]));
  return {
    items: rows.map((r) => ({
      reason: r.reason,
      customers: r.ids
        .map((id) => byId.get(id))
        .filter((c) => c !== undefined)
        .map((c) => ({
          id: c.customer_id,
          name: c.name,
          email: c.email,
          phone: c.phone,
          status: c.status,
          registeredAt: new Date(c.registered_at).toISOString(),
          orderCount: Number(c.order_count),
        })),
    })),
  };
}
