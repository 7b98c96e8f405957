import { randomUUID } from 'node:crypto';
import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createReadModelQueries } from '../../projections/queries/index.ts';
import { readModelProjections } from '../../projections/read-models/index.ts';
import { createReportingViews } from '../../projections/reporting.ts';
import { ProjectionRunner } from '../../projections/runner.ts';
import { createHarness, expectReplaysEqualLive, type Harness } from './support.ts';

/**
 * A duplicate with purchases, a deal and feedback is merged into a primary: the primary's customer
 * row, timeline and reporting row include the duplicate's history (as the analytics do), and the
 * duplicate's deal closing after the merge counts for the primary.
 */
let h: Harness;
const projections = readModelProjections();
let runner: ProjectionRunner;
let q: ReturnType<typeof createReadModelQueries>;
const primary = randomUUID();
const duplicate = randomUUID();
const deal = randomUUID();
const feedback = randomUUID();
const task = randomUUID();
const dealNote = randomUUID();
const alice = randomUUID();
const bob = randomUUID();
/** A pair whose first purchases are in different currencies: the duplicate's came first. */
const buyer = randomUUID();
const earlierBuyer = randomUUID();

beforeAll(async () => {
  h = await createHarness('merge_read_models');
  runner = new ProjectionRunner({ db: h.database.db, store: h.store, schema: h.schemas.read, projections, codec: h.codec, concurrent: true });
  await runner.start();
  const { run } = h;
  await run({ type: 'RegisterCustomer', customerId: primary, name: 'Grace Hopper', email: 'grace@navy.example' });
  await run({ type: 'RecordPurchase', customerId: primary, orderId: 'p-1', amount: 40, currency: 'EUR', occurredAt: '2026-01-02T10:00:00Z' });
  await run({ type: 'RegisterCustomer', customerId: duplicate, name: 'G. Hopper', email: 'g.hopper@navy.example' });
  await run({ type: 'RecordPurchase', customerId: duplicate, orderId: 'd-1', amount: 50, currency: 'EUR', occurredAt: '2025-12-01T10:00:00Z' });
  await run({ type: 'RecordPurchase', customerId: duplicate, orderId: 'd-2', amount: 40.25, currency: 'EUR', occurredAt: '2026-01-04T10:00:00Z' });
  await run({ type: 'RefundPurchase', customerId: duplicate, orderId: 'd-1', refundId: 'r-1', amount: 10.25, currency: 'EUR' });
  await run({
    type: 'OpenDeal',
    dealId: deal,
    customerId: duplicate,
    title: 'Compiler',
    amount: 900,
    currency: 'EUR',
    ownerId: 'ann',
    expectedCloseDate: '2026-06-30',
  });
  await run({
    type: 'SubmitFeedback',
    feedbackId: feedback,
    customerId: duplicate,
    kind: 'question',
    channel: 'email',
    subject: 'Manual',
    body: 'Where is it?',
  });
  await run({ type: 'LogActivity', activityId: task, customerId: duplicate, kind: 'task', subject: 'Send the manual' });
  // Owners in an awkward order: the duplicate gets one after its records exist, the primary only after the merge.
  await run({ type: 'RegisterUser', userId: alice, name: 'Alice', email: 'alice@crm.example', role: 'sales' });
  await run({ type: 'RegisterUser', userId: bob, name: 'Bob', email: 'bob@crm.example', role: 'sales' });
  await run({ type: 'AssignCustomerOwner', customerId: duplicate, ownerId: alice });
  await run({ type: 'MergeCustomer', customerId: primary, duplicateId: duplicate });
  // After the merge: the duplicate's task is completed, and a note is logged on its deal (it goes to the primary).
  await run({ type: 'CompleteActivity', activityId: task });
  await run({ type: 'LogActivity', activityId: dealNote, dealId: deal, kind: 'note', subject: 'Signed' });
  // After the merge: the duplicate's deal is won and its feedback answered and resolved.
  await run({ type: 'WinDeal', dealId: deal });
  await run({ type: 'RespondToFeedback', feedbackId: feedback, message: 'It is on its way' });
  await run({ type: 'ResolveFeedback', feedbackId: feedback, resolution: 'Sent the manual' });
  // After the merge: a refund of the duplicate's order, recorded on the duplicate (its stream holds the order).
  await run({ type: 'RefundPurchase', customerId: duplicate, orderId: 'd-2', refundId: 'r-2', amount: 5, currency: 'EUR' });
  await run({ type: 'AssignCustomerOwner', customerId: primary, ownerId: bob });
  await run({ type: 'RegisterCustomer', customerId: buyer, name: 'Ada Byron', email: 'ada@byron.example' });
  await run({ type: 'RecordPurchase', customerId: buyer, orderId: 'b-1', amount: 30, currency: 'GBP', occurredAt: '2026-01-03T10:00:00Z' });
  await run({ type: 'RegisterCustomer', customerId: earlierBuyer, name: 'A. Byron', email: 'a.byron@byron.example' });
  await run({ type: 'RecordPurchase', customerId: earlierBuyer, orderId: 'e-1', amount: 70, currency: 'EUR', occurredAt: '2025-10-01T10:00:00Z' });
  await run({ type: 'MergeCustomer', customerId: buyer, duplicateId: earlierBuyer });
  await runner.waitForPosition(h.lastPosition(), 30_000);
  await createReportingViews(h.database.db, { readSchema: h.schemas.read, reportingSchema: h.schemas.reporting, projections });
  q = createReadModelQueries({ db: h.database.db, schema: h.schemas.read });
});

