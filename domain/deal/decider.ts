import { assertCustomerUsable } from '../customer/decider.ts';
import type { Decider } from '../decider.ts';
import { invalidState, notFound, ruleViolated } from '../errors.ts';
import { assertNotBefore, inUtc, isBefore, laterOf } from '../time.ts';
import { toMinor } from '../money.ts';
import { assertPersonUsable } from '../user/decider.ts';
import type { DealCommand } from './commands.ts';
import type { DealEvent, DealStage, OpenDealStage } from './events.ts';

/** Default win probability of each stage; a deal may override it (`probabilityOverride`) while open. */
export const defaultWinProbability: Readonly<Record<DealStage, number>> = {
  lead: 0.1,
  qualified: 0.25,
  proposal: 0.5,
  negotiation: 0.75,
  won: 1,
  lost: 0,
};

export interface DealState {
  exists: boolean;
  dealId: string | null;
  customerId: string | null;
  title: string | null;
  amount: number;
  currency: string | null;
  ownerId: string | null;
  expectedCloseDate: string | null;
  stage: DealStage | null;
  /** The open stage the deal was in when it was won or lost (where a reopen returns by default). */
  lastOpenStage: OpenDealStage | null;
  probabilityOverride: number | null;
  /** Effective win probability: won 1, lost 0, else the override or the stage's default. */
  probability: number;
  lostReason: string | null;
  /** Business time of the opening, and of entering the current stage (won and lost are stages here): null where the fold had none. */
  openedAt: string | null;
  stageEnteredAt: string | null;
  /**
   * Business time of the latest edit (title, amount, owner, close date, probability): an edit dated
   * before it would be folded after it and hide it, now and in every "as of" answer.
   */
  lastChangedAt: string | null;
}

export const initialDealState = (): DealState => ({
  exists: false,
  dealId: null,
  customerId: null,
  title: null,
  amount: 0,
  currency: null,
  ownerId: null,
  expectedCloseDate: null,
  stage: null,
  lastOpenStage: null,
  probabilityOverride: null,
  probability: 0,
  lostReason: null,
  openedAt: null,
  stageEnteredAt: null,
  lastChangedAt: null,
});

const isClosed = (stage: DealStage | null): stage is 'won' | 'lost' => stage === 'won' || stage === 'lost';

export const dealProbability = (stage: DealStage | null, override: number | null): number =>
  stage === null ? 0 : isClosed(stage) ? defaultWinProbability[stage] : (override ?? defaultWinProbability[stage]);

const withProbability = (s: DealState): DealState => ({ ...s, probability: dealProbability(s.stage, s.probabilityOverride) });

export const evolveDeal = (state: DealState, event: DealEvent, occurredAt?: string): DealState => {
  const at = occurredAt ?? null;
  // The latest, not the last: a history recorded before edits were held to order may hold one out of it.
  const edited = (): Pick<DealState, 'lastChangedAt'> => ({ lastChangedAt: at === null ? state.lastChangedAt : laterOf(state.lastChangedAt, at) });
  switch (event.type) {
    case 'DealOpened': {
      const d = event.data;
      return withProbability({
        ...state,
        openedAt: at,
        stageEnteredAt: d.stageEnteredAt ?? at,
        exists: true,
        dealId: d.dealId,
        customerId: d.customerId,
        title: d.title,
        amount: d.amount,
        currency: d.currency,
        ownerId: d.ownerId,
        expectedCloseDate: d.expectedCloseDate,
        stage: d.stage,
        lastOpenStage: d.stage,
        probabilityOverride: d.probabilityOverride,
      });
    }
    case 'DealTitleChanged':
      return { ...state, ...edited(), title: event.data.title };
    case 'DealAmountChanged':
      return { ...state, ...edited(), amount: event.data.amount, currency: event.data.currency };
    case 'DealOwnerChanged':
      return { ...state, ...edited(), ownerId: event.data.ownerId };
    case 'DealExpectedCloseChanged':
      return { ...state, ...edited(), expectedCloseDate: event.data.expectedCloseDate };
    case 'DealProbabilityOverridden':
      return withProbability({ ...state, ...edited(), probabilityOverride: event.data.probabilityOverride });
    case 'DealStageChanged':
      return withProbability({ ...state, stage: event.data.to, lastOpenStage: event.data.to, stageEnteredAt: at });
    case 'DealWon':
      return withProbability({
        ...state,
        stage: 'won',
        lastOpenStage: event.data.from,
        amount: event.data.amount,
        currency: event.data.currency,
        stageEnteredAt: at,
      });
    case 'DealLost':
      return withProbability({ ...state, stage: 'lost', lastOpenStage: event.data.from, lostReason: event.data.reason, stageEnteredAt: at });
    case 'DealReopened':
      return withProbability({ ...state, stage: event.data.to, lastOpenStage: event.data.to, lostReason: null, stageEnteredAt: at });
  }
};

const assertOpen = (state: DealState, dealId: string): OpenDealStage => {
  if (!state.exists || state.stage === null) throw notFound('deal.not_found', `Deal ${dealId} does not exist`, 'dealId', { dealId });
  if (isClosed(state.stage)) throw invalidState('deal.closed', `Deal ${dealId} is ${state.stage}; reopen it first`, 'dealId', { stage: state.stage });
  return state.stage;
};

