import { randomUUID } from 'node:crypto';
import fc from 'fast-check';
import pg from 'pg';
import { describe, expect, it } from 'vitest';
import { foldRecord } from '../../audit/records.ts';
import { ratesOf } from '../../audit/base-figures.ts';
import { evolveDeal } from '../../projections/read-models/deal-fold.ts';
import { DEALS } from '../../projections/read-models/deals.ts';
import { minorOfNumeric, numericOf, roundedMinorOf } from '../../shared/money.ts';
import { foldSpec, streamOf } from '../support/fold-spec.ts';
import { fuzzSeed } from '../support/fuzz.ts';
import { TEST_DATABASE_URL } from '../support/postgres.ts';

/** The deal fold written once (deal-fold.ts): the live row, its figures and the auditor's record come from it. */

const dealId = randomUUID();
const customerId = randomUUID();
const at = (day: number) => `2026-06-${String(day).padStart(2, '0')}T09:00:00.000Z`;
const on = streamOf(`deal-${dealId}`);
const deal = foldSpec(evolveDeal);

const openedWith = (amount: number, probabilityOverride: number | null, day = 1) =>
  on(
    {
      type: 'DealOpened',
      data: {
        dealId,
        customerId,
        title: 'Fleet',
        amount,
        currency: 'EUR',
        ownerId: 'ann@sales',
        expectedCloseDate: '2026-07-31',
        stage: 'lead',
        probabilityOverride,
      },
    },
    at(day),
  );
const opened = openedWith(1000, null);
const toStage = (from: 'lead' | 'qualified' | 'proposal', to: 'qualified' | 'proposal' | 'negotiation', day: number) =>
  on({ type: 'DealStageChanged', data: { dealId, from, to } }, at(day));
const won = (amount: number, day: number, reason?: string) => {
  const e = on({ type: 'DealWon', data: { dealId, from: 'negotiation', amount, currency: 'EUR' } }, at(day));
  return reason === undefined ? e : { ...e, metadata: { ...e.metadata, reason } };
};
const lost = (day: number) => on({ type: 'DealLost', data: { dealId, from: 'proposal', reason: 'budget' } }, at(day));

