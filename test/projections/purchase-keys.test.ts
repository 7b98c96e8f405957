import { randomUUID } from 'node:crypto';
import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createReadModelQueries } from '../../projections/queries/index.ts';
import type { CustomerListQuery } from '../../projections/queries/customers.ts';
import type { ReadScope } from '../../projections/queries/scope.ts';
import { customersProjection, readModelProjections } from '../../projections/read-models/index.ts';
import { replayInto } from '../../projections/rebuild.ts';
import { ProjectionRunner } from '../../projections/runner.ts';
import { createHarness, expectReplaysEqualLive, projectAll, rebuildingRunner, type Harness } from './support.ts';

/**
 * `customer_purchase_keys`: the sort keys of GET /customers that purchases, refunds, merges and owner
 * changes move, indexed there instead of on `customers`. The narrow rows must say what the customers'
 * own columns say (live, replayed in any batches, rebuilt from version 4), every list sorted or filtered
 * by them must give the customers the order of those columns gave, and a purchase's update of
 * `customers` must be HOT.
 */
let h: Harness;
const projections = readModelProjections();
let runner: ProjectionRunner;
let q: ReturnType<typeof createReadModelQueries>;
const owners = [randomUUID(), randomUUID(), randomUUID()];
const customers = Array.from({ length: 24 }, () => randomUUID());
/** A customer whose every purchase is in yen: a large headline revenue worth little in the base currency. */
const yenCustomer = randomUUID();

const day = (n: number) => new Date(Date.UTC(2025, 0, 1 + n, 10)).toISOString();

beforeAll(async () => {
  h = await createHarness('purchase_keys');
  runner = new ProjectionRunner({ db: h.database.db, store: h.store, schema: h.schemas.read, projections, codec: h.codec, concurrent: true });
  await runner.start();
  const { run } = h;
  for (const [i, ownerId] of owners.entries())
    await run({ type: 'RegisterUser', userId: ownerId, name: `Owner ${i}`, email: `owner${i}@crm.example`, role: 'sales' });
  for (const [i, customerId] of customers.entries()) {
    await run({ type: 'RegisterCustomer', customerId, name: `Customer ${i}`, email: `c${i}@example.com` });
    // One in four has no owner; the others spread over three, so owner scopes hold several each.
    if (i % 4 !== 3) await run({ type: 'AssignCustomerOwner', customerId, ownerId: owners[i % 3]! });
    // Equal revenues, order counts and purchase days on purpose: the id breaks the ties. Every sixth buys nothing.
    for (let p = 0; p < i % 6; p++) {
      await run({
        type: 'RecordPurchase',
        customerId,
        orderId: `o${i}-${p}`,
        amount: [10, 20, 35.5][p % 3]!,
        currency: 'EUR',
        occurredAt: day((i * 7 + p) % 9),
      });
    }
  }
  // A refund (revenue down, order count kept), a purchase in another currency (an order, no revenue).
  await run({ type: 'RefundPurchase', customerId: customers[5]!, orderId: 'o5-1', refundId: 'r5-1', amount: 20, currency: 'EUR' });
  await run({ type: 'RecordPurchase', customerId: customers[4]!, orderId: 'o4-usd', amount: 99, currency: 'USD', occurredAt: day(30) });
  // A merge: the primary absorbs the duplicate's purchases; then both change owners.
  await run({ type: 'MergeCustomer', customerId: customers[2]!, duplicateId: customers[11]! });
  await run({ type: 'AssignCustomerOwner', customerId: customers[2]!, ownerId: owners[0]! });
  await run({ type: 'AssignCustomerOwner', customerId: customers[3]!, ownerId: owners[1]! });
  await run({ type: 'AssignCustomerOwner', customerId: customers[4]!, ownerId: owners[2]! });
  await run({ type: 'ForgetCustomer', customerId: customers[17]! });
  await run({ type: 'RegisterCustomer', customerId: yenCustomer, name: 'Yen buyer', email: 'yen@example.com' });
  await run({ type: 'AssignCustomerOwner', customerId: yenCustomer, ownerId: owners[0]! });
  await run({ type: 'RecordPurchase', customerId: yenCustomer, orderId: 'y1', amount: 12042, currency: 'JPY', occurredAt: day(3) });
  await runner.waitForPosition(h.lastPosition(), 30_000);
  q = createReadModelQueries({ db: h.database.db, schema: h.schemas.read });
});

afterAll(async () => {
  await runner?.stop();
  await h?.close();
});

/** The customers' own columns and the narrow rows, each as text, for the customers of a schema. */
const keysOf = async (schema: string) => {
  const { rows } = await sql<{ own: string; narrow: string | null }>`
    SELECT (c.customer_id, c.owner_id, c.revenue, c.order_count, c.last_purchase_at)::text AS own,
           (k.customer_id, k.owner_id, k.revenue, k.order_count, k.last_purchase_at)::text AS narrow
      FROM ${sql.id(schema, 'customers')} c FULL JOIN ${sql.id(schema, 'customer_purchase_keys')} k USING (customer_id)
     ORDER BY 1`.execute(h.database.db);
  return rows;
};

