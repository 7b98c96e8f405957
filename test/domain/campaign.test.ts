import { describe, expect, it } from 'vitest';
import { commandSchemas } from '../../commands/schemas.ts';
import type { CampaignCommand } from '../../domain/campaign/commands.ts';
import { campaignDecider } from '../../domain/campaign/decider.ts';
import type { CampaignEvent, CampaignStatus } from '../../domain/campaign/events.ts';
import type { CustomerSnapshot } from '../../domain/customer/decider.ts';
import { deciderSpec, fold, timed } from '../support/decider-spec.ts';

const spec = deciderSpec(campaignDecider);
const at = '2026-03-01T09:00:00.000Z';
const K = '55555555-5555-4555-8555-555555555555';
const CUST = '11111111-1111-4111-8111-111111111111';
const CUST2 = '22222222-2222-4222-8222-222222222222';
const customer: CustomerSnapshot = { exists: true, active: true, forgotten: false, mergedInto: null, marketingConsent: true, inactiveSince: null };

const cmd = <T extends CampaignCommand['type']>(type: T, fields: Omit<Extract<CampaignCommand, { type: T }>, 'type' | 'occurredAt' | 'campaignId'>) =>
  ({ type, occurredAt: at, campaignId: K, ...fields }) as unknown as Extract<CampaignCommand, { type: T }>;

const created: CampaignEvent = {
  type: 'CampaignCreated',
  data: { campaignId: K, name: 'Spring', channel: 'email', budget: 1000, currency: 'EUR', schedule: null, targetSegment: { tags: ['vip'] } },
};
const e = (type: CampaignEvent['type'], extra: Record<string, unknown> = {}) => ({ type, data: { campaignId: K, ...extra } }) as CampaignEvent;
const scheduled = e('CampaignScheduled', { startsAt: '2026-04-01T00:00:00.000Z', endsAt: null });

/** A history that leaves the campaign in each status. */
const histories: Record<CampaignStatus, CampaignEvent[]> = {
  draft: [created],
  scheduled: [created, scheduled],
  active: [created, e('CampaignLaunched')],
  paused: [created, e('CampaignLaunched'), e('CampaignPaused', { reason: null })],
  completed: [created, e('CampaignLaunched'), e('CampaignCompleted')],
  cancelled: [created, e('CampaignCancelled', { reason: null })],
};

describe('campaign: create', () => {
  it('creates a draft', () => {
    spec
      .given([])
      .when(cmd('CreateCampaign', { name: 'Spring', channel: 'email', budget: 1000, currency: 'EUR', targetSegment: { tags: ['vip'] } }))
      .then([created]);
  });
  it('refuses a second creation, an end before the start and an inverted revenue range', () => {
    spec
      .given([created])
      .when(cmd('CreateCampaign', { name: 'X', channel: 'sms', budget: 1, currency: 'EUR' }))
      .thenRefused('campaign.already_created', 'campaignId');
    spec
      .given([])
      .when(cmd('CreateCampaign', { name: 'X', channel: 'sms', budget: 1, currency: 'EUR', schedule: { startsAt: at, endsAt: '2026-02-01T00:00:00Z' } }))
      .thenRefused('campaign.invalid_schedule', 'schedule.endsAt');
    spec
      .given([])
      .when(cmd('CreateCampaign', { name: 'X', channel: 'ads', budget: 1, currency: 'EUR', targetSegment: { minRevenue: 10, maxRevenue: 5 } }))
      .thenRefused('campaign.invalid_segment');
  });
  it('schema refuses unknown channels and segment criteria', () => {
    const base = { name: 'X', channel: 'email', budget: 1, currency: 'EUR' };
    expect(commandSchemas.CreateCampaign.safeParse(base).success).toBe(true);
    expect(commandSchemas.CreateCampaign.safeParse({ ...base, channel: 'fax' }).success).toBe(false);
    expect(commandSchemas.CreateCampaign.safeParse({ ...base, targetSegment: { age: 3 } }).success).toBe(false);
  });
});

