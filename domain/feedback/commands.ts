import { z } from 'zod';
import type { CustomerSnapshot } from '../customer/decider.ts';
import type { UserSnapshot } from '../user/decider.ts';
import { Id, IsoDateTime, LongMultiLineText, MultiLineText, CommandPersonRef, DisplayText, withBusinessTime } from '../shared.ts';
import { Csat, FeedbackChannel, FeedbackKind, FeedbackPriority, Nps } from './events.ts';

export const SubmitFeedbackPayload = z
  .object({
    /** Client-chosen id; generated when absent. */
    feedbackId: Id.optional(),
    customerId: Id,
    kind: FeedbackKind,
    channel: FeedbackChannel,
    subject: DisplayText,
    body: LongMultiLineText,
    /** Defaults to `normal`. */
    priority: FeedbackPriority.optional(),
    csat: Csat.nullable().optional(),
    nps: Nps.nullable().optional(),
    /**
     * The deadlines as another system (or this CRM's export) set them, at or after the submission;
     * each defaults to the submission plus its priority's SLA target. An item brought in from an
     * export keeps the deadlines an escalation or a reopening tightened.
     */
    firstResponseDueAt: IsoDateTime.optional(),
    resolutionDueAt: IsoDateTime.optional(),
  })
  .strict();

export const AssignFeedbackPayload = z.object({ feedbackId: Id, assigneeId: CommandPersonRef }).strict();
/** `responderId` defaults to the acting user. */
export const RespondToFeedbackPayload = z
  .object({ feedbackId: Id, message: MultiLineText.trim().min(1).max(10_000), responderId: CommandPersonRef.optional() })
  .strict();
/** `priority` defaults to the next level up; it must be higher than the current one. */
export const EscalateFeedbackPayload = z
  .object({ feedbackId: Id, reason: MultiLineText.trim().min(1).max(2000), priority: FeedbackPriority.optional() })
  .strict();
export const ResolveFeedbackPayload = z.object({ feedbackId: Id, resolution: MultiLineText.trim().min(1).max(10_000) }).strict();
export const ReopenFeedbackPayload = z.object({ feedbackId: Id, reason: MultiLineText.max(2000).nullable().optional() }).strict();
export const CloseFeedbackPayload = z.object({ feedbackId: Id }).strict();
export const RateFeedbackPayload = z.object({ feedbackId: Id, csat: Csat, comment: MultiLineText.max(2000).nullable().optional() }).strict();

/** Every command takes `occurredAt` (business time). */
export const feedbackCommandSchemas = withBusinessTime({
  SubmitFeedback: SubmitFeedbackPayload,
  AssignFeedback: AssignFeedbackPayload,
  RespondToFeedback: RespondToFeedbackPayload,
  EscalateFeedback: EscalateFeedbackPayload,
  ResolveFeedback: ResolveFeedbackPayload,
  ReopenFeedback: ReopenFeedbackPayload,
  CloseFeedback: CloseFeedbackPayload,
  RateFeedback: RateFeedbackPayload,
} as const);

type P<K extends keyof typeof feedbackCommandSchemas> = z.infer<(typeof feedbackCommandSchemas)[K]>;
type Cmd<K extends string, Payload> = { type: K; occurredAt: string } & Payload;

/** The handler reads the customer's stream and passes what the rule needs. */
export type SubmitFeedback = Cmd<'SubmitFeedback', Omit<P<'SubmitFeedback'>, 'feedbackId'> & { feedbackId: string; customer: CustomerSnapshot }>;
/**
 * The item's customer, for the commands a forgotten customer's item no longer takes (needsFeedbackCustomer
 * in commands/prepare.ts): the handler reads it from the item's `customerId`.
 */
type OfCustomer = { customer?: CustomerSnapshot };
/** `assignee`: the snapshot of the user `assigneeId` names, filled by the handler when it names one. */
export type AssignFeedback = Cmd<'AssignFeedback', P<'AssignFeedback'> & { assignee?: UserSnapshot }>;
export type RespondToFeedback = Cmd<'RespondToFeedback', Omit<P<'RespondToFeedback'>, 'responderId'> & { responderId: string } & OfCustomer>;
export type EscalateFeedback = Cmd<'EscalateFeedback', P<'EscalateFeedback'>>;
export type ResolveFeedback = Cmd<'ResolveFeedback', P<'ResolveFeedback'> & OfCustomer>;
export type ReopenFeedback = Cmd<'ReopenFeedback', P<'ReopenFeedback'> & OfCustomer>;
export type CloseFeedback = Cmd<'CloseFeedback', P<'CloseFeedback'>>;
export type RateFeedback = Cmd<'RateFeedback', P<'RateFeedback'> & OfCustomer>;

export type FeedbackCommand =
  SubmitFeedback | AssignFeedback | RespondToFeedback | EscalateFeedback | ResolveFeedback | ReopenFeedback | CloseFeedback | RateFeedback;
