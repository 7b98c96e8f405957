import { sql } from 'kysely';
import { unlessRebuilding } from './exchange-rates.ts';
import { DUPLICATE_GROUP_ORDER, DUPLICATE_REASON_RANK } from '../read-models/customers.ts';
import { DUPLICATE_REASONS, INVISIBLE_NAME_CHARACTERS, MATCH_KEY_COLUMN, notInWordsSql, type DuplicateReason } from '../read-models/match-keys.ts';
import type { ReadModelSource } from './page.ts';
import type { ReadScope } from './scope.ts';

export type { DuplicateReason };

export interface DuplicateGroup {
  /** What the customers share: the normalised email, the phone's digits, or the same name (case, punctuation and word order ignored). */
  reason: DuplicateReason;
  /** Oldest registration first: the usual primary of a merge. */
  customers: { id: string; name: string; email: string; phone: string | null; status: string; registeredAt: string; orderCount: number }[];
}

/** Only customers the caller may see are compared: a group never reveals a customer outside their scope. */
const visibleTo = (scope: ReadScope | null | undefined) => (scope ? sql`AND owner_id = ANY(CAST(${[...scope.owners]} AS uuid[]))` : sql``);

type Groups = { reason: DuplicateReason; ids: string[] }[];

/** Ids in the report's order: email, phone, then name; within a reason, by the group's oldest customer. */
const IN_REPORT_ORDER = sql`ORDER BY ${DUPLICATE_REASON_RANK}, ids[1]`;

/**
 * Unrestricted, every member is seen: the first groups in the index's order are the page. Restricted to a
 * scope, each shared key is counted again among the members the caller may see.
 */
async function groupsByMatchKeys(source: ReadModelSource, limit: number, scope: ReadScope | null | undefined): Promise<Groups> {
  const groups = sql.id(source.schema, 'customer_duplicate_groups');
  const visible = visibleTo(scope);
  const candidates = scope
    ? sql`SELECT reason, match_key FROM ${groups}`
    : sql`SELECT reason, match_key FROM ${groups} ORDER BY ${DUPLICATE_GROUP_ORDER} LIMIT ${limit}`;
  const members = DUPLICATE_REASONS.map(
    (reason) => sql`SELECT g.reason, g.match_key, c.customer_id, c.registered_at
      FROM g JOIN ${sql.id(source.schema, 'customers')} c ON c.${sql.id(MATCH_KEY_COLUMN[reason])} = g.match_key WHERE g.reason = ${reason} ${visible}`,
  );
  const { rows } = await sql<Groups[number]>`
    WITH g AS MATERIALIZED (${candidates}), m AS (${sql.join(members, sql` UNION ALL `)}), groups AS (
      SELECT reason, CAST(array_agg(customer_id ORDER BY registered_at, customer_id) AS text[]) AS ids FROM m GROUP BY reason, match_key HAVING count(*) > 1
    )
    SELECT reason, ids FROM groups ${IN_REPORT_ORDER} LIMIT ${limit}`.execute(source.db);
  return rows;
}

/**
 * The report from the profiles alone, normalising every customer (a full scan): what answers while
 * the previous version's tables, without the match keys, serve during the rebuild that adds them.
 * The keys (read-models/match-keys.ts) are defined to give the same groups.
 */
export async function groupsByNormalisingEveryCustomer(source: ReadModelSource, limit: number, scope?: ReadScope | null): Promise<Groups> {
  const visible = visibleTo(scope);
  const { rows } = await sql<Groups[number]>`
    WITH c AS (
      SELECT customer_id, registered_at,
        lower(trim(email)) AS email_key,
        regexp_replace(coalesce(phone, ''), '[^0-9]', '', 'g') AS phone_key,
        array_to_string(ARRAY(SELECT w FROM unnest(string_to_array(lower(regexp_replace(normalize(regexp_replace(name, ${INVISIBLE_NAME_CHARACTERS}, '', 'g'), NFC), ${notInWordsSql()}, ' ', 'g')), ' ')) AS w
          WHERE w <> '' ORDER BY w COLLATE "C"), ' ') AS name_key
      FROM ${sql.id(source.schema, 'customers')} WHERE status IN ('active', 'inactive') ${visible}
    ), groups AS (
      SELECT 'email' AS reason, array_agg(customer_id::text ORDER BY registered_at, customer_id) AS ids FROM c GROUP BY email_key HAVING count(*) > 1
      UNION ALL
      SELECT 'phone', array_agg(customer_id::text ORDER BY registered_at, customer_id) FROM c WHERE length(phone_key) >= 6 GROUP BY phone_key HAVING count(*) > 1
      UNION ALL
      SELECT 'name', array_agg(customer_id::text ORDER BY registered_at, customer_id) FROM c WHERE name_key <> '' GROUP BY name_key HAVING count(*) > 1
    )
    SELECT reason, ids FROM groups ${IN_REPORT_ORDER} LIMIT ${limit}`.execute(source.db);
  return rows;
}

/**
 * `GET /customers/duplicates`: groups of active or inactive customers who are likely one person, for a
 * merge, by email, then phone, then name, each reason's groups in the order of their oldest customer.
 * The projection keeps each customer's match keys (read-models/match-keys.ts) and the keys two or
 * more customers share (`customer_duplicate_groups`), so a page costs its own groups, not the table.
 */
export async function likelyDuplicates(
  source: ReadModelSource,
  query: { limit?: number } = {},
  scope?: ReadScope | null,
): Promise<{ items: DuplicateGroup[] }> {
  const limit = Math.min(Math.max(query.limit ?? 50, 1), 500);
  const t = sql.id(source.schema, 'customers');
  const rows = await unlessRebuilding(
    () => groupsByMatchKeys(source, limit, scope),
    () => groupsByNormalisingEveryCustomer(source, limit, scope),
  );
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
