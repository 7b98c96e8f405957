import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { stateAsOf } from '../../audit/as-of.ts';
import { createReadModelQueries } from '../../projections/queries/index.ts';
import { readModelProjections } from '../../projections/read-models/index.ts';
import { campaignCreated, customerRegistered, dealOpened, openAuditHarness, projectAll, sleep, type AuditHarness } from './support.ts';
import { migrateProjections } from '../../projections/checkpoints.ts';
import type { CustomerRecord } from '../../audit/records.ts';
import type { RecordAsOf } from '../../audit/as-of.ts';
import { MAX_MERGE_CHAIN } from '../../domain/customer/decider.ts';

/**
 * A record folded `asOf` now must read like the live read-model view of the same record: same
 * field names, same values, for every field both have. Both are written once: the row by its read
 * model's fold (projections/read-models/*-fold.ts, tested in test/projections/*-fold.test.ts), its
 * naming by the view's `*FieldsOf` (projections/queries). What this still checks is the one thing
 * that differs between the two paths: the row folded in memory against the same row stored and read
 * back through PostgreSQL (numeric, date and time formats, jsonb).
 */
let h: AuditHarness;
const projections = readModelProjections();
const customerId = randomUUID();
const dealId = randomUUID();
const campaignId = randomUUID();
const feedbackId = randomUUID();
const activityId = randomUUID();
/** A campaign in USD (the base currency is EUR) whose costs are corrected: one in the batch that records it, one later, one voided. */
const correctedCampaignId = randomUUID();
let beforeCorrections: Date;
const day = (n: number) => new Date(Date.UTC(2026, 0, n, 10)).toISOString();
/** A merged pair: the duplicate has purchases, a deal and feedback of its own before the merge. */
const primaryId = randomUUID();
const duplicateId = randomUUID();
const duplicateDealId = randomUUID();
const primaryDealId = randomUUID();
const duplicateFeedbackId = randomUUID();
let beforeMerge: Date;

const feedbackSubmitted = (id: string, customer: string) => ({
  feedbackId: id,
  customerId: customer,
  kind: 'question',
  channel: 'email',
  subject: 'Delivery',
  body: 'When?',
  priority: 'normal',
  csat: null,
  nps: null,
  firstResponseDueAt: day(20),
  resolutionDueAt: day(25),
});

/** Records the merged pair; returns once the instant before the merge is taken. */
async function recordMergedPair(): Promise<void> {
  const p = `customer-${primaryId}`;
  const d = `customer-${duplicateId}`;
  await h.record(p, 'CustomerRegistered', customerRegistered(primaryId), { occurredAt: day(1) });
  await h.record(d, 'CustomerRegistered', customerRegistered(duplicateId, { email: 'ada.dup@example.com' }), { occurredAt: day(1) });
  await h.record(p, 'PurchaseRecorded', { customerId: primaryId, orderId: 'p-1', amount: 100, currency: 'EUR' }, { occurredAt: day(4) });
  await h.record(d, 'PurchaseRecorded', { customerId: duplicateId, orderId: 'd-1', amount: 50, currency: 'EUR' }, { occurredAt: day(2) });
  await h.record(d, 'PurchaseRecorded', { customerId: duplicateId, orderId: 'd-2', amount: 30, currency: 'USD' }, { occurredAt: day(3) });
  await h.record(
    d,
    'PurchaseRefunded',
    { customerId: duplicateId, orderId: 'd-1', refundId: 'r-1', amount: 10, currency: 'EUR', reason: null },
    { occurredAt: day(5) },
  );
  await h.record(`deal-${primaryDealId}`, 'DealOpened', dealOpened(primaryDealId, primaryId), { occurredAt: day(3) });
  await h.record(`deal-${primaryDealId}`, 'DealWon', { dealId: primaryDealId, from: 'lead', amount: 1000, currency: 'EUR' }, { occurredAt: day(6) });
  await h.record(`deal-${duplicateDealId}`, 'DealOpened', dealOpened(duplicateDealId, duplicateId), { occurredAt: day(3) });
  await h.record(`feedback-${duplicateFeedbackId}`, 'FeedbackSubmitted', feedbackSubmitted(duplicateFeedbackId, duplicateId), { occurredAt: day(4) });
  await sleep(15);
  beforeMerge = new Date();
  await sleep(15);
  await h.record(p, 'CustomerMerged', { customerId: primaryId, duplicateId }, { occurredAt: day(8) });
  await h.record(d, 'CustomerMergedInto', { customerId: duplicateId, primaryId }, { occurredAt: day(8) });
  // After the merge, the duplicate's deal counts for the primary.
  await h.record(`deal-${duplicateDealId}`, 'DealLost', { dealId: duplicateDealId, from: 'lead', reason: 'budget' }, { occurredAt: day(9) });
  await h.record(p, 'PurchaseRecorded', { customerId: primaryId, orderId: 'p-2', amount: 20, currency: 'EUR' }, { occurredAt: day(10) });
  // A refund of the duplicate's order, recorded on the duplicate after the merge: the primary's figures take it.
  await h.record(
    d,
    'PurchaseRefunded',
    { customerId: duplicateId, orderId: 'd-2', refundId: 'r-2', amount: 5, currency: 'USD', reason: null },
    { occurredAt: day(11) },
  );
}

