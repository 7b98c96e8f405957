import { describe, expect, it } from 'vitest';
import { commandSchemas } from '../../commands/schemas.ts';
import type { CustomerSnapshot } from '../../domain/customer/decider.ts';
import type { DealCommand } from '../../domain/deal/commands.ts';
import { dealDecider, dealProbability, defaultWinProbability, initialDealState } from '../../domain/deal/decider.ts';
import type { DealEvent, DealStage, OpenDealStage } from '../../domain/deal/events.ts';
import { BUSINESS_TIME_SKEW_MS } from '../../domain/shared.ts';
import { deciderSpec, fold, timed } from '../support/decider-spec.ts';

const spec = deciderSpec(dealDecider);
const at = '2026-03-01T09:00:00.000Z';
const DEAL = '44444444-4444-4444-8444-444444444444';
const CUST = '11111111-1111-4111-8111-111111111111';
const PRIMARY = '22222222-2222-4222-8222-222222222222';
const activeCustomer: CustomerSnapshot = { exists: true, active: true, forgotten: false, mergedInto: null, marketingConsent: true, inactiveSince: null };

const cmd = <T extends DealCommand['type']>(type: T, fields: Omit<Extract<DealCommand, { type: T }>, 'type' | 'occurredAt' | 'dealId'>) =>
  ({ type, occurredAt: at, dealId: DEAL, ...fields }) as unknown as Extract<DealCommand, { type: T }>;
const openCmd = (customer: CustomerSnapshot = activeCustomer, extra: Partial<Extract<DealCommand, { type: 'OpenDeal' }>> = {}) =>
  cmd('OpenDeal', { customerId: CUST, title: 'Renewal', amount: 5000, currency: 'EUR', ownerId: 'bob', expectedCloseDate: '2026-06-30', customer, ...extra });

const opened = (stage: OpenDealStage = 'lead', probabilityOverride: number | null = null): DealEvent => ({
  type: 'DealOpened',
  data: {
    dealId: DEAL,
    customerId: CUST,
    title: 'Renewal',
    amount: 5000,
    currency: 'EUR',
    ownerId: 'bob',
    expectedCloseDate: '2026-06-30',
    stage,
    probabilityOverride,
  },
});
const won: DealEvent = { type: 'DealWon', data: { dealId: DEAL, from: 'negotiation', amount: 5000, currency: 'EUR' } };
const lost: DealEvent = { type: 'DealLost', data: { dealId: DEAL, from: 'proposal', reason: 'price' } };
const moved = (from: OpenDealStage, to: OpenDealStage): DealEvent => ({ type: 'DealStageChanged', data: { dealId: DEAL, from, to } });
const foldDeal = (events: DealEvent[]) => fold(dealDecider, events, initialDealState());