describe('campaign: state machine', () => {
  // `action`: the verb the refusal's message uses for the command.
  const transitions: { command: CampaignCommand; action: string; allowedFrom: CampaignStatus[]; event: CampaignEvent }[] = [
    { command: cmd('ScheduleCampaign', { startsAt: '2026-04-01T00:00:00.000Z' }), action: 'schedule', allowedFrom: ['draft', 'scheduled'], event: scheduled },
    { command: cmd('LaunchCampaign', {}), action: 'launch', allowedFrom: ['draft', 'scheduled'], event: e('CampaignLaunched') },
    {
      command: cmd('PauseCampaign', { reason: 'budget review' }),
      action: 'pause',
      allowedFrom: ['active'],
      event: e('CampaignPaused', { reason: 'budget review' }),
    },
    { command: cmd('ResumeCampaign', {}), action: 'resume', allowedFrom: ['paused'], event: e('CampaignResumed') },
    { command: cmd('CompleteCampaign', {}), action: 'complete', allowedFrom: ['active', 'paused'], event: e('CampaignCompleted') },
    {
      command: cmd('CancelCampaign', {}),
      action: 'cancel',
      allowedFrom: ['draft', 'scheduled', 'active', 'paused'],
      event: e('CampaignCancelled', { reason: null }),
    },
  ];
  for (const { command, action, allowedFrom, event } of transitions) {
    for (const status of Object.keys(histories) as CampaignStatus[]) {
      if (allowedFrom.includes(status)) {
        it(`${command.type} from ${status} is accepted`, () => spec.given(histories[status]).when(command).then([event]));
      } else {
        it(`${command.type} from ${status} is refused`, () => {
          const error = spec.given(histories[status]).when(command).thenRefused('campaign.invalid_transition', 'campaignId', { status, allowedFrom });
          // The client reads which action was refused and why.
          expect(error.message).toContain(action);
          expect(error.message).toContain(status);
        });
      }
    }
    it(`${command.type} on an unknown campaign is not found`, () =>
      spec.given([]).when(command).thenRefused('campaign.not_found', 'campaignId', { campaignId: K }));
  }
  it('refuses a schedule that ends before it starts', () => {
    spec
      .given([created])
      .when(cmd('ScheduleCampaign', { startsAt: at, endsAt: at }))
      .thenRefused('campaign.invalid_schedule', 'endsAt');
  });
});

describe('campaign: costs', () => {
  const cost = (costId: string, amount: number) => cmd('RecordCampaignCost', { costId, amount, currency: 'EUR', description: 'ads' });
  const recorded = (costId: string, amount: number) => e('CampaignCostRecorded', { costId, amount, currency: 'EUR', description: 'ads' });
  it('records a cost in any status, even after cancellation', () => {
    for (const history of Object.values(histories))
      spec
        .given(history)
        .when(cost('inv-1', 250))
        .then([recorded('inv-1', 250)]);
  });
  it('a cost id is idempotent; the same id with another amount is refused', () => {
    spec
      .given([created, recorded('inv-1', 250)])
      .when(cost('inv-1', 250))
      .thenNothing();
    spec
      .given([created, recorded('inv-1', 250)])
      .when(cost('inv-1', 300))
      .thenRefused('campaign.cost_conflict', 'amount');
  });
  it('refuses a cost beyond the budget unless allowOverBudget is given', () => {
    // Budget 1000: 800 + 200 is exactly the budget; 2,200 is refused naming the rule, then accepted when allowed.
    spec
      .given([created, recorded('inv-1', 800)])
      .when(cost('inv-2', 200))
      .then([recorded('inv-2', 200)]);
    const refused = spec
      .given([created, recorded('inv-1', 800)])
      .when(cost('inv-2', 200.01))
      .thenRefused('campaign.over_budget', 'amount');
    expect(refused.details).toEqual({ rule: 'budget', budget: 1000, costs: 800, remaining: 200 });
    spec.given([created]).when(cost('inv-1', 2200)).thenRefused('campaign.over_budget', 'amount');
    spec
      .given([created])
      .when(cmd('RecordCampaignCost', { costId: 'inv-1', amount: 2200, currency: 'EUR', description: 'ads', allowOverBudget: true }))
      .then([recorded('inv-1', 2200)]);
  });
  it('refuses another currency than the budget, a zero cost and an unknown campaign', () => {
    spec
      .given([created])
      .when(cmd('RecordCampaignCost', { costId: 'c', amount: 1, currency: 'USD' }))
      .thenRefused('campaign.currency_mismatch', 'currency');
    spec.given([created]).when(cost('c', 0)).thenRefused('campaign.cost_not_positive', 'amount');
    spec.given([]).when(cost('c', 1)).thenRefused('campaign.not_found');
  });
});

