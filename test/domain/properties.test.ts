import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { fold } from '../support/decider-spec.ts';
import type { CampaignCommand } from '../../domain/campaign/commands.ts';
import { campaignDecider } from '../../domain/campaign/decider.ts';
import type { CampaignStatus } from '../../domain/campaign/events.ts';
import { eventSchemas, type CrmEventType } from '../../domain/catalogue.ts';
import type { CustomerCommand } from '../../domain/customer/commands.ts';
import { customerDecider, type CustomerSnapshot } from '../../domain/customer/decider.ts';
import type { DealCommand } from '../../domain/deal/commands.ts';
import { dealDecider } from '../../domain/deal/decider.ts';
import type { Decider } from '../../domain/decider.ts';
import { DomainError } from '../../domain/errors.ts';
import type { FeedbackCommand } from '../../domain/feedback/commands.ts';
import { feedbackDecider } from '../../domain/feedback/decider.ts';
import { priorityRank } from '../../domain/feedback/sla.ts';
import { toMinor } from '../../domain/money.ts';
import { fuzzSeed } from '../support/fuzz.ts';

/**
 * Property: `evolve` accepts every sequence `decide` can produce. Random command sequences run
 * through decide (refusals skipped, and they must be DomainErrors); every decided event must pass
 * the catalogue schema, survive a JSON round trip (as the store keeps it) and replay to the same state.
 */
const runSequence = <C, E extends { type: string; data: unknown }, S>(
  decider: Decider<C, E, S>,
  commands: C[],
  /** Checked after every event; `before` is a deep copy (evolve may update collections in place). */
  check: (before: S, after: S) => void,
) => {
  let state = decider.initialState();
  const history: E[] = [];
  for (const command of commands) {
    let decided: E[];
    try {
      decided = decider.decide(command, state);
    } catch (error) {
      if (!(error instanceof DomainError)) throw error;
      continue;
    }
    for (const event of decided) {
      eventSchemas[event.type as CrmEventType].parse(event.data);
      const before = structuredClone(state);
      state = decider.evolve(state, event);
      history.push(event);
      check(before, state);
    }
  }
  const stored = JSON.parse(JSON.stringify(history)) as E[];
  expect(fold(decider, stored)).toEqual(state);
  return { state, history };
};

const RUNS = { numRuns: 150, seed: fuzzSeed('test/domain/properties.test.ts') };
const C = '11111111-1111-4111-8111-111111111111';
const OTHER = '22222222-2222-4222-8222-222222222222';
const at = fc.date({ min: new Date('2025-01-01T00:00:00Z'), max: new Date('2027-01-01T00:00:00Z'), noInvalidDate: true }).map((d) => d.toISOString());
const money = fc.integer({ min: 0, max: 2_000_000 }).map((n) => n / 100);
const currency = fc.constantFrom('EUR', 'EUR', 'EUR', 'USD');
/** Small amounts often, so that refunds fit inside purchases and rules are exercised, not just refused. */
const smallMoney = fc.oneof(fc.constantFrom(0.01, 0.1, 1, 10, 25.5), money);
const snapshot: fc.Arbitrary<CustomerSnapshot> = fc.record({
  exists: fc.boolean(),
  active: fc.boolean(),
  forgotten: fc.boolean(),
  mergedInto: fc.constantFrom(null, null, OTHER),
  inactiveSince: fc.option(at),
  marketingConsent: fc.boolean(),
});