/** Customers each merged into the next, the first MAX_MERGE_CHAIN merges from the last; the first has a USD order. */
const chain = Array.from({ length: MAX_MERGE_CHAIN + 1 }, () => randomUUID());
async function recordMergeChain(): Promise<void> {
  for (const [i, id] of chain.entries())
    await h.record(`customer-${id}`, 'CustomerRegistered', customerRegistered(id, { email: `chain${i}@example.com` }), { occurredAt: day(1) });
  await h.record(`customer-${chain[0]}`, 'PurchaseRecorded', { customerId: chain[0], orderId: 'c-1', amount: 70, currency: 'USD' }, { occurredAt: day(2) });
  for (let i = 0; i < MAX_MERGE_CHAIN; i++) {
    const [duplicate, primary] = [chain[i]!, chain[i + 1]!];
    await h.record(`customer-${primary}`, 'CustomerMerged', { customerId: primary, duplicateId: duplicate }, { occurredAt: day(3) });
    await h.record(`customer-${duplicate}`, 'CustomerMergedInto', { customerId: duplicate, primaryId: primary }, { occurredAt: day(3) });
  }
}

/** A primary that absorbed 70 duplicates, one order each: more streams than the audit once read (64). */
const widePrimary = randomUUID();
const WIDE = 70;
async function recordWideMerge(): Promise<void> {
  await h.record(`customer-${widePrimary}`, 'CustomerRegistered', customerRegistered(widePrimary, { email: 'wide@example.com' }), { occurredAt: day(1) });
  for (let i = 0; i < WIDE; i++) {
    const duplicate = randomUUID();
    await h.record(`customer-${duplicate}`, 'CustomerRegistered', customerRegistered(duplicate, { email: `wide${i}@example.com` }), { occurredAt: day(1) });
    await h.record(
      `customer-${duplicate}`,
      'PurchaseRecorded',
      { customerId: duplicate, orderId: `w-${i}`, amount: 1, currency: 'EUR' },
      { occurredAt: day(2) },
    );
    await h.record(`customer-${widePrimary}`, 'CustomerMerged', { customerId: widePrimary, duplicateId: duplicate }, { occurredAt: day(3) });
    await h.record(`customer-${duplicate}`, 'CustomerMergedInto', { customerId: duplicate, primaryId: widePrimary }, { occurredAt: day(3) });
  }
}

