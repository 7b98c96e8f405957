import { z } from 'zod';
import type { CustomerSnapshot } from '../customer/decider.ts';
import type { UserSnapshot } from '../user/decider.ts';
import { CommandAmount, hasAtMostFourDecimals, IsoCurrency, toFourDecimals } from '../money.ts';
import { BusinessTime, Id, IsoDate, MultiLineText, CommandPersonRef, DisplayText, withBusinessTime } from '../shared.ts';
import { OpenDealStage } from './events.ts';

/** A probability as commands take it: a fifth decimal is refused, as for amounts, not rounded away (0.00004 read 0). */
const ProbabilityInput = z.number().min(0).max(1).refine(hasAtMostFourDecimals, { message: 'at most 4 decimal places' }).overwrite(toFourDecimals);

export const OpenDealPayload = z
  .object({
    /** Client-chosen id; generated when absent. */
    dealId: Id.optional(),
    customerId: Id,
    title: DisplayText,
    amount: CommandAmount,
    currency: IsoCurrency,
    ownerId: CommandPersonRef,
    expectedCloseDate: IsoDate,
    stage: OpenDealStage.optional(),
    /** Overrides the stage's default win probability. */
    probabilityOverride: ProbabilityInput.nullable().optional(),
    /**
     * When the deal entered `stage`, if after its opening (`occurredAt`): a deal moved from another
     * system keeps its days in stage. Not before the opening, not in the future.
     */
    stageEnteredAt: BusinessTime.optional(),
  })
  .strict();

/** PATCH of a deal: title (at any stage); while open, amount/currency, owner, expected close, probability override (null clears it). */
export const ChangeDealPayload = z
  .object({
    dealId: Id,
    title: DisplayText.optional(),
    amount: CommandAmount.optional(),
    currency: IsoCurrency.optional(),
    ownerId: CommandPersonRef.optional(),
    expectedCloseDate: IsoDate.optional(),
    probabilityOverride: ProbabilityInput.nullable().optional(),
  })
  .strict()
  .refine((c) => Object.keys(c).some((k) => k !== 'dealId'), { message: 'at least one field to change' });

export const MoveDealStagePayload = z.object({ dealId: Id, stage: OpenDealStage }).strict();
/** Why a deal was won or lost, in the seller's words. */
const OutcomeReason = MultiLineText.trim().min(1).max(2000);
/**
 * `amount` is the final amount when it differs from the deal's current amount; `reason`, why it was
 * won, is recorded with the event (its metadata's reason, the deal's `wonReason`), as an import's is.
 */
export const WinDealPayload = z.object({ dealId: Id, amount: CommandAmount.optional(), reason: OutcomeReason.optional() }).strict();
export const LoseDealPayload = z.object({ dealId: Id, reason: OutcomeReason }).strict();
/** `stage` defaults to the stage the deal was in when it was won or lost. */
export const ReopenDealPayload = z.object({ dealId: Id, stage: OpenDealStage.optional() }).strict();

/** Every command takes `occurredAt` (business time). */
export const dealCommandSchemas = withBusinessTime({
  OpenDeal: OpenDealPayload,
  ChangeDeal: ChangeDealPayload,
  MoveDealStage: MoveDealStagePayload,
  WinDeal: WinDealPayload,
  LoseDeal: LoseDealPayload,
  ReopenDeal: ReopenDealPayload,
} as const);

type P<K extends keyof typeof dealCommandSchemas> = z.infer<(typeof dealCommandSchemas)[K]>;
type Cmd<K extends string, Payload> = { type: K; occurredAt: string } & Payload;

/** `owner`: the snapshot of the user `ownerId` names, filled by the handler when it names one. */
type WithOwner = { owner?: UserSnapshot };
/** The handler reads the customer's stream and passes what the rule needs, so `decide` stays pure. */
export type OpenDeal = Cmd<'OpenDeal', Omit<P<'OpenDeal'>, 'dealId'> & { dealId: string; customer: CustomerSnapshot } & WithOwner>;
export type ChangeDeal = Cmd<'ChangeDeal', P<'ChangeDeal'> & WithOwner>;
export type MoveDealStage = Cmd<'MoveDealStage', P<'MoveDealStage'>>;
export type WinDeal = Cmd<'WinDeal', P<'WinDeal'>>;
export type LoseDeal = Cmd<'LoseDeal', P<'LoseDeal'>>;
export type ReopenDeal = Cmd<'ReopenDeal', P<'ReopenDeal'>>;

export type DealCommand = OpenDeal | ChangeDeal | MoveDealStage | WinDeal | LoseDeal | ReopenDeal;