describe('customer_purchase_keys', () => {
  it("says what each customer's own columns say, after purchases, refunds, a merge, owner changes and a forget", async () => {
    const rows = await keysOf(h.schemas.read);
    expect(rows).toHaveLength(customers.length + 1);
    for (const row of rows) expect(row.narrow).toBe(row.own);
    // The scenario moved every kind of key (not only zeros compared with zeros).
    const { rows: moved } = await sql<{ owners: number; revenues: number; unowned: number; merged: number }>`
      SELECT count(DISTINCT owner_id)::int AS owners, count(DISTINCT revenue)::int AS revenues, count(*) FILTER (WHERE owner_id IS NULL)::int AS unowned,
             (SELECT order_count FROM ${sql.id(h.schemas.read, 'customer_purchase_keys')} WHERE customer_id = ${customers[2]!}) AS merged
        FROM ${sql.id(h.schemas.read, 'customer_purchase_keys')}`.execute(h.database.db);
    // Customer 3 was given an owner late; the primary (2) took the duplicate's (11) five orders beside its two.
    expect(moved[0]).toEqual({ owners: 3, revenues: expect.any(Number), unowned: 5, merged: 7 });
    expect(moved[0]!.revenues).toBeGreaterThan(5);
  });

  it('is the same table replayed one event per batch and all in one batch', async () => {
    await expectReplaysEqualLive(h, [customersProjection], ['customers', 'customer_purchase_keys']);
  });

  it('is written only when one of its values moves, in the same transaction as the customer row', async () => {
    const customerId = customers[7]!;
    const versions = async () => {
      const { rows } = await sql<{ own: string; narrow: string }>`SELECT c.xmin::text AS own, k.xmin::text AS narrow
        FROM ${sql.id(h.schemas.read, 'customers')} c JOIN ${sql.id(h.schemas.read, 'customer_purchase_keys')} k USING (customer_id)
        WHERE customer_id = ${customerId}`.execute(h.database.db);
      return rows[0]!;
    };
    const before = await versions();
    await runner.waitForPosition((await h.run({ type: 'TagCustomer', customerId, tag: 'gold' })).position, 30_000);
    const tagged = await versions();
    expect(tagged.own).not.toBe(before.own);
    expect(tagged.narrow).toBe(before.narrow);
    await runner.waitForPosition((await h.run({ type: 'RecordPurchase', customerId, orderId: 'o7-late', amount: 5, currency: 'EUR' })).position, 30_000);
    const bought = await versions();
    expect(bought.narrow).not.toBe(tagged.narrow);
    expect(bought.narrow).toBe(bought.own);
    for (const row of await keysOf(h.schemas.read)) expect(row.narrow).toBe(row.own);
  });
});

describe("a purchase's update of customers", () => {
  it('is HOT: it writes no index of customers, only the narrow row and its indexes', async () => {
    const customerId = randomUUID();
    await h.run({ type: 'RegisterCustomer', customerId, name: 'Hot Buyer', email: 'hot@example.com' });
    const registered = h.lastPosition();
    for (let p = 0; p < 3; p++) await h.run({ type: 'RecordPurchase', customerId, orderId: `hot-${p}`, amount: 12.5 + p, currency: 'EUR' });
    await runner.waitForPosition(h.lastPosition(), 30_000);
    // The read models up to the registration, in a schema of their own; then each purchase applied in a
    // transaction that reads the connection's counts of updated rows before and after it (exact, unlike
    // the server's shared statistics, which arrive later): the new customer's row is on a page with room
    // (fillfactor).
    const schema = `${h.schemas.read}_hot`;
    await replayInto({ db: h.database.db, store: h.store, codec: h.codec, projections: [customersProjection], schema, untilPosition: registered });
    const purchases = (await h.store.readStream(`customer-${customerId}`)).filter((e) => e.type === 'PurchaseRecorded');
    expect(purchases).toHaveLength(3);
    for (const recorded of purchases) {
      const event = await h.codec.decode(recorded);
      const counts = await h.database.db.transaction().execute(async (trx) => {
        // Counts not yet sent to the server's statistics: earlier transactions' on this connection, then this one's.
        const read = async () =>
          (
            await sql<{ table: string; updated: number; hot: number }>`
          SELECT c.relname AS table, pg_stat_get_xact_tuples_updated(c.oid)::int AS updated, pg_stat_get_xact_tuples_hot_updated(c.oid)::int AS hot
            FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
           WHERE n.nspname = ${schema} AND c.relname IN ('customers', 'customer_purchase_keys') ORDER BY 1`.execute(trx)
          ).rows;
        const before = await read();
        await customersProjection.apply({ trx, schema }, [event]);
        return (await read()).map((after, i) => ({ table: after.table, updated: after.updated - before[i]!.updated, hot: after.hot - before[i]!.hot }));
      });
      expect(counts).toEqual([
        { table: 'customer_purchase_keys', updated: 1, hot: 0 },
        { table: 'customers', updated: 1, hot: 1 },
      ]);
    }
    const replayed = await keysOf(schema);
    expect(replayed.find((r) => r.own.includes(customerId))).toMatchObject({ own: expect.stringContaining(',3,'), narrow: expect.stringContaining(',3,') });
    for (const row of replayed) expect(row.narrow).toBe(row.own);
  });
});

