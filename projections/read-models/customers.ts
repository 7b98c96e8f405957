import { sql, type Kysely } from 'kysely';
import { ERASED } from '../../domain/shared.ts';
import type { ProjectedEvent, Projection, ProjectionContext } from '../projection.ts';
import { viewsOf } from '../reporting.ts';
import { earliest, isoOf, latest, occurredAt } from './common.ts';
import { MONEY_TYPE, minorOfNumeric, numericOf } from '../../shared/money.ts';
import { evolveCustomer, revenueLineOf, type CustomerRow, type RevenueLine } from './customer-fold.ts';
import { ensureSchema, insertRows, RowSet, type TableSpec } from './rows.ts';

export type { CustomerStatus } from './customer-fold.ts';

/**
 * `customers`: one row per customer, the profile (decrypted, or '[erased]' once forgotten) with the
 * figures a CRM screen shows: purchases, revenue net of refunds, open feedback, deal counts. The
 * customer's own stream is folded by `evolveCustomer` (customer-fold.ts), the same fold the auditor's
 * point-in-time record reads; what other streams add is applied here.
 * `customer_links`: which customer each deal and feedback item belongs to (their later events
 * carry only their own id), and whether it is open, won, lost or closed.
 */
export const CUSTOMERS: TableSpec<CustomerRow> = {
  table: 'customers',
  key: 'customer_id',
  columns: [
    'customer_id',
    'name',
    'email',
    'email_search',
    'phone',
    'company',
    'source',
    'tags',
    'status',
    'merged_into',
    'marketing_consent',
    'registered_at',
    'first_purchase_at',
    'last_purchase_at',
    'order_count',
    'revenue',
    'refunded',
    'currency',
    'open_feedback_count',
    'deals_open',
    'deals_won',
    'deals_lost',
    'forgotten_at',
    'revision',
    'last_event_at',
    'last_position',
    'owner_id',
  ],
};

export type CustomerLink = {
  link_id: string;
  kind: 'deal' | 'feedback';
  customer_id: string;
  /** A deal's: open | won | lost; a feedback item's: open | resolved | closed. */
  state: string;
};

export const CUSTOMER_LINKS: TableSpec<CustomerLink> = {
  table: 'customer_links',
  key: 'link_id',
  columns: ['link_id', 'kind', 'customer_id', 'state'],
};

/**
 * `revenue_lines`: every purchase (positive) and refund (negative) in its own currency with its
 * business time, whatever the currency: the base-currency revenue converts each line at the rate
 * valid then (projections/queries/exchange-rates.ts). Append-only; a merged duplicate's lines count
 * for its primary through `customers.merged_into`.
 */
export const REVENUE_LINES: TableSpec<RevenueLine> = {
  table: 'revenue_lines',
  key: 'event_id',
  keyType: 'uuid',
  columns: ['event_id', 'customer_id', 'kind', 'order_id', 'currency', 'amount', 'occurred_at'],
};

/** The tables this projection owns, for kysely. */
export interface CustomerTables {
  customers: CustomerRow;
  customer_links: CustomerLink;
  revenue_lines: RevenueLine;
}

