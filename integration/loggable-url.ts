import { MASKED_PASSWORD } from './url-password.ts';

/**
 * A webhook URL as the process log shows it. The log leaves the CRM (files, log collectors, whoever
 * reads them), and receivers often take their credential in the URL itself: a user and password,
 * a path segment (`/services/T000/B000/<token>`), a query value (`?token=...`). The log names the
 * receiver (scheme, host, port and the path's shape) so that an outage can be diagnosed, and leaves
 * the secret out. What is stored and what deliveries go to are unchanged.
 */

/** What stands in the log for a part left out: the mask a URL's password is shown with. */
const REDACTED = MASKED_PASSWORD;

/**
 * A path segment or query key that reads like a token rather than a name: 20 characters or more,
 * or 8 or more mixing two of lower case, upper case and digits (a UUID, `T01ABCDEF`, a base64 token).
 * `webhooks`, `v2`, `crm-events` and numeric ids shorter than 20 read as they are.
 */
const looksSecret = (part: string): boolean => {
  if (part.length >= 20) return true;
  if (part.length < 8) return false;
  const kinds = [/[a-z]/, /[A-Z]/, /[0-9]/].filter((kind) => kind.test(part)).length;
  return kinds >= 2;
};

const redactPart = (part: string): string => (looksSecret(part) ? REDACTED : part);

/**
 * `https://user:pw@hooks.example.com:8443/services/T000/B000/aB3dE5fG7hJ9kL1mN3pQ5rS7?token=abc&channel=crm#x`
 * is logged as `https://hooks.example.com:8443/services/T000/B000/***?token=***&channel=***`: no user or
 * password, secret-looking path segments and every query value as `***` (the keys kept, a secret-looking
 * one masked too), no fragment (never sent). `(not a URL)` when it does not parse.
 */
export const loggableUrl = (value: string): string => {
  const url = URL.parse(value);
  if (!url) return '(not a URL)';
  const path = url.pathname.split('/').map(redactPart).join('/');
  const pairs = url.search === '' ? [] : url.search.slice(1).split('&');
  const query = pairs.map((pair) => {
    const equals = pair.indexOf('=');
    return equals === -1 ? redactPart(pair) : `${redactPart(pair.slice(0, equals))}=${REDACTED}`;
  });
  return `${url.protocol}//${url.host}${path}${query.length > 0 ? `?${query.join('&')}` : ''}`;
};
