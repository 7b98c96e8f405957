import { sql, type RawBuilder } from 'kysely';
import { customerInScope, listScope, scoped, SMALL_SCOPE_OWNERS, type ReadScope } from './scope.ts';
import { baseAmount, baseCurrencyOf, convertedLines, missingRatesOf, unlessRebuilding } from './exchange-rates.ts';
import type { CustomerRow } from '../read-models/customer-fold.ts';
import type { TimelineEntry as TimelineRow } from '../read-models/timeline.ts';
import { iso, listOf, NAME_ORDER, type Page, type ReadModelSource, rowById, type SortSpec, uuidOf } from './page.ts';
import { likeLiteral, likePrefix } from '../../shared/sql.ts';
import { MAX_MERGE_CHAIN } from '../../domain/customer/decider.ts';
import { tagKey } from '../../domain/customer/tags.ts';
import { searchFormOf } from '../read-models/match-keys.ts';

export type CustomerView = {
  id: string;
  name: string;
  email: string;
  phone: string | null;
  company: string | null;
  source: string | null;
  tags: string[];
  status: 'active' | 'inactive' | 'merged' | 'forgotten';
  mergedInto: string | null;
  marketingConsent: boolean;
  registeredAt: string;
  firstPurchaseAt: string | null;
  lastPurchaseAt: string | null;
  orderCount: number;
  /** Net of refunds, in `currency` (the first purchase's), major units. */
  revenue: number;
  /** Refunds in `currency` only (refunds in other currencies are in `refundedBase` of GET /customers/:id), major units. */
  refunded: number;
  currency: string | null;
  openFeedbackCount: number;
  dealsOpen: number;
  dealsWon: number;
  dealsLost: number;
  /** Business time of the deactivation while the customer is inactive, else null; and its reason. */
  deactivatedAt: string | null;
  deactivationReason: string | null;
  forgottenAt: string | null;
  /** The account owner (a user id), null when none is assigned. */
  ownerId: string | null;
  revision: number;
  updatedAt: string;
  /** Global position of the last event applied to this row (a string: it can exceed 2^53). */
  position: string;
};

export interface CustomerListQuery {
  search?: string;
  status?: string;
  tag?: string;
  source?: string;
  marketingConsent?: boolean;
  /** The account owner (a user id). */
  ownerId?: string;
  /** Leaves forgotten customers out (the customers export: nobody to move to another store). Not an API filter. */
  withoutForgotten?: boolean;
  /** The headline currency (`currency`, the first purchase's in business time): three letters, e.g. JPY. */
  currency?: string;
  /**
   * Net revenue in each customer's headline currency (`revenue`), not in the base currency: 1000 matches
   * 1000 JPY as well as 1000 EUR. `currency` makes the comparison one of like with like.
   */
  minRevenue?: number;
  maxRevenue?: number;
  /** name | createdAt | revenue | lastPurchaseAt | orderCount, `-` prefix for descending. Default `-createdAt`. */
  sort?: string;
  limit?: number;
  cursor?: string;
}

/** A `customers` row as a query reads it (projections/read-models/customer-fold.ts). */
type CustomerQueryRow = CustomerRow;

/** A listed row, with its base-currency revenue computed at query time (absent while a rebuild runs). */
type ListedCustomerRow = CustomerQueryRow & { revenue_base?: string | null; missing_rates?: string[] | null };

/** What a customer's own row says, named as the API names it: the view's fields but the counters other streams keep, the revision and the position. */
export type CustomerFields = Omit<CustomerView, 'openFeedbackCount' | 'dealsOpen' | 'dealsWon' | 'dealsLost' | 'revision' | 'position'>;

/** The one naming of a customer row's fields: the view reads it, and so does the auditor's record as of an instant. */
export const customerFieldsOf = (r: CustomerQueryRow): CustomerFields => ({
  id: r.customer_id,
  name: r.name,
  email: r.email,
  phone: r.phone ?? null,
  company: r.company ?? null,
  source: r.source ?? null,
  tags: r.tags ?? [],
  status: r.status,
  mergedInto: r.merged_into ?? null,
  marketingConsent: r.marketing_consent,
  registeredAt: iso(r.registered_at)!,
  firstPurchaseAt: iso(r.first_purchase_at),
  lastPurchaseAt: iso(r.last_purchase_at),
  orderCount: r.order_count,
  revenue: Number(r.revenue),
  refunded: Number(r.refunded),
  currency: r.currency ?? null,
  deactivatedAt: iso(r.deactivated_at),
  deactivationReason: r.deactivation_reason ?? null,
  forgottenAt: iso(r.forgotten_at),
  ownerId: r.owner_id ?? null,
  updatedAt: iso(r.last_event_at)!,
});