/** How the customers' own columns ordered the list before the keys moved to the narrow table. */
const ORDER_OF: Record<string, string> = {
  revenue: 'c.revenue',
  orderCount: 'c.order_count',
  lastPurchaseAt: "COALESCE(c.last_purchase_at, '-infinity'::timestamptz)",
};

const expectedIds = async (schema: string, sort: string, query: CustomerListQuery, scope: ReadScope | null): Promise<string[]> => {
  const desc = sort.startsWith('-');
  const direction = sql.raw(desc ? 'DESC' : 'ASC');
  const conditions = [
    sql`true`,
    ...(query.currency !== undefined ? [sql`c.currency = ${query.currency}`] : []),
    ...(query.minRevenue !== undefined ? [sql`c.revenue >= ${query.minRevenue}`] : []),
    ...(query.maxRevenue !== undefined ? [sql`c.revenue <= ${query.maxRevenue}`] : []),
    ...(scope ? [sql`c.owner_id = ANY(${[...scope.owners]}::uuid[])`] : []),
  ];
  const { rows } = await sql<{ id: string }>`SELECT c.customer_id::text AS id FROM ${sql.id(schema, 'customers')} c
    WHERE ${sql.join(conditions, sql` AND `)}
    ORDER BY ${sql.raw(ORDER_OF[desc ? sort.slice(1) : sort]!)} ${direction}, c.customer_id ${direction}`.execute(h.database.db);
  return rows.map((r) => r.id);
};

/** Every page of the list, two customers a page, by cursor. */
const pagedIds = async (queries: ReturnType<typeof createReadModelQueries>, query: CustomerListQuery, scope: ReadScope | null): Promise<string[]> => {
  const ids: string[] = [];
  let cursor: string | undefined;
  do {
    const page = await queries.listCustomers({ ...query, limit: 2, ...(cursor ? { cursor } : {}) }, scope);
    ids.push(...page.items.map((c) => c.id));
    cursor = page.nextCursor ?? undefined;
  } while (cursor);
  return ids;
};

const SORTS = ['revenue', '-revenue', 'orderCount', '-orderCount', 'lastPurchaseAt', '-lastPurchaseAt'];
const FILTERS: CustomerListQuery[] = [
  {},
  { minRevenue: 20 },
  { maxRevenue: 35.5 },
  { minRevenue: 10, maxRevenue: 65.5 },
  { currency: 'EUR', minRevenue: 20 },
  { currency: 'JPY' },
];
/** No scope; a small one (pages merged per owner); a large one (beyond SMALL_SCOPE_OWNERS: the sort index walk filtered). */
const SCOPES: Record<string, ReadScope | null> = {
  all: null,
  small: { owners: owners.slice(0, 2) },
  large: { owners: [...owners, ...Array.from({ length: 70 }, () => randomUUID())] },
};

describe('GET /customers by a purchase key', () => {
  it('pages through the same customers in the same order as the customers columns give, both ways, scoped and filtered', async () => {
    let compared = 0;
    for (const sort of SORTS) {
      for (const filter of FILTERS) {
        for (const [label, scope] of Object.entries(SCOPES)) {
          const expected = await expectedIds(h.schemas.read, sort, filter, scope);
          expect(await pagedIds(q, { ...filter, sort }, scope), `${sort} ${JSON.stringify(filter)} ${label}`).toEqual(expected);
          compared += expected.length;
        }
      }
    }
    expect(compared).toBeGreaterThan(500);
  });

  it('filters by revenue in the headline currency, and by that currency', async () => {
    // 12,042 JPY is at least 1000 in its own currency, whatever it is worth in the base currency.
    const headline = await q.listCustomers({ minRevenue: 1000, limit: 500 });
    expect(headline.items.map((c) => c.id)).toEqual([yenCustomer]);
    expect(headline.items[0]).toMatchObject({ currency: 'JPY', revenue: 12042 });
    expect((await q.listCustomers({ currency: 'EUR', minRevenue: 1000, limit: 500 })).items).toEqual([]);
    const yen = await q.listCustomers({ currency: 'JPY', sort: '-revenue', limit: 500 });
    expect(yen.items.map((c) => c.id)).toEqual([yenCustomer]);
    const euro = await q.listCustomers({ currency: 'EUR', limit: 500 });
    expect(euro.items.length).toBeGreaterThan(10);
    expect(euro.items.every((c) => c.currency === 'EUR')).toBe(true);
  });

  it('filters by revenue under the other sorts too', async () => {
    const page = await q.listCustomers({ minRevenue: 30, maxRevenue: 60, sort: 'name', limit: 500 });
    const { rows } = await sql<{ id: string }>`SELECT customer_id::text AS id FROM ${sql.id(h.schemas.read, 'customers')}
      WHERE revenue BETWEEN 30 AND 60 ORDER BY lower(name), customer_id`.execute(h.database.db);
    expect(page.items.map((c) => c.id)).toEqual(rows.map((r) => r.id));
    expect(rows.length).toBeGreaterThan(2);
  });
});

