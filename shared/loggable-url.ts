/**
 * A server URL as the service prints it: every message, log line and report that names a server
 * (the PostgreSQL, Redis, EventStoreDB and NATS connection strings, a webhook receiver) shows it
 * through `loggableUrl`, and nothing else takes a URL apart for printing. What is printed leaves
 * the CRM (terminals, log files, log collectors, bench reports), and a URL often carries its
 * credential: a user and password, a path segment (`/services/T000/B000/<token>`), a query value
 * (`?token=...`). The printed form names the server (scheme, host, port and the path's shape; a
 * PostgreSQL URL's database name in full) so that a failure can be diagnosed, and leaves the secret out. What is connected to is unchanged.
 */

/**
 * What stands in a printed URL for a part left out. The same text as the mask the webhook API shows
 * in place of a stored password (integration/url-password.ts `MASKED_PASSWORD`), but a separate
 * constant: that one is part of the stored data and must never change, this one is only a log format.
 */
export const REDACTED = '***';

/**
 * The port a client of these schemes uses when the URL names none. The WHATWG parser knows default
 * ports for http(s) and ws(s) only (and drops them from `host`); for the others the printed form
 * names the port actually used, as a message about an unreachable server should.
 */
const DEFAULT_PORTS: Record<string, string> = {
  'postgres:': '5432',
  'postgresql:': '5432',
  'redis:': '6379',
  'rediss:': '6379',
  'esdb:': '2113',
  'esdb+discover:': '2113',
  'nats:': '4222',
  'tls:': '4222',
  'amqp:': '5672',
  'amqps:': '5671',
};

/**
 * A path segment or query key that reads like a token rather than a name: 20 characters or more,
 * or 8 or more mixing two of lower case, upper case and digits (a UUID, `T01ABCDEF`, a base64 token).
 * `webhooks`, `v2`, `crm-events`, `test` and numeric ids shorter than 20 read as they are.
 */
export const looksSecret = (part: string): boolean => {
  if (part.length >= 20) return true;
  if (part.length < 8) return false;
  const kinds = [/[a-z]/, /[A-Z]/, /[0-9]/].filter((kind) => kind.test(part)).length;
  return kinds >= 2;
};

const redactPart = (part: string): string => (looksSecret(part) ? REDACTED : part);

/**
 * Schemes whose path is a database name: shown whole, since an operator after a restore or a move
 * must see which database was opened (`probe_restore2`, `crmStaging` read as tokens and printed
 * `***`). Their query values are libpq settings (`sslmode=require`), shown unless a key names a
 * credential (`password`, `sslpassword`) or a key or value reads like a token.
 */
const DATABASE_SCHEMES = new Set(['postgres:', 'postgresql:']);
const CREDENTIAL_KEY = /pass|secret|token|key|cred|auth/i;

const databaseSetting = (pair: string): string => {
  const equals = pair.indexOf('=');
  if (equals === -1) return redactPart(pair);
  const key = pair.slice(0, equals);
  const value = pair.slice(equals + 1);
  if (looksSecret(key)) return `${REDACTED}=${REDACTED}`;
  return `${key}=${CREDENTIAL_KEY.test(decodeURIComponentSafely(key)) || looksSecret(value) ? REDACTED : value}`;
};

const decodeURIComponentSafely = (text: string): string => {
  try {
    return decodeURIComponent(text);
  } catch {
    return text;
  }
};

const SCHEME = /^[a-z][a-z0-9+.-]*:\/\//i;

/**
 * The URL with everything up to its last `@` after the scheme left out: the userinfo, however it is
 * written. A password holding `/`, `?`, `#` (or `\` in http URLs) unencoded ends the authority early
 * for the WHATWG parser, which then reads the user as the host and the rest of the password as the
 * path, query or fragment (`postgres://crm:/pw@db/crm` parses as host `crm`, path `/pw@db/crm`). The
 * last `@` is where such a userinfo ends whatever it holds; a URL with `@` in its path or query
 * proper loses what precedes it, which is safe (nothing is shown that might be a credential).
 * Null when the text has no `scheme://`.
 */
const withoutUserinfo = (value: string): string | null => {
  const scheme = SCHEME.exec(value);
  if (!scheme) return null;
  const at = value.lastIndexOf('@');
  return at < scheme[0].length ? value : `${scheme[0]}${value.slice(at + 1)}`;
};

/**
 * Host names, IPv4 and bracketed IPv6 literals with ports, comma-separated: host lists
 * (`esdb://a:2113,b:2113,c:2113`, gossip seeds) do not parse as one URL; shown when they hold these only.
 */
