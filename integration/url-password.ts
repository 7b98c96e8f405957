/**
 * A password in a webhook URL (`https://user:token@host/hook`) is the receiver's credential, a secret
 * like the signing secret: it is kept apart from the URL (sealed with the master key when one is
 * configured, integration/tables.ts), and the URL is stored, listed and shown with `***` in its place.
 * Deliveries put it back (node:http sends the userinfo as `Authorization: Basic`). The process log
 * shows no user or password at all (shared/loggable-url.ts).
 */

/** How a password in a webhook URL is shown, and what the stored URL holds in its place. */
export const MASKED_PASSWORD = '***';

/**
 * The URL with its password masked, and the password as written in the URL (percent-encoded, so that
 * putting it back gives the same URL), or null when it has none. A URL with no password is returned as
 * given; one with a password as the parser writes it.
 */
export const splitPassword = (value: string): { url: string; password: string | null } => {
  const url = URL.parse(value);
  if (!url || url.password === '') return { url: value, password: null };
  const password = url.password;
  url.password = MASKED_PASSWORD;
  return { url: url.href, password };
};

/** The URL to deliver to: `url` with `password` (as `splitPassword` gave it) in place of the mask. */
export const withPassword = (url: string, password: string): string => {
  const parsed = URL.parse(url);
  if (!parsed) return url;
  parsed.password = password;
  return parsed.href;
};

/**
 * Which password a subscription's stored URL stands for. The url column decides: no password there is
 * none (whatever the sealed column still holds), the mask is the sealed one (`openSealed`; none when
 * nothing is sealed), anything else a plain password written there by an earlier version (moved out
 * at the next start).
 */
export const passwordOf = (storedUrl: string, sealed: string | null, openSealed: (stored: string) => string): string | null => {
  const { password } = splitPassword(storedUrl);
  if (password === null) return null;
  if (password !== MASKED_PASSWORD) return password;
  return sealed === null ? null : openSealed(sealed);
};

/**
 * A URL given back with the mask as its password (a client that read the subscription and sends it
 * back whole) keeps the stored password, but only for the same scheme, host, port and user: the
 * password is the receiver's, and must not follow the subscription to another address (nor from https
 * to plain http). Returns why it cannot be kept, or null when it can.
 */
export const maskedPasswordRefusal = (storedUrl: string, givenUrl: string, storedPassword: string | null): string | null => {
  const refused = `its password reads ${MASKED_PASSWORD} (masked when shown): give the real one`;
  if (storedPassword === null) return `${refused}; no password is stored to keep`;
  const stored = URL.parse(storedUrl);
  const given = URL.parse(givenUrl);
  if (!stored || !given || stored.origin !== given.origin || stored.username !== given.username) {
    return `${refused}; the stored one is kept only for the same scheme, host, port and user`;
  }
  return null;
};

/** Refused by `updateSubscription`: a masked password it cannot keep (the API answers a 400 naming `url`). */
export class WebhookUrlRefused extends Error {
  readonly field = 'url';
  constructor(message: string) {
    super(message);
    this.name = 'WebhookUrlRefused';
  }
}