describe('deal: open', () => {
  it('opens at lead by default', () => {
    spec.given([]).when(openCmd()).then([opened()]);
  });
  it("an owner named by a user id is a registered, active user; a name (an import's) is taken as it is", () => {
    const rep = '55555555-5555-4555-8555-555555555555';
    const withOwner = (owner?: { exists: boolean; active: boolean }) => openCmd(activeCustomer, { ownerId: rep, ...(owner ? { owner } : {}) });
    spec.given([]).when(withOwner()).thenRefused('user.not_found', 'ownerId', { ownerId: rep });
    spec
      .given([])
      .when(withOwner({ exists: true, active: false }))
      .thenRefused('user.inactive', 'ownerId', { ownerId: rep });
    spec
      .given([])
      .when(withOwner({ exists: true, active: true }))
      .then([{ ...opened(), data: { ...opened().data, ownerId: rep } } as DealEvent]);
    // A change of owner is held to the same rule; other changes do not look at an owner since deactivated.
    const ownedByRep: DealEvent = { ...opened(), data: { ...opened().data, ownerId: rep } } as DealEvent;
    spec
      .given([opened()])
      .when(cmd('ChangeDeal', { ownerId: rep }))
      .thenRefused('user.not_found', 'ownerId');
    spec
      .given([ownedByRep])
      .when(cmd('ChangeDeal', { ownerId: rep, amount: 6000, owner: { exists: true, active: false } }))
      .then([{ type: 'DealAmountChanged', data: { dealId: DEAL, amount: 6000, currency: 'EUR' } }]);
  });
  it("'me' in any case is no owner a command takes (the API resolves 'me' before)", () => {
    for (const me of ['me', 'ME', 'Me']) expect(commandSchemas.ChangeDeal.safeParse({ dealId: DEAL, ownerId: me }).success, me).toBe(false);
    expect(commandSchemas.ChangeDeal.safeParse({ dealId: DEAL, ownerId: 'Meredith' }).success).toBe(true);
  });
  it('opens at a given stage with a probability override', () => {
    spec
      .given([])
      .when(openCmd(activeCustomer, { stage: 'qualified', probabilityOverride: 0.4 }))
      .then([opened('qualified', 0.4)]);
  });
  it('needs an existing, active, unmerged, unforgotten customer', () => {
    // A bad reference in the body is a 422-style rule violation, not a missing resource.
    expect(
      spec
        .given([])
        .when(openCmd({ ...activeCustomer, exists: false }))
        .thenRefused('customer.not_found', 'customerId').kind,
    ).toBe('rule_violated');
    spec
      .given([])
      .when(openCmd({ ...activeCustomer, active: false }))
      .thenRefused('customer.inactive', 'customerId');
    // History brought in later: a deal opened before the customer's deactivation, and one opened after it.
    const inactiveSince = (since: string) => ({ ...activeCustomer, active: false, inactiveSince: since });
    spec
      .given([])
      .when(openCmd(inactiveSince('2026-03-02T00:00:00.000Z')))
      .then([opened()]);
    spec
      .given([])
      .when(openCmd(inactiveSince('2026-03-01T09:00:00.000Z')))
      .thenRefused('customer.inactive', 'customerId');
    const merged = spec
      .given([])
      .when(openCmd({ ...activeCustomer, mergedInto: PRIMARY }))
      .thenRefused('customer.merged', 'customerId');
    expect(merged.details).toMatchObject({ primaryId: PRIMARY });
    spec
      .given([])
      .when(openCmd({ ...activeCustomer, forgotten: true }))
      .thenRefused('customer.forgotten', 'customerId');
  });
  it('keeps the time a deal entered its stage when that was after its opening, in UTC', () => {
    const event = opened('proposal');
    spec
      .given([])
      .when(openCmd(activeCustomer, { stage: 'proposal', stageEnteredAt: '2026-03-04T10:30:00+01:00' }))
      .then([{ ...event, data: { ...event.data, stageEnteredAt: '2026-03-04T09:30:00.000Z' } } as DealEvent]);
  });
  it('stores no stage time that is the opening itself', () => {
    spec
      .given([])
      .when(openCmd(activeCustomer, { stage: 'proposal', stageEnteredAt: '2026-03-01T10:00:00+01:00' }))
      .then([opened('proposal')]);
  });
  it('refuses a stage entered before the deal was opened', () => {
    const refused = spec
      .given([])
      .when(openCmd(activeCustomer, { stage: 'proposal', stageEnteredAt: '2026-03-01T08:59:59.999Z' }))
      .thenRefused('deal.stage_entered_before_opening', 'stageEnteredAt');
    expect(refused.details).toMatchObject({ openedAt: at });
  });
  it('refuses opening the same deal twice', () => {
    spec.given([opened()]).when(openCmd()).thenRefused('deal.already_opened', 'dealId');
  });
  it('schema refuses a bad close date or a probability above 1', () => {
    const base = { customerId: CUST, title: 'T', amount: 1, currency: 'EUR', ownerId: 'o', expectedCloseDate: '2026-06-30' };
    expect(commandSchemas.OpenDeal.safeParse(base).success).toBe(true);
    expect(commandSchemas.OpenDeal.safeParse({ ...base, expectedCloseDate: '2026-13-01' }).success).toBe(false);
    expect(commandSchemas.OpenDeal.safeParse({ ...base, probabilityOverride: 1.5 }).success).toBe(false);
    // A fifth decimal is refused, not rounded away (0.00004 was recorded as 0); four are kept.
    for (const probabilityOverride of [0.00004, 0.12345])
      expect(commandSchemas.OpenDeal.safeParse({ ...base, probabilityOverride }).error?.issues[0]).toMatchObject({
        path: ['probabilityOverride'],
        message: 'at most 4 decimal places',
      });
    expect(commandSchemas.OpenDeal.safeParse({ ...base, probabilityOverride: 0.1235 }).data?.probabilityOverride).toBe(0.1235);
    expect(commandSchemas.OpenDeal.safeParse({ ...base, stage: 'won' }).success).toBe(false);
  });
  it('schema: a change needs a field beside the deal id', () => {
    expect(commandSchemas.ChangeDeal.safeParse({ dealId: DEAL, title: 'Renewal 2027' }).success).toBe(true);
    expect(commandSchemas.ChangeDeal.safeParse({ dealId: DEAL }).success).toBe(false);
  });
});