export const HOST_LIST = /^[a-z0-9.\-_:[\],]+$/i;

interface Printable {
  scheme: string;
  authority: string;
  pathname: string;
  search: string;
}

/** Scheme, printable authority, path and query of a URL, or null when nothing of it can be shown safely. */
const parseForLog = (value: string): Printable | null => {
  const direct = URL.parse(value);
  // A `@` after the authority means the parser may have ended it inside the password (see withoutUserinfo).
  if (direct && !`${direct.pathname}${direct.search}${direct.hash}`.includes('@')) return printable(direct);
  const stripped = withoutUserinfo(value);
  if (stripped === null) return null;
  const url = URL.parse(stripped);
  if (url) return printable(url);
  const scheme = SCHEME.exec(stripped)![0];
  const rest = stripped.slice(scheme.length);
  const end = rest.search(/[/?#]/);
  const authority = end === -1 ? rest : rest.slice(0, end);
  const tail = URL.parse(`http://host${end === -1 ? '' : rest.slice(end)}`);
  if (!HOST_LIST.test(authority) || !tail) return null;
  return {
    scheme: scheme.slice(0, -2).toLowerCase(),
    authority: authority.toLowerCase(),
    pathname: rest[end] === '/' ? tail.pathname : '',
    search: tail.search,
  };
};

const printable = (url: URL): Printable => ({ scheme: url.protocol, authority: hostWithPort(url), pathname: url.pathname, search: url.search });

const hostWithPort = (url: URL): string => {
  const port = url.port === '' && url.hostname !== '' ? DEFAULT_PORTS[url.protocol] : undefined;
  return port === undefined ? url.host : `${url.host}:${port}`;
};

/**
 * `https://user:pw@hooks.example.com:8443/services/T000/B000/aB3dE5fG7hJ9kL1mN3pQ5rS7?token=abc&channel=crm#x`
 * is printed as `https://hooks.example.com:8443/services/T000/B000/***?token=***&channel=***`: no user or
 * password, secret-looking path segments and every query value as `***` (the keys kept, a secret-looking
 * one masked too), no fragment. `postgres://crm:s3cret@db.internal/crm_prod2?sslmode=require&password=x` is
 * `postgres://db.internal:5432/crm_prod2?sslmode=require&password=***`: a database URL's name is shown whole.
 * `(not a URL)` when it does not parse. `asDelivered`: the URL is one an HTTP client connects to as the
 * WHATWG parser reads it, and holds no password (a webhook's: its password is kept apart), so an `@`
 * after the host is no userinfo: the host printed is the one delivered to (`http://example.com/a#@127.0.0.1/`
 * was logged as 127.0.0.1 for deliveries that went to example.com).
 */
export const loggableUrl = (value: string, options: { asDelivered?: boolean } = {}): string => {
  const direct = options.asDelivered ? URL.parse(value) : null;
  const parsed = direct ? printable(direct) : parseForLog(value);
  if (!parsed) return '(not a URL)';
  const { scheme, authority, pathname, search } = parsed;
  const database = DATABASE_SCHEMES.has(scheme);
  const path = database ? pathname : pathname.split('/').map(redactPart).join('/');
  const pairs = search === '' ? [] : search.slice(1).split('&');
  const query = pairs.map((pair) => {
    if (database) return databaseSetting(pair);
    const equals = pair.indexOf('=');
    return equals === -1 ? redactPart(pair) : `${redactPart(pair.slice(0, equals))}=${REDACTED}`;
  });
  return `${scheme}//${authority}${path}${query.length > 0 ? `?${query.join('&')}` : ''}`;
};

/**
 * True when the user or password of `value` holds a `/`, `?`, `#` (or `\` in http URLs) as typed:
 * the WHATWG parser, which the PostgreSQL, Redis and NATS clients use, then ends the authority
 * inside the password and takes the rest of it for the path (a database name), the query or the
 * fragment, and the user for the host. Such a URL is refused at configuration, where it can be said
 * which characters to percent-encode; `loggableUrl` shows the server it was meant to name.
 */
export const userinfoEndsEarly = (value: string): boolean => {
  const direct = URL.parse(value);
  if (direct && !`${direct.pathname}${direct.search}${direct.hash}`.includes('@')) return false;
  const stripped = withoutUserinfo(value);
  return stripped !== null && stripped !== value && URL.parse(stripped) !== null;
};
