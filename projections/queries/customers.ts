import { sql } from 'kysely';
import { customerInScope, listScope, scoped, SMALL_SCOPE_OWNERS, type ReadScope } from './scope.ts';
import { iso, listOf, num, type Page, type ReadModelSource, rowById, type SortSpec, uuidOf } from './page.ts';

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
  refunded: number;
  currency: string | null;
  openFeedbackCount: number;
  dealsOpen: number;
  dealsWon: number;
  dealsLost: number;
  forgottenAt: string | null;
  /** The account owner (a user id), null when none is assigned. */
  ownerId: string | null;
  revision: number;
  updatedAt: string;
  /** Global position of the last event applied to this row (a string: it can exceed 2^53). */
  position: string;
}

export interface CustomerListQuery {
  search?: string;
  status?: string;
  tag?: string;
  source?: string;
  minRevenue?: number;
  maxRevenue?: number;
  /** name | createdAt | revenue | lastPurchaseAt | orderCount, `-` prefix for descending. Default `-createdAt`. */
  sort?: string;
  limit?: number;
  cursor?: string;
}

export const toCustomerView = (r: Record<string, any>): CustomerView => ({
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
  orderCount: Number(r.order_count),
  revenue: num(r.revenue)!,
  refunded: num(r.refunded)!,
  currency: r.currency ?? null,
  openFeedbackCount: Number(r.open_feedback_count),
  dealsOpen: Number(r.deals_open),
  dealsWon: Number(r.deals_won),
  dealsLost: Number(r.deals_lost),
  forgottenAt: iso(r.forgotten_at),
  ownerId: r.owner_id ?? null,
  revision: Number(r.revision),
  updatedAt: iso(r.last_event_at)!,
  position: String(r.last_position),
});

const sorts: Record<string, SortSpec> = {
  name: { expr: sql`lower(t.name)`, type: 'text' },
  createdAt: { expr: sql`t.registered_at`, type: 'timestamptz' },
  revenue: { expr: sql`t.revenue`, type: 'numeric' },
  lastPurchaseAt: { expr: sql`COALESCE(t.last_purchase_at, '-infinity'::timestamptz)`, type: 'timestamptz' },
  orderCount: { expr: sql`t.order_count`, type: 'integer' },
};

/**
 * A small scope pages through the owner-prefixed sort indexes (projections/read-models/customers.ts),
 * one range per owner; a large one filters the sort index walk.
 */
const customerListScope = (scope: ReadScope | null | undefined) =>
  scope && scope.owners.length <= SMALL_SCOPE_OWNERS ? { perOwner: { column: 'owner_id', owners: scope.owners, type: 'uuid' as const } } : listScope(scope, customerInScope);

/** Escapes LIKE wildcards so a search for `50%` means the characters. */
const likePattern = (text: string) => `%${text.toLowerCase().replace(/[\\%_]/g, (c) => `\\${c}`)}%`;

/** `GET /customers`: filters, search by name or email (case-insensitive, partial), sort, cursor pages. */
export async function listCustomers(source: ReadModelSource, query: CustomerListQuery = {}, scope?: ReadScope | null): Promise<Page<CustomerView>> {
  const where = [];
  if (query.search) {
    const pattern = likePattern(query.search);
    where.push(sql`(lower(t.name) LIKE ${pattern} OR t.email_search LIKE ${pattern})`);
  }
  if (query.status) where.push(sql`t.status = ${query.status}`);
  if (query.tag) where.push(sql`t.tags @> ARRAY[${query.tag}]::text[]`);
  if (query.source) where.push(sql`t.source = ${query.source}`);
  if (query.minRevenue !== undefined) where.push(sql`t.revenue >= ${String(query.minRevenue)}::numeric`);
  if (query.maxRevenue !== undefined) where.push(sql`t.revenue <= ${String(query.maxRevenue)}::numeric`);
  return listOf({ source, table: 'customers', key: 'customer_id', where, ...customerListScope(scope), sorts, defaultSort: '-createdAt' }, query, toCustomerView);
}

/** `GET /customers/:id`; undefined when unknown. */
export async function getCustomer(source: ReadModelSource, id: string, scope?: ReadScope | null): Promise<CustomerView | undefined> {
  const row = await rowById(source, 'customers', 'customer_id', id, [], scoped(scope, customerInScope));
  return row ? toCustomerView(row) : undefined;
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
}

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
    (r) => ({
      eventId: r.event_id,
      occurredAt: iso(r.occurred_at)!,
      recordedAt: iso(r.recorded_at)!,
      actor: r.actor,
      type: r.event_type,
      summary: r.summary,
      stream: r.stream,
      revision: Number(r.revision),
      position: String(r.position),
    }),
  );
}