async function migrate(db: Kysely<CustomerTables>, schema: string): Promise<void> {
  await ensureSchema(db, schema);
  // Purchases change only unindexed columns (no index on revenue or purchase dates on purpose), so
  // with free space on each page (fillfactor) their updates stay HOT: no index entries to write.
  const t = sql.id(schema, 'customers');
  await sql`CREATE TABLE IF NOT EXISTS ${t} (
    customer_id uuid PRIMARY KEY,
    name text NOT NULL,
    email text NOT NULL,
    email_search text NOT NULL,
    phone text,
    company text,
    source text,
    tags text[] NOT NULL DEFAULT '{}',
    status text NOT NULL,
    merged_into uuid,
    marketing_consent boolean NOT NULL,
    registered_at timestamptz NOT NULL,
    first_purchase_at timestamptz,
    last_purchase_at timestamptz,
    order_count integer NOT NULL DEFAULT 0,
    revenue ${sql.raw(MONEY_TYPE)} NOT NULL DEFAULT 0,
    refunded ${sql.raw(MONEY_TYPE)} NOT NULL DEFAULT 0,
    currency char(3),
    open_feedback_count integer NOT NULL DEFAULT 0,
    deals_open integer NOT NULL DEFAULT 0,
    deals_won integer NOT NULL DEFAULT 0,
    deals_lost integer NOT NULL DEFAULT 0,
    forgotten_at timestamptz,
    revision integer NOT NULL,
    last_event_at timestamptz NOT NULL,
    last_position bigint NOT NULL
  ) WITH (fillfactor = 80)`.execute(db);
  // The account owner (a user) came later: added in place, without a rebuild, because no event before
  // it assigned an owner (every existing row's owner is null, exactly what a replay gives).
  const { rows: owner } =
    await sql`SELECT 1 FROM information_schema.columns WHERE table_schema = ${schema} AND table_name = 'customers' AND column_name = 'owner_id'`.execute(db);
  if (owner.length === 0) await sql`ALTER TABLE ${t} ADD COLUMN IF NOT EXISTS owner_id uuid`.execute(db);
  // Visibility (own/team) filters lists by owner: owner first, then each list's default order, so a
  // restricted page is an index range scan too.
  await sql`CREATE INDEX IF NOT EXISTS customers_owner_idx ON ${t} (owner_id, registered_at, customer_id)`.execute(db);
  // The other sort keys of GET /customers behind the owner: a restricted page merges one range per owner.
  await sql`CREATE INDEX IF NOT EXISTS customers_owner_name_idx ON ${t} (owner_id, lower(name), customer_id)`.execute(db);
  await sql`CREATE INDEX IF NOT EXISTS customers_owner_revenue_idx ON ${t} (owner_id, revenue, customer_id)`.execute(db);
  await sql`CREATE INDEX IF NOT EXISTS customers_owner_last_purchase_idx ON ${t} (owner_id, (COALESCE(last_purchase_at, '-infinity'::timestamptz)), customer_id)`.execute(
    db,
  );
  await sql`CREATE INDEX IF NOT EXISTS customers_owner_order_count_idx ON ${t} (owner_id, order_count, customer_id)`.execute(db);
  await sql`CREATE INDEX IF NOT EXISTS customers_status_idx ON ${t} (status)`.execute(db);
  await sql`CREATE INDEX IF NOT EXISTS customers_tags_idx ON ${t} USING gin (tags)`.execute(db);
  await sql`CREATE INDEX IF NOT EXISTS customers_email_search_idx ON ${t} (email_search text_pattern_ops)`.execute(db);
  await sql`CREATE INDEX IF NOT EXISTS customers_name_idx ON ${t} (lower(name) text_pattern_ops)`.execute(db);
  await sql`CREATE INDEX IF NOT EXISTS customers_registered_idx ON ${t} (registered_at, customer_id)`.execute(db);
  // One index per sort key of GET /customers (projections/queries/customers.ts), in the list's exact
  // expression and with the id as tie-breaker, so every page is an index range scan (keyset paging).
  await sql`CREATE INDEX IF NOT EXISTS customers_sort_name_idx ON ${t} (lower(name), customer_id)`.execute(db);
  await sql`CREATE INDEX IF NOT EXISTS customers_sort_revenue_idx ON ${t} (revenue, customer_id)`.execute(db);
  await sql`CREATE INDEX IF NOT EXISTS customers_sort_last_purchase_idx ON ${t} ((COALESCE(last_purchase_at, '-infinity'::timestamptz)), customer_id)`.execute(
    db,
  );
  await sql`CREATE INDEX IF NOT EXISTS customers_sort_order_count_idx ON ${t} (order_count, customer_id)`.execute(db);
  await sql`CREATE TABLE IF NOT EXISTS ${sql.id(schema, 'customer_links')} (
    link_id uuid PRIMARY KEY,
    kind text NOT NULL CHECK (kind IN ('deal', 'feedback')),
    customer_id uuid NOT NULL,
    state text NOT NULL
  )`.execute(db);
  const lines = sql.id(schema, 'revenue_lines');
  await sql`CREATE TABLE IF NOT EXISTS ${lines} (
    event_id uuid PRIMARY KEY,
    customer_id uuid NOT NULL,
    kind text NOT NULL CHECK (kind IN ('purchase', 'refund')),
    order_id text NOT NULL,
    currency char(3) NOT NULL,
    amount ${sql.raw(MONEY_TYPE)} NOT NULL,
    occurred_at timestamptz NOT NULL
  )`.execute(db);
  await sql`CREATE INDEX IF NOT EXISTS revenue_lines_customer_idx ON ${lines} (customer_id)`.execute(db);
  // Monthly revenue reads lines by business time.
  await sql`CREATE INDEX IF NOT EXISTS revenue_lines_occurred_idx ON ${lines} (occurred_at)`.execute(db);
  // A customer's revenue includes the duplicates merged into it.
  await sql`CREATE INDEX IF NOT EXISTS customers_merged_into_idx ON ${t} (merged_into) WHERE merged_into IS NOT NULL`.execute(db);
}

