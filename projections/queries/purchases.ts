import { sql, type RawBuilder } from 'kysely';
import { ofCustomerAndMerged } from './customers.ts';
import { iso, listOf, num, uuidOf, type Page, type ReadModelSource, type SortSpec } from './page.ts';
import { customerInScope, type ReadScope } from './scope.ts';

/**
 * Purchases as a list (`GET /purchases/export`, `crm export purchases`), from `revenue_lines`: every
 * purchase in its own currency at its business time, in the columns a purchases import reads, so an
 * exported order history comes back in as it left. A purchase names the customer it was recorded for;
 * for a merged duplicate's, `mergedInto` names the primary (whose revenue counts it). Not moved onto
 * the primary: the primary's stream does not hold the duplicate's orders, so the file imported back
 * into this CRM would record them a second time. Refunds are not listed: `revenue_lines` keeps neither
 * their id nor their reason.
 */

export interface PurchaseListQuery {
  /** The customer's purchases, with those of the duplicates merged into it. */
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

type PurchaseRow = { event_id: string; order_id: string; customer_id: string; merged_into: string | null; amount: string; currency: string; occurred_at: Date };

/** Oldest first, as an order history reads (the business-time index gives the order). */
const sorts: Record<string, SortSpec> = { occurredAt: { expr: sql`t.occurred_at`, type: 'timestamptz' } };

export async function listPurchases(source: ReadModelSource, query: PurchaseListQuery = {}, scope?: ReadScope | null): Promise<Page<PurchaseView>> {
  const customers = sql.id(source.schema, 'customers');
  const mergedInto = sql`(SELECT m.merged_into FROM ${customers} m WHERE m.customer_id = t.customer_id)`;
  // The customer the line counts for: its primary when it was merged.
  const primary = sql`coalesce(${mergedInto}, t.customer_id)`;
  const where: RawBuilder<unknown>[] = [sql`t.kind = 'purchase'`];
  // The lines its revenue counts: its own and those of the duplicates merged into it.
  if (query.customerId) where.push(ofCustomerAndMerged(source, uuidOf(query.customerId), sql`t.customer_id`));
  if (query.from) where.push(sql`t.occurred_at >= ${query.from}::timestamptz`);
  if (query.to) where.push(sql`t.occurred_at <= ${query.to}::timestamptz`);
  // A restricted caller sees the purchases of the customers they see (those their users own).
  if (scope) where.push(sql`${primary} IN (SELECT t.customer_id FROM ${customers} t WHERE ${customerInScope(scope)})`);
  return listOf<PurchaseView, PurchaseRow>(
    { source, table: 'revenue_lines', key: 'event_id', extra: [sql`${mergedInto} AS merged_into`], where, sorts, defaultSort: 'occurredAt' },
    query,
    (r) => ({
      orderId: r.order_id,
      customerId: r.customer_id,
      amount: num(r.amount)!,
      currency: r.currency.trim(),
      occurredAt: iso(r.occurred_at)!,
      mergedInto: r.merged_into,
    }),
  );
}