/** A stage is left after it was entered: a move dated earlier would put the deal's stages out of order. */
const assertNotBeforeStage = (occurredAt: string, state: DealState): void =>
  assertNotBefore(occurredAt, state.stageEnteredAt, 'deal.before_stage_entered', `the deal entering ${state.stage}`);

export const decideDeal = (command: DealCommand, state: DealState): DealEvent[] => {
  const { dealId } = command;
  switch (command.type) {
    case 'OpenDeal': {
      if (state.exists) throw invalidState('deal.already_opened', `Deal ${dealId} already exists`, 'dealId');
      assertCustomerUsable(command.customer, command.customerId, { requireActive: true, at: command.occurredAt });
      assertPersonUsable(command.owner, command.ownerId, 'ownerId');
      const { stageEnteredAt } = command;
      if (stageEnteredAt !== undefined && isBefore(stageEnteredAt, command.occurredAt))
        throw ruleViolated(
          'deal.stage_entered_before_opening',
          `stageEnteredAt ${stageEnteredAt} is before the opening (${command.occurredAt})`,
          'stageEnteredAt',
          {
            openedAt: command.occurredAt,
          },
        );
      // The same instant as the opening says nothing the opening does not: not stored.
      const laterStageEntry = stageEnteredAt !== undefined && isBefore(command.occurredAt, stageEnteredAt) ? { stageEnteredAt: inUtc(stageEnteredAt) } : {};
      return [
        {
          type: 'DealOpened',
          data: {
            dealId,
            customerId: command.customerId,
            title: command.title,
            amount: command.amount,
            currency: command.currency,
            ownerId: command.ownerId,
            expectedCloseDate: command.expectedCloseDate,
            stage: command.stage ?? 'lead',
            probabilityOverride: command.probabilityOverride ?? null,
            ...laterStageEntry,
          },
        },
      ];
    }
    case 'ChangeDeal': {
      const events: DealEvent[] = [];
      const { title, dealId: _id, type: _type, occurredAt: _at, owner, ...commercial } = command;
      // A title alone may change at any stage; anything commercial only while the deal is open.
      if (Object.keys(commercial).length > 0) assertOpen(state, dealId);
      else if (!state.exists) throw notFound('deal.not_found', `Deal ${dealId} does not exist`, 'dealId', { dealId });
      assertNotBefore(command.occurredAt, state.openedAt, 'deal.before_opening', "the deal's opening");
      assertNotBefore(command.occurredAt, state.lastChangedAt, 'deal.before_last_change', "the deal's last change");
      if (title !== undefined && title !== state.title) events.push({ type: 'DealTitleChanged', data: { dealId, title } });
      if (Object.keys(commercial).length === 0) return events;
      const amount = command.amount ?? state.amount;
      const currency = command.currency ?? state.currency ?? '';
      if (toMinor(amount) !== toMinor(state.amount) || currency !== state.currency)
        events.push({ type: 'DealAmountChanged', data: { dealId, amount, currency } });
      if (command.ownerId !== undefined && command.ownerId !== state.ownerId) {
        assertPersonUsable(owner, command.ownerId, 'ownerId');
        events.push({ type: 'DealOwnerChanged', data: { dealId, ownerId: command.ownerId } });
      }
      if (command.expectedCloseDate !== undefined && command.expectedCloseDate !== state.expectedCloseDate)
        events.push({ type: 'DealExpectedCloseChanged', data: { dealId, expectedCloseDate: command.expectedCloseDate } });
      if (command.probabilityOverride !== undefined && command.probabilityOverride !== state.probabilityOverride)
        events.push({ type: 'DealProbabilityOverridden', data: { dealId, probabilityOverride: command.probabilityOverride } });
      return events;
    }
    case 'MoveDealStage': {
      const from = assertOpen(state, dealId);
      if (from === command.stage) throw invalidState('deal.same_stage', `Deal ${dealId} is already in ${from}`, 'stage');
      assertNotBeforeStage(command.occurredAt, state);
      return [{ type: 'DealStageChanged', data: { dealId, from, to: command.stage } }];
    }
    case 'WinDeal': {
      const from = assertOpen(state, dealId);
      assertNotBeforeStage(command.occurredAt, state);
      return [{ type: 'DealWon', data: { dealId, from, amount: command.amount ?? state.amount, currency: state.currency ?? '' } }];
    }
    case 'LoseDeal': {
      const from = assertOpen(state, dealId);
      assertNotBeforeStage(command.occurredAt, state);
      return [{ type: 'DealLost', data: { dealId, from, reason: command.reason } }];
    }
    case 'ReopenDeal': {
      if (!state.exists || state.stage === null) throw notFound('deal.not_found', `Deal ${dealId} does not exist`, 'dealId', { dealId });
      if (!isClosed(state.stage)) throw invalidState('deal.not_closed', `Deal ${dealId} is open (${state.stage})`, 'dealId');
      assertNotBeforeStage(command.occurredAt, state);
      return [{ type: 'DealReopened', data: { dealId, from: state.stage, to: command.stage ?? state.lastOpenStage ?? 'lead' } }];
    }
  }
};

export const dealDecider: Decider<DealCommand, DealEvent, DealState> = {
  initialState: initialDealState,
  evolve: evolveDeal,
  decide: decideDeal,
};