const DEAL_LINKED = new Set(['DealWon', 'DealLost', 'DealReopened']);
const FEEDBACK_LINKED = new Set(['FeedbackResolved', 'FeedbackClosed', 'FeedbackReopened']);

type DealCounter = 'deals_open' | 'deals_won' | 'deals_lost';
const dealCounter = (state: string): DealCounter => (state === 'won' ? 'deals_won' : state === 'lost' ? 'deals_lost' : 'deals_open');

async function apply({ trx, schema }: ProjectionContext, events: ProjectedEvent[]): Promise<void> {
  const customers = new RowSet(trx, schema, CUSTOMERS);
  const links = new RowSet(trx, schema, CUSTOMER_LINKS);
  const linkIds = new Set<string>();
  const customerIds = new Set<string>();
  const revenueLines: RevenueLine[] = [];
  for (const { event } of events) {
    const data = event.data as Record<string, unknown>;
    if (DEAL_LINKED.has(event.type)) linkIds.add(String(data.dealId));
    else if (FEEDBACK_LINKED.has(event.type)) linkIds.add(String(data.feedbackId));
    if (typeof data.customerId === 'string') customerIds.add(data.customerId);
    if (event.type === 'CustomerMerged') customerIds.add(event.data.duplicateId);
  }
  await links.load(linkIds);
  for (const id of linkIds) {
    const link = links.get(id);
    if (link) customerIds.add(link.customer_id);
  }
  await loadWithPrimaries(customers, customerIds);

  for (const e of events) {
    const { event } = e;
    const at = occurredAt(e);
    /** An event of another stream (a deal, a feedback item) changes the customer's counters; unknown customers are skipped. */
    const count = (customerId: string, update: (row: CustomerRow) => void) => {
      const row = customers.get(customerId);
      if (!row) return;
      update(row);
      row.last_event_at = latest(row.last_event_at, at);
      row.last_position = e.position.toString();
      customers.touch(customerId);
    };
    const linkState = (id: string, state: string, counter: (row: CustomerRow, from: string, to: string) => void) => {
      const link = links.get(id);
      if (!link || link.state === state) return;
      const from = link.state;
      link.state = state;
      links.touch(id);
      // A merged duplicate's deals and feedback count for the customer that absorbed it.
      count(ownerOf(customers, link.customer_id), (row) => counter(row, from, state));
    };
    switch (event.type) {
      case 'DealOpened': {
        const d = event.data;
        if (links.get(d.dealId)) break;
        links.put({ link_id: d.dealId, kind: 'deal', customer_id: d.customerId, state: 'open' });
        count(d.customerId, (row) => (row.deals_open += 1));
        break;
      }
      case 'DealWon':
      case 'DealLost':
      case 'DealReopened': {
        const to = event.type === 'DealWon' ? 'won' : event.type === 'DealLost' ? 'lost' : 'open';
        linkState(event.data.dealId, to, (row, from, state) => {
          row[dealCounter(from)] -= 1;
          row[dealCounter(state)] += 1;
        });
        break;
      }
      case 'FeedbackSubmitted': {
        const d = event.data;
        if (links.get(d.feedbackId)) break;
        links.put({ link_id: d.feedbackId, kind: 'feedback', customer_id: d.customerId, state: 'open' });
        count(d.customerId, (row) => (row.open_feedback_count += 1));
        break;
      }
      case 'FeedbackResolved':
      case 'FeedbackClosed':
      case 'FeedbackReopened': {
        const to = event.type === 'FeedbackReopened' ? 'open' : event.type === 'FeedbackResolved' ? 'resolved' : 'closed';
        linkState(event.data.feedbackId, to, (row, from, state) => {
          const wasOpen = from === 'open';
          const isOpen = state === 'open';
          if (wasOpen !== isOpen) row.open_feedback_count += isOpen ? 1 : -1;
        });
        break;
      }
      default: {
        // The customer's own stream: its fold, then what spans rows.
        const id = (event.data as { customerId?: string }).customerId;
        const before = id === undefined ? undefined : customers.get(id);
        const after = evolveCustomer(before, e);
        if (!after || after === before) break;
        if (event.type === 'CustomerMerged') {
          const duplicate = customers.get(event.data.duplicateId);
          if (duplicate) absorb(after, duplicate);
        }
        // Later events decode as erased too; this clears what the row decrypted before the forget.
        if (event.type === 'CustomerForgotten') eraseDecrypted(after);
        customers.put(after);
        const line = revenueLineOf(e);
        if (line) revenueLines.push(line);
        break;
      }
    }
  }
  await links.flush();
  await customers.flush();
  if (revenueLines.length > 0) await insertRows(trx, schema, REVENUE_LINES, revenueLines);
}