describe('the deal fold', () => {
  it("opens a deal at its stage's probability with its weighted amount, and nothing exists before it is opened", () => {
    deal
      .given([])
      .when(opened)
      .then({
        stage: 'lead',
        amount: '1000.0000',
        probability: '0.1000',
        probability_override: null,
        weighted_amount: '100.0000',
        amount_at: at(1),
        stage_entered_at: at(1),
        opened_at: at(1),
        customer_owner_id: null,
        revision: 0,
      });
    deal
      .given([])
      .when(toStage('lead', 'qualified', 2))
      .thenNothing();
  });

  it('takes the stage time of a deal opened in a stage it entered later (a deal brought from another system)', () => {
    const broughtOver = { ...opened, event: { ...opened.event, data: { ...opened.event.data, stageEnteredAt: at(5) } } } as typeof opened;
    deal
      .given([])
      .when(broughtOver)
      .then({ stage_entered_at: at(5), opened_at: at(1), last_event_at: at(1) });
    deal
      .given([broughtOver])
      .when(toStage('lead', 'qualified', 9))
      .then({ stage_entered_at: at(9), opened_at: at(1) });
  });

  it('moves the probability and the weighted amount with the stage, and the stage time with it', () => {
    const qualified = toStage('lead', 'qualified', 3);
    deal
      .given([opened])
      .when(qualified)
      .then({ stage: 'qualified', probability: '0.2500', weighted_amount: '250.0000', stage_entered_at: at(3) });
    deal
      .given([opened, qualified])
      .when(on({ type: 'DealTitleChanged', data: { dealId, title: 'Fleet renewal' } }, at(4)))
      .then({ title: 'Fleet renewal', stage_entered_at: at(3), last_event_at: at(4) });
    // A change dated before the latest event (allowed before a stage move): the deal was updated at the latest.
    deal
      .given([opened, qualified])
      .when(on({ type: 'DealTitleChanged', data: { dealId, title: 'Fleet renewal' } }, at(2)))
      .then({ title: 'Fleet renewal', last_event_at: at(3) });
  });

  it('an override takes the place of the stage default while open, stored as numeric(5,4) stores it', () => {
    const override = on({ type: 'DealProbabilityOverridden', data: { dealId, probabilityOverride: 0.6 } }, at(2));
    deal.given([opened]).when(override).then({ probability_override: '0.6000', probability: '0.6000', weighted_amount: '600.0000' });
    deal
      .given([opened, override])
      .when(toStage('lead', 'proposal', 3))
      .then({ probability: '0.6000' });
    // Five decimals: rounded half away from zero, as the column rounds the number it is given.
    deal
      .given([openedWith(1000, 0.12345)])
      .when(toStage('lead', 'qualified', 2))
      .then({ probability_override: '0.1235', probability: '0.1235', weighted_amount: '123.5000' });
    const cleared = on({ type: 'DealProbabilityOverridden', data: { dealId, probabilityOverride: null } }, at(3));
    deal.given([opened, override]).when(cleared).then({ probability_override: null, probability: '0.1000', weighted_amount: '100.0000' });
  });

  it('rounds the weighted amount as PostgreSQL rounds a numeric, where a float product rounds the other way', () => {
    // 12345.0014 x 0.25 = 3086.25035, a tie at the fifth decimal; in floats it lands a hair below it.
    expect(Math.round(12345.0014 * 0.25 * 10_000)).toBe(30_862_503);
    deal.given([]).when(openedWith(12345.0014, 0.25)).then({ weighted_amount: '3086.2504' });
  });

  it('an amount change restates the amount and its conversion date', () => {
    const changed = on({ type: 'DealAmountChanged', data: { dealId, amount: 1200.5, currency: 'USD' } }, at(5));
    deal
      .given([opened])
      .when(changed)
      .then({ amount: '1200.5000', currency: 'USD', amount_at: at(5), weighted_amount: '120.0500', opened_at: at(1) });
  });

  it('won: probability 1 at the amount won, closed, with the reason the command gave', () => {
    const toNegotiation = [toStage('lead', 'qualified', 2), toStage('qualified', 'proposal', 3), toStage('proposal', 'negotiation', 4)];
    deal
      .given([opened, ...toNegotiation])
      .when(won(1150, 6, 'best price'))
      .then({
        stage: 'won',
        amount: '1150.0000',
        amount_at: at(6),
        probability: '1.0000',
        weighted_amount: '1150.0000',
        closed_at: at(6),
        won_reason: 'best price',
        lost_reason: null,
      });
    deal
      .given([opened, ...toNegotiation])
      .when(won(1150, 6))
      .then({ won_reason: null });
  });

  it('lost: probability 0 with its reason; reopening clears the close and both reasons', () => {
    const toProposal = [toStage('lead', 'qualified', 2), toStage('qualified', 'proposal', 3)];
    deal
      .given([opened, ...toProposal])
      .when(lost(5))
      .then({ stage: 'lost', probability: '0.0000', weighted_amount: '0.0000', closed_at: at(5), lost_reason: 'budget' });
    deal
      .given([opened, ...toProposal, lost(5)])
      .when(on({ type: 'DealReopened', data: { dealId, from: 'lost', to: 'negotiation' } }, at(7)))
      .then({
        stage: 'negotiation',
        probability: '0.7500',
        weighted_amount: '750.0000',
        stage_entered_at: at(7),
        closed_at: null,
        lost_reason: null,
        won_reason: null,
      });
  });

  it('leaves the row alone (same object) for an event of another kind', () => {
    deal
      .given([opened])
      .when(on({ type: 'CustomerTagged', data: { customerId, tag: 'vip' } }, at(2)))
      .thenUnchanged();
  });

  it('keeps every column of the deals table', () => {
    expect(Object.keys(deal.given([opened]).row!).sort()).toEqual([...DEALS.columns].sort());
  });

  it("is the auditor's record of the deal (audit/records.ts), named as the API names it", () => {
    const events = [
      openedWith(12345.0014, null),
      toStage('lead', 'qualified', 2),
      on({ type: 'DealProbabilityOverridden', data: { dealId, probabilityOverride: 0.25 } }, at(3)),
      toStage('qualified', 'proposal', 4),
    ];
    // In GBP: EUR at 0.85 from the day the amount was stated.
    const rates = ratesOf(
      [on({ type: 'ExchangeRateSet', data: { currency: 'EUR', baseCurrency: 'GBP', rate: '0.85', validFrom: at(1), previousRate: null } }, at(1))],
      'GBP',
    );
    expect(foldRecord('deal', events, { baseCurrency: 'GBP', rates })).toEqual({
      id: dealId,
      customerId,
      title: 'Fleet',
      amount: 12345.0014,
      currency: 'EUR',
      ownerId: 'ann@sales',
      stage: 'proposal',
      status: 'open',
      probability: 0.25,
      probabilityOverride: 0.25,
      weightedAmount: 3086.2504,
      expectedCloseDate: '2026-07-31',
      lostReason: null,
      stageEnteredAt: at(4),
      openedAt: at(1),
      closedAt: null,
      updatedAt: at(4),
      // round(12345.0014 x 0.85, 4); round(that x 0.25, 4).
      amountAt: at(1),
      baseCurrency: 'GBP',
      amountBase: 10493.2512,
      weightedAmountBase: 2623.3128,
      missingRates: [],
    });
  });
});

