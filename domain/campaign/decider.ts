import { assertCustomerUsable } from '../customer/decider.ts';
import type { Decider } from '../decider.ts';
import { dictionary, entryOf, setEntry } from '../entries.ts';
import { invalidState, notFound, ruleViolated } from '../errors.ts';
import { fromMinor, toMinor } from '../money.ts';
import { assertNotBefore, inUtc, isBefore } from '../time.ts';
import type { CampaignCommand } from './commands.ts';
import type { CampaignEvent, CampaignStatus, ResponseKind } from './events.ts';

/**
 * Campaign lifecycle: draft -> scheduled -> active <-> paused -> completed; launch from draft or
 * scheduled; cancel from draft, scheduled, active or paused. Completed and cancelled are final.
 *
 * Responses are accepted while active or paused and after completion (opens and conversions keep
 * arriving once a campaign has ended), never before launch; after a cancellation only those dated
 * at or before it (the history of a campaign that ran, imported after its cancellation).
 * Costs are accepted in every status: invoices arrive late, and cancelling may itself cost money.
 * A cost recorded with a wrong amount is corrected by a compensating event (`CampaignCostCorrected`),
 * never edited: it keeps its id and stands at the corrected amount (0: voided) from then on.
 * Business time runs forward through the statuses: a status change is not dated before the previous
 * one (the creation first). Costs and responses are not held to it: a campaign often enters the CRM
 * after its first invoice, and one created without a time (at its import) would refuse its history.
 */
export interface CampaignState {
  exists: boolean;
  campaignId: string | null;
  name: string | null;
  channel: string | null;
  budget: number;
  currency: string | null;
  status: CampaignStatus | null;
  startsAt: string | null;
  endsAt: string | null;
  /** Each cost by id at its current amount; `corrected` once a correction changed it. */
  costs: Record<string, { amount: number; currency: string; corrected: boolean }>;
  /** Kinds of response recorded, per customer id. */
  responses: Record<string, ResponseKind[]>;
  /** Its target segment's rule: only customers who consented to marketing may be sent to. */
  marketingConsentOnly: boolean;
  /** Business time of the creation, then of the latest status change: null where the fold had none. */
  statusChangedAt: string | null;
  /** Whether it was ever launched: a cancelled campaign that ran takes the responses dated before its cancellation. */
  launched: boolean;
}

export const initialCampaignState = (): CampaignState => ({
  exists: false,
  campaignId: null,
  name: null,
  channel: null,
  budget: 0,
  currency: null,
  status: null,
  startsAt: null,
  endsAt: null,
  costs: dictionary(),
  responses: dictionary(),
  marketingConsentOnly: false,
  statusChangedAt: null,
  launched: false,
});

export const evolveCampaign = (state: CampaignState, event: CampaignEvent, occurredAt?: string): CampaignState => {
  const at = occurredAt ?? null;
  switch (event.type) {
    case 'CampaignCreated': {
      const d = event.data;
      return {
        ...state,
        statusChangedAt: at,
        exists: true,
        campaignId: d.campaignId,
        name: d.name,
        channel: d.channel,
        budget: d.budget,
        currency: d.currency,
        status: 'draft',
        startsAt: d.schedule?.startsAt ?? null,
        endsAt: d.schedule?.endsAt ?? null,
        marketingConsentOnly: d.targetSegment.marketingConsentOnly === true,
      };
    }
    case 'CampaignScheduled':
      return { ...state, status: 'scheduled', startsAt: event.data.startsAt, endsAt: event.data.endsAt, statusChangedAt: at };
    case 'CampaignLaunched':
      return { ...state, status: 'active', statusChangedAt: at, launched: true };
    case 'CampaignResumed':
      return { ...state, status: 'active', statusChangedAt: at };
    case 'CampaignPaused':
      return { ...state, status: 'paused', statusChangedAt: at };
    case 'CampaignCompleted':
      return { ...state, status: 'completed', statusChangedAt: at };
    case 'CampaignCancelled':
      return { ...state, status: 'cancelled', statusChangedAt: at };
    // Costs and responses grow with the campaign: updated in place, see `Decider`.
    case 'CampaignCostRecorded':
      setEntry(state.costs, event.data.costId, { amount: event.data.amount, currency: event.data.currency, corrected: false });
      return { ...state };
    case 'CampaignCostCorrected':
      setEntry(state.costs, event.data.costId, { amount: event.data.amount, currency: event.data.currency, corrected: true });
      return { ...state };
    case 'CampaignResponseRecorded': {
      const kinds = state.responses[event.data.customerId] ?? [];
      if (!kinds.includes(event.data.kind)) state.responses[event.data.customerId] = [...kinds, event.data.kind];
      return { ...state };
    }
  }
};

const assertScheduleValid = (startsAt: string, endsAt: string | null | undefined, field: string) => {
  if (endsAt && !isBefore(startsAt, endsAt)) throw ruleViolated('campaign.invalid_schedule', 'endsAt must be after startsAt', field);
};