beforeAll(async () => {
  h = await openAuditHarness('audit_parity');
  await migrateProjections(h.database.db, h.schemas.read, projections);
  const c = `customer-${customerId}`;
  await h.record(c, 'CustomerRegistered', customerRegistered(customerId), { occurredAt: day(1) });
  await h.record(c, 'CustomerTagged', { customerId, tag: 'gold' }, { occurredAt: day(2) });
  await h.record(c, 'PurchaseRecorded', { customerId, orderId: 'o-1', amount: 100.25, currency: 'EUR' }, { occurredAt: day(3) });
  await h.record(c, 'PurchaseRecorded', { customerId, orderId: 'o-2', amount: 50, currency: 'EUR' }, { occurredAt: day(5) });
  await h.record(c, 'PurchaseRefunded', { customerId, orderId: 'o-1', refundId: 'r-1', amount: 20, currency: 'EUR', reason: null }, { occurredAt: day(6) });
  // Recorded last, back-dated: purchase dates are business times on both sides (the earliest and the latest).
  await h.record(c, 'PurchaseRecorded', { customerId, orderId: 'o-0', amount: 9.99, currency: 'EUR' }, { occurredAt: day(2) });
  const d = `deal-${dealId}`;
  await h.record(d, 'DealOpened', dealOpened(dealId, customerId), { occurredAt: day(2) });
  await h.record(d, 'DealStageChanged', { dealId, from: 'lead', to: 'proposal' }, { occurredAt: day(4) });
  await h.record(d, 'DealLost', { dealId, from: 'proposal', reason: 'budget' }, { occurredAt: day(7) });
  const k = `campaign-${campaignId}`;
  await h.record(
    k,
    'CampaignCreated',
    campaignCreated(campaignId, {
      budget: 500,
      schedule: { startsAt: day(10), endsAt: null },
      targetSegment: { tags: ['gold'] },
    }),
    { occurredAt: day(1) },
  );
  await h.record(k, 'CampaignLaunched', { campaignId }, { occurredAt: day(10) });
  await h.record(k, 'CampaignCostRecorded', { campaignId, costId: 'c-1', amount: 70, currency: 'EUR', description: null }, { occurredAt: day(11) });
  // 70 against a revenue of 120 gives a repeating ROI (0.714285...): both sides must round it alike.
  for (const kind of ['sent', 'opened', 'converted'] as const) {
    await h.record(
      k,
      'CampaignResponseRecorded',
      {
        campaignId,
        customerId,
        kind,
        revenue: kind === 'converted' ? 120 : null,
        currency: kind === 'converted' ? 'EUR' : null,
      },
      { occurredAt: day(12) },
    );
  }
  const f = `feedback-${feedbackId}`;
  await h.record(
    f,
    'FeedbackSubmitted',
    {
      feedbackId,
      customerId,
      kind: 'complaint',
      channel: 'email',
      subject: 'Broken engine',
      body: 'It does not compute',
      priority: 'high',
      csat: null,
      nps: 3,
      firstResponseDueAt: day(3),
      resolutionDueAt: day(6),
    },
    { occurredAt: day(2) },
  );
  await h.record(f, 'FeedbackAssigned', { feedbackId, assigneeId: 'sue@support' }, { occurredAt: day(2) });
  await h.record(f, 'FeedbackResponded', { feedbackId, responderId: 'sue@support', message: 'On it', firstResponse: true }, { occurredAt: day(3) });
  await h.record(f, 'FeedbackResolved', { feedbackId, resolution: 'Replaced' }, { occurredAt: day(5) });
  await h.record(f, 'FeedbackReopened', { feedbackId, reason: null, resolutionDueAt: day(9) }, { occurredAt: day(6) });
  await h.record(f, 'FeedbackRated', { feedbackId, csat: 4, comment: null }, { occurredAt: day(6) });
  const a = `activity-${activityId}`;
  const assignee = randomUUID();
  await h.record(
    a,
    'ActivityLogged',
    { activityId, customerId, dealId, kind: 'task', subject: 'Quote', body: 'Three options', dueAt: day(9), assigneeId: null },
    { occurredAt: day(3) },
  );
  await h.record(a, 'ActivityChanged', { activityId, customerId, body: 'Two options', assigneeId: assignee }, { occurredAt: day(4) });
  await h.record(a, 'ActivityCompleted', { activityId, customerId }, { occurredAt: day(8) });
  // USD converts on both sides at the rate valid at each amount's business time; GBP has no rate (named on both).
  await h.record('exchangerate-USD', 'ExchangeRateSet', { currency: 'USD', baseCurrency: 'EUR', rate: '0.9', validFrom: day(1), previousRate: null });
  await h.record('exchangerate-USD', 'ExchangeRateSet', { currency: 'USD', baseCurrency: 'EUR', rate: '0.95', validFrom: day(3), previousRate: null });
  await h.record(c, 'PurchaseRecorded', { customerId, orderId: 'o-gbp', amount: 12.5, currency: 'GBP' }, { occurredAt: day(7) });
  await h.record(k, 'CampaignResponseRecorded', { campaignId, customerId, kind: 'converted', revenue: 40, currency: 'USD' }, { occurredAt: day(13) });
  await recordMergedPair();
  await recordMergeChain();
  await recordWideMerge();
  const q = `campaign-${correctedCampaignId}`;
  const cost = (costId: string, amount: number) => ({ campaignId: correctedCampaignId, costId, amount, currency: 'USD', description: null });
  const corrected = (costId: string, previousAmount: number, amount: number) => ({
    campaignId: correctedCampaignId,
    costId,
    previousAmount,
    amount,
    currency: 'USD',
    reason: 'typed with a zero too many',
  });
  await h.record(q, 'CampaignCreated', campaignCreated(correctedCampaignId, { budget: 500, currency: 'USD' }), { occurredAt: day(1) });
  await h.record(q, 'CampaignLaunched', { campaignId: correctedCampaignId }, { occurredAt: day(2) });
  await h.record(q, 'CampaignCostRecorded', cost('inv-1', 1000.0003), { occurredAt: day(2) });
  await h.record(q, 'CampaignCostRecorded', cost('inv-2', 30), { occurredAt: day(4) });
  await h.record(q, 'CampaignCostRecorded', cost('inv-3', 7), { occurredAt: day(4) });
  // Corrected in the batch that records it.
  await h.record(q, 'CampaignCostCorrected', corrected('inv-2', 30, 20), { occurredAt: day(5) });
  await h.record(
    q,
    'CampaignResponseRecorded',
    { campaignId: correctedCampaignId, customerId, kind: 'converted', revenue: 200, currency: 'USD' },
    { occurredAt: day(6) },
  );
  await projectAll(h, projections);
  await sleep(15);
  beforeCorrections = new Date();
  await sleep(15);
  // Corrected after their lines were stored, inv-1 at the rate of its own day (0.9), dated later (0.95 then).
  await h.record(q, 'CampaignCostCorrected', corrected('inv-1', 1000.0003, 100.0003), { occurredAt: day(8) });
  await h.record(q, 'CampaignCostCorrected', corrected('inv-3', 7, 0), { occurredAt: day(8) });
  await projectAll(h, projections);
  // Projected in a batch of its own, where the chain's customers are loaded from their rows: the
  // refund on the furthest duplicate counts for the customer at the end of the chain.
  await h.record(
    `customer-${chain[0]}`,
    'PurchaseRefunded',
    { customerId: chain[0], orderId: 'c-1', refundId: 'c-r-1', amount: 20, currency: 'USD', reason: null },
    { occurredAt: day(4) },
  );
  await projectAll(h, projections);
});