describe('property: evolve accepts every sequence decide can produce', () => {
  it('customer', () => {
    // Client-chosen ids, prototype member names included (they are ids like any other).
    const orderId = fc.constantFrom('o-1', 'o-2', 'constructor', '__proto__');
    const command: fc.Arbitrary<CustomerCommand> = fc
      .oneof(
        fc.record({
          type: fc.constant('RegisterCustomer' as const),
          name: fc.constantFrom('Ada', 'Bob'),
          email: fc.constantFrom('a@x.io', 'B@x.io'),
          tags: fc.array(fc.constantFrom('vip', 'new'), { maxLength: 3 }),
        }),
        fc.record({ type: fc.constant('ChangeCustomerDetails' as const), name: fc.constantFrom('Ada', 'Eve'), marketingConsent: fc.boolean() }),
        fc.record({ type: fc.constantFrom('TagCustomer' as const, 'UntagCustomer' as const), tag: fc.constantFrom('vip', 'gold') }),
        fc.record({ type: fc.constant('RecordPurchase' as const), orderId, amount: money, currency }),
        fc.record({
          type: fc.constant('RefundPurchase' as const),
          orderId,
          refundId: fc.constantFrom('r-1', 'r-2', 'toString', '__proto__'),
          amount: smallMoney,
          currency,
        }),
        fc.record({ type: fc.constantFrom('DeactivateCustomer' as const, 'ReactivateCustomer' as const, 'ForgetCustomer' as const) }),
      )
      .chain((c) => at.map((occurredAt) => ({ ...c, customerId: C, occurredAt })));
    fc.assert(
      fc.property(fc.array(command, { maxLength: 40 }), (commands) => {
        runSequence(customerDecider, commands, (before, s) => {
          for (const order of Object.values(s.orders)) expect(toMinor(order.refunded)).toBeLessThanOrEqual(toMinor(order.amount));
          for (const r of Object.values(s.refunds)) expect(s.orders[r.orderId]?.currency).toBe(r.currency);
          expect(new Set(s.tags).size).toBe(s.tags.length);
          // A recorded order never changes its amount (same order id is idempotent).
          for (const [orderId, order] of Object.entries(before.orders)) expect(s.orders[orderId]?.amount).toBe(order.amount);
        });
      }),
      RUNS,
    );
  });

  it('deal', () => {
    const stage = fc.constantFrom('lead' as const, 'qualified' as const, 'proposal' as const, 'negotiation' as const);
    const command: fc.Arbitrary<DealCommand> = fc
      .oneof(
        fc.record({
          type: fc.constant('OpenDeal' as const),
          customerId: fc.constant(C),
          title: fc.constant('T'),
          amount: money,
          currency,
          ownerId: fc.constant('o'),
          expectedCloseDate: fc.constant('2026-06-30'),
          stage: fc.option(stage, { nil: undefined }),
          probabilityOverride: fc.option(fc.double({ min: 0, max: 1, noNaN: true }), { nil: undefined }),
          customer: snapshot,
        }),
        fc.record({
          type: fc.constant('ChangeDeal' as const),
          amount: fc.option(money, { nil: undefined }),
          ownerId: fc.option(fc.constantFrom('o', 'p'), { nil: undefined }),
          probabilityOverride: fc.option(fc.option(fc.double({ min: 0, max: 1, noNaN: true }), { nil: null }), { nil: undefined }),
        }),
        fc.record({ type: fc.constant('MoveDealStage' as const), stage }),
        fc.record({ type: fc.constant('WinDeal' as const), amount: fc.option(money, { nil: undefined }) }),
        fc.record({ type: fc.constant('LoseDeal' as const), reason: fc.constant('price') }),
        fc.record({ type: fc.constant('ReopenDeal' as const), stage: fc.option(stage, { nil: undefined }) }),
      )
      .chain((c) => at.map((occurredAt) => ({ ...c, dealId: C, occurredAt })));
    fc.assert(
      fc.property(fc.array(command, { maxLength: 40 }), (commands) => {
        runSequence(dealDecider, commands, (_, s) => {
          expect(s.probability).toBeGreaterThanOrEqual(0);
          expect(s.probability).toBeLessThanOrEqual(1);
          if (s.stage === 'won') expect(s.probability).toBe(1);
          if (s.stage === 'lost') expect(s.probability).toBe(0);
        });
      }),
      RUNS,
    );
  });

  it('campaign', () => {
    const allowed: Record<string, CampaignStatus[]> = {
      draft: ['scheduled', 'active', 'cancelled'],
      scheduled: ['scheduled', 'active', 'cancelled'],
      active: ['paused', 'completed', 'cancelled'],
      paused: ['active', 'completed', 'cancelled'],
      completed: [],
      cancelled: [],
    };
    const command: fc.Arbitrary<CampaignCommand> = fc
      .oneof(
        fc.record({
          type: fc.constant('CreateCampaign' as const),
          name: fc.constant('C'),
          channel: fc.constant('email' as const),
          budget: money,
          currency: fc.constant('EUR'),
        }),
        fc.record({ type: fc.constant('ScheduleCampaign' as const), startsAt: at }),
        fc.record({
          type: fc.constantFrom(
            'LaunchCampaign' as const,
            'PauseCampaign' as const,
            'ResumeCampaign' as const,
            'CompleteCampaign' as const,
            'CancelCampaign' as const,
          ),
        }),
        fc.record({ type: fc.constant('RecordCampaignCost' as const), costId: fc.constantFrom('a', 'constructor', '__proto__'), amount: money, currency }),
        fc.record({
          type: fc.constant('CorrectCampaignCost' as const),
          costId: fc.constantFrom('a', 'constructor', '__proto__'),
          amount: money,
          currency,
          reason: fc.constant('r'),
        }),
        fc.record({
          type: fc.constant('RecordCampaignResponse' as const),
          customerId: fc.constantFrom(C, OTHER),
          kind: fc.constantFrom('sent' as const, 'opened' as const, 'converted' as const),
          revenue: fc.option(money, { nil: undefined }),
          customer: snapshot,
        }),
      )
      .chain((c) => at.map((occurredAt) => ({ ...c, campaignId: C, occurredAt })));
    fc.assert(
      fc.property(fc.array(command, { maxLength: 40 }), (commands) => {
        runSequence(campaignDecider, commands, (before, after) => {
          if (before.status !== null && before.status !== after.status) expect(allowed[before.status]).toContain(after.status);
          for (const kinds of Object.values(after.responses)) expect(new Set(kinds).size).toBe(kinds.length);
          // No command here allows overspend: costs, corrected ones included, stay within the budget.
          expect(Object.values(after.costs).reduce((sum, c) => sum + toMinor(c.amount), 0)).toBeLessThanOrEqual(toMinor(after.budget));
          // Responses are never recorded before launch or after cancellation.
          if (JSON.stringify(before.responses) !== JSON.stringify(after.responses)) expect(['active', 'paused', 'completed']).toContain(after.status);
        });
      }),
      RUNS,
    );
  });

  it('feedback', () => {
    const priority = fc.constantFrom('low' as const, 'normal' as const, 'high' as const, 'urgent' as const);
    const command: fc.Arbitrary<FeedbackCommand> = fc
      .oneof(
        fc.record({
          type: fc.constant('SubmitFeedback' as const),
          customerId: fc.constant(C),
          kind: fc.constant('complaint' as const),
          channel: fc.constant('web' as const),
          subject: fc.constant('S'),
          body: fc.constant('B'),
          priority: fc.option(priority, { nil: undefined }),
          customer: snapshot,
        }),
        fc.record({ type: fc.constant('AssignFeedback' as const), assigneeId: fc.constantFrom('a', 'b') }),
        fc.record({ type: fc.constant('RespondToFeedback' as const), responderId: fc.constant('a'), message: fc.constant('m') }),
        fc.record({ type: fc.constant('EscalateFeedback' as const), reason: fc.constant('r'), priority: fc.option(priority, { nil: undefined }) }),
        fc.record({ type: fc.constant('ResolveFeedback' as const), resolution: fc.constant('done') }),
        fc.record({ type: fc.constantFrom('ReopenFeedback' as const, 'CloseFeedback' as const) }),
        fc.record({ type: fc.constant('RateFeedback' as const), csat: fc.integer({ min: 1, max: 5 }) }),
      )
      .chain((c) => at.map((occurredAt) => ({ ...c, feedbackId: C, occurredAt })));
    fc.assert(
      fc.property(fc.array(command, { maxLength: 40 }), (commands) => {
        runSequence(feedbackDecider, commands, (before, s) => {
          if (s.rating !== null) expect(['resolved', 'closed']).toContain(s.status);
          if (before.priority && s.priority) expect(priorityRank[s.priority]).toBeGreaterThanOrEqual(priorityRank[before.priority]);
          if (before.status === 'closed') expect(s.status).toBe('closed');
        });
      }),
      RUNS,
    );
  });
});