describe('deal: stages', () => {
  it('moves forward and backward between open stages', () => {
    spec
      .given([opened()])
      .when(cmd('MoveDealStage', { stage: 'proposal' }))
      .then([moved('lead', 'proposal')]);
    spec
      .given([opened(), moved('lead', 'negotiation')])
      .when(cmd('MoveDealStage', { stage: 'qualified' }))
      .then([moved('negotiation', 'qualified')]);
  });
  it('refuses a move to the same stage', () => {
    spec
      .given([opened('qualified')])
      .when(cmd('MoveDealStage', { stage: 'qualified' }))
      .thenRefused('deal.same_stage', 'stage');
  });
  it('wins from an open stage, with the final amount when given', () => {
    spec
      .given([opened(), moved('lead', 'negotiation')])
      .when(cmd('WinDeal', {}))
      .then([won]);
    spec
      .given([opened()])
      .when(cmd('WinDeal', { amount: 4500 }))
      .then([{ type: 'DealWon', data: { dealId: DEAL, from: 'lead', amount: 4500, currency: 'EUR' } }]);
  });
  it('loses with a reason; the schema refuses a blank one', () => {
    spec
      .given([opened(), moved('lead', 'proposal')])
      .when(cmd('LoseDeal', { reason: 'price' }))
      .then([lost]);
    expect(commandSchemas.LoseDeal.safeParse({ dealId: DEAL, reason: '  ' }).success).toBe(false);
    expect(commandSchemas.LoseDeal.safeParse({ dealId: DEAL }).success).toBe(false);
  });
  for (const [name, closing] of [
    ['won', won],
    ['lost', lost],
  ] as const) {
    it(`a ${name} deal is terminal until reopened`, () => {
      const history = [opened(), closing];
      spec
        .given(history)
        .when(cmd('MoveDealStage', { stage: 'lead' }))
        .thenRefused('deal.closed');
      spec.given(history).when(cmd('WinDeal', {})).thenRefused('deal.closed');
      spec
        .given(history)
        .when(cmd('LoseDeal', { reason: 'x' }))
        .thenRefused('deal.closed');
      spec
        .given(history)
        .when(cmd('ChangeDeal', { amount: 1 }))
        .thenRefused('deal.closed');
    });
  }
  it('reopens to the stage it was closed from, or a chosen stage', () => {
    spec
      .given([opened(), won])
      .when(cmd('ReopenDeal', {}))
      .then([{ type: 'DealReopened', data: { dealId: DEAL, from: 'won', to: 'negotiation' } }]);
    spec
      .given([opened(), lost])
      .when(cmd('ReopenDeal', { stage: 'lead' }))
      .then([{ type: 'DealReopened', data: { dealId: DEAL, from: 'lost', to: 'lead' } }]);
  });
  it('refuses reopening an open deal', () => {
    spec.given([opened()]).when(cmd('ReopenDeal', {})).thenRefused('deal.not_closed');
  });
  it('every command on an unknown deal is not found', () => {
    for (const c of [
      cmd('MoveDealStage', { stage: 'lead' }),
      cmd('WinDeal', {}),
      cmd('LoseDeal', { reason: 'x' }),
      cmd('ReopenDeal', {}),
      cmd('ChangeDeal', { ownerId: 'x' }),
    ])
      spec.given([]).when(c).thenRefused('deal.not_found', 'dealId');
  });
});

describe('deal: title', () => {
  const renamed = (title: string): DealEvent => ({ type: 'DealTitleChanged', data: { dealId: DEAL, title } });
  it('is changed by an event, at any stage, and read back by evolve', () => {
    for (const history of [[opened()], [opened(), won], [opened(), lost]]) {
      const state = spec
        .given(history)
        .when(cmd('ChangeDeal', { title: 'Annual licence 2027' }))
        .then([renamed('Annual licence 2027')]);
      expect(state.title).toBe('Annual licence 2027');
    }
  });
  it('the same title records nothing; an unknown deal is refused', () => {
    const title = foldDeal([opened()]).title!;
    spec.given([opened()]).when(cmd('ChangeDeal', { title })).thenNothing();
    spec
      .given([])
      .when(cmd('ChangeDeal', { title: 'x' }))
      .thenRefused('deal.not_found', 'dealId');
  });
  it('a closed deal still refuses commercial changes beside a title', () => {
    spec
      .given([opened(), won])
      .when(cmd('ChangeDeal', { title: 'x', amount: 1 }))
      .thenRefused('deal.closed');
  });
});

