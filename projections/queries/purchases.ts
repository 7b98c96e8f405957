import { sql, type RawBuilder } from 'kysely';
import { ofCustomerAndMerged } from './customers.ts';
import { iso, listOf, num, uuidOf, type Page, type ReadModelSource, type SortSpec } from './page.ts';
import { accountInScope, accountOf, type ReadScope } from './scope.ts';
import { unlessRebuilding } from './exchange-rates.ts';
import { ReadModelRebuilding } from '../errors.ts';

/**
 * Purchases and refunds as lists (`GET /purchases/export`, `GET /refunds/export`, `crm export`), from
 * `revenue_lines`: each in its own currency at its business time, in the columns a purchases (refunds)
 * import reads, so an exported order history comes back in as it left. A line names the customer it
 * was recorded for; for a merged duplicate's, `mergedInto` names the primary (whose revenue counts it).
 * Not moved onto the primary: the primary's stream does not hold the duplicate's orders, so the file
 * imported back into this CRM would record them a second time.
 */

export interface PurchaseListQuery {
  /** The customer's purchases (refunds), with those of the duplicates merged into it. */
  customerId?: string;
  /** Business time range, inclusive. */
  from?: string;
  to?: string;
  limit?: number;
  cursor?: string;
}

export type PurchaseView = {
  orderId: string;
  customerId: string;
  amount: number;
  currency: string;
  occurredAt: string;
  /** The primary a merged duplicate's purchase counts for; null otherwise. */
  mergedInto: string | null;
};

/** A refund as a refunds file holds it: the amount refunded (positive), its id and reason. */
export type RefundView = {
  refundId: string;
  orderId: string;
  customerId: string;
  amount: number;
  currency: string;
  reason: string | null;
  occurredAt: string;
  mergedInto: string | null;
};

type LineRow = {
  event_id: string;
  order_id: string;
  customer_id: string;
  merged_into: string | null;
  amount: string;
  currency: string;
  occurred_at: Date;
  refund_id: string | null;
  reason: string | null;
};

/** Oldest first, as an order history reads (the business-time index gives the order). */
const sorts: Record<string, SortSpec> = { occurredAt: { expr: sql`t.occurred_at`, type: 'timestamptz' } };

/**
 * The lines of one kind, filtered and scoped alike for purchases and refunds. `columns`: more columns
 * named in the select, so that a table of an earlier version without them fails the query rather than
 * answering without them.
 */
function listLines<V extends Record<string, unknown>>(
  source: ReadModelSource,
  kind: 'purchase' | 'refund',
  query: PurchaseListQuery,
  scope: ReadScope | null | undefined,
  view: (row: LineRow) => V,
  columns: RawBuilder<unknown>[] = [],
): Promise<Page<V>> {
  // The customer the line counts for when it was merged: the primary at the end of its chain.
  const mergedInto = accountOf(source, sql`t.customer_id`);
  const where: RawBuilder<unknown>[] = [sql`t.kind = ${kind}`];
  // The lines its revenue counts: its own and those of the duplicates merged into it.
  if (query.customerId) where.push(ofCustomerAndMerged(source, uuidOf(query.customerId), sql`t.customer_id`));
  if (query.from) where.push(sql`t.occurred_at >= ${query.from}::timestamptz`);
  if (query.to) where.push(sql`t.occurred_at <= ${query.to}::timestamptz`);
  // A restricted caller sees the lines of the customers they see (those their users own).
  if (scope) where.push(accountInScope(source, sql`t.customer_id`, scope));
  return listOf<V, LineRow>(
    { source, table: 'revenue_lines', key: 'event_id', extra: [sql`${mergedInto} AS merged_into`, ...columns], where, sorts, defaultSort: 'occurredAt' },
    query,
    view,
  );
}

export const listPurchases = (source: ReadModelSource, query: PurchaseListQuery = {}, scope?: ReadScope | null): Promise<Page<PurchaseView>> =>
  listLines(source, 'purchase', query, scope, (r) => ({
    orderId: r.order_id,
    customerId: r.customer_id,
    amount: num(r.amount)!,
    currency: r.currency.trim(),
    occurredAt: iso(r.occurred_at)!,
    mergedInto: r.merged_into,
  }));

/** A refund line as a refunds file holds it: the amount as refunded (the line holds it negative). */
const refundOf = (r: LineRow): RefundView => ({
  refundId: r.refund_id!,
  orderId: r.order_id,
  customerId: r.customer_id,
  amount: -num(r.amount)!,
  currency: r.currency.trim(),
  reason: r.reason,
  occurredAt: iso(r.occurred_at)!,
  mergedInto: r.merged_into,
});

/**
 * Refunds. Their ids and reasons are in `revenue_lines` from version 6 of the customers projection on:
 * while an upgrade rebuilds it, the export is refused (503, to be retried) rather than answered without them.
 */
export const listRefunds = (source: ReadModelSource, query: PurchaseListQuery = {}, scope?: ReadScope | null): Promise<Page<RefundView>> =>
  unlessRebuilding(
    // Named, so that the old table (without them) fails the query rather than answering without them.
    () => listLines(source, 'refund', query, scope, refundOf, [sql`t.refund_id AS refund_id`, sql`t.reason AS reason`]),
    () => {
      throw new ReadModelRebuilding('customers');
    },
  );
