import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { stateAsOf, type RecordAsOf } from '../../audit/as-of.ts';
import { MASKED } from '../../audit/event-view.ts';
import { InvalidAuditQuery } from '../../audit/history.ts';
import type { CustomerRecordInBase, DealRecord } from '../../audit/records.ts';
import { ERASED } from '../../domain/shared.ts';
import { campaignCreated, customerRegistered, dealOpened, openAuditHarness, sleep, type AuditHarness } from './support.ts';

let h: AuditHarness;
const customerId = randomUUID();
const dealId = randomUUID();
let beforeRegistration: Date;
let betweenChanges: Date;
let afterPurchase: Date;

/** A instant strictly between two appends (record times have microsecond precision). */
const instant = async (): Promise<Date> => {
  await sleep(15);
  const at = new Date();
  await sleep(15);
  return at;
};

beforeAll(async () => {
  h = await openAuditHarness('audit_as_of');
  beforeRegistration = await instant();
  await h.record(`customer-${customerId}`, 'CustomerRegistered', customerRegistered(customerId));
  await h.record(`deal-${dealId}`, 'DealOpened', dealOpened(dealId, customerId));
  betweenChanges = await instant();
  await h.record(`customer-${customerId}`, 'CustomerContactDetailsChanged', { customerId, email: 'ada@engines.example' });
  await h.record(`deal-${dealId}`, 'DealStageChanged', { dealId, from: 'lead', to: 'qualified' });
  await h.record(`deal-${dealId}`, 'DealAmountChanged', { dealId, amount: 1500, currency: 'EUR' });
  // Business time before `betweenChanges`, record time after it.
  await h.record(
    `customer-${customerId}`,
    'PurchaseRecorded',
    { customerId, orderId: 'o-1', amount: 99.9, currency: 'EUR' },
    { occurredAt: new Date(betweenChanges.getTime() - 86_400_000).toISOString() },
  );
  afterPurchase = await instant();
});

afterAll(async () => {
  await h?.close();
});

