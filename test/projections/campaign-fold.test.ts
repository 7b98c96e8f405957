import { randomUUID } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { foldRecord } from '../../audit/records.ts';
import { evolveCampaign, ratioOf } from '../../projections/read-models/campaign-fold.ts';
import { CAMPAIGNS } from '../../projections/read-models/campaigns.ts';
import { foldSpec, streamOf } from '../support/fold-spec.ts';

/** The campaign fold written once (campaign-fold.ts): the live row, its figures and the auditor's record come from it. */

const campaignId = randomUUID();
const customerId = randomUUID();
const at = (day: number) => `2026-04-${String(day).padStart(2, '0')}T09:00:00.000Z`;
const on = streamOf(`campaign-${campaignId}`);
const campaign = foldSpec(evolveCampaign);

const created = on(
  {
    type: 'CampaignCreated',
    data: { campaignId, name: 'Spring', channel: 'email', budget: 100, currency: 'EUR', schedule: null, targetSegment: { tags: ['vip'] } },
  },
  at(1),
);
const launched = on({ type: 'CampaignLaunched', data: { campaignId } }, at(2));
const cost = (amount: number, day: number) =>
  on({ type: 'CampaignCostRecorded', data: { campaignId, costId: randomUUID(), amount, currency: 'EUR', description: null } }, at(day));
const response = (kind: 'sent' | 'opened' | 'converted', day: number, revenue: number | null = null, currency: string | null = null) =>
  on({ type: 'CampaignResponseRecorded', data: { campaignId, customerId, kind, revenue, currency } }, at(day));

