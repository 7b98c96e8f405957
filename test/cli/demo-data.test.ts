import { describe, expect, it } from 'vitest';
import { commandSchemas, isCommandType } from '../../commands/schemas.ts';
import { buildDemoPlan, DEFAULT_DEMO_UNTIL, summarizePlan } from '../../cli/demo-data.ts';

const options = { seed: 7, customers: 300, until: DEFAULT_DEMO_UNTIL };

describe('the demo plan', () => {
  const plan = buildDemoPlan(options);

  it('is the same for the same seed and different for another', () => {
    expect(JSON.stringify(buildDemoPlan(options))).toBe(JSON.stringify(plan));
    expect(JSON.stringify(buildDemoPlan({ ...options, seed: 8 }))).not.toBe(JSON.stringify(plan));
  });

  it('holds only valid commands, in business-time order, with unique idempotency keys', () => {
    for (const action of plan) {
      const { type, ...payload } = action.command;
      expect(isCommandType(type), type).toBe(true);
      const parsed = commandSchemas[type as keyof typeof commandSchemas].safeParse(payload);
      expect(parsed.success, `${action.key}: ${parsed.error?.message}`).toBe(true);
    }
    for (let i = 1; i < plan.length; i++) expect(plan[i]!.at.getTime()).toBeGreaterThanOrEqual(plan[i - 1]!.at.getTime());
    expect(new Set(plan.map((a) => a.key)).size).toBe(plan.length);
    expect(plan.at(-1)!.at.getTime()).toBeLessThanOrEqual(DEFAULT_DEMO_UNTIL.getTime());
    expect(plan[0]!.at.getTime()).toBeGreaterThanOrEqual(DEFAULT_DEMO_UNTIL.getTime() - 731 * 86_400_000);
  });

  it('covers the whole CRM: customers, purchases, refunds, the pipeline, campaigns and feedback', () => {
    const counts = summarizePlan(plan);
    expect(counts.RegisterCustomer).toBeGreaterThanOrEqual(300);
    for (const type of [
      'RecordPurchase',
      'RefundPurchase',
      'OpenDeal',
      'MoveDealStage',
      'WinDeal',
      'LoseDeal',
      'CreateCampaign',
      'LaunchCampaign',
      'RecordCampaignResponse',
      'SubmitFeedback',
      'ResolveFeedback',
      'RateFeedback',
      'LogActivity',
    ]) {
      expect(counts[type] ?? 0, type).toBeGreaterThan(0);
    }
    const kinds = new Set(plan.filter((a) => a.command.type === 'RecordCampaignResponse').map((a) => a.command.kind));
    expect([...kinds].sort()).toEqual(['clicked', 'converted', 'opened', 'sent', 'unsubscribed']);
  });

  it('sends no campaign to a customer after they unsubscribed (every demo campaign needs consent)', () => {
    for (const { seed, customers } of [options, { seed: 42, customers: 1000 }]) {
      const unsubscribedAt = new Map<string, number>();
      const sentLate: string[] = [];
      for (const a of buildDemoPlan({ seed, customers, until: DEFAULT_DEMO_UNTIL })) {
        if (a.command.type !== 'RecordCampaignResponse') continue;
        const customer = String(a.command.customerId);
        if (a.command.kind === 'unsubscribed' && !unsubscribedAt.has(customer)) unsubscribedAt.set(customer, a.at.getTime());
        if (a.command.kind === 'sent' && (unsubscribedAt.get(customer) ?? Infinity) <= a.at.getTime()) sentLate.push(a.key);
      }
      expect(unsubscribedAt.size, `seed ${seed}`).toBeGreaterThan(0);
      expect(sentLate, `seed ${seed}`).toEqual([]);
    }
  });

  it('sells more in November and December than in the months around them', () => {
    const big = buildDemoPlan({ seed: 1, customers: 1000, until: DEFAULT_DEMO_UNTIL });
    const perMonth: Record<string, number> = {};
    for (const a of big)
      if (a.command.type === 'RecordPurchase') perMonth[a.at.toISOString().slice(0, 7)] = (perMonth[a.at.toISOString().slice(0, 7)] ?? 0) + 1;
    const count = (month: string) => perMonth[month] ?? 0;
    // The customer base grows, so compare the season with its neighbours on both sides.
    const season = (count('2025-11') + count('2025-12')) / 2;
    const around = (count('2025-09') + count('2025-10') + count('2026-01') + count('2026-02')) / 4;
    expect(season).toBeGreaterThan(around * 1.3);
  });

  it('answers some feedback after its first-response deadline', () => {
    const late = plan
      .filter((a) => a.command.type === 'RespondToFeedback')
      .filter((respond) => {
        const submit = plan.find((a) => a.command.type === 'SubmitFeedback' && a.command.feedbackId === respond.command.feedbackId)!;
        const hours = { urgent: 1, high: 4, normal: 8, low: 24 }[submit.command.priority as string]!;
        return respond.at.getTime() - submit.at.getTime() > hours * 3_600_000;
      });
    expect(late.length).toBeGreaterThan(0);
  });
});
