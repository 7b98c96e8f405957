import { tagKey, tagSet, withoutTag, withTag } from '../../domain/customer/tags.ts';
import { ERASED } from '../../domain/shared.ts';
import type { ProjectedEvent } from '../../shared/events.ts';
import { addMoney, minorOf, numericOf, subtractMoney } from '../../shared/money.ts';
import { earliest, isoOf, latest, ms, occurredAt, type Bigint, type Instant } from './common.ts';
import { matchKeysOf, searchFormOf, type MatchKeys } from './match-keys.ts';
import { nameSortOf } from './name-sort.ts';

/**
 * A customer folded from its own stream, written once: the live projection (customers.ts), rebuild
 * and replay store it as the `customers` row, and the auditor's point-in-time record
 * (audit/records.ts) is read from it.
 *
 * What other streams add stays the projection's, as it spans rows: the open feedback and deal
 * counters (through `customer_links`), `last_event_at` stamped by those streams' events, a primary
 * absorbing a merged duplicate's figures, and clearing the personal data a row decrypted before the
 * forget (events decode as erased once the key is deleted, so a fold of decoded events needs no such
 * step).
 */

export type CustomerStatus = 'active' | 'inactive' | 'merged' | 'forgotten';

/** The `customers` table's columns, typed (CUSTOMERS in customers.ts lists them in table order). */
export type CustomerRow = {
  customer_id: string;
  /** Personal data (name, email, email_search, name_search, name_sort, phone, company): '[erased]' once forgotten. */
  name: string;
  email: string;
  email_search: string;
  /** The name as `?search=` compares it (match-keys.ts `searchFormOf`); personal data. */
  name_search: string;
  /** Where the name sorts in `?sort=name` (name-sort.ts `nameSortOf`); personal data. */
  name_sort: string;
  phone: string | null;
  company: string | null;
  source: string | null;
  /** A set in which case does not count, as first written (domain/customer/tags.ts). */
  tags: string[];
  /** The tags as `?tag=` looks them up: `tagKey` of each (lower case), indexed. */
  tag_keys: string[];
  status: CustomerStatus;
  merged_into: string | null;
  marketing_consent: boolean;
  registered_at: Instant;
  first_purchase_at: Instant | null;
  last_purchase_at: Instant | null;
  order_count: number;
  /** Money: numeric(28,4), purchases net of refunds in `currency` (the first purchase's). */
  revenue: string;
  refunded: string;
  /** The currency of the first purchase in business time (ties: the first code alphabetically). */
  currency: string | null;
  /** Every currency's figures, from which `currency`, `revenue` and `refunded` are read (jsonb). */
  currency_figures: Record<string, CurrencyFigures>;
  open_feedback_count: number;
  deals_open: number;
  deals_won: number;
  deals_lost: number;
  /** Business time of the deactivation while inactive (null once reactivated), and its reason. */
  deactivated_at: Instant | null;
  deactivation_reason: string | null;
  forgotten_at: Instant | null;
  revision: number;
  last_event_at: Instant;
  last_position: Bigint;
  owner_id: string | null;
} & MatchKeys;

/**
 * A customer's purchases net of refunds and refunds in one currency, and the first purchase in it.
 * Kept for every currency so that the headline figures do not depend on the order purchases were
 * recorded in: an import of the same history in another order (a file sorted by customer, an export
 * imported again) shows the same customer.
 */
export type CurrencyFigures = { revenue: string; refunded: string; first_purchase_at: string | null };

/** The headline currency: the one of the first purchase in business time, the first code on a tie. */
const headlineCurrency = (byCurrency: Record<string, CurrencyFigures>): string | null => {
  let best: { code: string; at: number } | null = null;
  for (const [code, figures] of Object.entries(byCurrency)) {
    if (figures.first_purchase_at === null) continue;
    const at = ms(figures.first_purchase_at);
    if (!best || at < best.at || (at === best.at && code < best.code)) best = { code, at };
  }
  return best?.code ?? null;
};

