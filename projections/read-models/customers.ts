import { sql, type Kysely, type QueryExecutorProvider } from 'kysely';
import { ERASED } from '../../domain/shared.ts';
import type { ProjectedEvent, Projection, ProjectionContext } from '../projection.ts';
import { viewsOf } from '../reporting.ts';
import { earliest, isoOf, latest, occurredAt } from './common.ts';
import { MONEY_TYPE, minorOfNumeric, numericOf } from '../../shared/money.ts';
import { evolveCustomer, readHeadlineFigures, revenueLineOf, takeRefund, withCurrencyFigures, type CustomerRow, type RevenueLine } from './customer-fold.ts';
import { ensureSchema, insertRows, RowSet, upsertRows, type TableSpec } from './rows.ts';
import { ERASED_NAME_SORT } from './name-sort.ts';
import { DUPLICATE_REASONS, MATCH_KEY_COLUMN, type DuplicateReason, type MatchKeys } from './match-keys.ts';
import { ioTurns } from '../../shared/io-turns.ts';
import { MAX_MERGE_CHAIN } from '../../domain/customer/decider.ts';

export type { CustomerStatus } from './customer-fold.ts';

/**
 * `customers`: one row per customer, the profile (decrypted, or '[erased]' once forgotten) with the
 * figures a CRM screen shows: purchases, revenue net of refunds, open feedback, deal counts. The
 * customer's own stream is folded by `evolveCustomer` (customer-fold.ts), the same fold the auditor's
 * point-in-time record reads; what other streams add is applied here.
 * `customer_links`: which customer each deal and feedback item belongs to (their later events
 * carry only their own id), and whether it is open, won, lost or closed.
 * `customer_duplicate_groups`: the match keys (match-keys.ts) that two or more customers share.
 */
export const CUSTOMERS: TableSpec<CustomerRow> = {
  table: 'customers',
  key: 'customer_id',
  columns: [
    'customer_id',
    'name',
    'email',
    'email_search',
    'name_search',
    'name_sort',
    'phone',
    'company',
    'source',
    'tags',
    'tag_keys',
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
    'currency_figures',
    'open_feedback_count',
    'deals_open',
    'deals_won',
    'deals_lost',
    'deactivated_at',
    'deactivation_reason',
    'forgotten_at',
    'revision',
    'last_event_at',
    'last_position',
    'email_key',
    'phone_key',
    'name_key',
    'owner_id',
  ],
};

/**
 * A `customer_purchase_keys` row: the sort keys of GET /customers that purchases, refunds, merges and
 * owner changes move, beside the same values in `customers` (which the API and the auditor read).
 * Indexed here, on a narrow row, rather than on `customers`: there each of their indexes made every
 * purchase's update of the wide row write all of its ~20 indexes; without them that update is HOT.
 */
export type CustomerPurchaseKeys = Pick<CustomerRow, 'customer_id' | 'owner_id' | 'revenue' | 'order_count' | 'last_purchase_at'>;

export const CUSTOMER_PURCHASE_KEYS: TableSpec<CustomerPurchaseKeys> = {
  table: 'customer_purchase_keys',
  key: 'customer_id',
  keyType: 'uuid',
  columns: ['customer_id', 'owner_id', 'revenue', 'order_count', 'last_purchase_at'],
};

const purchaseKeysOf = (row: CustomerRow): CustomerPurchaseKeys => ({
  customer_id: row.customer_id,
  owner_id: row.owner_id,
  revenue: row.revenue,
  order_count: row.order_count,
  last_purchase_at: row.last_purchase_at,
});

/**
 * The fold copies a row and changes only what an event changes, so a key that did not move is the
 * very same value (a loaded Date stays the same object): a strict comparison finds every one that did.
 */
const samePurchaseKeys = (a: CustomerPurchaseKeys, b: CustomerRow): boolean =>
  a.owner_id === b.owner_id && a.revenue === b.revenue && a.order_count === b.order_count && a.last_purchase_at === b.last_purchase_at;

