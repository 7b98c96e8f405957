import { sql, type RawBuilder } from 'kysely';
import type { PageRequest, ReadModelSource } from './page.ts';
import { isMissingColumn } from '../../shared/sql.ts';
import { MAX_MERGE_CHAIN } from '../../domain/customer/decider.ts';

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
 * Where a scope finds the owner of a record's customer. `column`: the record's own `customer_owner_id`,
 * kept current by its projection (projections/read-models/customer-owners.ts), indexed behind each
 * sort key. `customers`: a look-up in `customers`, only for the tables of the previous versions (without
 * the column), which keep serving while the new ones are rebuilt after an upgrade.
 */
export type CustomerOwnerLookup = 'column' | 'customers';

/**
 * Runs a scoped query with the `column` look-up, and again with `customers` when the tables of the
 * previous version answer that the column does not exist. Unscoped queries never read the column.
 */
export async function byCustomerOwner<T>(scope: ReadScope | null | undefined, work: (lookup: CustomerOwnerLookup) => Promise<T>): Promise<T> {
  if (!scope) return work('column');
  try {
    return await work('column');
  } catch (error) {
    if (isMissingColumn(error)) return work('customers');
    throw error;
  }
}

/**
 * The record's customer is owned within the scope. With `customers`, the owned customer ids as an
 * array computed once per query (an InitPlan), so that `customer_id = ANY(ARRAY(...))` can use an index.
 * After a merge the record follows the primary's owner with `column`, the duplicate's with `customers`.
 */
const customerOwnedIn = (source: ReadModelSource, scope: ReadScope, lookup: CustomerOwnerLookup) =>
  lookup === 'column'
    ? sql`t.customer_owner_id = ANY(${ownersUuid(scope)})`
    : sql`t.customer_id = ANY(ARRAY(SELECT c.customer_id FROM ${sql.id(source.schema, 'customers')} c WHERE c.owner_id = ANY(${ownersUuid(scope)})))`;

/** Deals of the scope: its users own the deal, or own the deal's customer (the account owner sees the account's deals). */
export const dealInScope = (source: ReadModelSource, scope: ReadScope, lookup: CustomerOwnerLookup): RawBuilder<unknown> =>
  sql`(t.owner_id = ANY(${ownersText(scope)}) OR ${customerOwnedIn(source, scope, lookup)})`;

/** Feedback of the scope: assigned to one of its users, or about a customer one of them owns. */
export const feedbackInScope = (source: ReadModelSource, scope: ReadScope, lookup: CustomerOwnerLookup): RawBuilder<unknown> =>
  sql`(t.assignee_id = ANY(${ownersText(scope)}) OR ${customerOwnedIn(source, scope, lookup)})`;

/**
 * Activities of the scope: assigned to one of its users, on a customer one of them owns, or on a deal
 * one of them owns (an activity follows the record it was logged on, and reaches whoever must act on it).
 * With `column` the deal's owner is the activity's own `deal_owner_id`; the previous version's tables
 * look it up in `deals`.
 */
export const activityInScope = (source: ReadModelSource, scope: ReadScope, lookup: CustomerOwnerLookup): RawBuilder<unknown> =>
  sql`(t.assignee_id = ANY(${ownersUuid(scope)}) OR ${customerOwnedIn(source, scope, lookup)} OR ${
    lookup === 'column'
      ? sql`t.deal_owner_id = ANY(${ownersText(scope)})`
      : sql`t.deal_id = ANY(ARRAY(SELECT d.deal_id FROM ${sql.id(source.schema, 'deals')} d WHERE d.owner_id = ANY(${ownersText(scope)})))`
  })`;

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
): { scope?: RawBuilder<unknown>; fenced?: boolean } => (scope ? { scope: condition(scope), fenced: scope.owners.length <= SMALL_SCOPE_OWNERS } : {});

/** A column of a record naming a user who sees it (owner, assignee), with its SQL type. */
export interface OwnerColumn {
  column: string;
  type: 'uuid' | 'text';
}

/**
 * The scope of a list through owner columns of the records' own: a small scope merges one index range
 * per owner and column (`pageOf`'s `perOwner`), a large one (or the previous version's tables) filters
 * with `condition`.
 */
export const ownerColumnsListScope = (
  scope: ReadScope | null | undefined,
  columns: readonly OwnerColumn[],
  lookup: CustomerOwnerLookup,
  condition: (scope: ReadScope) => RawBuilder<unknown>,
): { scope?: RawBuilder<unknown>; fenced?: boolean; perOwner?: PageRequest['perOwner'] } =>
  scope && lookup === 'column' && scope.owners.length <= SMALL_SCOPE_OWNERS ? { perOwner: { owners: scope.owners, columns } } : listScope(scope, condition);

/** The scope of records in a scope through a column of their own (a deal's owner, a feedback item's assignee) or their customer's owner. */
export const ownedOrCustomerListScope = (
  scope: ReadScope | null | undefined,
  own: OwnerColumn,
  lookup: CustomerOwnerLookup,
  condition: (scope: ReadScope) => RawBuilder<unknown>,
) => ownerColumnsListScope(scope, [own, { column: 'customer_owner_id', type: 'uuid' }], lookup, condition);

