import { z } from 'zod';
import { Amount, Currency, toFourDecimals } from '../money.ts';
import { Id, IsoDate, IsoDateTime, SafeText, ShortText } from '../shared.ts';

export const DealStreamPrefix = 'deal-';

export const DealStage = z.enum(['lead', 'qualified', 'proposal', 'negotiation', 'won', 'lost']);
export type DealStage = z.infer<typeof DealStage>;
export const OpenDealStage = z.enum(['lead', 'qualified', 'proposal', 'negotiation']);
export type OpenDealStage = z.infer<typeof OpenDealStage>;
/**
 * A probability in [0, 1], rounded to the 4 decimals the read models hold (numeric(5,4)) and the folds
 * compute with: the event kept 0.123456789 or 1e-320 as sent, so the audit history and integration
 * events showed a probability beside a different one in every read model and in the record's state.
 */
export const Probability = z.number().min(0).max(1).overwrite(toFourDecimals);

export const DealOpened = z.object({
  dealId: Id,
  customerId: Id,
  title: ShortText,
  amount: Amount,
  currency: Currency,
  ownerId: SafeText.min(1).max(200),
  expectedCloseDate: IsoDate,
  stage: OpenDealStage,
  /** Overrides the stage's default win probability when not null. */
  probabilityOverride: Probability.nullable(),
  /**
   * When the deal entered `stage`, in UTC, where that was after its opening: a deal brought from
   * another system whose earlier stages that system kept. Absent: it entered its stage when opened.
   */
  stageEnteredAt: IsoDateTime.optional(),
});
/** Renamed (a typo, a clearer name): allowed at any stage, it changes nothing commercial. */
export const DealTitleChanged = z.object({ dealId: Id, title: ShortText });
export const DealAmountChanged = z.object({ dealId: Id, amount: Amount, currency: Currency });
export const DealOwnerChanged = z.object({ dealId: Id, ownerId: SafeText.min(1).max(200) });
export const DealExpectedCloseChanged = z.object({ dealId: Id, expectedCloseDate: IsoDate });
export const DealProbabilityOverridden = z.object({ dealId: Id, probabilityOverride: Probability.nullable() });
export const DealStageChanged = z.object({ dealId: Id, from: OpenDealStage, to: OpenDealStage });
export const DealWon = z.object({ dealId: Id, from: OpenDealStage, amount: Amount, currency: Currency });
export const DealLost = z.object({ dealId: Id, from: OpenDealStage, reason: SafeText.trim().min(1).max(2000) });
export const DealReopened = z.object({ dealId: Id, from: z.enum(['won', 'lost']), to: OpenDealStage });

export const dealEventSchemas = {
  DealOpened,
  DealTitleChanged,
  DealAmountChanged,
  DealOwnerChanged,
  DealExpectedCloseChanged,
  DealProbabilityOverridden,
  DealStageChanged,
  DealWon,
  DealLost,
  DealReopened,
} as const;

type Schemas = typeof dealEventSchemas;
export type DealEvent = { [K in keyof Schemas]: { type: K; data: z.infer<Schemas[K]> } }[keyof Schemas];
