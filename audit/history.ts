import { MAX_GLOBAL_POSITION } from '../eventstore/position.ts';
import type { RecordedEvent } from '../shared/events.ts';
import { eventsInSql, type AuditDeps } from './deps.ts';
import { toAuditEvent, type AuditEvent, type PersonalDataMode } from './event-view.ts';
import { sameActor, type EventLogFilter } from './log-filter.ts';
import { readEventLogSql } from './sql/history.ts';

export const DEFAULT_PAGE_SIZE = 100;
export const MAX_PAGE_SIZE = 1000;
/** Events read per round trip when scanning the generic feed. */
const SCAN_BATCH = 500;

export interface Page<T> {
  items: T[];
  /** Pass back as `cursor` for the next page; null on the last page. */
  nextCursor: string | null;
}

export interface StreamHistoryQuery {
  /** Revision to start from (inclusive), as a cursor string from a previous page or a number. */
  cursor?: string | null;
  limit?: number;
  direction?: 'forwards' | 'backwards';
  personalData: PersonalDataMode;
  /** A caller with restricted visibility: the records they may see (EventLogFilter.within). */
  within?: EventLogFilter['within'];
}

/** What a withheld customer id reads as. */
export const OUTSIDE_SCOPE = '[outside your scope]';

/**
 * An event of a stream without an owner (a campaign) that names a customer outside the caller's
 * scope: the customer is withheld, the rest (a response's kind, revenue) shown, as the campaign's
 * totals are. The responses export leaves such rows out; the log keeps the event, so that a
 * campaign's history stays whole, paged by revision.
 */
const withinScope = (event: AuditEvent, within: EventLogFilter['within']): AuditEvent => {
  if (!within || !within.prefixes.some((p) => event.stream.startsWith(p))) return event;
  const data = event.data as { customerId?: unknown } | null;
  if (typeof data?.customerId !== 'string' || within.streams.includes(`customer-${data.customerId}`)) return event;
  return { ...event, data: { ...data, customerId: OUTSIDE_SCOPE } };
};

export type { EventLogFilter } from './log-filter.ts';

export interface EventLogQuery extends EventLogFilter {
  /** Exclusive position in the reading direction, from a previous page's `nextCursor`. */
  cursor?: string | null;
  limit?: number;
  direction?: 'forwards' | 'backwards';
  personalData: PersonalDataMode;
}

/** A cursor that does not parse: a 400 naming the field, never a 500. */
export class InvalidAuditQuery extends Error {
  constructor(
    readonly field: string,
    message: string,
  ) {
    super(message);
    this.name = 'InvalidAuditQuery';
  }
}

const clampLimit = (limit: number | undefined): number => Math.min(MAX_PAGE_SIZE, Math.max(1, Math.trunc(limit ?? DEFAULT_PAGE_SIZE)));

const parseRevisionCursor = (cursor: string | null | undefined): number | undefined => {
  if (cursor === undefined || cursor === null || cursor === '') return undefined;
  if (!/^\d{1,15}$/.test(cursor)) throw new InvalidAuditQuery('cursor', 'cursor must be a revision from a previous page');
  return Number(cursor);
};

export const parsePositionCursor = (cursor: string | null | undefined): bigint | undefined => {
  if (cursor === undefined || cursor === null || cursor === '') return undefined;
  // Positions are 64-bit (PostgreSQL bigint): a larger number is no position, not a query that fails.
  if (!/^\d{1,19}$/.test(cursor) || BigInt(cursor) > MAX_GLOBAL_POSITION)
    throw new InvalidAuditQuery('cursor', 'cursor must be a position from a previous page');
  return BigInt(cursor);
};

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/**
 * The stream a caller means by a name. Ids are UUIDs, which are case-insensitive: every route reads
 * them in any case and the commands name streams with them in lower case, so `customer-6F1C...`
 * means `customer-6f1c...`. A stream stored under the exact spelling given (written before ids were
 * normalised) is still that stream: an auditor must be able to read it.
 */
export async function streamNamed(deps: Pick<AuditDeps, 'store'>, stream: string): Promise<string> {
  const dash = stream.indexOf('-');
  const id = stream.slice(dash + 1);
  if (dash < 0 || !UUID.test(id) || id === id.toLowerCase()) return stream;
  const exact = await deps.store.readStream(stream, { maxCount: 1 });
  return exact.length > 0 ? stream : `${stream.slice(0, dash + 1)}${id.toLowerCase()}`;
}

/** Every event of one stream in revision order, with metadata, paged by revision. */
export async function streamHistory(deps: AuditDeps, stream: string, query: StreamHistoryQuery): Promise<Page<AuditEvent>> {
  const limit = clampLimit(query.limit);
  const direction = query.direction ?? 'forwards';
  const fromRevision = parseRevisionCursor(query.cursor);
  const recorded = await deps.store.readStream(stream, {
    direction,
    maxCount: limit + 1,
    ...(fromRevision !== undefined ? { fromRevision } : {}),
  });
  const page = recorded.slice(0, limit);
  const next = recorded[limit];
  const items = await Promise.all(page.map(async (event) => withinScope(await toAuditEvent(event, deps.personalData, query.personalData), query.within)));
  return { items, nextCursor: next ? String(next.revision) : null };
}