describe('deal: changes while open', () => {
  it('records amount, owner, expected close and override changes, only when they differ', () => {
    spec
      .given([opened()])
      .when(cmd('ChangeDeal', { amount: 6000, ownerId: 'carol', expectedCloseDate: '2026-07-31', probabilityOverride: 0.3 }))
      .then([
        { type: 'DealAmountChanged', data: { dealId: DEAL, amount: 6000, currency: 'EUR' } },
        { type: 'DealOwnerChanged', data: { dealId: DEAL, ownerId: 'carol' } },
        { type: 'DealExpectedCloseChanged', data: { dealId: DEAL, expectedCloseDate: '2026-07-31' } },
        { type: 'DealProbabilityOverridden', data: { dealId: DEAL, probabilityOverride: 0.3 } },
      ]);
    spec
      .given([opened()])
      .when(cmd('ChangeDeal', { amount: 5000, ownerId: 'bob' }))
      .thenNothing();
    spec
      .given([opened()])
      .when(cmd('ChangeDeal', { currency: 'USD' }))
      .then([{ type: 'DealAmountChanged', data: { dealId: DEAL, amount: 5000, currency: 'USD' } }]);
  });
});

describe('deal: win probability', () => {
  it('follows the stage defaults', () => {
    const stages: OpenDealStage[] = ['qualified', 'proposal', 'negotiation'];
    let history: DealEvent[] = [opened()];
    expect(foldDeal(history).probability).toBe(0.1);
    let from: OpenDealStage = 'lead';
    for (const to of stages) {
      history = [...history, moved(from, to)];
      expect(foldDeal(history).probability).toBe(defaultWinProbability[to as DealStage]);
      from = to;
    }
    expect(foldDeal([...history, won]).probability).toBe(1);
    expect(foldDeal([opened(), lost]).probability).toBe(0);
  });
  it('an override holds across stages until cleared; won and lost ignore it', () => {
    const history: DealEvent[] = [opened('lead', 0.6), moved('lead', 'proposal')];
    expect(foldDeal(history).probability).toBe(0.6);
    expect(foldDeal([...history, { type: 'DealProbabilityOverridden', data: { dealId: DEAL, probabilityOverride: null } }]).probability).toBe(0.5);
    expect(foldDeal([...history, lost]).probability).toBe(0);
  });
});

describe('deal: what the folded state remembers', () => {
  it('an opened deal reads back every field it was opened with', () => {
    expect(foldDeal([opened('qualified', 0.4)])).toEqual({
      exists: true,
      dealId: DEAL,
      customerId: CUST,
      title: 'Renewal',
      amount: 5000,
      currency: 'EUR',
      ownerId: 'bob',
      expectedCloseDate: '2026-06-30',
      stage: 'qualified',
      lastOpenStage: 'qualified',
      probabilityOverride: 0.4,
      probability: 0.4,
      lostReason: null,
      openedAt: null,
      stageEnteredAt: null,
      lastChangedAt: null,
    });
  });
  it('commercial changes are read back, so the same change afterwards decides nothing', () => {
    const change = cmd('ChangeDeal', { amount: 6000, currency: 'USD', ownerId: 'carol', expectedCloseDate: '2026-07-31', probabilityOverride: 0.3 });
    const state = spec
      .given([opened()])
      .when(change)
      .then([
        { type: 'DealAmountChanged', data: { dealId: DEAL, amount: 6000, currency: 'USD' } },
        { type: 'DealOwnerChanged', data: { dealId: DEAL, ownerId: 'carol' } },
        { type: 'DealExpectedCloseChanged', data: { dealId: DEAL, expectedCloseDate: '2026-07-31' } },
        { type: 'DealProbabilityOverridden', data: { dealId: DEAL, probabilityOverride: 0.3 } },
      ]);
    expect(state).toMatchObject({
      amount: 6000,
      currency: 'USD',
      ownerId: 'carol',
      expectedCloseDate: '2026-07-31',
      probabilityOverride: 0.3,
      probability: 0.3,
    });
    expect(dealDecider.decide(change, state)).toEqual([]);
  });
  it('the current close date and override again record nothing', () => {
    spec
      .given([opened('lead', 0.4)])
      .when(cmd('ChangeDeal', { expectedCloseDate: '2026-06-30', probabilityOverride: 0.4 }))
      .thenNothing();
  });
  it('a reopened deal is open again at its stage, without the lost reason, and takes stage moves', () => {
    const reopened: DealEvent = { type: 'DealReopened', data: { dealId: DEAL, from: 'lost', to: 'qualified' } };
    expect(foldDeal([opened(), lost, reopened])).toMatchObject({ stage: 'qualified', lastOpenStage: 'qualified', lostReason: null, probability: 0.25 });
    spec
      .given([opened(), lost, reopened])
      .when(cmd('MoveDealStage', { stage: 'proposal' }))
      .then([moved('qualified', 'proposal')]);
  });
  it('a deal that does not exist yet has no chance of being won, whatever the override', () => {
    expect(dealProbability(null, 0.4)).toBe(0);
    expect(dealProbability(null, null)).toBe(0);
  });
});

