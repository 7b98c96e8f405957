import { z } from 'zod';
import type { FeedbackPriority } from './events.ts';

/** Hours allowed for the first response and for resolution, per priority. */
export const SlaTarget = z.object({ firstResponseHours: z.number().positive(), resolutionHours: z.number().positive() }).strict();
export const SlaPolicy = z.object({ low: SlaTarget, normal: SlaTarget, high: SlaTarget, urgent: SlaTarget }).strict();
export type SlaPolicy = z.infer<typeof SlaPolicy>;

/** Defaults; deployments pass their own policy to `createCrmCommands`. */
export const defaultSlaPolicy: SlaPolicy = {
  urgent: { firstResponseHours: 1, resolutionHours: 8 },
  high: { firstResponseHours: 4, resolutionHours: 24 },
  normal: { firstResponseHours: 8, resolutionHours: 72 },
  low: { firstResponseHours: 24, resolutionHours: 120 },
};

export const priorityRank: Readonly<Record<FeedbackPriority, number>> = { low: 0, normal: 1, high: 2, urgent: 3 };
export const nextPriority = (p: FeedbackPriority): FeedbackPriority | null =>
  p === 'low' ? 'normal' : p === 'normal' ? 'high' : p === 'high' ? 'urgent' : null;