describe('campaign: cost corrections', () => {
  // Budget 1000; a typing error recorded 10,000 (accepted over budget) where the invoice says 1,000.
  const recorded = e('CampaignCostRecorded', { costId: 'inv-1', amount: 10_000, currency: 'EUR', description: 'ads' });
  const correct = (amount: number, extra: Record<string, unknown> = {}) =>
    cmd('CorrectCampaignCost', { costId: 'inv-1', amount, currency: 'EUR', reason: 'typed 10,000 for 1,000', ...extra });
  const corrected = (previousAmount: number, amount: number) =>
    e('CampaignCostCorrected', { costId: 'inv-1', previousAmount, amount, currency: 'EUR', reason: 'typed 10,000 for 1,000' });
  const record = (amount: number) => cmd('RecordCampaignCost', { costId: 'inv-1', amount, currency: 'EUR', description: 'ads' });

  it('corrects a cost by a compensating event that names the amount before, in any status', () => {
    for (const history of Object.values(histories))
      spec
        .given([...history, recorded])
        .when(correct(1000))
        .then([corrected(10_000, 1000)]);
  });
  it('a correction to 0 voids the cost; the same amount again is nothing new', () => {
    spec
      .given([created, recorded])
      .when(correct(0))
      .then([corrected(10_000, 0)]);
    spec
      .given([created, recorded, corrected(10_000, 1000)])
      .when(correct(1000))
      .thenNothing();
    spec.given([created, recorded]).when(correct(10_000)).thenNothing();
  });
  it('after a correction the cost is the corrected one: recorded again with that amount it is the same cost, with the first a conflict', () => {
    const after = spec.given([created, recorded, corrected(10_000, 1000)]);
    after.when(record(1000)).thenNothing();
    const conflict = after.when(record(10_000)).thenRefused('campaign.cost_conflict', 'amount', { costId: 'inv-1', recordedAmount: 1000 });
    expect(conflict.message).toMatch(/stands at amount 1000 since its correction/);
    // Corrected twice: the latest amount stands, and the first correction's amount is a conflict too.
    const twice = spec.given([created, recorded, corrected(10_000, 1000), corrected(1000, 1100)]);
    twice.when(record(1100)).thenNothing();
    twice.when(record(1000)).thenRefused('campaign.cost_conflict', 'amount', { costId: 'inv-1', recordedAmount: 1100 });
    twice.when(correct(1100)).thenNothing();
  });
  it('refuses a cost that was never recorded, another currency, and an unknown campaign', () => {
    spec
      .given([created, recorded])
      .when(cmd('CorrectCampaignCost', { costId: 'inv-2', amount: 1, currency: 'EUR', reason: 'r' }))
      .thenRefused('campaign.cost_not_found', 'costId', { costId: 'inv-2' });
    spec
      .given([created, recorded])
      .when(correct(1000, { currency: 'USD' }))
      .thenRefused('campaign.currency_mismatch', 'currency', { expected: 'EUR' });
    spec.given([]).when(correct(1000)).thenRefused('campaign.not_found', 'campaignId');
  });
  it('holds an increase to the budget as a new cost is held; a decrease is always taken', () => {
    const small = e('CampaignCostRecorded', { costId: 'inv-1', amount: 800, currency: 'EUR', description: null });
    const other = e('CampaignCostRecorded', { costId: 'inv-2', amount: 100, currency: 'EUR', description: null });
    // 800 + 100 spent of 1000: raising inv-1 to 900 reaches the budget, 900.01 passes it.
    spec
      .given([created, small, other])
      .when(correct(900))
      .then([e('CampaignCostCorrected', { costId: 'inv-1', previousAmount: 800, amount: 900, currency: 'EUR', reason: 'typed 10,000 for 1,000' })]);
    const refused = spec.given([created, small, other]).when(correct(900.01)).thenRefused('campaign.over_budget', 'amount');
    expect(refused.details).toEqual({ rule: 'budget', budget: 1000, costs: 900, remaining: 100 });
    expect(refused.message).toMatch(/^This correction takes the campaign's costs to 1000.01 EUR/);
    spec
      .given([created, small, other])
      .when(correct(900.01, { allowOverBudget: true }))
      .then([e('CampaignCostCorrected', { costId: 'inv-1', previousAmount: 800, amount: 900.01, currency: 'EUR', reason: 'typed 10,000 for 1,000' })]);
    // 10,000 over a budget of 1000: lowered to 5,000 it is still over, and accepted without allowOverBudget.
    spec
      .given([created, recorded])
      .when(correct(5000))
      .then([corrected(10_000, 5000)]);
  });
  it('a voided cost leaves room in the budget, and can be corrected back', () => {
    // A fresh history each time: `then` folds what was decided into the state it was given.
    const voided = () => spec.given([created, recorded, corrected(10_000, 0)]);
    voided()
      .when(cmd('RecordCampaignCost', { costId: 'inv-2', amount: 1000, currency: 'EUR' }))
      .then([e('CampaignCostRecorded', { costId: 'inv-2', amount: 1000, currency: 'EUR', description: null })]);
    voided()
      .when(correct(1000))
      .then([corrected(0, 1000)]);
    // Recorded again at 0 it is refused as any zero cost is.
    voided().when(record(0)).thenRefused('campaign.cost_not_positive', 'amount');
  });
  it('takes amounts as costs take them (CommandAmount) and requires a reason', () => {
    const schema = commandSchemas.CorrectCampaignCost;
    const valid = { campaignId: K, costId: 'inv-1', amount: 1000, currency: 'EUR', reason: 'typed 10,000 for 1,000' };
    expect(schema.safeParse(valid).success).toBe(true);
    expect(schema.safeParse({ ...valid, amount: 0 }).success).toBe(true);
    const fieldOf = (input: Record<string, unknown>) => schema.safeParse(input).error?.issues[0]?.path.join('.');
    expect(fieldOf({ ...valid, amount: -1 })).toBe('amount');
    expect(fieldOf({ ...valid, amount: 1.00001 })).toBe('amount');
    expect(fieldOf({ ...valid, amount: 600_000_000_000.0625 })).toBe('amount');
    expect(fieldOf({ ...valid, currency: 'XXY' })).toBe('currency');
    expect(fieldOf({ ...valid, reason: '  ' })).toBe('reason');
    const { reason: _, ...withoutReason } = valid;
    expect(fieldOf(withoutReason)).toBe('reason');
    expect(fieldOf({ ...valid, costId: '' })).toBe('costId');
  });
});

describe('campaign: responses', () => {
  const respond = (
    kind: 'sent' | 'opened' | 'clicked' | 'converted' | 'unsubscribed',
    extra: Record<string, unknown> = {},
    customerId = CUST,
    snapshot = customer,
  ) => cmd('RecordCampaignResponse', { customerId, kind, customer: snapshot, ...extra });
  const response = (kind: string, customerId = CUST, revenue: number | null = null, currency: string | null = null) =>
    e('CampaignResponseRecorded', { customerId, kind, revenue, currency });

  it("a consent-only campaign refuses 'sent' to a customer without marketing consent, naming the rule", () => {
    const consentOnly = { ...created, data: { ...created.data, targetSegment: { marketingConsentOnly: true } } } as CampaignEvent;
    const noConsent = { ...customer, marketingConsent: false };
    const refused = spec
      .given([consentOnly, e('CampaignLaunched')])
      .when(respond('sent', {}, CUST, noConsent))
      .thenRefused('campaign.marketing_consent_required', 'customerId');
    expect(refused.details).toMatchObject({ rule: 'marketingConsentOnly' });
    expect(refused.message).toContain('marketingConsentOnly');
    spec
      .given([consentOnly, e('CampaignLaunched')])
      .when(respond('sent'))
      .then([response('sent')]);
    // Without the rule, consent is not required.
    spec
      .given(histories.active)
      .when(respond('sent', {}, CUST, noConsent))
      .then([response('sent')]);
  });
  it('accepted while active, paused or completed', () => {
    for (const status of ['active', 'paused', 'completed'] as const)
      spec
        .given(histories[status])
        .when(respond('opened'))
        .then([response('opened')]);
  });
  it('refused before launch and after cancellation', () => {
    for (const status of ['draft', 'scheduled', 'cancelled'] as const) spec.given(histories[status]).when(respond('sent')).thenRefused('campaign.not_running');
  });
  it('a cancelled campaign that ran takes the responses dated before its cancellation, as a migration brings them in', () => {
    const cancelledAt = '2024-05-19T12:00:00.000Z';
    const ran = [
      timed(created, '2024-03-01T00:00:00.000Z'),
      timed(e('CampaignLaunched'), '2024-03-26T00:00:00.000Z'),
      timed(e('CampaignCancelled', { reason: null }), cancelledAt),
    ];
    spec
      .given(ran)
      .when({ ...respond('opened'), occurredAt: '2024-04-02T10:00:00.000Z' })
      .then([response('opened')]);
    // At the cancellation's instant (a history kept by the day dates both at midnight): taken; a millisecond after: refused.
    spec
      .given(ran)
      .when({ ...respond('opened'), occurredAt: cancelledAt })
      .then([response('opened')]);
    const late = spec
      .given(ran)
      .when({ ...respond('opened'), occurredAt: '2024-05-19T12:00:00.001Z' })
      .thenRefused('campaign.not_running', 'campaignId', { status: 'cancelled', cancelledAt });
    expect(late.message).toContain('dated then or before');
    // Named in UTC, as the read models write it, however the cancellation was spelt.
    const spelt = [
      timed(created, '2024-03-01T00:00:00.000Z'),
      timed(e('CampaignLaunched'), '2024-03-26T00:00:00.000Z'),
      timed(e('CampaignCancelled', { reason: null }), '2024-05-19T14:00:00+02:00'),
    ];
    spec
      .given(spelt)
      .when({ ...respond('opened'), occurredAt: '2024-05-19T12:00:00.001Z' })
      .thenRefused('campaign.not_running', 'campaignId', { status: 'cancelled', cancelledAt });
    // Cancelled before it was ever launched: it never ran, so no response belongs to it.
    const neverRan = [timed(created, '2024-03-01T00:00:00.000Z'), timed(e('CampaignCancelled', { reason: null }), cancelledAt)];
    spec
      .given(neverRan)
      .when({ ...respond('opened'), occurredAt: '2024-04-02T10:00:00.000Z' })
      .thenRefused('campaign.not_running', 'campaignId', { status: 'cancelled' });
    // A cancellation recorded without a business time gives no instant to compare with: refused as before.
    spec
      .given([created, e('CampaignLaunched'), e('CampaignCancelled', { reason: null })])
      .when({ ...respond('opened'), occurredAt: '2024-04-02T10:00:00.000Z' })
      .thenRefused('campaign.not_running');
  });
  it('each kind once per customer per campaign', () => {
    const history = [...histories.active, response('opened')];
    spec.given(history).when(respond('opened')).thenRefused('campaign.response_already_recorded', 'kind');
    spec
      .given(history)
      .when(respond('clicked'))
      .then([response('clicked')]);
    spec
      .given(history)
      .when(respond('opened', {}, CUST2))
      .then([response('opened', CUST2)]);
  });
  it('a conversion carries its revenue, in the campaign currency by default', () => {
    spec
      .given(histories.active)
      .when(respond('converted', { revenue: 49.9 }))
      .then([response('converted', CUST, 49.9, 'EUR')]);
    spec
      .given(histories.active)
      .when(respond('converted', { revenue: 10, currency: 'EUR' }))
      .then([response('converted', CUST, 10, 'EUR')]);
    // Paid in another currency: recorded as paid (converted to the base currency by the read models), not refused.
    spec
      .given(histories.active)
      .when(respond('converted', { revenue: 10, currency: 'USD' }))
      .then([response('converted', CUST, 10, 'USD')]);
    spec.given(histories.active).when(respond('converted')).thenRefused('campaign.revenue_required', 'revenue');
    spec
      .given(histories.active)
      .when(respond('clicked', { revenue: 5 }))
      .thenRefused('campaign.revenue_only_for_conversion', 'revenue');
  });
  it('refers to customers who exist and were not merged away', () => {
    spec
      .given(histories.active)
      .when(respond('sent', {}, CUST, { ...customer, exists: false }))
      .thenRefused('customer.not_found', 'customerId');
    spec
      .given(histories.active)
      .when(respond('sent', {}, CUST, { ...customer, mergedInto: CUST2 }))
      .thenRefused('customer.merged', 'customerId');
  });
});

describe('campaign: schedules and segments', () => {
  const create = (extra: Record<string, unknown>) => cmd('CreateCampaign', { name: 'Spring', channel: 'email', budget: 1000, currency: 'EUR', ...extra });
  const createdWith = (data: Record<string, unknown>) => ({ ...created, data: { ...created.data, targetSegment: {}, ...data } }) as CampaignEvent;
  it('creates with a schedule, open-ended or with an end after its start, and the state reads it back', () => {
    const state = spec
      .given([])
      .when(create({ schedule: { startsAt: '2026-04-01T00:00:00.000Z', endsAt: '2026-04-30T00:00:00.000Z' } }))
      .then([createdWith({ schedule: { startsAt: '2026-04-01T00:00:00.000Z', endsAt: '2026-04-30T00:00:00.000Z' } })]);
    expect(state).toMatchObject({ status: 'draft', startsAt: '2026-04-01T00:00:00.000Z', endsAt: '2026-04-30T00:00:00.000Z' });
    spec
      .given([])
      .when(create({ schedule: { startsAt: '2026-04-01T00:00:00.000Z' } }))
      .then([createdWith({ schedule: { startsAt: '2026-04-01T00:00:00.000Z', endsAt: null } })]);
  });
  it('schedules with an end after the start', () => {
    const state = spec
      .given([created])
      .when(cmd('ScheduleCampaign', { startsAt: '2026-04-01T00:00:00.000Z', endsAt: '2026-04-02T00:00:00.000Z' }))
      .then([e('CampaignScheduled', { startsAt: '2026-04-01T00:00:00.000Z', endsAt: '2026-04-02T00:00:00.000Z' })]);
    expect(state).toMatchObject({ status: 'scheduled', endsAt: '2026-04-02T00:00:00.000Z' });
  });
  it('a revenue range may be open on either side or a single value; only an inverted one is refused', () => {
    for (const targetSegment of [{ minRevenue: 10 }, { maxRevenue: 5 }, { minRevenue: 5, maxRevenue: 5 }, { minRevenue: 5, maxRevenue: 10 }])
      spec
        .given([])
        .when(create({ targetSegment }))
        .then([createdWith({ targetSegment })]);
    spec
      .given([])
      .when(create({ targetSegment: { minRevenue: 10, maxRevenue: 5 } }))
      .thenRefused('campaign.invalid_segment', 'targetSegment.maxRevenue');
  });
});

describe('campaign: state after lifecycle events', () => {
  it('a resumed campaign is active again: it can be paused once more', () => {
    const resumed = [...histories.paused, e('CampaignResumed')];
    spec
      .given(resumed)
      .when(cmd('PauseCampaign', {}))
      .then([e('CampaignPaused', { reason: null })]);
  });
  it('keeps each kind of response once per customer', () => {
    const recorded = (kind: string) => e('CampaignResponseRecorded', { customerId: CUST, kind, revenue: null, currency: null });
    const state = fold(campaignDecider, [...histories.active, recorded('opened'), recorded('opened'), recorded('clicked')]);
    expect(state.responses).toEqual({ [CUST]: ['opened', 'clicked'] });
  });
});

describe('campaign: response rules', () => {
  const respond = (kind: string, extra: Record<string, unknown> = {}, snapshot = customer) =>
    cmd('RecordCampaignResponse', { customerId: CUST, kind, customer: snapshot, ...extra } as never);
  const response = (kind: string) => e('CampaignResponseRecorded', { customerId: CUST, kind, revenue: null, currency: null });
  it('a deactivated customer still opens and clicks', () => {
    spec
      .given(histories.active)
      .when(respond('opened', {}, { ...customer, active: false }))
      .then([response('opened')]);
  });
  it('on a consent-only campaign, only sending needs consent: a customer without it may still open or unsubscribe', () => {
    const consentOnly = { ...created, data: { ...created.data, targetSegment: { marketingConsentOnly: true } } } as CampaignEvent;
    const noConsent = { ...customer, marketingConsent: false };
    spec
      .given([consentOnly, e('CampaignLaunched')])
      .when(respond('opened', {}, noConsent))
      .then([response('opened')]);
    spec
      .given([consentOnly, e('CampaignLaunched')])
      .when(respond('unsubscribed', {}, noConsent))
      .then([response('unsubscribed')]);
  });
  it('a null revenue is no revenue: refused on a conversion, accepted elsewhere', () => {
    spec
      .given(histories.active)
      .when(respond('converted', { revenue: null }))
      .thenRefused('campaign.revenue_required', 'revenue');
    spec
      .given(histories.active)
      .when(respond('clicked', { revenue: null }))
      .then([response('clicked')]);
  });
  it('refusals carry the facts: status, expected currency, recorded amount', () => {
    spec.given(histories.draft).when(respond('sent')).thenRefused('campaign.not_running', 'campaignId', { status: 'draft' });
    spec
      .given([created])
      .when(cmd('RecordCampaignCost', { costId: 'c', amount: 1, currency: 'USD' }))
      .thenRefused('campaign.currency_mismatch', 'currency', { expected: 'EUR' });
    const invoice = e('CampaignCostRecorded', { costId: 'inv-1', amount: 250, currency: 'EUR', description: null });
    spec
      .given([created, invoice])
      .when(cmd('RecordCampaignCost', { costId: 'inv-1', amount: 300, currency: 'EUR' }))
      .thenRefused('campaign.cost_conflict', 'amount', { costId: 'inv-1', recordedAmount: 250 });
  });
});

describe('campaign: business time runs forward', () => {
  const createdAt = '2020-06-01T00:00:00.000Z';
  const launchedAt = '2020-07-01T00:00:00.000Z';
  const pausedAt = '2020-08-01T00:00:00.000Z';
  const dated = <C extends CampaignCommand>(command: C, occurredAt: string): C => ({ ...command, occurredAt });
  const respond = cmd('RecordCampaignResponse', { customerId: CUST, kind: 'opened', customer });
  const cost = cmd('RecordCampaignCost', { costId: 'inv-1', amount: 10, currency: 'EUR', description: null });
  it('no status change dated before the creation (an imported history launched and cancelled before it was created)', () => {
    const draft = spec.given([timed(created, createdAt)]);
    for (const command of [cmd('LaunchCampaign', {}), cmd('CancelCampaign', {}), cmd('ScheduleCampaign', { startsAt: at })])
      draft.when(dated(command, '2020-01-01T00:00:00.000Z')).thenRefused('campaign.before_status_changed', 'occurredAt', { notBefore: createdAt });
    // At the creation's own instant: not before it.
    draft.when(dated(cmd('LaunchCampaign', {}), createdAt)).then([e('CampaignLaunched')]);
  });
  it('a status change is not dated before the previous one', () => {
    const active = spec.given([timed(created, createdAt), timed(e('CampaignLaunched'), launchedAt)]);
    const between = '2020-06-15T00:00:00.000Z';
    for (const command of [cmd('PauseCampaign', {}), cmd('CompleteCampaign', {}), cmd('CancelCampaign', {})])
      active.when(dated(command, between)).thenRefused('campaign.before_status_changed', 'occurredAt', { notBefore: launchedAt });
    const paused = spec.given([timed(created, createdAt), timed(e('CampaignLaunched'), launchedAt), timed(e('CampaignPaused', { reason: null }), pausedAt)]);
    paused.when(dated(cmd('ResumeCampaign', {}), launchedAt)).thenRefused('campaign.before_status_changed', 'occurredAt', { notBefore: pausedAt });
    paused.when(dated(cmd('CompleteCampaign', {}), launchedAt)).thenRefused('campaign.before_status_changed', 'occurredAt', { notBefore: pausedAt });
    paused.when(dated(cmd('CompleteCampaign', {}), '2020-09-01T00:00:00.000Z')).then([e('CampaignCompleted')]);
  });
  it("costs and responses are not held to the statuses' times (a campaign often enters the CRM after its first invoice)", () => {
    const completed = spec.given([timed(created, createdAt), timed(e('CampaignLaunched'), launchedAt), timed(e('CampaignCompleted'), pausedAt)]);
    completed
      .when(dated(respond, '2020-01-15T00:00:00.000Z'))
      .then([e('CampaignResponseRecorded', { customerId: CUST, kind: 'opened', revenue: null, currency: null })]);
    completed
      .when(dated(cost, '2020-01-15T00:00:00.000Z'))
      .then([e('CampaignCostRecorded', { costId: 'inv-1', amount: 10, currency: 'EUR', description: null })]);
  });
  it('the fold keeps the latest status change (the creation first); without times it refuses nothing by time', () => {
    const state = fold(campaignDecider, [
      timed(created, createdAt),
      timed(e('CampaignLaunched'), launchedAt),
      timed(e('CampaignPaused', { reason: null }), pausedAt),
    ]);
    expect(state).toMatchObject({ statusChangedAt: pausedAt });
    expect(fold(campaignDecider, [timed(created, createdAt)])).toMatchObject({ statusChangedAt: createdAt });
    spec
      .given(histories.paused)
      .when(dated(cmd('ResumeCampaign', {}), '1950-01-01T00:00:00.000Z'))
      .then([e('CampaignResumed')]);
  });
});