describe('deal: refusals name the deal', () => {
  it('a closed deal names its stage; an unknown one its id', () => {
    spec
      .given([opened(), won])
      .when(cmd('MoveDealStage', { stage: 'lead' }))
      .thenRefused('deal.closed', 'dealId', { stage: 'won' });
    spec
      .given([opened(), lost])
      .when(cmd('ChangeDeal', { amount: 1 }))
      .thenRefused('deal.closed', 'dealId', { stage: 'lost' });
    spec
      .given([])
      .when(cmd('MoveDealStage', { stage: 'lead' }))
      .thenRefused('deal.not_found', 'dealId', { dealId: DEAL });
    spec
      .given([])
      .when(cmd('ChangeDeal', { title: 'x' }))
      .thenRefused('deal.not_found', 'dealId', { dealId: DEAL });
    spec.given([]).when(cmd('ReopenDeal', {})).thenRefused('deal.not_found', 'dealId', { dealId: DEAL });
    spec.given([opened()]).when(cmd('ReopenDeal', {})).thenRefused('deal.not_closed', 'dealId');
  });
  it('an unusable customer is named in the refusal', () => {
    spec
      .given([])
      .when(openCmd({ ...activeCustomer, exists: false }))
      .thenRefused('customer.not_found', 'customerId', { customerId: CUST });
    spec
      .given([])
      .when(openCmd({ ...activeCustomer, active: false }))
      .thenRefused('customer.inactive', 'customerId', { customerId: CUST });
    spec
      .given([])
      .when(openCmd({ ...activeCustomer, forgotten: true }))
      .thenRefused('customer.forgotten', 'customerId', { customerId: CUST });
  });
});