export const toCustomerView = (r: CustomerQueryRow): CustomerView => ({
  ...customerFieldsOf(r),
  openFeedbackCount: r.open_feedback_count,
  dealsOpen: r.deals_open,
  dealsWon: r.deals_won,
  dealsLost: r.deals_lost,
  revision: r.revision,
  position: String(r.last_position),
});

/** Where the list reads the sort keys a purchase moves: see `purchaseKeys`. */
type PurchaseKeysAt = 'customer_purchase_keys' | 'customers';

/**
 * The sort keys of GET /customers. Those a purchase, a refund, a merge or an owner change moves are read
 * from `customer_purchase_keys` (alias `k`, joined by the customer id), where they are indexed: indexed
 * on `customers`, they made each purchase's update of the wide row write all of its indexes. The tables
 * of the previous version, which keep serving while the new ones are rebuilt, have them on `customers`,
 * and order names by `lower(name)` (they have no `name_sort`).
 */
const sortsFrom = (at: PurchaseKeysAt): Record<string, SortSpec> => {
  const joined = at === 'customer_purchase_keys';
  const key = (column: string) => sql.ref(`${joined ? 'k' : 't'}.${column}`);
  return {
    name: joined ? NAME_ORDER : { expr: sql`lower(t.name)`, type: 'text' },
    createdAt: { expr: sql`t.registered_at`, type: 'timestamptz' },
    revenue: { expr: sql`${key('revenue')}`, type: 'numeric', joined },
    lastPurchaseAt: { expr: sql`COALESCE(${key('last_purchase_at')}, '-infinity'::timestamptz)`, type: 'timestamptz', joined },
    orderCount: { expr: sql`${key('order_count')}`, type: 'integer', joined },
  };
};
const SORTS: Record<PurchaseKeysAt, Record<string, SortSpec>> = {
  customer_purchase_keys: sortsFrom('customer_purchase_keys'),
  customers: sortsFrom('customers'),
};

/**
 * `minRevenue`, `maxRevenue`: on the indexed revenue, so that a page sorted by revenue is one index range.
 * That is the headline-currency figure: the base-currency revenue is computed at query time from the
 * rates (projections/queries/exchange-rates.ts), so no index can hold it (a rate set late would move
 * every customer with an amount in that currency).
 */
const revenueFilters = (query: CustomerListQuery, at: PurchaseKeysAt): RawBuilder<unknown>[] => {
  const revenue = sql.ref(`${at === 'customer_purchase_keys' ? 'k' : 't'}.revenue`);
  return [
    ...(query.minRevenue !== undefined ? [sql`${revenue} >= ${String(query.minRevenue)}::numeric`] : []),
    ...(query.maxRevenue !== undefined ? [sql`${revenue} <= ${String(query.maxRevenue)}::numeric`] : []),
  ];
};

/**
 * A small scope pages through the owner-prefixed sort indexes (projections/read-models/customers.ts),
 * one range per owner; a large one filters the sort index walk.
 */
const customerListScope = (scope: ReadScope | null | undefined) =>
  scope && scope.owners.length <= SMALL_SCOPE_OWNERS
    ? { perOwner: { owners: scope.owners, columns: [{ column: 'owner_id', type: 'uuid' as const }] } }
    : listScope(scope, customerInScope);

/** A search for `50%` means the characters. */
const likePattern = (text: string) => `%${likeLiteral(text.toLowerCase())}%`;

/**
 * `search`: a part of the name or of the email, anywhere in it, which no index finds: pages are read
 * in list order until full, so a search few customers match reads them all. A search holding '@' is
 * found by an index instead: it can only be part of an email (which has one '@'), so what comes
 * before its '@' ends the email's local part, looked up reversed as a prefix
 * (`customers_email_local_idx`); or part of one of the rare names holding '@' (`customers_name_at_idx`).
 */
function searchCondition(written: string): RawBuilder<unknown> {
  // As names are compared (`name_search`): without invisible characters, unless nothing else was typed.
  const search = searchFormOf(written) || written.toLowerCase();
  const pattern = likePattern(search);
  const at = search.indexOf('@');
  const local = search.slice(0, Math.max(at, 0));
  if (local === '') return sql`(t.name_search LIKE ${pattern} OR t.email_search LIKE ${pattern})`;
  const localEnd = likePrefix([...local].reverse().join(''));
  return sql`((strpos(t.name, '@') > 0 AND t.name_search LIKE ${pattern})
    OR (reverse(split_part(t.email_search, '@', 1)) LIKE ${localEnd} AND t.email_search LIKE ${pattern}))`;
}