describe('state as of an instant', () => {
  it('between two changes returns the earlier values and the revision they reflect', async () => {
    const then = (await stateAsOf(h.deps, 'customer', customerId, betweenChanges)) as RecordAsOf<CustomerRecordInBase>;
    expect(then.revision).toBe(0);
    expect(then.record).toMatchObject({ id: customerId, email: 'ada@example.com', name: 'Ada Lovelace', orderCount: 0 });
    expect(then.asOf).toBe(betweenChanges.toISOString());

    const now = (await stateAsOf(h.deps, 'customer', customerId, new Date())) as RecordAsOf<CustomerRecordInBase>;
    expect(now.revision).toBe(2);
    expect(now.record).toMatchObject({ email: 'ada@engines.example', orderCount: 1, revenue: 99.9, currency: 'EUR', revenueByCurrency: { EUR: 99.9 } });
  });

  it('filters on record time: a back-dated purchase recorded later is not in the earlier state', async () => {
    const then = (await stateAsOf(h.deps, 'customer', customerId, betweenChanges)) as RecordAsOf<CustomerRecordInBase>;
    expect(then.record.orderCount).toBe(0);
    expect(then.record.lastPurchaseAt).toBeNull();
    const later = (await stateAsOf(h.deps, 'customers', customerId, afterPurchase.toISOString())) as RecordAsOf<CustomerRecordInBase>;
    expect(later.record.lastPurchaseAt).toBe(new Date(betweenChanges.getTime() - 86_400_000).toISOString());
  });

  it('on the business axis folds what had happened by then, in stream order, whenever it was recorded', async () => {
    const then = (await stateAsOf(h.deps, 'customer', customerId, betweenChanges, { time: 'business' })) as RecordAsOf<CustomerRecordInBase>;
    // The email change (revision 1) happened after the instant; the purchase (revision 2) a day before it.
    expect(then).toMatchObject({ time: 'business', revision: 2, occurredAt: new Date(betweenChanges.getTime() - 86_400_000).toISOString() });
    expect(then.record).toMatchObject({ email: 'ada@example.com', orderCount: 1, revenue: 99.9 });
    const onRecordTime = (await stateAsOf(h.deps, 'customer', customerId, betweenChanges)) as RecordAsOf<CustomerRecordInBase>;
    expect(onRecordTime).toMatchObject({ time: 'record', revision: 0, record: { orderCount: 0 } });
    expect(await stateAsOf(h.deps, 'customer', customerId, beforeRegistration, { time: 'business' })).toBeNull();
  });

  it('folds deals too', async () => {
    const then = (await stateAsOf(h.deps, 'deal', dealId, betweenChanges)) as RecordAsOf<DealRecord>;
    expect(then).toMatchObject({ revision: 0, record: { stage: 'lead', amount: 1000 } });
    const now = (await stateAsOf(h.deps, 'deals', dealId, afterPurchase)) as RecordAsOf<DealRecord>;
    expect(now).toMatchObject({ revision: 2, record: { stage: 'qualified', amount: 1500 } });
  });

  it('is null before the record existed, and for an unknown id', async () => {
    expect(await stateAsOf(h.deps, 'customer', customerId, beforeRegistration)).toBeNull();
    expect(await stateAsOf(h.deps, 'feedback', randomUUID(), new Date())).toBeNull();
  });

  it('masks personal data on request and shows the erased marker after forget', async () => {
    const masked = (await stateAsOf(h.deps, 'customer', customerId, afterPurchase, { personalData: 'mask' })) as RecordAsOf<CustomerRecordInBase>;
    expect(masked.record).toMatchObject({ name: MASKED, email: MASKED, company: MASKED });
    const other = randomUUID();
    await h.record(`customer-${other}`, 'CustomerRegistered', customerRegistered(other));
    await h.personalData.forget(other);
    const erased = (await stateAsOf(h.deps, 'customer', other, new Date())) as RecordAsOf<CustomerRecordInBase>;
    expect(erased.record).toMatchObject({ name: ERASED, email: ERASED, phone: ERASED });
  });

  it('refuses an unknown kind or an instant that is not ISO 8601, naming the field', async () => {
    await expect(stateAsOf(h.deps, 'invoice', customerId, new Date())).rejects.toMatchObject({ field: 'kind' });
    await expect(stateAsOf(h.deps, 'customer', customerId, 'yesterday')).rejects.toBeInstanceOf(InvalidAuditQuery);
    await expect(stateAsOf(h.deps, 'customer', customerId, 'yesterday')).rejects.toMatchObject({ field: 'asOf' });
  });

  it('refuses an instant past now beyond the clock skew, whose answer could still change, and takes one within it', async () => {
    const minutes = (n: number) => new Date(Date.now() + n * 60_000);
    await expect(stateAsOf(h.deps, 'customer', customerId, minutes(6))).rejects.toMatchObject({
      field: 'asOf',
      message: expect.stringContaining('not known yet'),
    });
    await expect(stateAsOf(h.deps, 'customer', customerId, minutes(60 * 24 * 365 * 100), { time: 'business' })).rejects.toBeInstanceOf(InvalidAuditQuery);
    const nearlyNow = (await stateAsOf(h.deps, 'customer', customerId, minutes(4))) as RecordAsOf<CustomerRecordInBase>;
    expect(nearlyNow.record.email).toBe('ada@engines.example');
  });
});