/** The owner columns of an activity (activityInScope), for a page merged per owner. */
export const ACTIVITY_OWNER_COLUMNS: readonly OwnerColumn[] = [
  { column: 'assignee_id', type: 'uuid' },
  { column: 'customer_owner_id', type: 'uuid' },
  { column: 'deal_owner_id', type: 'text' },
];

/** The scope's condition, or none for an unrestricted caller. */
export const scoped = (scope: ReadScope | null | undefined, condition: (scope: ReadScope) => RawBuilder<unknown>): RawBuilder<unknown>[] =>
  scope ? [condition(scope)] : [];

/**
 * A customer (`customerId`, an expression) whose account is in the scope: the customer itself, or
 * after merges the primary at the end of its chain, as its figures count for that primary. The
 * scope's unmerged customers and every duplicate merged into them, chains followed: one step (the
 * duplicate's own primary) showed a duplicate's orders and refunds to the owner of a customer that
 * was itself merged on, and hid them from the owner of the account they count for.
 */
export const accountInScope = (source: ReadModelSource, customerId: RawBuilder<unknown>, scope: ReadScope): RawBuilder<unknown> => {
  const customers = sql.id(source.schema, 'customers');
  return sql`${customerId} IN (WITH RECURSIVE members(id, depth) AS (
      SELECT t.customer_id, 0 FROM ${customers} t WHERE t.merged_into IS NULL AND ${customerInScope(scope)}
      UNION ALL SELECT c.customer_id, m.depth + 1 FROM ${customers} c JOIN members m ON c.merged_into = m.id WHERE m.depth < ${MAX_MERGE_CHAIN}
    ) SELECT id FROM members)`;
};

/**
 * The primary at the end of a merged customer's chain (`customerId`, an expression); NULL for one not
 * merged. A primary the read model does not hold yet (its projection behind) is named as the row names it.
 */
export const accountOf = (source: ReadModelSource, customerId: RawBuilder<unknown>): RawBuilder<unknown> => {
  const customers = sql.id(source.schema, 'customers');
  return sql`coalesce((WITH RECURSIVE up(id, next, depth) AS (
      SELECT m.customer_id, m.merged_into, 0 FROM ${customers} m WHERE m.customer_id = ${customerId}
      UNION ALL SELECT c.customer_id, c.merged_into, u.depth + 1 FROM ${customers} c JOIN up u ON c.customer_id = u.next WHERE u.depth < ${MAX_MERGE_CHAIN}
    ) SELECT id FROM up WHERE depth > 0 ORDER BY (next IS NULL) DESC, depth DESC LIMIT 1),
    (SELECT m.merged_into FROM ${customers} m WHERE m.customer_id = ${customerId}))`;
};

/**
 * The primary at the end of the merge chain of each of these customers that was merged (the others
 * are left out): what a deals or feedback file names beside a merged duplicate's records, for an import
 * elsewhere to record them on that primary.
 */
export async function accountsOf(source: ReadModelSource, ids: readonly string[]): Promise<Map<string, string>> {
  if (ids.length === 0) return new Map();
  const { rows } = await sql<{ customer_id: string; account: string | null }>`
    SELECT c.customer_id, ${accountOf(source, sql`c.customer_id`)} AS account FROM ${sql.id(source.schema, 'customers')} c
     WHERE c.customer_id = ANY(CAST(${[...new Set(ids)]} AS uuid[])) AND c.merged_into IS NOT NULL`.execute(source.db);
  return new Map(rows.flatMap((r) => (r.account ? [[r.customer_id, r.account] as const] : [])));
}

/**
 * Which of these customers the scope sees, a merged duplicate through its primary. For records read
 * from the events rather than a read model (campaign responses), filtered a page at a time.
 */
export async function customersInScope(source: ReadModelSource, ids: readonly string[], scope: ReadScope): Promise<Set<string>> {
  if (ids.length === 0) return new Set();
  const { rows } = await sql<{ customer_id: string }>`
    SELECT c.customer_id FROM ${sql.id(source.schema, 'customers')} c
     WHERE c.customer_id = ANY(CAST(${[...new Set(ids)]} AS uuid[]))
       AND ${accountInScope(source, sql`c.customer_id`, scope)}`.execute(source.db);
  return new Set(rows.map((r) => r.customer_id));
}

/**
 * The event streams of the records in the scope (`customer-<id>`, `deal-<id>`, `feedback-<id>`), for
 * the audit log of a restricted caller. Campaigns, users and teams have no owner: their streams are
 * left to the caller's prefixes.
 */
export async function streamsInScope(source: ReadModelSource, scope: ReadScope): Promise<string[]> {
  const { rows } = await byCustomerOwner(scope, (lookup) =>
    sql<{ stream: string }>`
    SELECT 'customer-' || t.customer_id AS stream FROM ${sql.id(source.schema, 'customers')} t WHERE ${customerInScope(scope)}
    UNION ALL SELECT 'deal-' || t.deal_id FROM ${sql.id(source.schema, 'deals')} t WHERE ${dealInScope(source, scope, lookup)}
    UNION ALL SELECT 'feedback-' || t.feedback_id FROM ${sql.id(source.schema, 'feedback')} t WHERE ${feedbackInScope(source, scope, lookup)}
    UNION ALL SELECT 'activity-' || t.activity_id FROM ${sql.id(source.schema, 'activities')} t WHERE ${activityInScope(source, scope, lookup)}`.execute(
      source.db,
    ),
  );
  return rows.map((r) => r.stream);
}