describe("the deal fold's figures are PostgreSQL's", () => {
  const seed = fuzzSeed('test/projections/deal-fold.test.ts');
  /** Any probability, and decimal ties at the fifth place (0.12345), which a float product rounds either way. */
  const probability = fc.oneof(
    fc.double({ min: 0, max: 1, noNaN: true }),
    fc.integer({ min: 0, max: 9_999 }).map((k) => Number(((k * 10 + 5) / 100_000).toFixed(5))),
  );
  const amount = fc.integer({ min: 0, max: 9_000_000_000_000_000 }).map((minor) => minor / 10_000);

  it('probability as numeric(5,4) stores the number, weighted amount as round(amount * probability, 4)', async () => {
    const cases = fc.sample(fc.tuple(amount, probability), { seed, numRuns: 500 });
    const folded = cases.map(([a, p]) => evolveDeal(undefined, openedWith(a, p))!);
    const client = new pg.Client({ connectionString: TEST_DATABASE_URL });
    await client.connect();
    try {
      // The probability travels as the projection sends it: a JSON number cast to the column's type.
      const { rows } = await client.query<{ probability: string; weighted: string }>(
        `SELECT x.p::numeric(5,4)::text AS probability, round(x.a::numeric(28,4) * x.p::numeric(5,4), 4)::text AS weighted
         FROM jsonb_to_recordset($1::jsonb) AS x(i integer, a numeric, p numeric) ORDER BY x.i`,
        [JSON.stringify(folded.map((row, i) => ({ i, a: row.amount, p: cases[i]![1] })))],
      );
      expect(folded.map((row) => [row.probability, row.weighted_amount])).toEqual(rows.map((r) => [r.probability, r.weighted]));
    } finally {
      await client.end();
    }
    // The sample rounded probabilities and products, not only exact ones.
    expect(cases.some(([, p]) => Number(numericOf(roundedMinorOf(p))) !== p)).toBe(true);
    expect(folded.some((row) => (minorOfNumeric(row.amount) * minorOfNumeric(row.probability)) % 10_000n !== 0n)).toBe(true);
  });
});