afterAll(async () => {
  await runner?.stop();
  await h?.close();
});

describe('a merge in the read models', () => {
  it("adds the duplicate's purchases, refunds, deals and feedback to the primary's customer row", async () => {
    expect(await q.getCustomer(primary)).toMatchObject({
      orderCount: 3,
      revenue: 115, // 40 + 50 + 40.25 - 10.25, and the refund of 5 recorded on the duplicate after the merge
      refunded: 15.25,
      currency: 'EUR',
      firstPurchaseAt: '2025-12-01T10:00:00.000Z',
      lastPurchaseAt: '2026-01-04T10:00:00.000Z',
      dealsOpen: 0,
      dealsWon: 1, // won after the merge, counted for the primary
      openFeedbackCount: 0, // resolved after the merge
    });
    // The duplicate's own row: its stream's figures (the refund after the merge included).
    expect(await q.getCustomer(duplicate)).toMatchObject({ status: 'merged', mergedInto: primary, orderCount: 2, revenue: 75, refunded: 15.25 });
  });

  it("counts a refund of the duplicate's order recorded after the merge once, in every figure and on replay", async () => {
    const { rows } = await sql<{ n: number }>`SELECT count(*)::int AS n FROM ${sql.id(h.schemas.read, 'revenue_lines')} WHERE refund_id = 'r-2'`.execute(
      h.database.db,
    );
    expect(rows[0]!.n).toBe(1);
    expect(await q.getCustomer(primary)).toMatchObject({ revenueBase: 115 });
  });

  it("takes the duplicate's currency when its first purchase came before the primary's", async () => {
    expect(await q.getCustomer(buyer)).toMatchObject({
      orderCount: 2,
      currency: 'EUR',
      revenue: 70,
      revenueByCurrency: { EUR: 70, GBP: 30 },
      firstPurchaseAt: '2025-10-01T10:00:00.000Z',
    });
  });

  it("includes the duplicate's history in the primary's timeline, events after the merge too", async () => {
    const timeline = await q.customerTimeline(primary, { limit: 100 });
    const types = timeline!.items.map((e) => e.type);
    expect(types.filter((t) => t === 'PurchaseRecorded')).toHaveLength(3);
    expect(types).toEqual(expect.arrayContaining(['PurchaseRefunded', 'DealOpened', 'FeedbackSubmitted', 'CustomerMerged', 'DealWon', 'FeedbackResolved']));
    expect(timeline!.items.filter((e) => e.type === 'CustomerRegistered')).toHaveLength(2);
    // Both refunds of the duplicate's orders: r-1 before the merge, r-2 recorded on the duplicate after it.
    expect(timeline!.items.filter((e) => e.type === 'PurchaseRefunded')).toHaveLength(2);
    // The feedback's reply and resolution name the duplicate (whose key encrypts them), but follow the item to the primary.
    expect(
      timeline!.items
        .filter((e) => e.stream === `feedback-${feedback}`)
        .map((e) => e.type)
        .sort(),
    ).toEqual(['FeedbackResolved', 'FeedbackResponded', 'FeedbackSubmitted']);
    // The duplicate's task, its completion after the merge, and the note on the duplicate's deal.
    expect(timeline!.items.filter((e) => e.stream === `activity-${task}`).map((e) => e.type)).toEqual(['ActivityLogged', 'ActivityCompleted']);
    expect(timeline!.items.filter((e) => e.stream === `activity-${dealNote}`).map((e) => e.type)).toEqual(['ActivityLogged']);
  });

  it("logs an activity on a merged duplicate's deal for the primary", async () => {
    expect(await q.getActivity(dealNote)).toMatchObject({ customerId: primary, dealId: deal });
    expect((await q.customerActivities(primary))!.items.map((a) => a.id)).toContain(dealNote);
    expect(await q.getActivity(task)).toMatchObject({ customerId: duplicate, open: false });
  });

  it('shows the same figures in the reporting view', async () => {
    const { rows } = await sql<{ order_count: number; revenue: string; deals_won: number }>`SELECT order_count, revenue, deals_won
      FROM ${sql.id(h.schemas.reporting, 'customers')} WHERE customer_id = ${primary}::uuid`.execute(h.database.db);
    expect(rows[0]).toMatchObject({ order_count: 3, deals_won: 1 });
    expect(Number(rows[0]!.revenue)).toBe(115);
  });
});