/** Sets `currency`, `revenue` and `refunded` from `currency_figures` (refunds before any purchase count in none). */
export function readHeadlineFigures(row: CustomerRow): void {
  const currency = headlineCurrency(row.currency_figures);
  const figures = currency === null ? undefined : row.currency_figures[currency];
  row.currency = currency;
  row.revenue = figures?.revenue ?? '0.0000';
  row.refunded = figures?.refunded ?? '0.0000';
}

/** `byCurrency` with `change` applied to one currency's figures (a new object: rows are not changed in place). */
export const withCurrencyFigures = (
  byCurrency: Record<string, CurrencyFigures>,
  currency: string,
  change: (figures: CurrencyFigures) => CurrencyFigures,
): Record<string, CurrencyFigures> => ({
  ...byCurrency,
  [currency]: change(byCurrency[currency] ?? { revenue: '0.0000', refunded: '0.0000', first_purchase_at: null }),
});

/** A `revenue_lines` row: a purchase (positive) or refund (negative) in its own currency. */
export type RevenueLine = {
  event_id: string;
  customer_id: string;
  kind: 'purchase' | 'refund';
  order_id: string;
  currency: string;
  /** Money: numeric(28,4). */
  amount: string;
  occurred_at: Instant;
  /** A refund's own id and reason (null for a purchase), so that refunds can leave as a refunds file. */
  refund_id: string | null;
  reason: string | null;
};

/**
 * The customer after one event of its own stream; undefined before registration. Events of other
 * streams (a deal, a feedback item) leave it as it is (the same object). Pure: times are business
 * times, and the row it is given is not changed.
 */
/** The tags and the keys they are looked up by, which change together. */
const tagsOf = (tags: string[]): Pick<CustomerRow, 'tags' | 'tag_keys'> => ({ tags, tag_keys: tags.map(tagKey) });

