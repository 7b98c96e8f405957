import type { Credentials } from '@eventstore/db-client';
import { EventStoreUnavailable } from '../errors.ts';
import { HOST_LIST, loggableUrl } from '../../shared/loggable-url.ts';

/** The oldest server the engine supports: 22.6 added positions to stream reads, 23.10 the `caughtUp` signal. */
export const MIN_SERVER_VERSION = '23.10';

export interface ConnectionSettings {
  /** Sent with every append so the client takes the classic append RPC, never BatchAppend. */
  appendCredentials: Credentials;
  /** The connection string to hand the client, rewritten as `parseConnectionString` says. */
  clientUrl: string;
  /** Options of the given string that the client does not take, left out of `clientUrl` (names only). */
  ignoredOptions: string[];
}

/**
 * The options `@eventstore/db-client` 6.2 reads from a connection string, as its parser compares
 * them (lower case, without `-` and `_`). It prints a warning quoting the whole connection string,
 * password included, for any other key, and for `tlsVerifyCert=false` (which it does not support
 * and ignores): those are left out of the string it is given.
 */
const CLIENT_OPTIONS = new Set([
  'usercertfile',
  'userkeyfile',
  'maxdiscoverattempts',
  'connectionname',
  'defaultdeadline',
  'discoveryinterval',
  'gossiptimeout',
  'nodepreference',
  'tls',
  'tlsverifycert',
  'tlscafile',
  'throwonappendfailure',
  'keepaliveinterval',
  'keepalivetimeout',
]);
const flat = (key: string): string => key.trim().toLowerCase().replace(/[_-]/g, '');

const invalid = (url: string, why: string): EventStoreUnavailable =>
  new EventStoreUnavailable(
    `EVENTSTORE_URL is not a valid connection string (${loggableUrl(url)}: ${why}); expected esdb://host:2113?tls=false or esdb://user:password@host:2113.`,
  );

/**
 * Checks a connection string before the client sees it, and rewrites it for the client.
 *
 * - The user and password are everything before the last `@` (a password may hold `/`, `?`, `#`,
 *   `:` or `@` as typed, or percent-encoded), and reach the client percent-encoded: its own parser
 *   ends the password at the first `@` and splits at every `:`, and then takes the rest of the
 *   password for a host name (which its errors quote).
 * - Options it does not take are left out (`ignoredOptions`), so that it prints nothing.
 * - `throwOnAppendFailure=false` makes the client report a conflict as `success: false` with
 *   revision and position 0, which the contract would read as a successful append: refused.
 * - BatchAppend: `@eventstore/db-client` 6.2.1 routes appends through BatchAppend whenever the
 *   server supports it and the call carries no credentials; after a connection error a late
 *   response there throws a TypeError inside a 'data' listener and ends the process (fixed
 *   upstream later). Passing credentials on every append keeps appends on the classic RPC. Over an
 *   insecure connection the client ignores them, so the placeholder costs nothing there.
 */
export function parseConnectionString(url: string): ConnectionSettings {
  const match = /^(esdb(?:\+discover)?):\/\/(.*)$/is.exec(url.trim());
  if (!match) throw invalid(url, 'it does not start with esdb:// or esdb+discover://');
  const scheme = match[1]!.toLowerCase();
  const rest = match[2]!;
  const at = rest.lastIndexOf('@');
  const userinfo = at === -1 ? null : rest.slice(0, at);
  const afterUserinfo = rest.slice(at + 1);
  const question = afterUserinfo.indexOf('?');
  const hosts = (question === -1 ? afterUserinfo : afterUserinfo.slice(0, question)).replace(/\/+$/, '');
  const query = question === -1 ? '' : afterUserinfo.slice(question + 1).replace(/\/+$/, '');
  if (!HOST_LIST.test(hosts)) throw invalid(url, 'no host, or a host with characters a host name cannot hold');

  let credentials: Credentials | null = null;
  if (userinfo !== null) {
    const colon = userinfo.indexOf(':');
    if (colon <= 0 || colon === userinfo.length - 1) throw invalid(url, 'a user needs a password, written user:password@');
    try {
      credentials = { username: decodeURIComponent(userinfo.slice(0, colon)), password: decodeURIComponent(userinfo.slice(colon + 1)) };
    } catch {
      throw invalid(url, 'its user or password holds a % that is not followed by two hex digits (write % as %25)');
    }
  }

  const kept: string[] = [];
  const ignoredOptions: string[] = [];
  const options = new Map<string, string>();
  for (const pair of query === '' ? [] : query.split('&')) {
    const equals = pair.indexOf('=');
    const key = equals === -1 ? pair : pair.slice(0, equals);
    const value = equals === -1 ? '' : pair.slice(equals + 1);
    const name = flat(key);
    if (!CLIENT_OPTIONS.has(name) || (name === 'tlsverifycert' && value.trim().toLowerCase() === 'false')) {
      ignoredOptions.push(name === 'tlsverifycert' ? `${key}=false` : key);
      continue;
    }
    options.set(name, value.toLowerCase());
    kept.push(pair);
  }
  if (options.get('throwonappendfailure') === 'false') {
    throw new EventStoreUnavailable(
      'EVENTSTORE_URL sets throwOnAppendFailure=false, which turns refused appends into apparent successes; remove it (the engine needs conflicts raised).',
    );
  }
  const userPart = credentials ? `${encodeURIComponent(credentials.username)}:${encodeURIComponent(credentials.password)}@` : '';
  return {
    appendCredentials: credentials ?? { username: 'admin', password: 'changeit' },
    clientUrl: `${scheme}://${userPart}${hosts}${kept.length > 0 ? `?${kept.join('&')}` : ''}`,
    ignoredOptions,
  };
}

const numericParts = (version: string): number[] =>
  version
    .split(/[.-]/)
    .slice(0, 3)
    .map((part) => Number.parseInt(part, 10));

/** True when `version` (as the server reports it, e.g. "24.10.0.0") is at least `minimum`. */
export function versionAtLeast(version: string, minimum: string): boolean {
  const have = numericParts(version);
  const need = numericParts(minimum);
  if (have.some((part) => Number.isNaN(part))) return false;
  for (let i = 0; i < need.length; i++) {
    const a = have[i] ?? 0;
    const b = need[i] ?? 0;
    if (a !== b) return a > b;
  }
  return true;
}

/** Refuses servers older than `MIN_SERVER_VERSION` with a message that says what to run instead. */
export function assertSupportedServer(version: string, url: string): void {
  if (versionAtLeast(version, MIN_SERVER_VERSION)) return;
  throw new EventStoreUnavailable(
    `EventStoreDB at ${loggableUrl(url)} reports version ${version}; the CRM needs ${MIN_SERVER_VERSION} or later ` +
      '(older servers send no position on stream reads and no caught-up signal). Upgrade the server (the compose file runs 24.10).',
  );
}
