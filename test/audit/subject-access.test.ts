import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { subjectAccessExport } from '../../audit/subject-access.ts';
import type { AuditDeps } from '../../audit/deps.ts';
import { createAnalyticsProjection } from '../../analytics/projection.ts';
import { ERASED } from '../../domain/shared.ts';
import { readModelProjections } from '../../projections/read-models/index.ts';
import { campaignCreated, customerRegistered, dealOpened, openAuditHarness, projectAll, type AuditHarness } from './support.ts';
import { migrateProjections } from '../../projections/checkpoints.ts';

let h: AuditHarness;
const projections = [...readModelProjections(), createAnalyticsProjection()];
const ada = randomUUID();
const bob = randomUUID();
const dealId = randomUUID();
const feedbackId = randomUUID();
const campaignId = randomUUID();

const project = () => projectAll(h, projections);

beforeAll(async () => {
  h = await openAuditHarness('audit_sar');
  await migrateProjections(h.database.db, h.schemas.read, projections);
  await h.record(`customer-${ada}`, 'CustomerRegistered', customerRegistered(ada));
  await h.record(`customer-${bob}`, 'CustomerRegistered', customerRegistered(bob, { name: 'Bob', email: 'bob@example.com' }));
  await h.record(`customer-${ada}`, 'PurchaseRecorded', { customerId: ada, orderId: 'o-1', amount: 42, currency: 'EUR' });
  await h.record(`deal-${dealId}`, 'DealOpened', dealOpened(dealId, ada));
  // A later deal event does not name the customer, but the deal is hers.
  await h.record(`deal-${dealId}`, 'DealStageChanged', { dealId, from: 'lead', to: 'qualified' });
  await h.record(`feedback-${feedbackId}`, 'FeedbackSubmitted', {
    feedbackId,
    customerId: ada,
    kind: 'complaint',
    channel: 'email',
    subject: 'Ada writes',
    body: 'About my engine',
    priority: 'normal',
    csat: null,
    nps: null,
    firstResponseDueAt: new Date(Date.now() + 86_400_000).toISOString(),
    resolutionDueAt: new Date(Date.now() + 3 * 86_400_000).toISOString(),
  });
  await h.record(`campaign-${campaignId}`, 'CampaignCreated', campaignCreated(campaignId));
  await h.record(`campaign-${campaignId}`, 'CampaignResponseRecorded', { campaignId, customerId: ada, kind: 'sent', revenue: null, currency: null });
  await h.record(`campaign-${campaignId}`, 'CampaignResponseRecorded', { campaignId, customerId: bob, kind: 'sent', revenue: null, currency: null });
  await project();
});

afterAll(async () => {
  await h?.close();
});

describe('subject access export', () => {
  it('gathers the profile, her own and related streams, events naming her, read-model and analytics rows', async () => {
    const result = (await subjectAccessExport(h.deps, ada))!;
    expect(result.profile).toMatchObject({ id: ada, name: 'Ada Lovelace', email: 'ada@example.com', orderCount: 1 });
    expect(result.streams.sort()).toEqual([`customer-${ada}`, `deal-${dealId}`, `feedback-${feedbackId}`].sort());
    const types = result.events.map((e) => `${e.stream.split('-')[0]}:${e.type}`);
    expect(types).toEqual([
      'customer:CustomerRegistered',
      'customer:PurchaseRecorded',
      'deal:DealOpened',
      'deal:DealStageChanged',
      'feedback:FeedbackSubmitted',
      'campaign:CampaignResponseRecorded',
    ]);
    // Nothing about Bob, and nothing undecrypted.
    expect(JSON.stringify(result)).not.toContain(bob);
    expect(JSON.stringify(result)).not.toContain('enc:v');
    expect(result.events.find((e) => e.type === 'FeedbackSubmitted')!.data).toMatchObject({ subject: 'Ada writes', body: 'About my engine' });
    expect(result.readModels.customers).toHaveLength(1);
    expect(result.readModels.deals).toHaveLength(1);
    expect(result.readModels.feedback).toHaveLength(1);
    expect(result.readModels.customer_timeline!.length).toBeGreaterThanOrEqual(3);
    expect(Object.keys(result.analytics).length).toBeGreaterThan(0);
    expect(result.analytics.analytics_customer).toHaveLength(1);
    expect(result.forgotten).toBe(false);
  });

  it('after forget, shows what is left: erased personal data, the rest of the record', async () => {
    await h.personalData.forget(ada);
    await h.record(`customer-${ada}`, 'CustomerForgotten', { customerId: ada });
    await project();
    const result = (await subjectAccessExport(h.deps, ada))!;
    expect(result.forgotten).toBe(true);
    expect(result.profile).toMatchObject({ name: ERASED, email: ERASED, status: 'forgotten', orderCount: 1 });
    expect(JSON.stringify(result)).not.toContain('ada@example.com');
    expect(JSON.stringify(result)).not.toContain('Ada writes');
  });

  it('includes the registration of a duplicate merged into the customer (its name and email), on both engine paths', async () => {
    const grace = randomUUID();
    const graceAgain = randomUUID();
    await h.record(`customer-${grace}`, 'CustomerRegistered', customerRegistered(grace, { name: 'Grace Hopper', email: 'grace@navy.example' }));
    await h.record(`customer-${graceAgain}`, 'CustomerRegistered', customerRegistered(graceAgain, { name: 'G. Hopper', email: 'GRACE.H@navy.example' }));
    await h.record(`customer-${graceAgain}`, 'PurchaseRecorded', { customerId: graceAgain, orderId: 'o-7', amount: 7, currency: 'EUR' });
    await h.record(`customer-${graceAgain}`, 'CustomerMergedInto', { customerId: graceAgain, primaryId: grace });
    await h.record(`customer-${grace}`, 'CustomerMerged', { customerId: grace, duplicateId: graceAgain });
    await project();
    const generic: AuditDeps = {
      ...h.deps,
      store: new Proxy(h.store, { get: (target, prop) => (prop === 'engine' ? 'eventstoredb' : Reflect.get(target, prop)) }),
    };
    for (const deps of [h.deps, generic]) {
      const result = (await subjectAccessExport(deps, grace))!;
      expect(result.mergedDuplicates).toEqual([graceAgain]);
      expect(result.streams.sort()).toEqual([`customer-${grace}`, `customer-${graceAgain}`].sort());
      const registration = result.events.find((e) => e.type === 'CustomerRegistered' && e.stream === `customer-${graceAgain}`);
      expect(registration?.data).toMatchObject({ name: 'G. Hopper', email: 'GRACE.H@navy.example' });
      expect(result.events.some((e) => e.type === 'PurchaseRecorded' && e.stream === `customer-${graceAgain}`)).toBe(true);
      expect(result.readModels.customers!.map((r) => r.customer_id).sort()).toEqual([grace, graceAgain].sort());
    }
  });

  it('is undefined for an id the CRM knows nothing about', async () => {
    expect(await subjectAccessExport(h.deps, randomUUID())).toBeUndefined();
  });

  it('finds the same events through the generic engine path', async () => {
    const generic: AuditDeps = {
      ...h.deps,
      store: new Proxy(h.store, { get: (target, prop) => (prop === 'engine' ? 'eventstoredb' : Reflect.get(target, prop)) }),
    };
    const viaSql = (await subjectAccessExport(h.deps, ada))!;
    const viaScan = (await subjectAccessExport(generic, ada))!;
    expect(viaScan.events.map((e) => e.id)).toEqual(viaSql.events.map((e) => e.id));
    expect(viaScan.streams.sort()).toEqual(viaSql.streams.sort());
  });
});