afterAll(async () => {
  await h?.close();
});

/** Times compare as instants (the two sides may format them differently). */
const normal = (value: unknown): unknown => (typeof value === 'string' && /^\d{4}-\d{2}-\d{2}T/.test(value) ? new Date(value).toISOString() : value);

const sharedFields = (record: Record<string, unknown>, view: Record<string, unknown>) => {
  const fields = Object.keys(view).filter((k) => k in record && k !== 'revision');
  return {
    fields,
    folded: Object.fromEntries(fields.map((k) => [k, normal(record[k])])),
    live: Object.fromEntries(fields.map((k) => [k, normal(view[k])])),
  };
};

/** The customer view's fields but `revision` (reported beside the record). */
const CUSTOMER_FIELDS = 28;

describe('as-of records read like the live views', () => {
  const queries = () => createReadModelQueries({ db: h.database.db, schema: h.schemas.read });
  const cases = [
    // Every field of the customer view: its deal and feedback counts and the stamps their events leave too.
    ['customer', () => customerId, (id: string) => queries().getCustomer(id), CUSTOMER_FIELDS],
    ['merged primary', () => primaryId, (id: string) => queries().getCustomer(id), CUSTOMER_FIELDS],
    ['merged duplicate', () => duplicateId, (id: string) => queries().getCustomer(id), CUSTOMER_FIELDS],
    // Its revenue in each currency takes the order MAX_MERGE_CHAIN merges away, on both sides.
    ['merged chain end', () => chain[MAX_MERGE_CHAIN]!, (id: string) => queries().getCustomer(id), CUSTOMER_FIELDS],
    ['merged wide primary', () => widePrimary, (id: string) => queries().getCustomer(id), CUSTOMER_FIELDS],
    ['deal', () => dealId, (id: string) => queries().getDeal(id), 13],
    ['campaign', () => campaignId, (id: string) => queries().getCampaign(id), 16],
    ['feedback', () => feedbackId, (id: string) => queries().getFeedback(id), 10],
    ['activity', () => activityId, (id: string) => queries().getActivity(id), 12],
  ] as const;
  for (const [kind, id, fetch, minShared] of cases) {
    it(`${kind}`, async () => {
      const folded = await stateAsOf(h.deps, kind.startsWith('merged') ? 'customer' : kind, id(), new Date());
      const view = (await fetch(id())) as unknown as Record<string, unknown>;
      expect(folded).not.toBeNull();
      expect(folded!.revision).toBe(view.revision);
      const { fields, folded: mine, live } = sharedFields(folded!.record, view);
      expect(fields.length).toBeGreaterThanOrEqual(minShared);
      if (minShared === CUSTOMER_FIELDS) expect(fields).toEqual(expect.arrayContaining(['baseCurrency', 'revenueBase', 'missingRates']));
      // A customer, deal or campaign has every field of the live view, the base-currency figures included (converted with the rates
      // recorded by now on both sides), but a deal's `daysInStage` and `wonReason` (README).
      if (!['feedback', 'activity'].includes(kind))
        expect(Object.keys(view).filter((k) => !(k in folded!.record) && !['revision', 'daysInStage', 'wonReason'].includes(k))).toEqual([]);
      expect(mine).toEqual(live);
      if (kind === 'merged chain end') expect(folded!.record).toMatchObject({ revenueByCurrency: { USD: 50 }, revenueBase: 44 });
      if (kind === 'customer') expect(folded!.record).toMatchObject({ revenueBase: null, missingRates: ['GBP 2026-01'] });
      if (kind === 'campaign') expect(folded!.record).toMatchObject({ revenueBase: 158, missingRates: [] });
      if (kind === 'merged wide primary') expect(folded!.record).toMatchObject({ orderCount: WIDE, revenueByCurrency: { EUR: WIDE } });
    });
  }
});