/** `GET /customers`: filters, search by name or email (case-insensitive, partial), sort, cursor pages. */
export async function listCustomers(
  source: ReadModelSource,
  query: CustomerListQuery = {},
  scope?: ReadScope | null,
): Promise<Page<CustomerView & ListedRevenue>> {
  const where: RawBuilder<unknown>[] = [];
  if (query.search) where.push(searchCondition(query.search));
  if (query.status) where.push(sql`t.status = ${query.status}`);
  if (query.withoutForgotten) where.push(sql`t.status <> 'forgotten'`);
  // In any case: `vip` finds the customers tagged `VIP` (domain/customer/tags.ts).
  if (query.tag) where.push(sql`t.tag_keys @> ARRAY[${tagKey(query.tag)}]::text[]`);
  if (query.source) where.push(sql`t.source = ${query.source}`);
  if (query.currency) where.push(sql`t.currency = ${query.currency}`);
  // An audience: a merged duplicate's consent is no account's (its primary's own consent decides), and a
  // forgotten customer is nobody to write to, whatever consent their row last held.
  if (query.marketingConsent === true) where.push(sql`t.marketing_consent AND t.merged_into IS NULL AND t.status <> 'forgotten'`);
  else if (query.marketingConsent === false) where.push(sql`NOT t.marketing_consent`);
  if (query.ownerId) where.push(sql`t.owner_id = ${query.ownerId}::uuid`);
  const list = (at: PurchaseKeysAt, extra: RawBuilder<unknown>[]) =>
    listOf(
      {
        source,
        table: 'customers',
        key: 'customer_id',
        extra,
        ...(at === 'customer_purchase_keys'
          ? { where, joined: { table: at, where: revenueFilters(query, at) } }
          : { where: [...where, ...revenueFilters(query, at)] }),
        ...customerListScope(scope),
        sorts: SORTS[at],
        defaultSort: '-createdAt',
      },
      query,
      (r: ListedCustomerRow) => toListedCustomer(source, r),
    );
  // While the read models are being rebuilt after an upgrade, the previous version's tables: without
  // `customer_purchase_keys` (version 4), and before that without the base figures (null).
  return unlessRebuilding(
    () => list('customer_purchase_keys', LIST_REVENUE_BASE(source)),
    () =>
      unlessRebuilding(
        () => list('customers', LIST_REVENUE_BASE(source)),
        () => list('customers', []),
      ),
  );
}

/** A customer's revenue in every currency and in the base currency (GET /customers/:id). */
export type CustomerRevenue = {
  /** Purchases net of refunds per currency paid in (merged duplicates included), major units. */
  revenueByCurrency: Record<string, number>;
  baseCurrency: string;
  /** Every purchase and refund converted at the rate valid at its business time; null while a rate is missing. */
  revenueBase: number | null;
  /** Every refund, whatever its currency, converted the same way (a positive amount); null while a refund's rate is missing. */
  refundedBase: number | null;
  /** Currency and month ('JPY 2026-03') of amounts no rate covers yet. */
  missingRates: string[];
};

/** What a listed customer has of its revenue: the base currency's, not the split per currency nor the refunds (GET /customers/:id). */
type ListedRevenue = Omit<CustomerRevenue, 'revenueByCurrency' | 'refundedBase'>;

/**
 * Lines (`line`: their customer column, `l.customer_id` by default) of a customer and of the
 * duplicates merged into it, chains followed (bounded). The ids are collected into an array first, so
 * the lines are always read through their customer index: as `IN (subquery)` the planner could join
 * every line of the table instead (it did, for each listed customer, on tables without statistics yet).
 */
export const ofCustomerAndMerged = (source: ReadModelSource, id: RawBuilder<unknown>, line: RawBuilder<unknown> = sql`l.customer_id`): RawBuilder<unknown> =>
  sql`${line} = ANY (ARRAY(
      WITH RECURSIVE members(id, depth) AS (
        SELECT ${id}, 0
        UNION ALL SELECT c.customer_id, m.depth + 1 FROM ${sql.id(source.schema, 'customers')} c JOIN members m ON c.merged_into = m.id WHERE m.depth < ${MAX_MERGE_CHAIN}
      ) SELECT id FROM members))`;

/** The base-currency revenue of the customer (alias `t`) and its merged duplicates: listed customers and `GET /customers/:id`. */
const LIST_REVENUE_BASE = (source: ReadModelSource): RawBuilder<unknown>[] => {
  const lines = convertedLines(source, 'revenue_lines', ofCustomerAndMerged(source, sql`t.customer_id`));
  return [
    // No purchase at all is 0; a missing rate makes the sum unknown (NULL).
    sql`(SELECT CASE WHEN count(*) = 0 THEN 0 WHEN bool_and(y.base_amount IS NOT NULL) THEN sum(y.base_amount) END FROM ${lines})::text AS revenue_base`,
    sql`(SELECT COALESCE(array_agg(DISTINCT y.missing ORDER BY y.missing) FILTER (WHERE y.missing IS NOT NULL), '{}') FROM ${lines}) AS missing_rates`,
  ];
};

