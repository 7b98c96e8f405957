import { z } from 'zod';
import { MultiLineText, SingleLineText } from '../domain/shared.ts';
import { GlobalPositionText } from '../eventstore/position.ts';
import { EVENT_PATTERN, patternMatchesSomething } from './envelope.ts';
import { MASKED_PASSWORD, splitPassword } from './url-password.ts';

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

/**
 * Node's http client sends a URL's user and password as `Authorization: Basic`, percent-decoded: a `%`
 * not followed by two hex digits makes the request throw (URIError) instead of being sent, so such a
 * URL is refused here rather than failing every delivery.
 */
const hasDecodableUserinfo = (value: string): boolean => {
  const url = URL.parse(value);
  if (!url) return true;
  try {
    decodeURIComponent(url.username);
    decodeURIComponent(url.password);
    return true;
  } catch {
    return false;
  }
};

/**
 * A password in the URL (`https://user:token@host/`) is a secret like the signing secret: it is kept
 * apart, sealed (integration/url-password.ts), and shown masked, never again after creation.
 */
export const displayUrl = (value: string): string => splitPassword(value).url;

/**
 * One line, as a command's texts: URL parsing drops tabs and newlines anywhere in the text
 * (`http://host:41<TAB>50/` is port 4150), so the URL an operator reads would differ from where
 * deliveries go, and the URL is listed by the API, the console and `crm webhooks`. SafeText beneath:
 * PostgreSQL stores no NUL, and an unpaired surrogate would be stored altered (U+FFFD).
 */
const AnyWebhookUrl = SingleLineText.max(2000)
  .refine(isHttpUrl, 'an absolute http:// or https:// URL')
  .refine(hasDecodableUserinfo, 'its user or password has a % not followed by two hex digits: write a % in them as %25');

/** A new subscription's URL: the mask as a password is refused rather than stored as the password (there is none to keep). */
export const WebhookUrl = AnyWebhookUrl.refine(
  (value) => URL.parse(value)?.password !== MASKED_PASSWORD,
  `its password reads ${MASKED_PASSWORD} (masked when shown): give the real one`,
).describe('Where deliveries are POSTed (public addresses only unless the operator allows a network); a password in it is shown masked');

/**
 * A changed URL: with the mask as its password (the URL sent back as shown) it keeps the stored
 * password when scheme, host, port and user are the same (checked against the stored URL when updating).
 */
export const ChangedWebhookUrl = AnyWebhookUrl.describe(
  `Where deliveries are POSTed; a password in it is shown masked. Given back with ${MASKED_PASSWORD} as the password and the same scheme, host, port and user, the stored password is kept`,
);

/** Several lines, as a command's descriptions (tabs and line breaks kept, other controls refused). */
export const WebhookDescription = MultiLineText.trim().max(500).describe('What the subscription is for');

export const ReplayPosition = GlobalPositionText.describe('Deliver again every matching event from this position (inclusive) on, in order');

/** A week: long enough for a receiver's deployment, short enough that a replaced secret leaves deliveries (and the table) soon. */
export const MAX_PREVIOUS_SECRET_SECONDS = 7 * 86_400;
/** Unless told otherwise (no body, no --keep-previous), the replaced secret signs for one more day. */
export const DEFAULT_PREVIOUS_SECRET_SECONDS = 86_400;

export const KeepPreviousSeconds = z
  .number()
  .int()
  .min(0)
  .max(MAX_PREVIOUS_SECRET_SECONDS)
  .describe('How long deliveries are still signed with the replaced secret as well, in seconds (0: never again, for a leaked secret)');

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