describe('a campaign whose costs were corrected', () => {
  const queries = () => createReadModelQueries({ db: h.database.db, schema: h.schemas.read });

  it('reads the same live and as of now: each cost at its corrected amount, converted at the rate of its own day', async () => {
    const folded = await stateAsOf(h.deps, 'campaign', correctedCampaignId, new Date());
    const view = (await queries().getCampaign(correctedCampaignId)) as unknown as Record<string, unknown>;
    const { fields, folded: mine, live } = sharedFields(folded!.record, view);
    expect(Object.keys(view).filter((k) => !(k in folded!.record) && k !== 'revision')).toEqual([]);
    expect(fields.length).toBeGreaterThanOrEqual(16);
    expect(mine).toEqual(live);
    expect(folded!.revision).toBe(view.revision);
    // 100.0003 + 20 + 0 USD; in EUR 100.0003 x 0.9 (rate from day 1; 90.00027 rounds to 90.0003) + 20 x 0.95 (from day 3).
    expect(view).toMatchObject({ costs: 120.0003, revenue: 200, overBudget: false, costsBase: 109.0003, revenueBase: 190, missingRates: [] });
    // (200 - 120.0003) / 120.0003 and (190 - 109.0003) / 109.0003, six decimals.
    expect(view).toMatchObject({ roi: 0.666663, roiBase: 0.743114 });
  });

  it('as of before the later corrections reads the costs as they stood then', async () => {
    const then = await stateAsOf(h.deps, 'campaign', correctedCampaignId, beforeCorrections);
    // 1000.0003 + 20 + 7 USD, beyond the budget of 500; in EUR 900.0003 + 27 x 0.95.
    expect(then!.record).toMatchObject({ costs: 1027.0003, overBudget: true, costsBase: 925.6503 });
  });
});