/**
 * Costs beyond the budget need an explicit `allowOverBudget`: overspend is a decision, not an accident,
 * whether it comes from a new cost or from a correction raising one (`added`: ten-thousandths).
 */
const assertWithinBudget = (state: CampaignState, added: number, allowOverBudget: boolean, what: 'cost' | 'correction'): void => {
  const spent = Object.values(state.costs).reduce((sum, c) => sum + toMinor(c.amount), 0);
  const after = spent + added;
  if (after <= toMinor(state.budget) || allowOverBudget) return;
  throw ruleViolated(
    'campaign.over_budget',
    `This ${what} takes the campaign's costs to ${fromMinor(after)} ${state.currency}, beyond its budget of ${state.budget}; send allowOverBudget: true to record it`,
    'amount',
    { rule: 'budget', budget: state.budget, costs: fromMinor(spent), remaining: fromMinor(Math.max(0, toMinor(state.budget) - spent)) },
  );
};

/** What a cost recorded with another amount is for. */
const CORRECT_IT = 'a wrong amount is corrected with POST /campaigns/{id}/cost-corrections (costId, amount, currency, reason)';

const assertExists = (state: CampaignState, campaignId: string): CampaignStatus => {
  if (!state.exists || state.status === null) throw notFound('campaign.not_found', `Campaign ${campaignId} does not exist`, 'campaignId', { campaignId });
  return state.status;
};

/**
 * Responses come while a campaign runs and after it completed; after a cancellation, only those dated
 * at or before it, and only where it ran (a migration brings a cancelled campaign's history in after it).
 */
const assertTakesResponse = (state: CampaignState, campaignId: string, occurredAt: string): void => {
  const status = assertExists(state, campaignId);
  if (status === 'active' || status === 'paused' || status === 'completed') return;
  // In UTC, as the read models write it: the client's own spelling of the instant (+02:00) read as another time.
  const cancelledAt = status === 'cancelled' && state.launched && state.statusChangedAt !== null ? inUtc(state.statusChangedAt) : null;
  // At the cancellation's instant too: a history kept by the day dates both at midnight.
  if (cancelledAt !== null && !isBefore(cancelledAt, occurredAt)) return;
  throw invalidState(
    'campaign.not_running',
    cancelledAt !== null
      ? `Campaign ${campaignId} was cancelled at ${cancelledAt}: it takes only responses dated then or before (occurredAt)`
      : status === 'cancelled'
        ? `Campaign ${campaignId} was cancelled without a launch (or before one was recorded with its time): it takes no responses; a campaign imported as cancelled is launched only where its row gives launched_at`
        : `Campaign ${campaignId} is ${status}: it takes no responses`,
    'campaignId',
    { status, ...(cancelledAt !== null ? { cancelledAt } : {}) },
  );
};

/** A status is left after it was entered: a step dated earlier would put the campaign's history out of order. */
const transition = (state: CampaignState, command: { campaignId: string; occurredAt: string }, allowed: readonly CampaignStatus[], action: string): void => {
  const status = assertExists(state, command.campaignId);
  if (!allowed.includes(status))
    throw invalidState('campaign.invalid_transition', `Cannot ${action} a campaign that is ${status}`, 'campaignId', {
      status,
      allowedFrom: allowed,
    });
  assertNotBefore(command.occurredAt, state.statusChangedAt, 'campaign.before_status_changed', `the campaign becoming ${status}`);
};