export type CustomerLink = {
  /** `deal:<id>` or `feedback:<id>`: a deal and a feedback item may have the same id (their own streams). */
  link_key: string;
  link_id: string;
  kind: 'deal' | 'feedback';
  customer_id: string;
  /** A deal's: open | won | lost; a feedback item's: open | resolved | closed. */
  state: string;
};

export const CUSTOMER_LINKS: TableSpec<CustomerLink> = {
  table: 'customer_links',
  key: 'link_key',
  keyType: 'text',
  columns: ['link_key', 'link_id', 'kind', 'customer_id', 'state'],
};

/** The key of a deal's or feedback item's link. */
export const linkKey = (kind: CustomerLink['kind'], id: string): string => `${kind}:${id}`;

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
  columns: ['event_id', 'customer_id', 'kind', 'order_id', 'currency', 'amount', 'occurred_at', 'refund_id', 'reason'],
};

/**
 * A `customer_duplicate_groups` row: a match key two or more customers share, with its oldest
 * customer, so that the duplicates report pages through the groups in its order by an index.
 */
export type DuplicateGroupRow = {
  reason: DuplicateReason;
  match_key: string;
  /** Registered first (ties by id): the usual primary of a merge, and the report's order within a reason. */
  first_customer_id: string;
  members: number;
};

/** The report's order of the reasons: email, then phone, then name. */
export const DUPLICATE_REASON_RANK = sql`(CASE reason WHEN 'email' THEN 0 WHEN 'phone' THEN 1 ELSE 2 END)`;

/** The report's order of the groups: by reason, then by the group's oldest customer; the same expression indexes it. */
export const DUPLICATE_GROUP_ORDER = sql`${DUPLICATE_REASON_RANK}, first_customer_id`;

/** The tables this projection owns, for kysely. */
export interface CustomerTables {
  customers: CustomerRow;
  customer_purchase_keys: CustomerPurchaseKeys;
  customer_links: CustomerLink;
  revenue_lines: RevenueLine;
  customer_duplicate_groups: DuplicateGroupRow;
}