describe('a merged customer as of an instant', () => {
  const customerAsOf = async (id: string, at: Date | string, time?: 'record' | 'business') =>
    (await stateAsOf(h.deps, 'customer', id, at, time ? { time } : {})) as RecordAsOf<CustomerRecord>;

  it("holds the duplicate's figures, deals and feedback from the merge on, as the live record does", async () => {
    const now = await customerAsOf(primaryId, new Date());
    expect(now.record).toMatchObject({
      mergedDuplicates: [duplicateId],
      orderCount: 4,
      // 100 + 20 of its own, 50 - 10 of the duplicate's; the USD purchase counts as an order only.
      revenue: 160,
      refunded: 10,
      firstPurchaseAt: day(2),
      openFeedbackCount: 1,
      dealsOpen: 0,
      dealsWon: 1,
      dealsLost: 1,
      // The duplicate's USD order, less its refund recorded on the duplicate after the merge.
      revenueByCurrency: { EUR: 160, USD: 25 },
    });
    // The duplicate keeps its counters as they stood at the merge (its figures take its own refunds).
    expect((await customerAsOf(duplicateId, new Date())).record).toMatchObject({
      status: 'merged',
      mergedInto: primaryId,
      orderCount: 2,
      dealsOpen: 1,
      dealsLost: 0,
    });
  });

  it('before the merge shows the primary alone', async () => {
    const then = await customerAsOf(primaryId, beforeMerge);
    expect(then.record).toMatchObject({
      mergedDuplicates: [],
      orderCount: 1,
      revenue: 100,
      refunded: 0,
      firstPurchaseAt: day(4),
      openFeedbackCount: 0,
      dealsOpen: 0,
      dealsWon: 1,
      dealsLost: 0,
      revenueByCurrency: { EUR: 100 },
    });
    expect((await customerAsOf(duplicateId, beforeMerge)).record).toMatchObject({ status: 'active', orderCount: 2, openFeedbackCount: 1, dealsOpen: 1 });
  });

  it('on the business axis, counts what had happened by then: the merge once it took place', async () => {
    // Business day 7: every purchase, deal and feedback of both before it, the merge (day 8) not yet.
    const before = await customerAsOf(primaryId, day(7), 'business');
    expect(before.record).toMatchObject({ mergedDuplicates: [], orderCount: 1, revenue: 100, dealsWon: 1, dealsLost: 0, openFeedbackCount: 0 });
    const after = await customerAsOf(primaryId, day(9), 'business');
    expect(after.record).toMatchObject({ mergedDuplicates: [duplicateId], orderCount: 3, revenue: 140, dealsWon: 1, dealsLost: 1, openFeedbackCount: 1 });
    const now = await customerAsOf(primaryId, new Date(), 'business');
    const onRecordTime = await customerAsOf(primaryId, new Date());
    expect(now.record).toEqual(onRecordTime.record);
  });
});