describe('deal: business time runs forward', () => {
  const openedAt = '2026-03-01T09:00:00.000Z';
  const before = '2026-02-28T09:00:00.000Z';
  const at = <C extends DealCommand>(command: C, occurredAt: string): C => ({ ...command, occurredAt });
  it('no change, move, win or loss dated before the opening', () => {
    const given = spec.given([timed(opened(), openedAt)]);
    given.when(at(cmd('ChangeDeal', { title: 'Earlier' }), before)).thenRefused('deal.before_opening', 'occurredAt', { notBefore: openedAt });
    given.when(at(cmd('MoveDealStage', { stage: 'qualified' }), before)).thenRefused('deal.before_stage_entered', 'occurredAt', { notBefore: openedAt });
    given.when(at(cmd('WinDeal', {}), before)).thenRefused('deal.before_stage_entered', 'occurredAt');
    given.when(at(cmd('LoseDeal', { reason: 'price' }), before)).thenRefused('deal.before_stage_entered', 'occurredAt');
    // At the opening's own instant, spelt in another zone: not before it.
    given
      .when(at(cmd('WinDeal', {}), '2026-03-01T10:00:00+01:00'))
      .then([{ type: 'DealWon', data: { dealId: DEAL, from: 'lead', amount: 5000, currency: 'EUR' } }]);
    // A client's clock a little behind ours (the opening took our time): within the drift allowed ahead.
    const drift = BUSINESS_TIME_SKEW_MS;
    const iso = (ms: number) => new Date(Date.parse(openedAt) + ms).toISOString();
    given.when(at(cmd('WinDeal', {}), iso(-drift))).then([{ type: 'DealWon', data: { dealId: DEAL, from: 'lead', amount: 5000, currency: 'EUR' } }]);
    given.when(at(cmd('WinDeal', {}), iso(-drift - 1))).thenRefused('deal.before_stage_entered', 'occurredAt');
  });
  it('a stage is left after it was entered: a move, a close and a reopen each keep the order', () => {
    const movedAt = '2026-03-10T09:00:00.000Z';
    const between = '2026-03-05T09:00:00.000Z';
    const given = spec.given([timed(opened(), openedAt), timed(moved('lead', 'qualified'), movedAt)]);
    given.when(at(cmd('WinDeal', {}), between)).thenRefused('deal.before_stage_entered', 'occurredAt', { notBefore: movedAt });
    // A title may still change between the opening and the move.
    given.when(at(cmd('ChangeDeal', { title: 'Fleet' }), between)).then([{ type: 'DealTitleChanged', data: { dealId: DEAL, title: 'Fleet' } }]);
    const closedAt = '2026-03-20T09:00:00.000Z';
    spec
      .given([timed(opened(), openedAt), timed(lost, closedAt)])
      .when(at(cmd('ReopenDeal', {}), movedAt))
      .thenRefused('deal.before_stage_entered', 'occurredAt', { notBefore: closedAt });
  });
  it('an edit is dated after the latest edit: one dated back would be folded over it and hide it', () => {
    const slippedAt = '2026-03-12T09:00:00.000Z';
    const slipped: DealEvent = { type: 'DealExpectedCloseChanged', data: { dealId: DEAL, expectedCloseDate: '2026-09-30' } };
    const given = spec.given([timed(opened(), openedAt), timed(slipped, slippedAt)]);
    expect(given.state.lastChangedAt).toBe(slippedAt);
    // Any edit, a title too: its time is the deal's "updated at".
    for (const edit of [{ amount: 4500 }, { expectedCloseDate: '2026-06-30' }, { ownerId: 'carol' }, { probabilityOverride: 0.3 }, { title: 'Older' }])
      given.when(at(cmd('ChangeDeal', edit), '2026-03-05T09:00:00.000Z')).thenRefused('deal.before_last_change', 'occurredAt', { notBefore: slippedAt });
    given
      .when(at(cmd('ChangeDeal', { amount: 4500 }), '2026-03-12T10:00:00.000Z'))
      .then([{ type: 'DealAmountChanged', data: { dealId: DEAL, amount: 4500, currency: 'EUR' } }]);
    // Within the clocks' drift of the latest edit: no contradiction.
    const iso = (ms: number) => new Date(Date.parse(slippedAt) + ms).toISOString();
    given
      .when(at(cmd('ChangeDeal', { amount: 4500 }), iso(-BUSINESS_TIME_SKEW_MS)))
      .then([{ type: 'DealAmountChanged', data: { dealId: DEAL, amount: 4500, currency: 'EUR' } }]);
    // A stage move is no edit: an edit may still be dated between the opening and a later move.
    spec
      .given([timed(opened(), openedAt), timed(moved('lead', 'qualified'), slippedAt)])
      .when(at(cmd('ChangeDeal', { amount: 4500 }), '2026-03-05T09:00:00.000Z'))
      .then([{ type: 'DealAmountChanged', data: { dealId: DEAL, amount: 4500, currency: 'EUR' } }]);
  });
  it('a history recorded with its edits out of order keeps the latest edit time', () => {
    const edit = (amount: number): DealEvent => ({ type: 'DealAmountChanged', data: { dealId: DEAL, amount, currency: 'EUR' } });
    const state = spec.given([timed(opened(), openedAt), timed(edit(6000), '2026-03-20T09:00:00.000Z'), timed(edit(5500), '2026-03-10T09:00:00.000Z')]).state;
    expect(state.lastChangedAt).toBe('2026-03-20T09:00:00.000Z');
  });
  it('a stage entered after the opening (a moved deal) is where its order starts', () => {
    const enteredAt = '2026-03-15T09:00:00.000Z';
    const given = spec.given([timed({ ...opened('proposal'), data: { ...opened('proposal').data, stageEnteredAt: enteredAt } } as DealEvent, openedAt)]);
    expect(given.state).toMatchObject({ openedAt, stageEnteredAt: enteredAt });
    given.when(at(cmd('MoveDealStage', { stage: 'negotiation' }), '2026-03-10T09:00:00.000Z')).thenRefused('deal.before_stage_entered', 'occurredAt');
  });
  it('a history folded without business times (a fold that has none) refuses nothing by time', () => {
    spec
      .given([opened()])
      .when(at(cmd('WinDeal', {}), '1950-01-01T00:00:00.000Z'))
      .then([{ type: 'DealWon', data: { dealId: DEAL, from: 'lead', amount: 5000, currency: 'EUR' } }]);
  });
});
