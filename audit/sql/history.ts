import { sql, type RawBuilder } from 'kysely';
import { FINAL_POSITION_BOUND, finalBoundAndHead, settleFinal } from '../../eventstore/postgres/migrations.ts';
import type { RecordedEvent } from '../../shared/events.ts';
import { likePrefix } from '../../shared/sql.ts';
import type { AuditDeps } from '../deps.ts';
import type { EventLogFilter } from '../log-filter.ts';

/**
 * The global log straight from `<events schema>.events` (PostgreSQL and PGlite): the filter becomes
 * the WHERE clause and paging is keyset on `position` (its primary key), so a page costs one index
 * range scan whatever the cursor depth. Positions are the feed order, see eventstore/postgres.
 * Optional covering indexes for frequent filters: `ensureAuditIndexes` (not created by default
 * because every index slows appends).
 */
export interface EventRow {
  position: string;
  stream: string;
  revision: string;
  event_id: string;
  type: string;
  data: unknown;
  metadata: Record<string, unknown>;
  recorded_at: Date | string;
}

export const rowToRecorded = (row: EventRow): RecordedEvent => ({
  id: row.event_id,
  type: row.type,
  data: row.data,
  metadata: row.metadata,
  stream: row.stream,
  revision: Number(row.revision),
  position: BigInt(row.position),
  // PGlite may hand timestamptz back as text.
  recordedAt: row.recorded_at instanceof Date ? row.recorded_at : new Date(row.recorded_at),
});

/**
 * The columns of an `EventRow`, read from the events table aliased `e`. Positions travel as decimal
 * text (a bigint does not fit a JavaScript number) but are ordered and compared as bigint through
 * `e.position`: an `ORDER BY position` would pick the text alias and sort "10000000000" before
 * "9999999999", which is every time positions gain a digit.
 */
export const EVENT_ROW_COLUMNS = sql`e.position::text AS position, e.stream, e.revision::text AS revision, e.event_id::text AS event_id, e.type, e.data, e.metadata, e.recorded_at`;

export const eventLogWhere = (filter: EventLogFilter, after: bigint | undefined, direction: 'forwards' | 'backwards'): RawBuilder<unknown> => {
  const clauses: RawBuilder<unknown>[] = [sql`TRUE`];
  if (after !== undefined) clauses.push(direction === 'forwards' ? sql`position > ${after.toString()}::bigint` : sql`position < ${after.toString()}::bigint`);
  if (filter.types && filter.types.length > 0) clauses.push(sql`type = ANY(${filter.types}::text[])`);
  if (filter.stream !== undefined) {
    clauses.push(filter.stream.endsWith('-') ? sql`stream LIKE ${likePrefix(filter.stream)}` : sql`stream = ${filter.stream}`);
  }
  if (filter.within) {
    const { streams, prefixes } = filter.within;
    clauses.push(sql`(${sql.join([sql`stream = ANY(${[...streams]}::text[])`, ...prefixes.map((p) => sql`stream LIKE ${likePrefix(p)}`)], sql` OR `)})`);
  }
  // In any case (log-filter.ts `sameActor`); `ensureAuditIndexes` indexes this very expression.
  if (filter.actor !== undefined) clauses.push(sql`lower(metadata -> 'actor' ->> 'userId') = lower(${filter.actor})`);
  if (filter.from) clauses.push(sql`recorded_at >= ${filter.from.toISOString()}::timestamptz`);
  if (filter.to) clauses.push(sql`recorded_at <= ${filter.to.toISOString()}::timestamptz`);
  return sql.join(clauses, sql` AND `);
};

/** Longest a page waits for the events committed before it to become final (as the store's reads wait). */
const SETTLE_MS = 3_000;

/**
 * A page of the log holds final positions only (below the oldest transaction still running, as the
 * store's feed): positions follow the appending transaction, not its commit, so an append still open
 * holds a lower position than one committed after it. A page read as the log stood handed out a
 * cursor past that position, and the event was skipped by every later page once it committed. The
 * read first waits (bounded) until what was committed before it is final, so that a read right after
 * a command shows it while unrelated transactions run; past the bound it answers what is final, a
 * correct prefix of the log, and a client resumes from the last position it saw.
 */
export async function readEventLogSql(
  deps: AuditDeps,
  filter: EventLogFilter,
  after: bigint | undefined,
  limit: number,
  direction: 'forwards' | 'backwards',
): Promise<RecordedEvent[]> {
  const db = deps.database.db;
  await settleFinal(db, deps.schemas.events, await finalBoundAndHead(db, deps.schemas.events), SETTLE_MS);
  // `position + 0`: a second range condition on the key would be estimated as few rows (eventstore/postgres/store.ts).
  const { rows } = await sql<EventRow>`
    SELECT ${EVENT_ROW_COLUMNS}
      FROM ${sql.id(deps.schemas.events, 'events')} e
     WHERE ${eventLogWhere(filter, after, direction)} AND e.position + 0 < ${FINAL_POSITION_BOUND}
     ORDER BY e.position ${direction === 'forwards' ? sql`ASC` : sql`DESC`}
     LIMIT ${limit}`.execute(db);
  return rows.map(rowToRecorded);
}

/**
 * Indexes that make actor, type and record-time filters index scans on a large log. Opt-in (an
 * operator runs it once): each index costs every append a little.
 */
export async function ensureAuditIndexes(deps: AuditDeps): Promise<void> {
  const table = sql.id(deps.schemas.events, 'events');
  // The actor filter compares in any case: the index is on the lower-cased id (the one on the id as
  // written, which that filter cannot use, is dropped).
  await sql`CREATE INDEX IF NOT EXISTS events_audit_actor_ci ON ${table} ((lower(metadata -> 'actor' ->> 'userId')), position)`.execute(deps.database.db);
  await sql`DROP INDEX IF EXISTS ${sql.id(deps.schemas.events, 'events_audit_actor')}`.execute(deps.database.db);
  await sql`CREATE INDEX IF NOT EXISTS events_audit_type ON ${table} (type, position)`.execute(deps.database.db);
  await sql`CREATE INDEX IF NOT EXISTS events_audit_recorded_at ON ${table} (recorded_at)`.execute(deps.database.db);
}
