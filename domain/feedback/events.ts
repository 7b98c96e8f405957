import { z } from 'zod';
import { Id, IsoDateTime, LongText, SafeText, ShortText } from '../shared.ts';

export const FeedbackStreamPrefix = 'feedback-';

export const FeedbackKind = z.enum(['complaint', 'request', 'question', 'praise', 'survey']);
export const FeedbackChannel = z.enum(['email', 'phone', 'chat', 'web', 'social', 'in_person']);
export const FeedbackPriority = z.enum(['low', 'normal', 'high', 'urgent']);
export type FeedbackPriority = z.infer<typeof FeedbackPriority>;
export const FeedbackStatus = z.enum(['open', 'in_progress', 'resolved', 'closed']);
export type FeedbackStatus = z.infer<typeof FeedbackStatus>;
export const Csat = z.number().int().min(1).max(5);
export const Nps = z.number().int().min(0).max(10);

/** `subject` and `body` are personal data (encrypted with the customer's key). */
export const FeedbackSubmitted = z.object({
  feedbackId: Id,
  customerId: Id,
  kind: FeedbackKind,
  channel: FeedbackChannel,
  subject: ShortText,
  body: LongText,
  priority: FeedbackPriority,
  csat: Csat.nullable(),
  nps: Nps.nullable(),
  firstResponseDueAt: IsoDateTime,
  resolutionDueAt: IsoDateTime,
});
export const FeedbackAssigned = z.object({ feedbackId: Id, assigneeId: SafeText.min(1).max(200) });
/**
 * `message` is personal data when `customerId` is present (encrypted with that customer's key);
 * replies recorded before the field existed carry no customer id and stay as they were stored.
 */
export const FeedbackResponded = z.object({
  feedbackId: Id,
  customerId: Id.optional(),
  responderId: SafeText.min(1).max(200),
  message: LongText,
  /** True for the first response: it is what the first-response SLA measures. */
  firstResponse: z.boolean(),
});
export const FeedbackEscalated = z.object({
  feedbackId: Id,
  reason: SafeText.trim().min(1).max(2000),
  priority: FeedbackPriority,
  firstResponseDueAt: IsoDateTime,
  resolutionDueAt: IsoDateTime,
});
/**
 * The resolution quotes the customer as a reply does: personal data when `customerId` is present
 * (encrypted with that customer's key, erased when they are forgotten); resolutions recorded before
 * the field existed carry no customer id and stay as stored.
 */
export const FeedbackResolved = z.object({ feedbackId: Id, customerId: Id.optional(), resolution: SafeText.trim().min(1).max(10_000) });
export const FeedbackReopened = z.object({ feedbackId: Id, reason: SafeText.max(2000).nullable(), resolutionDueAt: IsoDateTime });
export const FeedbackClosed = z.object({ feedbackId: Id });
/**
 * `comment` is the customer's own words: personal data when `customerId` is present (encrypted with
 * that customer's key); ratings recorded before the field existed carry no customer id and stay as stored.
 */
export const FeedbackRated = z.object({ feedbackId: Id, customerId: Id.optional(), csat: Csat, comment: SafeText.max(2000).nullable() });

export const feedbackEventSchemas = {
  FeedbackSubmitted,
  FeedbackAssigned,
  FeedbackResponded,
  FeedbackEscalated,
  FeedbackResolved,
  FeedbackReopened,
  FeedbackClosed,
  FeedbackRated,
} as const;

type Schemas = typeof feedbackEventSchemas;
export type FeedbackEvent = { [K in keyof Schemas]: { type: K; data: z.infer<Schemas[K]> } }[keyof Schemas];
