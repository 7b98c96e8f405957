/** Its own module so that the generic history (history.ts) and its SQL fast path (sql/history.ts) share it without importing each other. */

/**
 * Filters of the global log. `from`/`to` bound record time (inclusive), the time the store accepted
 * the event; business time (`occurredAt`) is a claim inside the event and is shown, not filtered on.
 */
export interface EventLogFilter {
  /**
   * `metadata.actor.userId`, compared case-insensitively (`sameActor`): actor ids are UUIDs,
   * `api-key:<uuid>`, host names and addresses, none of which a case tells apart.
   */
  actor?: string;
  /** Any of these event types. */
  types?: string[];
  /** Exact stream name, or a prefix when it ends with `-` (`deal-` = every deal). */
  stream?: string;
  from?: Date;
  to?: Date;
  /**
   * Only these streams (exact names) and streams with these prefixes: the log of a caller with
   * restricted visibility, who sees only their scope's records (api/auth/scope-guard.ts).
   */
  within?: { streams: readonly string[]; prefixes: readonly string[] };
}

/** Whether a recorded actor id is the one a filter names: in any case, as the SQL path's `lower(...) = lower(...)`. */
export const sameActor = (recorded: unknown, wanted: string): boolean => typeof recorded === 'string' && recorded.toLowerCase() === wanted.toLowerCase();