describe('upgrade from version 4 (the purchase keys indexed on customers)', () => {
  it('lists from the old tables while the new ones are rebuilt, then from customer_purchase_keys, the same pages', async () => {
    const schema = `${h.schemas.read}_v4`;
    const reportingSchema = `${h.schemas.read}_v4rep`;
    await projectAll(h, schema, projections);
    // The tables as version 4 left them: no narrow table, the six indexes on customers.
    const t = sql.id(schema, 'customers');
    await sql`DROP TABLE ${sql.id(schema, 'customer_purchase_keys')}`.execute(h.database.db);
    const lastPurchase = sql`(COALESCE(last_purchase_at, '-infinity'::timestamptz))`;
    await sql`CREATE INDEX customers_owner_revenue_idx ON ${t} (owner_id, revenue, customer_id)`.execute(h.database.db);
    await sql`CREATE INDEX customers_owner_last_purchase_idx ON ${t} (owner_id, ${lastPurchase}, customer_id)`.execute(h.database.db);
    await sql`CREATE INDEX customers_owner_order_count_idx ON ${t} (owner_id, order_count, customer_id)`.execute(h.database.db);
    await sql`CREATE INDEX customers_sort_revenue_idx ON ${t} (revenue, customer_id)`.execute(h.database.db);
    await sql`CREATE INDEX customers_sort_last_purchase_idx ON ${t} (${lastPurchase}, customer_id)`.execute(h.database.db);
    await sql`CREATE INDEX customers_sort_order_count_idx ON ${t} (order_count, customer_id)`.execute(h.database.db);
    await sql`UPDATE ${sql.id(schema, 'projection_checkpoints')} SET version = 4 WHERE name = 'customers'`.execute(h.database.db);

    const queries = createReadModelQueries({ db: h.database.db, schema });
    const cases = SORTS.flatMap((sort) => FILTERS.slice(0, 2).flatMap((filter) => ['all', 'small'].map((scope) => ({ sort, filter, scope }))));
    const lists = async () => {
      const pages: string[][] = [];
      for (const { sort, filter, scope } of cases) pages.push(await pagedIds(queries, { ...filter, sort }, SCOPES[scope]!));
      return pages;
    };
    const before = await lists();
    for (const [i, { sort, filter, scope }] of cases.entries()) {
      expect(before[i], `${sort} ${JSON.stringify(filter)} ${scope}`).toEqual(await expectedIds(schema, sort, filter, SCOPES[scope]!));
    }

    const second = rebuildingRunner(h, schema, reportingSchema, projections);
    await second.start();
    try {
      // The definition is matched here, not in SQL: a condition on it could be evaluated on indexes of
      // other schemas that other test files drop meanwhile ("could not open relation with OID ...").
      const indexed = async (table: string) =>
        (
          await sql<{ name: string; definition: string }>`SELECT indexname AS name, indexdef AS definition FROM pg_indexes
            WHERE schemaname = ${schema} AND tablename = ${table} ORDER BY 1`.execute(h.database.db)
        ).rows
          .filter((r) => /revenue|order_count|last_purchase_at/.test(r.definition))
          .map((r) => r.name);
      expect(await indexed('customers')).toEqual([]);
      expect(await indexed('customer_purchase_keys')).toEqual([
        'customer_purchase_keys_last_purchase_idx',
        'customer_purchase_keys_order_count_idx',
        'customer_purchase_keys_owner_last_purchase_idx',
        'customer_purchase_keys_owner_order_count_idx',
        'customer_purchase_keys_owner_revenue_idx',
        'customer_purchase_keys_revenue_idx',
      ]);
      for (const row of await keysOf(schema)) expect(row.narrow).toBe(row.own);
      expect(await lists()).toEqual(before);
    } finally {
      await second.stop();
    }
  });
});
