import { createHash } from 'node:crypto';
import { sql, type RawBuilder } from 'kysely';
import { Observable } from 'rxjs';
import { likePrefix } from '../../shared/sql.ts';
import { MAX_STREAMS_PER_APPEND } from '../contract.ts';
import type {
  AppendOptions,
  AppendResult,
  EventFilter,
  EventStore,
  HeldBack,
  ExpectedRevision,
  NewEvent,
  ReadAllOptions,
  ReadStreamOptions,
  ReadStreamsOptions,
  RecordedEvent,
  StreamAppend,
  StreamsAppendOptions,
  SubscribeOptions,
  SubscriptionMessage,
} from '../contract.ts';
import { EventStoreError, EventStoreUnavailable, IdempotencyConflict, InvalidAppend, WrongExpectedRevision, WrongExpectedRevisions } from '../errors.ts';
import { checkDependsOn, checkReadAllOptions, checkReadStreamOptions, normalizeExpectedRevision, prepareAppend, prepareStreamAppends } from '../validation.ts';
import type { SqlDatabase } from './database.ts';
import { assertStoreFitsServer, FINAL_POSITION_BOUND, finalBoundAndHead, migrateEventStore, quoteIdentifier, settleFinal } from './migrations.ts';
import { createAppendGroups, type GroupOutcome, type PendingAppend } from './append-groups.ts';
import { createWakeup } from './wakeup.ts';
import { createStreamSnapshots } from './snapshots.ts';

export interface PostgresEventStoreOptions {
  /** Schema of the event store tables (created when missing). */
  schema: string;
  /** Subscribers poll this often when no wake-up arrives (ms). */
  pollInterval?: number;
  /** Events per catch-up read of a subscription. */
  pageSize?: number;
  /** The most events one statement of `readStreams` reads (default READ_STREAMS_PAGE). */
  readStreamsPage?: number;
  /**
   * Group commit (append-groups.ts): append calls to the database at once (default 1); appends arriving
   * meanwhile share the next call. 0 sends every append on its own (the baseline the benchmark compares with).
   */
  appendsInFlight?: number;
}

interface EventRow {
  position_text: string;
  stream: string;
  revision: string | number;
  event_id: string;
  type: string;
  data_json: string;
  metadata_json: string;
  recorded_ms: number | string;
}

interface AppendRow {
  outcome: 'appended' | 'duplicate' | 'wrong_revision' | 'idempotency_conflict';
  revision: string | number;
  last_position: string | null;
  conflict_id: string | null;
}

interface StreamsAppendRow {
  stream: string;
  outcome: AppendRow['outcome'] | 'skipped';
  revision: string | number;
  last_position: string | null;
  conflict_id: string | null;
}

/**
 * Group commit's default: one call at a time, the rest waiting for the next. Measured on the 2-core
 * machine (purchases over HTTP, projections off, two rounds): 1 in flight 631 and 507/s, 2 in flight
 * 322 and 413/s, 4 in flight 506 and 341/s, with the least Node CPU per purchase at 1.
 */
const DEFAULT_APPENDS_IN_FLIGHT = 1;

const EXPECTED_CODES = { no_stream: -1, any: -2, exists: -3 } as const;
const expectedCode = (expected: ExpectedRevision): number => (typeof expected === 'number' ? expected : EXPECTED_CODES[expected]);

/** The most events one statement of `readStreams` reads (a few MB of rows, well inside the statement timeout). */
export const READ_STREAMS_PAGE = 20_000;

/** A range of one stream's revisions to read: after `after`, up to `upTo`. */
interface ReadPiece {
  stream: string;
  after: number;
  upTo: number;
}

/**
 * The statements that read these streams, in order, each of at most `page` events: a stream longer
 * than a page is read in ranges of revisions, one page after the other.
 */
