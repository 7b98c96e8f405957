import { sql, type RawBuilder } from 'kysely';
import type { ReadModelSource } from './page.ts';

/**
 * What a caller may see, as the API resolved it from their key (api/auth/viewer.ts): the user ids
 * whose records are visible. Absent (undefined or null) means everything, for service keys and users
 * with `all` visibility. An empty list sees no owned record at all.
 */
export interface ReadScope {
  owners: readonly string[];
}

const ownersUuid = (scope: ReadScope) => sql`CAST(${[...scope.owners]} AS uuid[])`;
const ownersText = (scope: ReadScope) => sql`CAST(${[...scope.owners]} AS text[])`;

/** Customers of the scope: those whose account owner is one of its users (unowned customers are outside every scope). */
export const customerInScope = (scope: ReadScope): RawBuilder<unknown> => sql`t.owner_id = ANY(${ownersUuid(scope)})`;

/**
 * Customer ids owned within the scope, as an array computed once per query (an InitPlan): with
 * `customer_id = ANY(ARRAY(...))` each side of the OR below can use its index (a BitmapOr), where
 * `IN (sub-select)` made PostgreSQL test every row against a hashed sub-plan.
 */
const ownedCustomers = (source: ReadModelSource, scope: ReadScope) =>
  sql`ARRAY(SELECT c.customer_id FROM ${sql.id(source.schema, 'customers')} c WHERE c.owner_id = ANY(${ownersUuid(scope)}))`;

/** Deals of the scope: its users own the deal, or own the deal's customer (the account owner sees the account's deals). */
export const dealInScope = (source: ReadModelSource, scope: ReadScope): RawBuilder<unknown> =>
  sql`(t.owner_id = ANY(${ownersText(scope)}) OR t.customer_id = ANY(${ownedCustomers(source, scope)}))`;

/** Feedback of the scope: assigned to one of its users, or about a customer one of them owns. */
export const feedbackInScope = (source: ReadModelSource, scope: ReadScope): RawBuilder<unknown> =>
  sql`(t.assignee_id = ANY(${ownersText(scope)}) OR t.customer_id = ANY(${ownedCustomers(source, scope)}))`;

/**
 * Activities of the scope: assigned to one of its users, on a customer one of them owns, or on a deal
 * one of them owns (an activity follows the record it was logged on, and reaches whoever must act on it).
 */
export const activityInScope = (source: ReadModelSource, scope: ReadScope): RawBuilder<unknown> =>
  sql`(t.assignee_id = ANY(${ownersUuid(scope)}) OR t.customer_id = ANY(${ownedCustomers(source, scope)})
    OR t.deal_id = ANY(ARRAY(SELECT d.deal_id FROM ${sql.id(source.schema, 'deals')} d WHERE d.owner_id = ANY(${ownersText(scope)}))))`;

/**
 * Up to this many owners, a list reads the scope's rows first (through the owner indexes) and orders
 * them after; beyond, it lets PostgreSQL walk the sort index and filter. A team of a few people owns
 * a small share of the rows, which the planner under-rates on a sort-index walk (it scanned 5,000
 * rows for a 50-row page of a 10-person team at 100k customers: bench/suites/visibility.ts).
 */
export const SMALL_SCOPE_OWNERS = 64;

/** The scope condition of a list page: `fenced` when the scope is small (see SMALL_SCOPE_OWNERS). */
export const listScope = (
  scope: ReadScope | null | undefined,
  condition: (scope: ReadScope) => RawBuilder<unknown>,
): { scope?: RawBuilder<unknown>; fenced?: boolean } =>
  scope ? { scope: condition(scope), fenced: scope.owners.length <= SMALL_SCOPE_OWNERS } : {};

/** The scope's condition, or none for an unrestricted caller. */
export const scoped = (scope: ReadScope | null | undefined, condition: (scope: ReadScope) => RawBuilder<unknown>): RawBuilder<unknown>[] =>
  scope ? [condition(scope)] : [];

/**
 * The event streams of the records in the scope (`customer-<id>`, `deal-<id>`, `feedback-<id>`), for
 * the audit log of a restricted caller. Campaigns, users and teams have no owner: their streams are
 * left to the caller's prefixes.
 */
export async function streamsInScope(source: ReadModelSource, scope: ReadScope): Promise<string[]> {
  const { rows } = await sql<{ stream: string }>`
    SELECT 'customer-' || t.customer_id AS stream FROM ${sql.id(source.schema, 'customers')} t WHERE ${customerInScope(scope)}
    UNION ALL SELECT 'deal-' || t.deal_id FROM ${sql.id(source.schema, 'deals')} t WHERE ${dealInScope(source, scope)}
    UNION ALL SELECT 'feedback-' || t.feedback_id FROM ${sql.id(source.schema, 'feedback')} t WHERE ${feedbackInScope(source, scope)}
    UNION ALL SELECT 'activity-' || t.activity_id FROM ${sql.id(source.schema, 'activities')} t WHERE ${activityInScope(source, scope)}`.execute(source.db);
  return rows.map((r) => r.stream);
}
