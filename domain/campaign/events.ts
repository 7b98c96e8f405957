import { z } from 'zod';
import { Amount, Currency } from '../money.ts';
import { Id, IsoDateTime, SafeText, ShortText } from '../shared.ts';

export const CampaignStreamPrefix = 'campaign-';

export const CampaignChannel = z.enum(['email', 'sms', 'social', 'event', 'ads']);
export const CampaignStatus = z.enum(['draft', 'scheduled', 'active', 'paused', 'completed', 'cancelled']);
export type CampaignStatus = z.infer<typeof CampaignStatus>;
export const ResponseKind = z.enum(['sent', 'opened', 'clicked', 'converted', 'unsubscribed']);
export type ResponseKind = z.infer<typeof ResponseKind>;

/** Who a campaign targets, as criteria over the customers read model. */
export const SegmentCriteria = z
  .object({
    tags: z.array(SafeText.max(50)).max(50).optional(),
    rfmSegments: z.array(SafeText.max(50)).max(20).optional(),
    minRevenue: Amount.optional(),
    maxRevenue: Amount.optional(),
    sources: z.array(SafeText.max(100)).max(20).optional(),
    marketingConsentOnly: z.boolean().optional(),
  })
  .strict();

export const CampaignSchedule = z.object({ startsAt: IsoDateTime, endsAt: IsoDateTime.nullable() });

export const CampaignCreated = z.object({
  campaignId: Id,
  name: ShortText,
  channel: CampaignChannel,
  budget: Amount,
  currency: Currency,
  schedule: CampaignSchedule.nullable(),
  targetSegment: SegmentCriteria,
});
export const CampaignScheduled = z.object({ campaignId: Id, startsAt: IsoDateTime, endsAt: IsoDateTime.nullable() });
export const CampaignLaunched = z.object({ campaignId: Id });
export const CampaignPaused = z.object({ campaignId: Id, reason: SafeText.max(2000).nullable() });
export const CampaignResumed = z.object({ campaignId: Id });
export const CampaignCompleted = z.object({ campaignId: Id });
export const CampaignCancelled = z.object({ campaignId: Id, reason: SafeText.max(2000).nullable() });
export const CampaignCostRecorded = z.object({
  campaignId: Id,
  costId: SafeText.trim().min(1).max(100),
  amount: Amount,
  currency: Currency,
  description: SafeText.max(2000).nullable(),
});
/**
 * A recorded cost corrected (compensating the recording, which stays as it was): the cost now stands
 * at `amount` (0: voided), where it stood at `previousAmount`.
 */
export const CampaignCostCorrected = z.object({
  campaignId: Id,
  costId: SafeText.trim().min(1).max(100),
  previousAmount: Amount,
  amount: Amount,
  currency: Currency,
  reason: SafeText.trim().min(1).max(2000),
});
export const CampaignResponseRecorded = z.object({
  campaignId: Id,
  customerId: Id,
  kind: ResponseKind,
  /** Revenue attributed to a conversion; null for every other kind. */
  revenue: Amount.nullable(),
  currency: Currency.nullable(),
});

export const campaignEventSchemas = {
  CampaignCreated,
  CampaignScheduled,
  CampaignLaunched,
  CampaignPaused,
  CampaignResumed,
  CampaignCompleted,
  CampaignCancelled,
  CampaignCostRecorded,
  CampaignCostCorrected,
  CampaignResponseRecorded,
} as const;

type Schemas = typeof campaignEventSchemas;
export type CampaignEvent = { [K in keyof Schemas]: { type: K; data: z.infer<Schemas[K]> } }[keyof Schemas];