/** A listed customer with its base-currency revenue (`getCustomer` adds the per-currency split). */
const toListedCustomer = (source: ReadModelSource, r: ListedCustomerRow): CustomerView & ListedRevenue => ({
  ...toCustomerView(r),
  baseCurrency: baseCurrencyOf(source),
  revenueBase: baseAmount(r.revenue_base),
  missingRates: missingRatesOf(r.missing_rates),
});

/** The per-currency revenue of the customer (alias `t`) and its merged duplicates, as a JSON object of decimal texts. */
const REVENUE_BY_CURRENCY = (source: ReadModelSource): RawBuilder<unknown> => {
  const lines = convertedLines(source, 'revenue_lines', ofCustomerAndMerged(source, sql`t.customer_id`));
  return sql`(SELECT COALESCE(json_object_agg(c.currency, c.revenue ORDER BY c.currency), '{}')
    FROM (SELECT rtrim(y.currency) AS currency, sum(y.amount)::text AS revenue FROM ${lines} GROUP BY 1) c) AS revenue_by_currency`;
};

/** The refunds of the customer (alias `t`) and its merged duplicates in the base currency, positive: 0 without any, NULL while a refund's rate is missing. */
const REFUNDED_BASE = (source: ReadModelSource): RawBuilder<unknown> => {
  const lines = convertedLines(source, 'revenue_lines', sql`${ofCustomerAndMerged(source, sql`t.customer_id`)} AND l.kind = 'refund'`);
  return sql`(SELECT CASE WHEN count(*) = 0 THEN 0 WHEN bool_and(y.base_amount IS NOT NULL) THEN -sum(y.base_amount) END FROM ${lines})::text AS refunded_base`;
};

type CustomerWithRevenueRow = ListedCustomerRow & { revenue_by_currency?: Record<string, string> | null; refunded_base?: string | null };

/**
 * `GET /customers/:id`, undefined when unknown or outside the scope: the profile and its revenue per
 * currency and in the base currency (merged duplicates included) in one statement, so one round trip.
 */
export async function getCustomer(source: ReadModelSource, id: string, scope?: ReadScope | null): Promise<(CustomerView & CustomerRevenue) | undefined> {
  const read = (extra: RawBuilder<unknown>[]) => rowById<CustomerWithRevenueRow>(source, 'customers', 'customer_id', id, extra, scoped(scope, customerInScope));
  // Without revenue (null in the base currency) while the read models are being rebuilt after an upgrade.
  const row = await unlessRebuilding(
    () => read([...LIST_REVENUE_BASE(source), REVENUE_BY_CURRENCY(source), REFUNDED_BASE(source)]),
    () => read([]),
  );
  if (!row) return undefined;
  const byCurrency = row.revenue_by_currency ?? {};
  return {
    ...toListedCustomer(source, row),
    revenueByCurrency: Object.fromEntries(Object.entries(byCurrency).map(([currency, revenue]) => [currency, Number(revenue)])),
    refundedBase: baseAmount(row.refunded_base),
  };
}

export type TimelineEntry = {
  eventId: string;
  /** Business time. */
  occurredAt: string;
  recordedAt: string;
  actor: string;
  type: string;
  summary: string;
  stream: string;
  revision: number;
  position: string;
};

/** `GET /customers/:id/timeline`: oldest first by global position; undefined when the customer is unknown. */
export async function customerTimeline(
  source: ReadModelSource,
  id: string,
  query: { limit?: number; cursor?: string; order?: 'asc' | 'desc' } = {},
  scope?: ReadScope | null,
): Promise<Page<TimelineEntry> | undefined> {
  if (!(await getCustomer(source, id, scope))) return undefined;
  return listOf(
    {
      source,
      table: 'customer_timeline',
      key: 'position',
      keyType: 'bigint',
      where: [sql`t.customer_id = ${uuidOf(id)}`],
      sorts: { position: { expr: sql`t.position`, type: 'bigint' } },
      defaultSort: 'position',
    },
    { sort: query.order === 'desc' ? '-position' : 'position', limit: query.limit, cursor: query.cursor },
    (r: TimelineRow) => ({
      eventId: r.event_id,
      occurredAt: iso(r.occurred_at)!,
      recordedAt: iso(r.recorded_at)!,
      actor: r.actor,
      type: r.event_type,
      summary: r.summary,
      stream: r.stream,
      revision: r.revision,
      position: String(r.position),
    }),
  );
}