export function evolveCustomer(state: CustomerRow | undefined, e: ProjectedEvent): CustomerRow | undefined {
  const { event } = e;
  const at = occurredAt(e);
  if (event.type === 'CustomerRegistered') {
    const d = event.data;
    return {
      customer_id: d.customerId,
      name: d.name,
      email: d.email,
      email_search: d.email.toLowerCase(),
      name_search: searchFormOf(d.name),
      name_sort: nameSortOf(d.name),
      phone: d.phone,
      company: d.company,
      source: d.source,
      ...tagsOf(tagSet(d.tags)),
      status: 'active',
      merged_into: null,
      marketing_consent: d.marketingConsent,
      registered_at: at,
      first_purchase_at: null,
      last_purchase_at: null,
      order_count: 0,
      revenue: '0.0000',
      refunded: '0.0000',
      currency: null,
      currency_figures: {},
      open_feedback_count: 0,
      deals_open: 0,
      deals_won: 0,
      deals_lost: 0,
      deactivated_at: null,
      deactivation_reason: null,
      forgotten_at: null,
      revision: e.revision,
      last_event_at: at,
      last_position: e.position.toString(),
      owner_id: null,
      ...matchKeysOf({ name: d.name, email: d.email, phone: d.phone, status: 'active' }),
    };
  }
  if (!state) return state;
  const row: CustomerRow = { ...state };
  switch (event.type) {
    case 'CustomerContactDetailsChanged': {
      const d = event.data;
      if (d.name !== undefined) {
        row.name = d.name;
        row.name_search = searchFormOf(d.name);
        row.name_sort = nameSortOf(d.name);
      }
      if (d.email !== undefined) {
        row.email = d.email;
        row.email_search = d.email.toLowerCase();
      }
      if (d.phone !== undefined) row.phone = d.phone;
      if (d.company !== undefined) row.company = d.company;
      break;
    }
    case 'CustomerTagged':
      Object.assign(row, tagsOf(withTag(row.tags, event.data.tag)));
      break;
    case 'CustomerUntagged':
      Object.assign(row, tagsOf(withoutTag(row.tags, event.data.tag)));
      break;
    case 'CustomerMarketingConsentChanged':
      row.marketing_consent = event.data.marketingConsent;
      break;
    case 'PurchaseRecorded': {
      const d = event.data;
      row.order_count += 1;
      row.first_purchase_at = earliest(row.first_purchase_at, at);
      row.last_purchase_at = latest(row.last_purchase_at, at);
      // The headline revenue is in the first purchase's currency; the others are kept beside it.
      row.currency_figures = withCurrencyFigures(row.currency_figures, d.currency, (f) => ({
        revenue: addMoney(f.revenue, d.amount),
        refunded: f.refunded,
        first_purchase_at: isoOf(earliest(f.first_purchase_at, at)),
      }));
      readHeadlineFigures(row);
      break;
    }
    case 'PurchaseRefunded':
      takeRefund(row, event.data.currency, event.data.amount);
      break;
    case 'CustomerMerged':
      // The duplicate's figures are another row's: the projection adds them (customers.ts, `absorb`).
      break;
    case 'CustomerMergedInto':
      row.merged_into = event.data.primaryId;
      if (row.status !== 'forgotten') row.status = 'merged';
      break;
    case 'CustomerDeactivated':
      if (row.status !== 'active') break;
      row.status = 'inactive';
      row.deactivated_at = at;
      row.deactivation_reason = event.data.reason;
      break;
    case 'CustomerReactivated':
      if (row.status !== 'inactive') break;
      row.status = 'active';
      row.deactivated_at = null;
      row.deactivation_reason = null;
      break;
    case 'CustomerOwnerAssigned':
      row.owner_id = event.data.ownerId;
      break;
    case 'CustomerForgotten':
      // Recorded before companies were encrypted, a company decodes as stored: erased here.
      if (row.company !== null) row.company = ERASED;
      row.status = 'forgotten';
      row.forgotten_at = at;
      break;
    default:
      // Not an event of the customer's own stream.
      return state;
  }
  row.revision = e.revision;
  row.last_event_at = latest(row.last_event_at, at);
  row.last_position = e.position.toString();
  // Most events (purchases, tags, owners) leave what the keys are made of as it was.
  if (row.name !== state.name || row.email !== state.email || row.phone !== state.phone || row.status !== state.status) Object.assign(row, matchKeysOf(row));
  return row;
}

/**
 * A refund's figures on a row: the customer's own, or (customers.ts) the primary's that absorbed the
 * refunded order at a merge.
 */
export function takeRefund(row: CustomerRow, currency: string, amount: number): void {
  row.currency_figures = withCurrencyFigures(row.currency_figures, currency, (f) => ({
    revenue: subtractMoney(f.revenue, amount),
    refunded: addMoney(f.refunded, amount),
    first_purchase_at: f.first_purchase_at,
  }));
  readHeadlineFigures(row);
}

/** The revenue line a purchase or refund adds, in its own currency (refunds negative); undefined for other events. */
export function revenueLineOf(e: ProjectedEvent): RevenueLine | undefined {
  const { event } = e;
  if (event.type !== 'PurchaseRecorded' && event.type !== 'PurchaseRefunded') return undefined;
  const d = event.data;
  const minor = minorOf(d.amount);
  return {
    event_id: e.id,
    customer_id: d.customerId,
    kind: event.type === 'PurchaseRecorded' ? 'purchase' : 'refund',
    order_id: d.orderId,
    currency: d.currency,
    amount: numericOf(event.type === 'PurchaseRecorded' ? minor : -minor),
    occurred_at: occurredAt(e),
    refund_id: event.type === 'PurchaseRefunded' ? event.data.refundId : null,
    reason: event.type === 'PurchaseRefunded' ? event.data.reason : null,
  };
}