describe('base-currency figures as of an instant', () => {
  const buyer = randomUUID();
  const deal = randomUUID();
  const campaign = randomUUID();
  const jan = (day: number) => `2026-01-${String(day).padStart(2, '0')}T10:00:00.000Z`;
  let beforeRate: Date;
  let beforeCorrection: Date;
  const gbpRate = (rate: string, previousRate: string | null) =>
    h.record('exchangerate-GBP', 'ExchangeRateSet', { currency: 'GBP', baseCurrency: 'EUR', rate, validFrom: jan(1), previousRate });

  beforeAll(async () => {
    const c = `customer-${buyer}`;
    await h.record(c, 'CustomerRegistered', customerRegistered(buyer, { email: 'pounds@example.com' }), { occurredAt: jan(1) });
    await h.record(c, 'PurchaseRecorded', { customerId: buyer, orderId: 'g-1', amount: 100, currency: 'EUR' }, { occurredAt: jan(2) });
    await h.record(c, 'PurchaseRecorded', { customerId: buyer, orderId: 'g-2', amount: 200, currency: 'GBP' }, { occurredAt: jan(3) });
    await h.record(
      c,
      'PurchaseRefunded',
      { customerId: buyer, orderId: 'g-2', refundId: 'r-g-2', amount: 50, currency: 'GBP', reason: null },
      { occurredAt: jan(4) },
    );
    await h.record(`deal-${deal}`, 'DealOpened', dealOpened(deal, buyer, { amount: 1000, currency: 'GBP', probabilityOverride: 0.5 }), { occurredAt: jan(2) });
    const k = `campaign-${campaign}`;
    await h.record(k, 'CampaignCreated', campaignCreated(campaign), { occurredAt: jan(1) });
    await h.record(k, 'CampaignLaunched', { campaignId: campaign }, { occurredAt: jan(2) });
    await h.record(k, 'CampaignCostRecorded', { campaignId: campaign, costId: 'k-1', amount: 100, currency: 'EUR', description: null }, { occurredAt: jan(2) });
    // A conversion paid in pounds: not in the campaign's own revenue (EUR), in its base figures once a rate is set.
    await h.record(
      k,
      'CampaignResponseRecorded',
      { campaignId: campaign, customerId: buyer, kind: 'converted', revenue: 150, currency: 'GBP' },
      { occurredAt: jan(3) },
    );
    beforeRate = await instant();
    await gbpRate('1.2', null);
    beforeCorrection = await instant();
    await gbpRate('1.1', '1.2');
  });

  const asOf = async (kind: string, id: string, at: Date, time?: 'record' | 'business') =>
    (await stateAsOf(h.deps, kind, id, at, time ? { time } : {}))!.record;

  it('convert with the rates recorded by then on the record axis, as crm replay --as-of does', async () => {
    expect(await asOf('customer', buyer, beforeRate)).toMatchObject({
      revenueByCurrency: { EUR: 100, GBP: 150 },
      baseCurrency: 'EUR',
      revenueBase: null,
      refunded: 0,
      refundedBase: null,
      missingRates: ['GBP 2026-01'],
    });
    // 100 + (200 - 50) x 1.2, then x 1.1 once corrected; the refund 50 x 1.2.
    expect(await asOf('customer', buyer, beforeCorrection)).toMatchObject({ revenueBase: 280, refundedBase: 60, missingRates: [] });
    expect(await asOf('customer', buyer, new Date())).toMatchObject({ revenueBase: 265, missingRates: [] });

    expect(await asOf('deal', deal, beforeRate)).toMatchObject({
      amountAt: jan(2),
      baseCurrency: 'EUR',
      amountBase: null,
      weightedAmountBase: null,
      missingRates: ['GBP 2026-01'],
    });
    expect(await asOf('deal', deal, beforeCorrection)).toMatchObject({ amountBase: 1200, weightedAmountBase: 600, missingRates: [] });

    expect(await asOf('campaign', campaign, beforeRate)).toMatchObject({
      revenue: 0,
      revenueByCurrency: { GBP: 150 },
      costsBase: 100,
      revenueBase: null,
      roiBase: null,
      missingRates: ['GBP 2026-01'],
    });
    // 150 x 1.2 = 180 against costs of 100.
    expect(await asOf('campaign', campaign, beforeCorrection)).toMatchObject({ costsBase: 100, revenueBase: 180, roiBase: 0.8, missingRates: [] });
  });

  it('convert with every rate known now on the business axis', async () => {
    // What is known now about 10 January: the corrected rate, set and corrected after that instant's record time.
    expect(await asOf('customer', buyer, new Date(jan(10)), 'business')).toMatchObject({ revenueBase: 265, missingRates: [] });
    expect(await asOf('campaign', campaign, new Date(jan(10)), 'business')).toMatchObject({ revenueBase: 165, roiBase: 0.65 });
    expect(await asOf('deal', deal, new Date(jan(10)), 'business')).toMatchObject({ amountBase: 1100, weightedAmountBase: 550 });
  });
});