export const matchesStream = (filter: EventLogFilter, stream: string): boolean =>
  (filter.stream === undefined || (filter.stream.endsWith('-') ? stream.startsWith(filter.stream) : stream === filter.stream)) &&
  (filter.within === undefined || filter.within.streams.includes(stream) || filter.within.prefixes.some((p) => stream.startsWith(p)));

/** The filter every engine applies in memory; the SQL path applies the same in its WHERE clause. */
export const matchesFilter = (filter: EventLogFilter, event: RecordedEvent): boolean => {
  if (filter.types && filter.types.length > 0 && !filter.types.includes(event.type)) return false;
  if (!matchesStream(filter, event.stream)) return false;
  if (filter.from && event.recordedAt < filter.from) return false;
  if (filter.to && event.recordedAt > filter.to) return false;
  if (filter.actor !== undefined) {
    const actor = (event.metadata?.actor as { userId?: unknown } | undefined)?.userId;
    if (!sameActor(actor, filter.actor)) return false;
  }
  return true;
};

/** Generic engine (EventStoreDB): pages the global feed with `readAll`, narrowing by type and stream prefix at the source. */
async function readEventLogGeneric(
  deps: AuditDeps,
  filter: EventLogFilter,
  after: bigint | undefined,
  limit: number,
  direction: 'forwards' | 'backwards',
): Promise<RecordedEvent[]> {
  const sourceFilter = {
    ...(filter.types && filter.types.length > 0 ? { eventTypes: filter.types } : {}),
    // An exact stream name is also a prefix of itself; `matchesFilter` then keeps the exact match.
    ...(filter.stream !== undefined ? { streamPrefixes: [filter.stream] } : {}),
  };
  const found: RecordedEvent[] = [];
  let from = after;
  for (;;) {
    const batch = await deps.store.readAll({
      maxCount: SCAN_BATCH,
      direction,
      ...(from !== undefined ? { fromPosition: from } : {}),
      ...(Object.keys(sourceFilter).length > 0 ? { filter: sourceFilter } : {}),
    });
    for (const event of batch) {
      if (!matchesFilter(filter, event)) continue;
      found.push(event);
      if (found.length === limit) return found;
    }
    if (batch.length < SCAN_BATCH) return found;
    from = batch[batch.length - 1]!.position;
  }
}

/**
 * Reads up to `limit` matching events after the cursor, in the reading direction: the log as it stands
 * (on PostgreSQL read in SQL, not through the followers' feed, which holds back events committed behind
 * an older open transaction).
 */
export const readEventLog = (
  deps: AuditDeps,
  filter: EventLogFilter,
  after: bigint | undefined,
  limit: number,
  direction: 'forwards' | 'backwards',
): Promise<RecordedEvent[]> =>
  eventsInSql(deps) ? readEventLogSql(deps, filter, after, limit, direction) : readEventLogGeneric(deps, filter, after, limit, direction);

/** The global log, filtered and paged by position; each item carries its global position. */
export async function eventLog(deps: AuditDeps, query: EventLogQuery): Promise<Page<AuditEvent>> {
  const limit = clampLimit(query.limit);
  const direction = query.direction ?? 'forwards';
  const recorded = await readEventLog(deps, query, parsePositionCursor(query.cursor), limit + 1, direction);
  const page = recorded.slice(0, limit);
  const items = await Promise.all(page.map(async (event) => withinScope(await toAuditEvent(event, deps.personalData, query.personalData), query.within)));
  const last = page[page.length - 1];
  return { items, nextCursor: recorded.length > limit && last ? last.position.toString() : null };
}

/** The whole filtered log, page by page, for exports: memory stays bounded by one page. */
export async function* iterateEventLog(deps: AuditDeps, query: Omit<EventLogQuery, 'limit'>): AsyncGenerator<AuditEvent> {
  let cursor = query.cursor ?? null;
  do {
    const page = await eventLog(deps, { ...query, cursor, limit: MAX_PAGE_SIZE });
    yield* page.items;
    cursor = page.nextCursor;
  } while (cursor !== null);
}

/** One stream's whole history, page by page, for exports. */
export async function* iterateStreamHistory(deps: AuditDeps, stream: string, query: Omit<StreamHistoryQuery, 'limit'>): AsyncGenerator<AuditEvent> {
  let cursor = query.cursor ?? null;
  do {
    const page = await streamHistory(deps, stream, { ...query, cursor, limit: MAX_PAGE_SIZE });
    yield* page.items;
    cursor = page.nextCursor;
  } while (cursor !== null);
}