describe("the customer's owner on the records (visibility)", () => {
  const ownersOf = async (schema: string) => {
    const t = (table: string) => sql.id(schema, table);
    const { rows } = await sql<{ id: string; owner: string | null }>`
      SELECT deal_id::text AS id, customer_owner_id::text AS owner FROM ${t('deals')} WHERE deal_id = ${deal}::uuid
      UNION ALL SELECT feedback_id::text, customer_owner_id::text FROM ${t('feedback')} WHERE feedback_id = ${feedback}::uuid
      UNION ALL SELECT activity_id::text, customer_owner_id::text FROM ${t('activities')} WHERE activity_id = ANY(${[task, dealNote]}::uuid[])`.execute(
      h.database.db,
    );
    return Object.fromEntries(rows.map((r) => [r.id, r.owner]));
  };

  it("is the primary's owner on the duplicate's deal, feedback and activities, assigned after the merge", async () => {
    expect(await ownersOf(h.schemas.read)).toEqual({ [deal]: bob, [feedback]: bob, [task]: bob, [dealNote]: bob });
  });

  it('is the same whatever the batches: a replay one event per batch and one in a single batch equal the live rows', async () => {
    const tables = ['deals', 'deal_customer_owners', 'feedback', 'feedback_customer_owners', 'activities', 'activity_customer_owners'];
    // And the customers' figures, a refund after the merge included.
    tables.push('customers', 'customer_purchase_keys', 'revenue_lines');
    expect(projections.flatMap((p) => p.tables)).toEqual(expect.arrayContaining(tables));
    await expectReplaysEqualLive(h, projections, tables, {
      alsoExpect: async (schema, label) => expect(await ownersOf(schema), label).toEqual(await ownersOf(h.schemas.read)),
    });
  });
});