export const readPieces = (streams: readonly { stream: string; after: number; head: number }[], page: number): ReadPiece[][] => {
  const pages: ReadPiece[][] = [];
  let current: ReadPiece[] = [];
  let size = 0;
  for (const { stream, after, head } of streams) {
    for (let from = after; from < head;) {
      const upTo = Math.min(head, from + (page - size));
      current.push({ stream, after: from, upTo });
      size += upTo - from;
      from = upTo;
      if (size >= page) {
        pages.push(current);
        current = [];
        size = 0;
      }
    }
  }
  if (current.length > 0) pages.push(current);
  return pages;
};

const toRecorded = (row: EventRow): RecordedEvent => ({
  id: row.event_id,
  type: row.type,
  data: JSON.parse(row.data_json) as unknown,
  metadata: JSON.parse(row.metadata_json) as Record<string, unknown>,
  stream: row.stream,
  revision: Number(row.revision),
  // Selected as text: PGlite parses int8 to a JS number, which would lose precision.
  position: BigInt(row.position_text),
  recordedAt: new Date(Number(row.recorded_ms)),
});

/** Array elements that need no quotes in an array literal (and none reads as NULL). */
const PLAIN_ELEMENT = /^[A-Za-z0-9_.:@-]+$/;

/**
 * An array parameter written as its literal when no element needs quoting (ids, stream names, event
 * types, numbers), else the array for the driver to serialise: pg quotes and escapes every element
 * of an array parameter, a cost per event of a bulk import's batch.
 */
const arrayParam = <T extends string | number>(values: T[]): string | T[] =>
  values.every((v) => typeof v === 'number' || (PLAIN_ELEMENT.test(v) && v.toLowerCase() !== 'null')) ? `{${values.join(',')}}` : values;

/** JSON texts joined into one JSON array: sent as one text, without the escaping of an array literal. */
const jsonList = (texts: string[]): string => `[${texts.join(',')}]`;

const filterSql = (filter: EventFilter | undefined): RawBuilder<unknown> => {
  const parts: RawBuilder<unknown>[] = [];
  // An empty list restricts nothing (callers often build filters from optional query parameters).
  if (filter?.streamPrefixes?.length) {
    parts.push(sql`AND stream LIKE ANY (${filter.streamPrefixes.map(likePrefix)}::text[])`);
  }
  if (filter?.eventTypes?.length) parts.push(sql`AND type = ANY (${filter.eventTypes}::text[])`);
  return sql.join(parts, sql` `);
};

// The text alias must not be `position`: ORDER BY position would then sort text.
// Record times travel as epoch milliseconds (they are stored truncated to ms): parsing timestamp
// text costs more than the rest of a row together.
// Data and metadata travel as text and are parsed here: pg's global jsonb parser can be replaced by
// other libraries in the process (some install slow revivers).
const COLUMNS = sql.raw(
  'position::text AS position_text, stream, revision, event_id::text AS event_id, type, data::text AS data_json, metadata::text AS metadata_json, (extract(epoch from recorded_at) * 1000)::float8 AS recorded_ms',
);

const isUniqueViolation = (error: unknown, constraint: string): boolean =>
  (error as { code?: string }).code === '23505' && (error as { constraint?: string }).constraint === constraint;

/** Errors a caller can act on pass through; a lost connection becomes EventStoreUnavailable. */
const mapError = (error: unknown): unknown => {
  if (error instanceof EventStoreError) return error;
  const message = error instanceof Error ? error.message : String(error);
  if (/Connection terminated|connection.*(closed|ended)|ECONNRESET|PGlite is closed/i.test(message)) {
    return new EventStoreUnavailable(`Lost the connection to PostgreSQL: ${message}. Check that PostgreSQL is running.`, {
      cause: error,
    });
  }
  return error;
};

/**
 * The PostgreSQL engine (also run on PGlite). Creates its tables in `options.schema` through
 * migrations. `close()` stops the store's subscriptions and timers; the shared database handle
 * belongs to the caller and stays open.
 */