export const decideCampaign = (command: CampaignCommand, state: CampaignState): CampaignEvent[] => {
  const { campaignId } = command;
  switch (command.type) {
    case 'CreateCampaign': {
      if (state.exists) throw invalidState('campaign.already_created', `Campaign ${campaignId} already exists`, 'campaignId');
      if (command.schedule) assertScheduleValid(command.schedule.startsAt, command.schedule.endsAt, 'schedule.endsAt');
      const segment = command.targetSegment ?? {};
      if (segment.minRevenue !== undefined && segment.maxRevenue !== undefined && segment.minRevenue > segment.maxRevenue)
        throw ruleViolated('campaign.invalid_segment', 'minRevenue must not exceed maxRevenue', 'targetSegment.maxRevenue');
      return [
        {
          type: 'CampaignCreated',
          data: {
            campaignId,
            name: command.name,
            channel: command.channel,
            budget: command.budget,
            currency: command.currency,
            schedule: command.schedule ? { startsAt: command.schedule.startsAt, endsAt: command.schedule.endsAt ?? null } : null,
            targetSegment: segment,
          },
        },
      ];
    }
    case 'ScheduleCampaign':
      transition(state, command, ['draft', 'scheduled'], 'schedule');
      assertScheduleValid(command.startsAt, command.endsAt, 'endsAt');
      return [{ type: 'CampaignScheduled', data: { campaignId, startsAt: command.startsAt, endsAt: command.endsAt ?? null } }];
    case 'LaunchCampaign':
      transition(state, command, ['draft', 'scheduled'], 'launch');
      return [{ type: 'CampaignLaunched', data: { campaignId } }];
    case 'PauseCampaign':
      transition(state, command, ['active'], 'pause');
      return [{ type: 'CampaignPaused', data: { campaignId, reason: command.reason ?? null } }];
    case 'ResumeCampaign':
      transition(state, command, ['paused'], 'resume');
      return [{ type: 'CampaignResumed', data: { campaignId } }];
    case 'CompleteCampaign':
      transition(state, command, ['active', 'paused'], 'complete');
      return [{ type: 'CampaignCompleted', data: { campaignId } }];
    case 'CancelCampaign':
      transition(state, command, ['draft', 'scheduled', 'active', 'paused'], 'cancel');
      return [{ type: 'CampaignCancelled', data: { campaignId, reason: command.reason ?? null } }];
    case 'RecordCampaignCost': {
      assertExists(state, campaignId);
      if (command.currency !== state.currency)
        throw ruleViolated('campaign.currency_mismatch', `Campaign ${campaignId} is budgeted in ${state.currency}`, 'currency', {
          expected: state.currency,
        });
      if (toMinor(command.amount) <= 0) throw ruleViolated('campaign.cost_not_positive', 'A cost must be greater than zero', 'amount');
      const previous = entryOf(state.costs, command.costId);
      if (previous) {
        // The same invoice recorded twice is one cost; the same id with another amount is a mistake.
        // After a correction the cost is the corrected one: its amount is the same cost, the first amount a conflict.
        if (toMinor(previous.amount) === toMinor(command.amount)) return [];
        throw ruleViolated(
          'campaign.cost_conflict',
          previous.corrected
            ? `Cost ${command.costId} stands at amount ${previous.amount} since its correction; ${CORRECT_IT}`
            : `Cost ${command.costId} was recorded with amount ${previous.amount}; ${CORRECT_IT}`,
          'amount',
          { costId: command.costId, recordedAmount: previous.amount },
        );
      }
      assertWithinBudget(state, toMinor(command.amount), command.allowOverBudget === true, 'cost');
      return [
        {
          type: 'CampaignCostRecorded',
          data: {
            campaignId,
            costId: command.costId,
            amount: command.amount,
            currency: command.currency,
            description: command.description ?? null,
          },
        },
      ];
    }
    case 'CorrectCampaignCost': {
      assertExists(state, campaignId);
      const { costId } = command;
      const recorded = entryOf(state.costs, costId);
      if (!recorded) throw notFound('campaign.cost_not_found', `Campaign ${campaignId} has no cost ${costId}`, 'costId', { costId });
      if (command.currency !== recorded.currency)
        throw ruleViolated('campaign.currency_mismatch', `Cost ${costId} is in ${recorded.currency}`, 'currency', { expected: recorded.currency });
      const change = toMinor(command.amount) - toMinor(recorded.amount);
      // The same correction sent again (or one to the amount already there) changes nothing.
      if (change === 0) return [];
      // Lowering a cost is always accepted: it only brings the costs back towards the budget.
      if (change > 0) assertWithinBudget(state, change, command.allowOverBudget === true, 'correction');
      return [
        {
          type: 'CampaignCostCorrected',
          data: { campaignId, costId, previousAmount: recorded.amount, amount: command.amount, currency: recorded.currency, reason: command.reason },
        },
      ];
    }
    case 'RecordCampaignResponse': {
      assertTakesResponse(state, campaignId, command.occurredAt);
      assertCustomerUsable(command.customer, command.customerId, { requireActive: false });
      if (command.kind === 'sent' && state.marketingConsentOnly && !command.customer.marketingConsent)
        throw ruleViolated(
          'campaign.marketing_consent_required',
          `Campaign ${campaignId} is for customers with marketing consent only (marketingConsentOnly); customer ${command.customerId} has not consented`,
          'customerId',
          { rule: 'marketingConsentOnly', customerId: command.customerId },
        );
      if (state.responses[command.customerId]?.includes(command.kind))
        throw invalidState(
          'campaign.response_already_recorded',
          `Customer ${command.customerId} already has ${/^[aeiou]/.test(command.kind) ? 'an' : 'a'} ${command.kind} response on this campaign`,
          'kind',
        );
      const converted = command.kind === 'converted';
      if (converted && (command.revenue === undefined || command.revenue === null))
        throw ruleViolated('campaign.revenue_required', 'A conversion carries its revenue', 'revenue');
      if (!converted && command.revenue !== undefined && command.revenue !== null)
        throw ruleViolated('campaign.revenue_only_for_conversion', 'Only a conversion carries revenue', 'revenue');
      // A conversion may be paid in another currency than the campaign's: it is recorded as paid and
      // converted to the base currency for revenue and ROI (projections/queries/campaigns.ts).
      return [
        {
          type: 'CampaignResponseRecorded',
          data: {
            campaignId,
            customerId: command.customerId,
            kind: command.kind,
            revenue: converted ? (command.revenue ?? 0) : null,
            currency: converted ? (command.currency ?? state.currency) : null,
          },
        },
      ];
    }
  }
};

export const campaignDecider: Decider<CampaignCommand, CampaignEvent, CampaignState> = {
  initialState: initialCampaignState,
  evolve: evolveCampaign,
  decide: decideCampaign,
};
