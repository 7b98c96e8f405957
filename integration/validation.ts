import { z } from 'zod';
import { EVENT_PATTERN, patternMatchesSomething } from './envelope.ts';

/** Subscription input, checked the same way by the API and `crm webhooks`. */

/** Only http and https: anything else (file:, ftp:, javascript:) is refused, not attempted. */
const isHttpUrl = (value: string): boolean => {
  try {
    const url = new URL(value);
    return (url.protocol === 'http:' || url.protocol === 'https:') && url.hostname !== '';
  } catch {
    return false;
  }
};

export const WebhookUrl = z.string().trim().max(2000).refine(isHttpUrl, 'an absolute http:// or https:// URL').describe('Where deliveries are POSTed');

export const EventPatterns = z
  .array(
    z
      .string()
      .regex(EVENT_PATTERN, 'an event type (PurchaseRecorded), a prefix with * (Deal*), or *')
      .refine(patternMatchesSomething, 'matches no integration event type'),
  )
  .min(1)
  .max(100)
  .describe('Event types to deliver: exact names, prefixes ending in *, or * for all');