export async function createPostgresEventStore(database: SqlDatabase, options: PostgresEventStoreOptions): Promise<EventStore> {
  const { schema } = options;
  const pollInterval = options.pollInterval ?? 300;
  const pageSize = options.pageSize ?? 1_000;
  const readStreamsPage = options.readStreamsPage ?? READ_STREAMS_PAGE;
  const db = database.db;
  const s = sql.raw(quoteIdentifier(schema));
  try {
    await migrateEventStore(db, schema);
    await assertStoreFitsServer(db, schema);
  } catch (error) {
    throw mapError(error);
  }
  const wakeup = createWakeup(database, schema);
  // The hot statement of every command, prepared once per connection where the engine allows.
  const appendStatement = `SELECT outcome, revision, last_position::text AS last_position, conflict_id::text AS conflict_id
    FROM ${quoteIdentifier(schema)}.append_events($1, $2::bigint, $3::uuid[], $4::text[], $5::text[]::jsonb[], $6::text[]::jsonb[])`;
  const schemaKey = createHash('sha256').update(schema).digest('hex').slice(0, 16);
  const appendStatementName = `crm_es_append_${schemaKey}`;
  const appendStreamsStatement = `SELECT stream, outcome, revision, last_position::text AS last_position, conflict_id::text AS conflict_id
    FROM ${quoteIdentifier(schema)}.append_streams($1::text[], $2::bigint[], $3::int[], $4::uuid[], $5::text[], $6::jsonb, $7::jsonb)`;
  const appendStreamsStatementName = `crm_es_append_streams_${schemaKey}`;
  const activeSubscriptions = new Set<() => void>();
  let closed = false;

  const assertOpen = (): void => {
    if (closed) throw new EventStoreError('The event store is closed');
  };

  /** One stream's append in its own call: append_events, a prepared statement where the engine allows. */
  const appendAlone = async (append: PendingAppend): Promise<AppendResult> => {
    if (append.dependsOn?.length) return appendDepending(append);
    const { stream, expected, events: prepared } = append;
    assertOpen();
    let row: AppendRow | undefined;
    const params = [
      stream,
      expectedCode(expected),
      prepared.map((e) => e.id),
      prepared.map((e) => e.type),
      prepared.map((e) => e.dataJson),
      prepared.map((e) => e.metadataJson),
    ];
    try {
      if (database.prepared) {
        [row] = await database.prepared<AppendRow>(appendStatementName, appendStatement, params);
      } else {
        const result = await sql<AppendRow>`
          SELECT outcome, revision, last_position::text AS last_position, conflict_id::text AS conflict_id
          FROM ${s}.append_events(${params[0]}, ${params[1]}::bigint, ${params[2]}::uuid[], ${params[3]}::text[],
            ${params[4]}::text[]::jsonb[], ${params[5]}::text[]::jsonb[])`.execute(db);
        row = result.rows[0];
      }
    } catch (error) {
      // Same id appended concurrently to another stream: the unique index settles it.
      if (isUniqueViolation(error, 'events_event_id_unique')) {
        const id = /\(event_id\)=\(([^)]+)\)/.exec((error as { detail?: string }).detail ?? '')?.[1];
        throw new IdempotencyConflict(id ?? prepared[0]!.id, stream);
      }
      throw mapError(error);
    }
    if (!row) throw new EventStoreError('append_events returned no row');
    switch (row.outcome) {
      case 'appended':
        wakeup.appended();
        return { nextExpectedRevision: Number(row.revision), position: BigInt(row.last_position!) };
      case 'duplicate':
        return { nextExpectedRevision: Number(row.revision), position: BigInt(row.last_position!), duplicate: true };
      case 'wrong_revision':
        throw new WrongExpectedRevision(stream, expected, Number(row.revision));
      case 'idempotency_conflict':
        throw new IdempotencyConflict(row.conflict_id ?? prepared[0]!.id, stream);
    }
  };

  /** Several streams in one append_streams call; errors of the call as a whole are thrown as they are. */
  const callAppendStreams = async (parts: PendingAppend[]): Promise<StreamsAppendRow[]> => {
    assertOpen();
    const events = parts.flatMap((part) => part.events);
    const params = [
      arrayParam(parts.map((p) => p.stream)),
      arrayParam(parts.map((p) => expectedCode(p.expected))),
      arrayParam(parts.map((p) => p.events.length)),
      arrayParam(events.map((e) => e.id)),
      arrayParam(events.map((e) => e.type)),
      jsonList(events.map((e) => e.dataJson)),
      jsonList(events.map((e) => e.metadataJson)),
    ];
    const rows = database.prepared
      ? await database.prepared<StreamsAppendRow>(appendStreamsStatementName, appendStreamsStatement, params)
      : (
          await sql<StreamsAppendRow>`
            SELECT stream, outcome, revision, last_position::text AS last_position, conflict_id::text AS conflict_id
            FROM ${s}.append_streams(${params[0]}::text[], ${params[1]}::bigint[], ${params[2]}::int[], ${params[3]}::uuid[],
              ${params[4]}::text[], ${params[5]}::jsonb, ${params[6]}::jsonb)`.execute(db)
        ).rows;
    if (rows.length !== parts.length) throw new EventStoreError(`append_streams returned ${rows.length} rows for ${parts.length} streams`);
    if (rows.some((row) => row.outcome === 'appended')) wakeup.appended();
    return rows;
  };

  /**
   * A group of single-stream appends (append-groups.ts): each keeps its own outcome. The streams an
   * append depends on go in the same call without events, each at the revision read: append_streams
   * checks them under their stream locks, as the streams written.
   */
  const appendGroup = async (parts: PendingAppend[]): Promise<GroupOutcome[]> => {
    // Each stream read once (the groups put together only reads of a stream at one revision).
    const reads = [
      ...new Map(
        parts.flatMap((part) => (part.dependsOn ?? []).map((d): [string, PendingAppend] => [d.stream, { stream: d.stream, expected: d.revision, events: [] }])),
      ).values(),
    ];
    let rows: StreamsAppendRow[];
    try {
      rows = await callAppendStreams(reads.length === 0 ? parts : [...parts, ...reads]);
    } catch (error) {
      throw mapError(error);
    }
    const moved = new Map(rows.slice(parts.length).flatMap((row, i) => (row.outcome === 'wrong_revision' ? [[reads[i]!.stream, Number(row.revision)]] : [])));
    return rows.slice(0, parts.length).map((row, i): GroupOutcome => {
      const part = parts[i]!;
      // A stream it read moved: refused as its own stream's conflict would be (a stored retry still counts as done).
      const read = row.outcome === 'duplicate' ? undefined : part.dependsOn?.find((d) => moved.has(d.stream));
      if (read && row.outcome !== 'wrong_revision' && row.outcome !== 'idempotency_conflict')
        return { kind: 'refused', error: new WrongExpectedRevision(read.stream, read.revision, moved.get(read.stream)!) };
      switch (row.outcome) {
        case 'appended':
          return { kind: 'done', result: { nextExpectedRevision: Number(row.revision), position: BigInt(row.last_position!) } };
        case 'duplicate':
          return { kind: 'done', result: { nextExpectedRevision: Number(row.revision), position: BigInt(row.last_position!), duplicate: true } };
        case 'wrong_revision':
          return { kind: 'refused', error: new WrongExpectedRevision(part.stream, part.expected, Number(row.revision)) };
        case 'idempotency_conflict':
          return { kind: 'refused', error: new IdempotencyConflict(row.conflict_id ?? part.events[0]!.id, part.stream) };
        case 'skipped':
          return { kind: 'skipped' };
      }
    });
  };

  /** An append that depends on other streams, alone: the one-part group of `appendGroup`. */
  const appendDepending = async (append: PendingAppend): Promise<AppendResult> => {
    let outcome: GroupOutcome | undefined;
    try {
      [outcome] = await appendGroup([append]);
    } catch (error) {
      if (isUniqueViolation(error, 'events_event_id_unique')) throw new IdempotencyConflict(append.events[0]!.id, append.stream);
      throw error;
    }
    if (outcome?.kind === 'done') return outcome.result;
    if (outcome?.kind === 'refused') throw outcome.error;
    throw new EventStoreError('append_streams skipped an append that was refused nowhere');
  };

  const appendsInFlight = options.appendsInFlight ?? DEFAULT_APPENDS_IN_FLIGHT;
  const groups = appendsInFlight > 0 ? createAppendGroups({ appendOne: appendAlone, appendGroup, maxInFlight: appendsInFlight, maxEvents: 1_000 }) : undefined;

  const appendToStream = async (stream: string, events: NewEvent[], options: AppendOptions = {}): Promise<AppendResult> => {
    const dependsOn = checkDependsOn(stream, options.dependsOn);
    const append: PendingAppend = {
      stream,
      events: prepareAppend(stream, events),
      expected: normalizeExpectedRevision(options.expectedRevision),
      ...(dependsOn.length > 0 ? { dependsOn } : {}),
    };
    assertOpen();
    return groups ? groups.append(append) : appendAlone(append);
  };

  const appendToStreams = async (appends: StreamAppend[], options: StreamsAppendOptions = {}): Promise<AppendResult[]> => {
    const parts = prepareStreamAppends(appends);
    // The streams read go in the same call without events: checked under their locks, never written.
    const reads = checkDependsOn(
      parts.map((p) => p.stream),
      options.dependsOn,
    ).map((read): PendingAppend => ({ stream: read.stream, expected: read.revision, events: [] }));
    if (parts.length + reads.length > MAX_STREAMS_PER_APPEND)
      throw new InvalidAppend('payload_too_large', `A multi-stream append takes at most ${MAX_STREAMS_PER_APPEND} streams, read ones included`);
    let rows: StreamsAppendRow[];
    try {
      rows = await callAppendStreams([...parts, ...reads]);
    } catch (error) {
      if (isUniqueViolation(error, 'events_event_id_unique')) {
        const id = /\(event_id\)=\(([^)]+)\)/.exec((error as { detail?: string }).detail ?? '')?.[1];
        const owner = parts.find((p) => p.events.some((e) => e.id === id)) ?? parts[0]!;
        throw new IdempotencyConflict(id ?? owner.events[0]!.id, owner.stream);
      }
      throw mapError(error);
    }
    const reused = rows.find((row) => row.outcome === 'idempotency_conflict');
    if (reused) throw new IdempotencyConflict(reused.conflict_id ?? '', reused.stream);
    const all = [...parts, ...reads];
    const conflicts = rows.flatMap((row, i) =>
      row.outcome === 'wrong_revision' ? [{ stream: row.stream, expected: all[i]!.expected, actual: Number(row.revision) }] : [],
    );
    if (conflicts.length > 0) throw new WrongExpectedRevisions(conflicts);
    return rows.slice(0, parts.length).map((row) => ({
      nextExpectedRevision: Number(row.revision),
      position: BigInt(row.last_position ?? '0'),
      ...(row.outcome === 'duplicate' ? { duplicate: true as const } : {}),
    }));
  };

  const readStreams = async (streams: string[], options: ReadStreamsOptions = {}): Promise<Map<string, RecordedEvent[]>> => {
    assertOpen();
    const found = new Map<string, RecordedEvent[]>(streams.map((stream) => [stream, []]));
    if (streams.length === 0) return found;
    const unique = [...found.keys()];
    try {
      // The streams' heads first, so that no statement reads more than READ_STREAMS_PAGE events: a
      // batch of 300 customers with 700 orders each was one statement of 200,000 events, longer than
      // the statement timeout, and a rerun of the file failed every time. A stream appended to after
      // its head is read here is read up to that head (the expected revision of the next append says so).
      // One index probe per stream (the LIMIT 1 keeps the planner from hashing the whole streams table,
      // as it did for a plain join before ANALYZE: eventstore/postgres/migrations.ts streamHeadsJoin).
      const heads = await sql<{ stream: string; revision: string }>`
        SELECT h.stream, h.revision::text FROM unnest(${unique}::text[]) AS wanted(name)
          CROSS JOIN LATERAL (SELECT stream, revision FROM ${s}.streams WHERE stream = wanted.name LIMIT 1) AS h`.execute(db);
      const pieces = readPieces(
        heads.rows.map((h) => {
          const after = options.after?.get(h.stream) ?? -1;
          return { stream: h.stream, after, head: Math.min(Number(h.revision), after + (options.maxCount ?? Infinity)) };
        }),
        readStreamsPage,
      );
      for (const page of pieces) {
        // One index range per stream: with `stream = ANY (...)` a table without statistics yet (a bulk
        // import runs ahead of autovacuum's ANALYZE) was scanned whole for every batch.
        const result = await sql<EventRow>`
          SELECT ${COLUMNS} FROM unnest(${page.map((p) => p.stream)}::text[], ${page.map((p) => p.after)}::bigint[], ${page.map((p) => p.upTo)}::bigint[])
              AS wanted(name, after, up_to)
            CROSS JOIN LATERAL (SELECT * FROM ${s}.events e WHERE e.stream = wanted.name AND e.revision > wanted.after AND e.revision <= wanted.up_to
              ORDER BY e.revision) AS e
          ORDER BY e.stream, e.revision`.execute(db);
        for (const row of result.rows) found.get(row.stream)?.push(toRecorded(row));
      }
      return found;
    } catch (error) {
      throw mapError(error);
    }
  };

  const readStream = async (stream: string, options: ReadStreamOptions = {}): Promise<RecordedEvent[]> => {
    checkReadStreamOptions(options);
    assertOpen();
    const backwards = options.direction === 'backwards';
    const conditions: RawBuilder<unknown>[] = [sql`stream = ${stream}`];
    if (options.fromRevision !== undefined) {
      conditions.push(backwards ? sql`revision <= ${options.fromRevision}` : sql`revision >= ${options.fromRevision}`);
    }
    if (options.untilRevision !== undefined) conditions.push(sql`revision <= ${options.untilRevision}`);
    if (options.untilTime !== undefined) {
      // Forwards, the stream up to its first event recorded after the instant (as EventStoreDB's read
      // stops there): a record time is its append's start, so a revision may be recorded before the
      // one ahead of it, and a filter on the time alone read a later revision without an earlier one.
      conditions.push(
        backwards
          ? sql`recorded_at <= ${options.untilTime}`
          : sql`revision < coalesce((SELECT min(x.revision) FROM ${s}.events x WHERE x.stream = ${stream} AND x.recorded_at > ${options.untilTime}), ${Number.MAX_SAFE_INTEGER}::bigint)`,
      );
    }
    try {
      const result = await sql<EventRow>`
        SELECT ${COLUMNS} FROM ${s}.events
        WHERE ${sql.join(conditions, sql` AND `)}
        ORDER BY revision ${sql.raw(backwards ? 'DESC' : 'ASC')}
        ${options.maxCount !== undefined ? sql`LIMIT ${options.maxCount}` : sql``}`.execute(db);
      return result.rows.map(toRecorded);
    } catch (error) {
      throw mapError(error);
    }
  };

  /**
   * One page of the global feed, only final positions (below the oldest running transaction),
   * plus that bound, so that a filtered reader can skip what it has scanned, and the newest
   * committed position, so that a reader at the bound knows whether committed events still wait
   * for an older transaction (possibly of another application on the same server) to finish.
   */
  const readFinalPage = async (
    after: bigint,
    limit: number | null,
    filter: EventFilter | undefined,
  ): Promise<{ events: RecordedEvent[]; bound: bigint; committedHead: bigint }> => {
    // The bound is written `position + 0 <`: as a second range condition on the key, a table
    // without statistics yet (fresh, or bulk-loaded before autovacuum's ANALYZE) is estimated at
    // a few rows and every page sorted all later events instead of walking the primary key.
    // A bound read by an earlier statement is still a safe bound.
    const { bound, committedHead } = await currentBound();
    const result = await sql<EventRow>`
      SELECT ${COLUMNS} FROM ${s}.events
      WHERE position > ${after.toString()}::bigint AND position + 0 < ${bound.toString()}::bigint ${filterSql(filter)}
      ORDER BY position
      LIMIT ${limit}`.execute(db);
    return { events: result.rows.map(toRecorded), bound, committedHead };
  };

  const currentBound = (): Promise<{ bound: bigint; committedHead: bigint }> => finalBoundAndHead(db, schema);

  const readAll = async (options: ReadAllOptions = {}): Promise<RecordedEvent[]> => {
    checkReadAllOptions(options);
    assertOpen();
    const limit = options.maxCount ?? null;
    if (limit === 0) return [];
    try {
      if (options.direction === 'backwards') {
        await settleFinal(db, schema, await currentBound(), options.settleMs);
        const before = options.fromPosition !== undefined ? sql`AND position < ${options.fromPosition.toString()}::bigint` : sql``;
        const result = await sql<EventRow>`
          SELECT ${COLUMNS} FROM ${s}.events
          WHERE position + 0 < ${FINAL_POSITION_BOUND} ${before} ${filterSql(options.filter)}
          ORDER BY position DESC LIMIT ${limit}`.execute(db);
        return result.rows.map(toRecorded);
      }
      const from = options.fromPosition ?? 0n;
      const page = await readFinalPage(from, limit, options.filter);
      // A full page is complete as it is; a short one may end where committed events still wait.
      if ((limit !== null && page.events.length >= limit) || page.committedHead < page.bound) return page.events;
      if (options.settleMs === 0) return page.events;
      await settleFinal(db, schema, page, options.settleMs);
      return (await readFinalPage(from, limit, options.filter)).events;
    } catch (error) {
      throw mapError(error);
    }
  };

  const headPosition = async (): Promise<bigint> => {
    assertOpen();
    try {
      const result = await sql<{ head: string }>`
        SELECT coalesce(max(position), 0)::text AS head FROM ${s}.events WHERE position < ${FINAL_POSITION_BOUND}`.execute(db);
      return BigInt(result.rows[0]?.head ?? '0');
    } catch (error) {
      throw mapError(error);
    }
  };

  /** One range of the position index, only final positions (as the feed reads them). */
  const countEvents = async (range: { fromPosition?: bigint; untilPosition: bigint; atMost?: number }): Promise<number> => {
    assertOpen();
    try {
      const limit = range.atMost === undefined ? sql`` : sql`LIMIT ${Math.max(0, Math.floor(range.atMost))}`;
      const result = await sql<{ events: string }>`
        SELECT count(*)::text AS events FROM (SELECT 1 FROM ${s}.events
        WHERE position > ${(range.fromPosition ?? 0n).toString()}::bigint AND position <= ${range.untilPosition.toString()}::bigint
          AND position + 0 < ${FINAL_POSITION_BOUND} ${limit}) counted`.execute(db);
      return Number(result.rows[0]?.events ?? 0);
    } catch (error) {
      throw mapError(error);
    }
  };

  /** By the primary key: one index probe per position. */
  const eventIdsAt = async (positions: readonly bigint[]): Promise<Map<bigint, string>> => {
    assertOpen();
    if (positions.length === 0) return new Map();
    try {
      const result = await sql<{ position: string; id: string }>`
        SELECT position::text AS position, event_id::text AS id FROM ${s}.events
        WHERE position = ANY(${positions.map(String)}::bigint[])`.execute(db);
      return new Map(result.rows.map((r) => [BigInt(r.position), r.id]));
    } catch (error) {
      throw mapError(error);
    }
  };

  const committedHeadPosition = async (): Promise<bigint> => {
    assertOpen();
    try {
      return (await currentBound()).committedHead;
    } catch (error) {
      throw mapError(error);
    }
  };

  /** Few rows or none: the position index is read from the bound on. */
  const heldBack = async (): Promise<HeldBack> => {
    assertOpen();
    try {
      const result = await sql<{ events: string; waited: number | string | null }>`
        SELECT count(*)::text AS events, EXTRACT(EPOCH FROM clock_timestamp() - min(recorded_at))::float8 AS waited
        FROM ${s}.events WHERE position >= ${FINAL_POSITION_BOUND}`.execute(db);
      return { events: Number(result.rows[0]?.events ?? 0), oldestWaitedSeconds: Number(result.rows[0]?.waited ?? 0) };
    } catch (error) {
      throw mapError(error);
    }
  };

  const subscribeToAll = (options: SubscribeOptions = {}): Observable<SubscriptionMessage> =>
    new Observable<SubscriptionMessage>((subscriber) => {
      if (options.fromPosition !== undefined) checkReadAllOptions({ fromPosition: options.fromPosition });
      let stopped = false;
      let woken = false;
      let interrupt: (() => void) | undefined;
      let unregister: (() => Promise<void>) | undefined;
      const wake = (): void => {
        woken = true;
        interrupt?.();
      };
      const stop = (): void => {
        stopped = true;
        interrupt?.();
        const release = unregister;
        unregister = undefined;
        void release?.().catch(() => undefined);
      };
      const sleep = (ms: number): Promise<void> =>
        new Promise((resolve) => {
          const timer = setTimeout(done, ms);
          function done(): void {
            clearTimeout(timer);
            interrupt = undefined;
            resolve();
          }
          interrupt = done;
        });

      const run = async (): Promise<void> => {
        unregister = await wakeup.onAppend(wake);
        if (stopped) {
          stop();
          return;
        }
        // `delivered`: last event handed out; `scanned`: everything at or below it was read (filters skip ahead).
        let delivered = options.fromPosition ?? 0n;
        let scanned = delivered;
        let behind = true;
        // Newest committed position when the head was reached: caughtUp waits until it is delivered.
        let catchUpTarget: bigint | undefined;
        while (!stopped) {
          // A consumer that is behind holds the feed here instead of piling pages up in memory.
          while (!stopped && options.shouldPause?.()) await sleep(10);
          woken = false;
          const { events, bound, committedHead } = await readFinalPage(scanned, pageSize, options.filter);
          for (const event of events) {
            if (stopped) return;
            subscriber.next({ kind: 'event', event });
            delivered = event.position;
          }
          if (stopped) return;
          if (events.length > 0) {
            behind = true;
            scanned = events[events.length - 1]!.position;
          }
          if (events.length >= pageSize) continue;
          if (bound - 1n > scanned) scanned = bound - 1n;
          catchUpTarget ??= committedHead;
          if (scanned < catchUpTarget) {
            // Committed events wait for an older transaction to end: look again soon.
            await sleep(Math.min(20, pollInterval));
            continue;
          }
          catchUpTarget = undefined;
          if (behind) subscriber.next({ kind: 'caughtUp', position: delivered });
          behind = false;
          if (!woken) await sleep(pollInterval);
        }
      };

      const closeWithStore = (): void => {
        stop();
        subscriber.complete();
      };
      activeSubscriptions.add(closeWithStore);
      run().catch((error: unknown) => {
        if (!stopped) subscriber.error(mapError(error));
        stop();
      });
      return () => {
        activeSubscriptions.delete(closeWithStore);
        stop();
      };
    });

  return {
    engine: database.kind,
    appendToStream,
    appendToStreams,
    readStream,
    readStreams,
    snapshots: createStreamSnapshots(db, schema),
    readAll,
    subscribeToAll,
    headPosition,
    committedHeadPosition,
    countEvents,
    eventIdsAt,
    heldBack,
    async close() {
      if (closed) return;
      closed = true;
      wakeup.close();
      for (const closeSubscription of [...activeSubscriptions]) closeSubscription();
      activeSubscriptions.clear();
    },
  };
}