const eraseDecrypted = (row: CustomerRow): void => {
  row.name = ERASED;
  row.email = ERASED;
  row.email_search = ERASED;
  if (row.phone !== null) row.phone = ERASED;
};

/** Figures of the duplicate's history that the primary takes over on a merge (counted once, at the merge). */
const ABSORBED_COUNTS = ['order_count', 'open_feedback_count', 'deals_open', 'deals_won', 'deals_lost'] as const satisfies readonly (keyof CustomerRow)[];

/**
 * The primary absorbs a merged duplicate's purchases, refunds, feedback and deals, as the analytics do
 * (analytics/merge.ts): one person, one set of figures. Revenue stays in the primary's currency (its first
 * purchase's, or the duplicate's when the primary has bought nothing); purchases in another currency
 * count as orders only, as for a customer's own purchases. The duplicate's row keeps its figures as they
 * stood at the merge, marked `merged`.
 */
function absorb(primary: CustomerRow, duplicate: CustomerRow): void {
  for (const c of ABSORBED_COUNTS) primary[c] += duplicate[c];
  if (duplicate.first_purchase_at !== null) primary.first_purchase_at = earliest(primary.first_purchase_at, isoOf(duplicate.first_purchase_at));
  if (duplicate.last_purchase_at !== null) primary.last_purchase_at = latest(primary.last_purchase_at, isoOf(duplicate.last_purchase_at));
  if (duplicate.currency === null) return;
  primary.currency ??= duplicate.currency;
  if (primary.currency !== duplicate.currency) return;
  primary.revenue = numericOf(minorOfNumeric(primary.revenue) + minorOfNumeric(duplicate.revenue));
  primary.refunded = numericOf(minorOfNumeric(primary.refunded) + minorOfNumeric(duplicate.refunded));
}

/** The customer whose figures a record of `customerId` counts for: itself, or the primary it was merged into. */
function ownerOf(customers: RowSet<CustomerRow>, customerId: string): string {
  let id = customerId;
  // Merges form chains (B into A, later A into C); bounded in case of a cycle no command can create.
  for (let hop = 0; hop < 16; hop++) {
    const next = customers.get(id)?.merged_into;
    if (!next || !customers.get(next)) return id;
    id = next;
  }
  return id;
}

/** Loads these customers and the primaries they were merged into (following chains). */
async function loadWithPrimaries(customers: RowSet<CustomerRow>, ids: Iterable<string>): Promise<void> {
  let wanted = new Set(ids);
  for (let hop = 0; hop < 16 && wanted.size > 0; hop++) {
    await customers.load(wanted);
    const next = new Set<string>();
    for (const id of wanted) {
      const primary = customers.get(id)?.merged_into;
      if (primary && !customers.get(primary)) next.add(primary);
    }
    wanted = next;
  }
}

export const customersProjection: Projection = {
  name: 'customers',
  // 2: forgetting erases `company` too (personal data for sole traders); a primary absorbs its merged duplicates' figures.
  // 3: `revenue_lines` (purchases and refunds in every currency, for base-currency revenue).
  version: 3,
  tables: ['customers', 'customer_links', 'revenue_lines'],
  filter: { streamPrefixes: ['customer-', 'deal-', 'feedback-'] },
  migrate,
  apply,
  reportingViews: viewsOf('customers'),
};