describe('the campaign fold', () => {
  it('creates a draft with no figures yet, and nothing exists before creation', () => {
    campaign
      .given([])
      .when(created)
      .then({
        status: 'draft',
        budget: '100.0000',
        costs: '0.0000',
        revenue: '0.0000',
        roi: null,
        conversion_rate: null,
        over_budget: false,
        created_at: at(1),
        revision: 0,
      });
    campaign.given([]).when(launched).thenNothing();
  });

  it('launching keeps the first launch time through a pause and a resume', () => {
    const paused = on({ type: 'CampaignPaused', data: { campaignId, reason: null } }, at(3));
    const resumed = on({ type: 'CampaignResumed', data: { campaignId } }, at(4));
    const relaunched = on({ type: 'CampaignLaunched', data: { campaignId } }, at(5));
    campaign
      .given([created, launched, paused, resumed])
      .when(relaunched)
      .then({ status: 'active', launched_at: at(2), last_event_at: at(5) });
  });

  it('ROI is (revenue - costs) / costs from the first cost on, rounded to six decimals', () => {
    const seventy = cost(70, 3);
    campaign.given([created, launched]).when(seventy).then({ costs: '70.0000', roi: '-1.000000', over_budget: false });
    // 70 against a revenue of 120: 0.714285714... rounds up.
    campaign
      .given([created, launched, seventy])
      .when(response('converted', 4, 120, 'EUR'))
      .then({ revenue: '120.0000', roi: '0.714286' });
  });

  it('counts revenue in the campaign currency or with none given, not in another one', () => {
    const given = campaign.given([created, launched, cost(10, 3)]);
    given.when(response('converted', 4, 5, null)).then({ converted_count: 1, revenue: '5.0000', roi: '-0.500000' });
    given.when(response('converted', 4, 5, 'USD')).then({ converted_count: 1, revenue: '0.0000', roi: '-1.000000' });
  });

  it('conversion rate is converted / sent, null before anything was sent', () => {
    campaign
      .given([created, launched])
      .when(response('converted', 3, 1, 'EUR'))
      .then({ converted_count: 1, conversion_rate: null });
    const threeSent = [response('sent', 3), response('sent', 3), response('sent', 3)];
    campaign
      .given([created, launched, ...threeSent, response('converted', 4, 1, 'EUR')])
      .when(response('converted', 5, 1, 'EUR'))
      .then({ conversion_rate: '0.666667' });
    campaign
      .given([created, launched, ...threeSent])
      .when(response('opened', 4))
      .then({ opened_count: 1, conversion_rate: '0.000000' });
  });

  it('keeps its last change time when a response or cost dated earlier comes in (history imported late)', () => {
    const cancelled = on({ type: 'CampaignCancelled', data: { campaignId, reason: null } }, at(20));
    // updated_at went back to the response's day, before the cancellation and the creation's day.
    campaign
      .given([created, launched, cancelled])
      .when(response('opened', 5))
      .then({ last_event_at: at(20), opened_count: 1 });
    campaign
      .given([created, launched, cancelled])
      .when(cost(10, 6))
      .then({ last_event_at: at(20) });
    campaign
      .given([created, launched])
      .when(response('sent', 9))
      .then({ last_event_at: at(9) });
  });

  it('is over budget once costs pass the budget, not when they reach it', () => {
    const atBudget = cost(100, 3);
    campaign.given([created, launched]).when(atBudget).then({ over_budget: false });
    campaign.given([created, launched, atBudget]).when(cost(0.0001, 4)).then({ costs: '100.0001', over_budget: true });
  });

  it('a corrected cost counts at its corrected amount: costs, ROI and over-budget follow, a voided one counts 0', () => {
    const typo = on({ type: 'CampaignCostRecorded', data: { campaignId, costId: 'inv-1', amount: 700, currency: 'EUR', description: null } }, at(3));
    const corrected = (previousAmount: number, amount: number) =>
      on({ type: 'CampaignCostCorrected', data: { campaignId, costId: 'inv-1', previousAmount, amount, currency: 'EUR', reason: 'typed 700 for 70' } }, at(5));
    const given = [created, launched, cost(10, 3), typo, response('converted', 4, 120, 'EUR')];
    expect(campaign.given(given).row).toMatchObject({ costs: '710.0000', roi: '-0.830986', over_budget: true });
    campaign
      .given(given)
      .when(corrected(700, 70))
      .then({ costs: '80.0000', roi: '0.500000', over_budget: false, last_event_at: at(5) });
    campaign.given(given).when(corrected(700, 0)).then({ costs: '10.0000', roi: '11.000000', over_budget: false });
    // Voided and then corrected back: the amounts the events name, not a sum of differences that could drift.
    campaign
      .given([...given, corrected(700, 0)])
      .when(corrected(0, 70.0001))
      .then({ costs: '80.0001' });
  });

  it('leaves the row alone (same object) for an event of another kind', () => {
    const other = on({ type: 'CustomerTagged', data: { customerId, tag: 'vip' } }, at(3));
    campaign.given([created, launched]).when(other).thenUnchanged();
  });

  it('keeps every column of the campaigns table', () => {
    expect(Object.keys(campaign.given([created]).row!).sort()).toEqual([...CAMPAIGNS.columns].sort());
  });

  it("is the auditor's record of the campaign (audit/records.ts), named as the API names it", () => {
    // A conversion paid in USD, which no rate covers: its revenue is not the campaign's, and its base figure is unknown.
    const events = [
      created,
      launched,
      cost(70, 3),
      response('sent', 4),
      response('sent', 4),
      response('converted', 5, 120, 'EUR'),
      response('converted', 6, 50, 'USD'),
    ];
    expect(foldRecord('campaign', events, { baseCurrency: 'EUR', rates: new Map() })).toEqual({
      id: campaignId,
      name: 'Spring',
      channel: 'email',
      budget: 100,
      currency: 'EUR',
      startsAt: null,
      endsAt: null,
      targetSegment: { tags: ['vip'] },
      status: 'active',
      costs: 70,
      responses: { sent: 2, opened: 0, clicked: 0, converted: 2, unsubscribed: 0 },
      conversions: 2,
      revenue: 120,
      roi: 0.714286,
      conversionRate: 1,
      overBudget: false,
      createdAt: at(1),
      launchedAt: at(2),
      completedAt: null,
      cancelledAt: null,
      updatedAt: at(6),
      baseCurrency: 'EUR',
      revenueByCurrency: { EUR: 120, USD: 50 },
      costsBase: 70,
      revenueBase: null,
      roiBase: null,
      missingRates: ['USD 2026-04'],
    });
  });
});

describe('ratioOf: round(numerator / denominator, 6) as PostgreSQL numeric gives it', () => {
  it('rounds an exact half away from zero, on both sides of zero', () => {
    // 1 / 2,000,000 = 0.0000005 exactly: the seventh decimal is a tie.
    expect(ratioOf(1n, 2_000_000n)).toBe('0.000001');
    expect(ratioOf(-1n, 2_000_000n)).toBe('-0.000001');
    expect(ratioOf(1n, 2_000_001n)).toBe('0.000000');
    expect(ratioOf(-1n, 2_000_001n)).toBe('0.000000');
  });

  it('writes six decimals whatever the value, as the numeric column stored them', () => {
    expect(ratioOf(3n, 1n)).toBe('3.000000');
    expect(ratioOf(0n, 7n)).toBe('0.000000');
    expect(ratioOf(-50n, 70n)).toBe('-0.714286');
    expect(ratioOf(2n, 3n)).toBe('0.666667');
    expect(ratioOf(12_345_678_901_234_567n, 3n)).toBe('4115226300411522.333333');
  });
});
