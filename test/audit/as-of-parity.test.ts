import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { stateAsOf } from '../../audit/as-of.ts';
import { createReadModelQueries } from '../../projections/queries/index.ts';
import { readModelProjections } from '../../projections/read-models/index.ts';
import { campaignCreated, customerRegistered, dealOpened, openAuditHarness, projectAll, type AuditHarness } from './support.ts';
import { migrateProjections } from '../../projections/checkpoints.ts';

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
const day = (n: number) => new Date(Date.UTC(2026, 0, n, 10)).toISOString();

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
  await projectAll(h, projections);
});

afterAll(async () => {
  await h?.close();
});

/** Times compare as instants (the two sides may format them differently). */
const normal = (value: unknown): unknown => (typeof value === 'string' && /^\d{4}-\d{2}-\d{2}T/.test(value) ? new Date(value).toISOString() : value);

/** The customers read model also stamps `updatedAt` for events of the customer's deals and feedback. */
const crossStream: Record<string, string[]> = { customer: ['updatedAt'] };

const sharedFields = (kind: string, record: Record<string, unknown>, view: Record<string, unknown>) => {
  const fields = Object.keys(view).filter((k) => k in record && k !== 'revision' && !(crossStream[kind] ?? []).includes(k));
  return {
    fields,
    folded: Object.fromEntries(fields.map((k) => [k, normal(record[k])])),
    live: Object.fromEntries(fields.map((k) => [k, normal(view[k])])),
  };
};

describe('as-of records read like the live views', () => {
  const queries = () => createReadModelQueries({ db: h.database.db, schema: h.schemas.read });
  const cases = [
    ['customer', () => customerId, (id: string) => queries().getCustomer(id), 10],
    ['deal', () => dealId, (id: string) => queries().getDeal(id), 8],
    ['campaign', () => campaignId, (id: string) => queries().getCampaign(id), 10],
    ['feedback', () => feedbackId, (id: string) => queries().getFeedback(id), 10],
    ['activity', () => activityId, (id: string) => queries().getActivity(id), 12],
  ] as const;
  for (const [kind, id, fetch, minShared] of cases) {
    it(`${kind}`, async () => {
      const folded = await stateAsOf(h.deps, kind, id(), new Date());
      const view = (await fetch(id())) as unknown as Record<string, unknown>;
      expect(folded).not.toBeNull();
      expect(folded!.revision).toBe(view.revision);
      const { fields, folded: mine, live } = sharedFields(kind, folded!.record, view);
      expect(fields.length).toBeGreaterThanOrEqual(minShared);
      expect(mine).toEqual(live);
    });
  }
});