async function migrate(db: Kysely<CustomerTables>, schema: string): Promise<void> {
  await ensureSchema(db, schema);
  // Free space on each page (fillfactor) keeps updates of unindexed columns HOT: a purchase's among
  // them, since the sort keys it moves are indexed in `customer_purchase_keys`, not here.
  const t = sql.id(schema, 'customers');
  await sql`CREATE TABLE IF NOT EXISTS ${t} (
    customer_id uuid PRIMARY KEY,
    name text NOT NULL,
    email text NOT NULL,
    email_search text NOT NULL,
    name_search text NOT NULL,
    name_sort text COLLATE "C" NOT NULL,
    phone text,
    company text,
    source text,
    tags text[] NOT NULL DEFAULT '{}',
    tag_keys text[] NOT NULL DEFAULT '{}',
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
    currency_figures jsonb NOT NULL DEFAULT '{}',
    open_feedback_count integer NOT NULL DEFAULT 0,
    deals_open integer NOT NULL DEFAULT 0,
    deals_won integer NOT NULL DEFAULT 0,
    deals_lost integer NOT NULL DEFAULT 0,
    deactivated_at timestamptz,
    deactivation_reason text,
    forgotten_at timestamptz,
    revision integer NOT NULL,
    last_event_at timestamptz NOT NULL,
    last_position bigint NOT NULL,
    email_key text,
    phone_key text,
    name_key text
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
  await sql`CREATE INDEX IF NOT EXISTS customers_owner_name_idx ON ${t} (owner_id, name_sort, customer_id)`.execute(db);
  await sql`CREATE INDEX IF NOT EXISTS customers_status_idx ON ${t} (status)`.execute(db);
  // Without fastupdate: new entries go into the index itself, not into a pending list that every tag
  // lookup reads in full until a vacuum merges it (autovacuum may be off; a catch-up of 100,000
  // customers left 2.7 MB there, read by each `?tag=` whatever the tag, even one nobody has).
  await sql`CREATE INDEX IF NOT EXISTS customers_tag_keys_idx ON ${t} USING gin (tag_keys) WITH (fastupdate = off)`.execute(db);
  await sql`CREATE INDEX IF NOT EXISTS customers_email_search_idx ON ${t} (email_search text_pattern_ops)`.execute(db);
  await sql`CREATE INDEX IF NOT EXISTS customers_name_idx ON ${t} (lower(name) text_pattern_ops)`.execute(db);
  // A search holding '@' (projections/queries/customers.ts): the end of the email's local part, and
  // the few names holding '@'.
  await sql`CREATE INDEX IF NOT EXISTS customers_email_local_idx ON ${t} (reverse(split_part(email_search, '@', 1)) text_pattern_ops)`.execute(db);
  await sql`CREATE INDEX IF NOT EXISTS customers_name_at_idx ON ${t} (customer_id) WHERE strpos(name, '@') > 0`.execute(db);
  await sql`CREATE INDEX IF NOT EXISTS customers_registered_idx ON ${t} (registered_at, customer_id)`.execute(db);
  // One index per sort key of GET /customers (projections/queries/customers.ts), in the list's exact
  // expression and with the id as tie-breaker, so every page is an index range scan (keyset paging).
  // The keys a purchase moves are indexed in `customer_purchase_keys`, below.
  await sql`CREATE INDEX IF NOT EXISTS customers_sort_name_idx ON ${t} (name_sort, customer_id)`.execute(db);
  await migratePurchaseKeys(db, schema);
  await sql`CREATE TABLE IF NOT EXISTS ${sql.id(schema, 'customer_links')} (
    link_key text PRIMARY KEY,
    link_id uuid NOT NULL,
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
    occurred_at timestamptz NOT NULL,
    refund_id text,
    reason text
  )`.execute(db);
  await sql`CREATE INDEX IF NOT EXISTS revenue_lines_customer_idx ON ${lines} (customer_id)`.execute(db);
  // Monthly revenue reads lines by business time.
  await sql`CREATE INDEX IF NOT EXISTS revenue_lines_occurred_idx ON ${lines} (occurred_at)`.execute(db);
  // A customer's revenue includes the duplicates merged into it.
  await sql`CREATE INDEX IF NOT EXISTS customers_merged_into_idx ON ${t} (merged_into) WHERE merged_into IS NOT NULL`.execute(db);
  // Likely duplicates: the customers sharing a key, oldest first (the members of a group, in its order).
  for (const reason of DUPLICATE_REASONS) {
    const column = MATCH_KEY_COLUMN[reason];
    await sql`CREATE INDEX IF NOT EXISTS ${sql.id(`customers_${column}_idx`)} ON ${t} (${sql.id(column)}, registered_at, customer_id)
      WHERE ${sql.id(column)} IS NOT NULL`.execute(db);
  }
  const groups = sql.id(schema, 'customer_duplicate_groups');
  await sql`CREATE TABLE IF NOT EXISTS ${groups} (
    reason text NOT NULL CHECK (reason IN ('email', 'phone', 'name')),
    match_key text NOT NULL,
    first_customer_id uuid NOT NULL,
    members integer NOT NULL CHECK (members > 1),
    PRIMARY KEY (reason, match_key)
  )`.execute(db);
  await sql`CREATE INDEX IF NOT EXISTS customer_duplicate_groups_order_idx ON ${groups} (${DUPLICATE_GROUP_ORDER})`.execute(db);
}

/**
 * `customer_purchase_keys`, with the sort indexes of the keys it holds: alone and behind the owner
 * (a restricted page merges one range per owner), in the list's exact expressions, the id breaking ties.
 */
async function migratePurchaseKeys(db: QueryExecutorProvider, schema: string): Promise<void> {
  const k = sql.id(schema, 'customer_purchase_keys');
  // Each purchase rewrites its customer's row here, and each rewrite adds an entry to every index (none
  // can be HOT): vacuumed and analysed after 2% of the rows changed (not the default 20%), as
  // `analytics_scores`, so the sort indexes do not fill with dead entries between vacuums.
  await sql`CREATE TABLE IF NOT EXISTS ${k} (
    customer_id uuid PRIMARY KEY,
    owner_id uuid,
    revenue ${sql.raw(MONEY_TYPE)} NOT NULL,
    order_count integer NOT NULL,
    last_purchase_at timestamptz
  ) WITH (autovacuum_vacuum_scale_factor = 0.02, autovacuum_analyze_scale_factor = 0.02, autovacuum_vacuum_cost_delay = 0)`.execute(db);
  const lastPurchase = sql`(COALESCE(last_purchase_at, '-infinity'::timestamptz))`;
  await sql`CREATE INDEX IF NOT EXISTS customer_purchase_keys_revenue_idx ON ${k} (revenue, customer_id)`.execute(db);
  await sql`CREATE INDEX IF NOT EXISTS customer_purchase_keys_last_purchase_idx ON ${k} (${lastPurchase}, customer_id)`.execute(db);
  await sql`CREATE INDEX IF NOT EXISTS customer_purchase_keys_order_count_idx ON ${k} (order_count, customer_id)`.execute(db);
  await sql`CREATE INDEX IF NOT EXISTS customer_purchase_keys_owner_revenue_idx ON ${k} (owner_id, revenue, customer_id)`.execute(db);
  await sql`CREATE INDEX IF NOT EXISTS customer_purchase_keys_owner_last_purchase_idx ON ${k} (owner_id, ${lastPurchase}, customer_id)`.execute(db);
  await sql`CREATE INDEX IF NOT EXISTS customer_purchase_keys_owner_order_count_idx ON ${k} (owner_id, order_count, customer_id)`.execute(db);
}

// The opening events too: a link already stored is found in live as in a replay.
const DEAL_LINKED = new Set(['DealOpened', 'DealWon', 'DealLost', 'DealReopened']);
const FEEDBACK_LINKED = new Set(['FeedbackSubmitted', 'FeedbackResolved', 'FeedbackClosed', 'FeedbackReopened']);

type DealCounter = 'deals_open' | 'deals_won' | 'deals_lost';
const dealCounter = (state: string): DealCounter => (state === 'won' ? 'deals_won' : state === 'lost' ? 'deals_lost' : 'deals_open');

async function apply({ trx, schema }: ProjectionContext, events: ProjectedEvent[]): Promise<void> {
  const customers = new RowSet(trx, schema, CUSTOMERS);
  /** Each changed customer's match keys as the batch found them, to tell which duplicate groups it changed. */
  const keysBefore = new Map<string, MatchKeys>();
  /** Each changed customer's purchase keys as the batch found them (null: new), to write only those that moved. */
  const purchaseKeysBefore = new Map<string, CustomerPurchaseKeys | null>();
  const links = new RowSet(trx, schema, CUSTOMER_LINKS);
  const linkKeys = new Set<string>();
  const customerIds = new Set<string>();
  const revenueLines: RevenueLine[] = [];
  for (const { event } of events) {
    const data = event.data as Record<string, unknown>;
    if (DEAL_LINKED.has(event.type)) linkKeys.add(linkKey('deal', String(data.dealId)));
    else if (FEEDBACK_LINKED.has(event.type)) linkKeys.add(linkKey('feedback', String(data.feedbackId)));
    if (typeof data.customerId === 'string') customerIds.add(data.customerId);
    if (event.type === 'CustomerMerged') customerIds.add(event.data.duplicateId);
  }
  await links.load(linkKeys);
  for (const key of linkKeys) {
    const link = links.get(key);
    if (link) customerIds.add(link.customer_id);
  }
  await loadWithPrimaries(customers, customerIds);

  // A catch-up batch holds thousands of events: requests are answered between them (shared/io-turns.ts).
  const turns = ioTurns();
  for (const e of events) {
    if (turns.due()) await turns.give();
    let ownEvent = false;
    applyToCustomers(customers, links, e, (before, after) => {
      if (!keysBefore.has(after.customer_id)) keysBefore.set(after.customer_id, before ? keysOf(before) : NO_KEYS);
      // Only the customer's own events move its purchase keys (and a refund its primary's): other streams' change counters.
      if (!purchaseKeysBefore.has(after.customer_id)) purchaseKeysBefore.set(after.customer_id, before ? purchaseKeysOf(before) : null);
      ownEvent = true;
    });
    // One line per purchase or refund, also when a refund changed a primary's row beside its own.
    const line = ownEvent ? revenueLineOf(e) : undefined;
    if (line) revenueLines.push(line);
  }
  await links.flush();
  await customers.flush();
  const movedPurchaseKeys = [...purchaseKeysBefore].flatMap(([id, before]) => {
    const row = customers.get(id)!;
    return before && samePurchaseKeys(before, row) ? [] : [row];
  });
  if (movedPurchaseKeys.length > 0) await upsertRows(trx, schema, CUSTOMER_PURCHASE_KEYS, movedPurchaseKeys);
  await refreshDuplicateGroups(trx, schema, movedKeys(customers, keysBefore));
  if (revenueLines.length > 0) await insertRows(trx, schema, REVENUE_LINES, revenueLines);
}

/** Where `applyToCustomers` finds and keeps rows: a batch's RowSet, or a map (the auditor's record as of an instant). */
export interface RowsOf<R> {
  get(key: string): R | undefined;
  /** Inserts or replaces the row. */
  put(row: R): void;
  /** Marks a row changed in place. */
  touch(key: string): void;
}

/**
 * One event applied to the customers it changes, written once for the live projection, rebuild and
 * replay (the batch's rows) and for the auditor's record as of an instant (audit/customer-record.ts,
 * over the customer's streams in position order): the customer's own stream by `evolveCustomer`,
 * then what spans rows (a merge absorbing the duplicate's figures, the deal and feedback counters
 * kept through `customer_links`). `onOwnEvent` sees each row an event of its own stream changed.
 */
export function applyToCustomers(
  customers: RowsOf<CustomerRow>,
  links: RowsOf<CustomerLink>,
  e: ProjectedEvent,
  onOwnEvent?: (before: CustomerRow | undefined, after: CustomerRow) => void,
): void {
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
  const linkState = (key: string, state: string, counter: (row: CustomerRow, from: string, to: string) => void) => {
    const link = links.get(key);
    if (!link || link.state === state) return;
    const from = link.state;
    link.state = state;
    links.touch(key);
    // A merged duplicate's deals and feedback count for the customer that absorbed it.
    count(ownerOf(customers, link.customer_id), (row) => counter(row, from, state));
  };
  switch (event.type) {
    case 'DealOpened': {
      const d = event.data;
      if (links.get(linkKey('deal', d.dealId))) break;
      links.put({ link_key: linkKey('deal', d.dealId), link_id: d.dealId, kind: 'deal', customer_id: d.customerId, state: 'open' });
      count(d.customerId, (row) => (row.deals_open += 1));
      break;
    }
    case 'DealWon':
    case 'DealLost':
    case 'DealReopened': {
      const to = event.type === 'DealWon' ? 'won' : event.type === 'DealLost' ? 'lost' : 'open';
      linkState(linkKey('deal', event.data.dealId), to, (row, from, state) => {
        row[dealCounter(from)] -= 1;
        row[dealCounter(state)] += 1;
      });
      break;
    }
    case 'FeedbackSubmitted': {
      const d = event.data;
      if (links.get(linkKey('feedback', d.feedbackId))) break;
      links.put({ link_key: linkKey('feedback', d.feedbackId), link_id: d.feedbackId, kind: 'feedback', customer_id: d.customerId, state: 'open' });
      count(d.customerId, (row) => (row.open_feedback_count += 1));
      break;
    }
    case 'FeedbackResolved':
    case 'FeedbackClosed':
    case 'FeedbackReopened': {
      const to = event.type === 'FeedbackReopened' ? 'open' : event.type === 'FeedbackResolved' ? 'resolved' : 'closed';
      linkState(linkKey('feedback', event.data.feedbackId), to, (row, from, state) => {
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
      // A refund of a merged duplicate's order (recorded on the duplicate, whose stream holds the order):
      // the primary absorbed the order's figures at the merge, and takes the refund's too.
      if (event.type === 'PurchaseRefunded' && before?.merged_into) {
        const primaryId = ownerOf(customers, event.data.customerId);
        const primary = primaryId === event.data.customerId ? undefined : customers.get(primaryId);
        if (primary) {
          const absorbed: CustomerRow = { ...primary, last_event_at: latest(primary.last_event_at, at), last_position: e.position.toString() };
          takeRefund(absorbed, event.data.currency, event.data.amount);
          onOwnEvent?.(primary, absorbed);
          customers.put(absorbed);
        }
      }
      // Later events decode as erased too; this clears what the row decrypted before the forget.
      if (event.type === 'CustomerForgotten') eraseDecrypted(after);
      onOwnEvent?.(before, after);
      customers.put(after);
      break;
    }
  }
}

const NO_KEYS: MatchKeys = { email_key: null, phone_key: null, name_key: null };
const keysOf = (row: CustomerRow): MatchKeys => ({ email_key: row.email_key, phone_key: row.phone_key, name_key: row.name_key });

/**
 * A forget reaching a copy of the read models (read-model-copies.ts): the customers' match keys go,
 * as a forget in the live tables takes them, and the groups they were in are counted again.
 */
export async function eraseMatchKeys(trx: QueryExecutorProvider, schema: string, customerIds: readonly string[]): Promise<void> {
  const t = sql.id(schema, 'customers');
  const { rows } = await sql<MatchKeys>`UPDATE ${t} c SET email_key = NULL, phone_key = NULL, name_key = NULL
      FROM (SELECT customer_id, email_key, phone_key, name_key FROM ${t} WHERE customer_id::text = ANY(${customerIds}::text[]) FOR UPDATE) old
     WHERE c.customer_id = old.customer_id
    RETURNING old.email_key, old.phone_key, old.name_key`.execute(trx);
  const keysBefore = new Map(rows.map((keys, i) => [String(i), keys]));
  await refreshDuplicateGroups(trx, schema, movedKeys({ get: () => undefined }, keysBefore));
}

/** Per reason, the keys a customer of the batch left or joined: the only groups the batch can have changed. */
function movedKeys(customers: Pick<RowSet<CustomerRow>, 'get'>, keysBefore: ReadonlyMap<string, MatchKeys>): Map<DuplicateReason, Set<string>> {
  const moved = new Map<DuplicateReason, Set<string>>(DUPLICATE_REASONS.map((reason) => [reason, new Set<string>()]));
  for (const [id, before] of keysBefore) {
    const after = customers.get(id) ?? NO_KEYS;
    for (const reason of DUPLICATE_REASONS) {
      const column = MATCH_KEY_COLUMN[reason];
      if (before[column] === after[column]) continue;
      for (const key of [before[column], after[column]]) if (key !== null) moved.get(reason)!.add(key);
    }
  }
  return moved;
}

/**
 * Counts these groups again from the customers holding their keys (an index range each), after the
 * batch's rows are written: a group of one is no group, and the oldest member may have left.
 */
async function refreshDuplicateGroups(trx: QueryExecutorProvider, schema: string, moved: ReadonlyMap<DuplicateReason, ReadonlySet<string>>): Promise<void> {
  const groups = sql.id(schema, 'customer_duplicate_groups');
  for (const [reason, keys] of moved) {
    if (keys.size === 0) continue;
    const column = sql.id(MATCH_KEY_COLUMN[reason]);
    await sql`DELETE FROM ${groups} WHERE reason = ${reason} AND match_key = ANY(${[...keys]}::text[])`.execute(trx);
    await sql`INSERT INTO ${groups} (reason, match_key, first_customer_id, members)
      SELECT ${reason}, ${column}, (array_agg(customer_id ORDER BY registered_at, customer_id))[1], count(*)
        FROM ${sql.id(schema, 'customers')} WHERE ${column} = ANY(${[...keys]}::text[])
       GROUP BY ${column} HAVING count(*) > 1`.execute(trx);
  }
}

const eraseDecrypted = (row: CustomerRow): void => {
  row.name = ERASED;
  row.email = ERASED;
  row.email_search = ERASED;
  row.name_search = ERASED;
  row.name_sort = ERASED_NAME_SORT;
  if (row.phone !== null) row.phone = ERASED;
};

/** Figures of the duplicate's history that the primary takes over on a merge (counted once, at the merge). */
const ABSORBED_COUNTS = ['order_count', 'open_feedback_count', 'deals_open', 'deals_won', 'deals_lost'] as const satisfies readonly (keyof CustomerRow)[];

/**
 * The primary absorbs a merged duplicate's purchases, refunds, feedback and deals, as the analytics do
 * (analytics/merge.ts): one person, one set of figures. Each currency's figures add up; the headline
 * currency is then the one of the first purchase of either, as for a customer's own purchases. The
 * duplicate's row keeps its figures as they stood at the merge, marked `merged`.
 */
function absorb(primary: CustomerRow, duplicate: CustomerRow): void {
  for (const c of ABSORBED_COUNTS) primary[c] += duplicate[c];
  if (duplicate.first_purchase_at !== null) primary.first_purchase_at = earliest(primary.first_purchase_at, isoOf(duplicate.first_purchase_at));
  if (duplicate.last_purchase_at !== null) primary.last_purchase_at = latest(primary.last_purchase_at, isoOf(duplicate.last_purchase_at));
  for (const [currency, theirs] of Object.entries(duplicate.currency_figures)) {
    primary.currency_figures = withCurrencyFigures(primary.currency_figures, currency, (ours) => ({
      revenue: numericOf(minorOfNumeric(ours.revenue) + minorOfNumeric(theirs.revenue)),
      refunded: numericOf(minorOfNumeric(ours.refunded) + minorOfNumeric(theirs.refunded)),
      first_purchase_at: theirs.first_purchase_at === null ? ours.first_purchase_at : isoOf(earliest(ours.first_purchase_at, theirs.first_purchase_at)),
    }));
  }
  readHeadlineFigures(primary);
}

/** The customer whose figures a record of `customerId` counts for: itself, or the primary it was merged into. */
function ownerOf(customers: Pick<RowsOf<CustomerRow>, 'get'>, customerId: string): string {
  let id = customerId;
  // Merges form chains (B into A, later A into C), of at most MAX_MERGE_CHAIN merges.
  for (let hop = 0; hop < MAX_MERGE_CHAIN; hop++) {
    const next = customers.get(id)?.merged_into;
    if (!next || !customers.get(next)) return id;
    id = next;
  }
  return id;
}

/** Loads these customers and the primaries they were merged into (following chains). */
async function loadWithPrimaries(customers: RowSet<CustomerRow>, ids: Iterable<string>): Promise<void> {
  let wanted = new Set(ids);
  // The customers themselves, then each of up to MAX_MERGE_CHAIN primaries up.
  for (let hop = 0; hop <= MAX_MERGE_CHAIN && wanted.size > 0; hop++) {
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
  // 4: match keys on `customers` and `customer_duplicate_groups`, for the duplicates report.
  // 5: the sort keys a purchase moves indexed in `customer_purchase_keys` instead of `customers`.
  // 6: `revenue_lines` keeps a refund's id and reason (the refunds export).
  // 7: `currency_figures`: the headline currency is the first purchase's in business time, not the first recorded.
  // 8: `deactivated_at` and `deactivation_reason` (exported, so an inactive customer moves with its date).
  // 9: a name's match key leaves out its invisible format characters (zero-width spaces and joiners).
  // 10: tags compare ignoring case (`VIP` and `vip` are one tag), looked up by `tag_keys`; `name_search`,
  //     the name as a search compares it (without invisible characters).
  // 11: `customer_links` keyed by kind and id: a deal and a feedback item with one id took each other's
  //     link (the wrong customer's counters, a negative open-feedback count).
  // 12: a name's match key keeps combining marks in its words (`राम शर्मा` and `रीमा शर्मा` shared `र म शर`).
  // 13: `name_sort`, the name's place in dictionary order (name-sort.ts): `?sort=name` ordered by code point
  //     ("Émile" after "zoe").
  // 14: a forgotten customer's `name_sort` is ERASED_NAME_SORT, after every name: as '[erased]' it sorted before the letters.
  version: 14,
  tables: ['customers', 'customer_purchase_keys', 'customer_links', 'revenue_lines', 'customer_duplicate_groups'],
  filter: { streamPrefixes: ['customer-', 'deal-', 'feedback-'] },
  migrate,
  apply,
  reportingViews: viewsOf('customers'),
};
