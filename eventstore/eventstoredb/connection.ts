import type { Credentials } from '@eventstore/db-client';
import { EventStoreUnavailable } from '../errors.ts';
import { redactUrl } from './errors.ts';

/** The oldest server the engine supports: 22.6 added positions to stream reads, 23.10 the `caughtUp` signal. */
export const MIN_SERVER_VERSION = '23.10';

export interface ConnectionSettings {
  /** Sent with every append so the client takes the classic append RPC, never BatchAppend. */
  appendCredentials: Credentials;
}

/**
 * Checks a connection string before the client sees it.
 *
 * - `throwOnAppendFailure=false` makes the client report a conflict as `success: false` with
 *   revision and position 0, which the contract would read as a successful append: refused.
 * - BatchAppend: `@eventstore/db-client` 6.2.1 routes appends through BatchAppend whenever the
 *   server supports it and the call carries no credentials; after a connection error a late
 *   response there throws a TypeError inside a 'data' listener and ends the process (fixed
 *   upstream later). Passing credentials on every append keeps appends on the classic RPC. Over an
 *   insecure connection the client ignores them, so the placeholder costs nothing there.
 */
export function parseConnectionString(url: string): ConnectionSettings {
  let parsed: URL;
  try {
    parsed = new URL(url.replace(/^esdb(\+discover)?:\/\//, 'http://'));
  } catch {
    throw new EventStoreUnavailable(
      `EVENTSTORE_URL is not a valid connection string (${redactUrl(url)}); expected esdb://host:2113?tls=false or esdb://user:password@host:2113.`,
    );
  }
  const options = new Map([...parsed.searchParams].map(([key, value]) => [key.toLowerCase(), value.toLowerCase()]));
  if (options.get('throwonappendfailure') === 'false') {
    throw new EventStoreUnavailable(
      'EVENTSTORE_URL sets throwOnAppendFailure=false, which turns refused appends into apparent successes; remove it (the engine needs conflicts raised).',
    );
  }
  const username = decodeURIComponent(parsed.username);
  const password = decodeURIComponent(parsed.password);
  return { appendCredentials: username ? { username, password } : { username: 'admin', password: 'changeit' } };
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
    `EventStoreDB at ${redactUrl(url)} reports version ${version}; the CRM needs ${MIN_SERVER_VERSION} or later ` +
      '(older servers send no position on stream reads and no caught-up signal). Upgrade the server (the compose file runs 24.10).',
  );
}
