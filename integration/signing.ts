import { createHmac, randomBytes } from 'node:crypto';

/**
 * The Standard Webhooks scheme (standardwebhooks.com): a delivery carries `webhook-id`,
 * `webhook-timestamp` (Unix seconds) and `webhook-signature: v1,<base64 HMAC-SHA256>` over
 * `<id>.<timestamp>.<body>`, keyed with the base64-decoded part of the secret after `whsec_`.
 */

const SECRET_PREFIX = 'whsec_';
/** 24 random bytes: the size the Standard Webhooks libraries generate. */
const SECRET_BYTES = 24;

export const newWebhookSecret = (): string => `${SECRET_PREFIX}${randomBytes(SECRET_BYTES).toString('base64')}`;

const keyOf = (secret: string): Buffer => {
  if (!secret.startsWith(SECRET_PREFIX)) throw new Error('A webhook secret starts with whsec_');
  return Buffer.from(secret.slice(SECRET_PREFIX.length), 'base64');
};

export interface WebhookHeaders {
  'webhook-id': string;
  'webhook-timestamp': string;
  'webhook-signature': string;
}

/**
 * Signed with each secret given (a rotation's new and previous one): the signatures are separated by
 * spaces, as the scheme allows, and a receiver accepts the delivery when one of them verifies with
 * the secret it holds.
 */
export function signWebhook(secrets: readonly string[], id: string, timestampSeconds: number, body: string): WebhookHeaders {
  const timestamp = String(Math.floor(timestampSeconds));
  const signatures = secrets.map((secret) => `v1,${createHmac('sha256', keyOf(secret)).update(`${id}.${timestamp}.${body}`).digest('base64')}`);
  return { 'webhook-id': id, 'webhook-timestamp': timestamp, 'webhook-signature': signatures.join(' ') };
}
