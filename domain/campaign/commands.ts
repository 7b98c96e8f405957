import { z } from 'zod';
import type { CustomerSnapshot } from '../customer/decider.ts';
import { CommandAmount, IsoCurrency } from '../money.ts';
import { Id, IsoDateTime, MultiLineText, SingleLineText, DisplayText, NewTag, withBusinessTime } from '../shared.ts';
import { CampaignChannel, ResponseKind, SegmentCriteria } from './events.ts';

const Reason = MultiLineText.max(2000);

/**
 * Who a new campaign targets: its tags held to the rule of a customer's tags (NFC, letters, digits,
 * `_ : . -`), so that the segment can match them. The event's schema stays as it was, for campaigns
 * created before (a tag of spaces or `x;y` was accepted, and matched no customer).
 */
const TargetSegment = SegmentCriteria.extend({
  tags: z.array(NewTag).max(50).optional(),
  rfmSegments: z.array(SingleLineText.max(50)).max(20).optional(),
  sources: z.array(SingleLineText.max(100)).max(20).optional(),
});

export const CreateCampaignPayload = z
  .object({
    /** Client-chosen id; generated when absent. */
    campaignId: Id.optional(),
    name: DisplayText,
    channel: CampaignChannel,
    budget: CommandAmount,
    currency: IsoCurrency,
    schedule: z.object({ startsAt: IsoDateTime, endsAt: IsoDateTime.nullable().optional() }).strict().nullable().optional(),
    targetSegment: TargetSegment.optional(),
  })
  .strict();

export const ScheduleCampaignPayload = z.object({ campaignId: Id, startsAt: IsoDateTime, endsAt: IsoDateTime.nullable().optional() }).strict();
export const LaunchCampaignPayload = z.object({ campaignId: Id }).strict();
export const PauseCampaignPayload = z.object({ campaignId: Id, reason: Reason.nullable().optional() }).strict();
export const ResumeCampaignPayload = z.object({ campaignId: Id }).strict();
export const CompleteCampaignPayload = z.object({ campaignId: Id }).strict();
export const CancelCampaignPayload = z.object({ campaignId: Id, reason: Reason.nullable().optional() }).strict();

export const RecordCampaignCostPayload = z
  .object({
    campaignId: Id,
    /** Makes the cost idempotent (an invoice number); derived from the idempotency key (or generated) when absent. */
    costId: SingleLineText.min(1).max(100).optional(),
    amount: CommandAmount,
    currency: IsoCurrency,
    description: MultiLineText.max(2000).nullable().optional(),
    /** Accept a cost that takes the campaign's costs beyond its budget (otherwise refused with 422). */
    allowOverBudget: z.boolean().optional(),
  })
  .strict();

/**
 * A recorded cost put right (a typing error, an invoice credited): the cost keeps its id and takes the
 * corrected amount, 0 voiding it. The cost as first recorded stays in the history beside the correction.
 */
export const CorrectCampaignCostPayload = z
  .object({
    campaignId: Id,
    /** The cost to correct, as it was recorded. */
    costId: SingleLineText.min(1).max(100),
    /** The amount the cost should have had; 0 voids it. */
    amount: CommandAmount,
    /** The cost's currency (the campaign's): stated, so that the amount cannot be read in another. */
    currency: IsoCurrency,
    /** Why: the auditor's first question. */
    reason: MultiLineText.trim().min(1).max(2000),
    /** Accept a correction that takes the campaign's costs beyond its budget (otherwise refused with 422). */
    allowOverBudget: z.boolean().optional(),
  })
  .strict();

export const RecordCampaignResponsePayload = z
  .object({
    campaignId: Id,
    customerId: Id,
    kind: ResponseKind,
    /** Only for `converted` (required there); `currency` defaults to the campaign's. */
    revenue: CommandAmount.nullable().optional(),
    currency: IsoCurrency.nullable().optional(),
  })
  .strict();

/** Every command takes `occurredAt` (business time). */
export const campaignCommandSchemas = withBusinessTime({
  CreateCampaign: CreateCampaignPayload,
  ScheduleCampaign: ScheduleCampaignPayload,
  LaunchCampaign: LaunchCampaignPayload,
  PauseCampaign: PauseCampaignPayload,
  ResumeCampaign: ResumeCampaignPayload,
  CompleteCampaign: CompleteCampaignPayload,
  CancelCampaign: CancelCampaignPayload,
  RecordCampaignCost: RecordCampaignCostPayload,
  CorrectCampaignCost: CorrectCampaignCostPayload,
  RecordCampaignResponse: RecordCampaignResponsePayload,
} as const);

type P<K extends keyof typeof campaignCommandSchemas> = z.infer<(typeof campaignCommandSchemas)[K]>;
type Cmd<K extends string, Payload> = { type: K; occurredAt: string } & Payload;

export type CreateCampaign = Cmd<'CreateCampaign', Omit<P<'CreateCampaign'>, 'campaignId'> & { campaignId: string }>;
export type ScheduleCampaign = Cmd<'ScheduleCampaign', P<'ScheduleCampaign'>>;
export type LaunchCampaign = Cmd<'LaunchCampaign', P<'LaunchCampaign'>>;
export type PauseCampaign = Cmd<'PauseCampaign', P<'PauseCampaign'>>;
export type ResumeCampaign = Cmd<'ResumeCampaign', P<'ResumeCampaign'>>;
export type CompleteCampaign = Cmd<'CompleteCampaign', P<'CompleteCampaign'>>;
export type CancelCampaign = Cmd<'CancelCampaign', P<'CancelCampaign'>>;
export type RecordCampaignCost = Cmd<'RecordCampaignCost', Omit<P<'RecordCampaignCost'>, 'costId'> & { costId: string }>;
export type CorrectCampaignCost = Cmd<'CorrectCampaignCost', P<'CorrectCampaignCost'>>;
/** The handler reads the customer's stream and passes what the rule needs. */
export type RecordCampaignResponse = Cmd<'RecordCampaignResponse', P<'RecordCampaignResponse'> & { customer: CustomerSnapshot }>;

export type CampaignCommand =
  | CreateCampaign
  | ScheduleCampaign
  | LaunchCampaign
  | PauseCampaign
  | ResumeCampaign
  | CompleteCampaign
  | CancelCampaign
  | RecordCampaignCost
  | CorrectCampaignCost
  | RecordCampaignResponse;
