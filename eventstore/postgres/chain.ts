import { createHash } from 'node:crypto';
import { sql } from 'kysely';
import type { SqlDatabase } from './database.ts';
import { quoteIdentifier } from './migrations.ts';

/**
 * Tamper evidence: every event's `hash` is
 *   sha256(previous hash of its stream (empty for the first) || sha256(utf8(content)))
 * where content = event_id|stream|revision|position|type|data::text|metadata::text|recorded_at in µs since epoch,
 * computed by `append_events` inside the append. The stream's head (revision, last hash) lives in
 * `streams`, so deleting a stream's last event is caught too.
 */

export interface BrokenLink {
  stream: string;
  /** Revision where the chain breaks (the expected one when an event is missing). */
  revision: number;
  /** Position of the offending event, null when the event is missing. */
  position: bigint | null;
  reason: string;
}

export interface ChainVerification {
  ok: boolean;
  /** Events whose hash was recomputed. */
  checked: number;
  firstBroken?: BrokenLink;
}

export interface VerifyChainOptions {
  schema: string;
  /** Called after each page with the number of events checked so far. */
  onProgress?: (checked: number) => void;
  pageSize?: number;
}

interface ChainRow {
  stream: string;
  revision: string | number;
  position: string;
  event_id: string;
  type: string;
  data: string;
  metadata: string;
  micros: string;
  hash: Uint8Array;
}

interface HeadRow {
  stream: string;
  revision: string | number;
  last_hash: Uint8Array | null;
}

const sha256 = (...parts: (Uint8Array | string)[]): Buffer => {
  const hash = createHash('sha256');
  for (const part of parts) hash.update(part);
  return hash.digest();
};

/** The hash `append_events` stores for an event, recomputed in TypeScript from the row's text forms. */
export const eventHash = (previous: Uint8Array | null, row: Omit<ChainRow, 'hash'>): Buffer =>
  sha256(
    previous ?? new Uint8Array(0),
    sha256([row.event_id, row.stream, String(row.revision), row.position, row.type, row.data, row.metadata, row.micros].join('|')),
  );

const sameBytes = (a: Uint8Array | null, b: Uint8Array | null): boolean => a !== null && b !== null && Buffer.compare(Buffer.from(a), Buffer.from(b)) === 0;

/**
 * How far an event's record time may lie before that of an event ahead of it (in its stream, or in
 * the log): `recorded_at` is when the appending transaction began, its position comes when it writes,
 * so a transaction that began earlier can write later, by the little it waited in between. Further
 * back, the event was back-dated: appended later (through the store's own function, its links and
 * seal recomputed, so every hash holds) with a time that puts it in the past of as-of views.
 */
export const RECORDED_BACKWARDS_TOLERANCE_MS = 60_000;

/** Why an event recorded `recordedMs` is back-dated behind one recorded `latestMs`, or undefined when it is not. */
export const backDated = (recordedMs: number, latestMs: number, latestWhere: string): string | undefined =>
  recordedMs < latestMs - RECORDED_BACKWARDS_TOLERANCE_MS
    ? `recorded at ${new Date(recordedMs).toISOString()}, ${Math.round((latestMs - recordedMs) / 1000)} s before ${latestWhere} ` +
      `(recorded at ${new Date(latestMs).toISOString()}), which it follows: back-dated (or written by a transaction ` +
      'that waited that long between its start and its write, or with the database clock set back)'
    : undefined;

/** Walks one stream's events in revision order and reports the first link that does not hold. */
class StreamWalker {
  private stream: string | undefined;
  private expectedRevision = 0;
  private previousHash: Uint8Array | null = null;
  private lastPosition: bigint | null = null;
  /** The latest record time among the stream's events so far (ms). */
  private latestRecorded = -Infinity;

  constructor(private readonly heads: Map<string, HeadRow>) {}

  /** Feeds the next event (rows come ordered by stream, revision). */
  next(row: ChainRow): BrokenLink | undefined {
    if (row.stream !== this.stream) {
      const broken = this.finish();
      if (broken) return broken;
      this.stream = row.stream;
      this.expectedRevision = 0;
      this.previousHash = null;
      this.lastPosition = null;
      this.latestRecorded = -Infinity;
    }
    const revision = Number(row.revision);
    const position = BigInt(row.position);
    if (revision !== this.expectedRevision) {
      return {
        stream: row.stream,
        revision: this.expectedRevision,
        position: revision > this.expectedRevision ? null : position,
        reason: revision > this.expectedRevision ? 'event missing (revision gap)' : `unexpected revision ${revision}`,
      };
    }
    if (this.lastPosition !== null && position <= this.lastPosition) {
      return { stream: row.stream, revision, position, reason: 'position out of order' };
    }
    const expected = eventHash(this.previousHash, row);
    if (!sameBytes(expected, row.hash)) {
      return {
        stream: row.stream,
        revision,
        position,
        reason: 'hash mismatch: this event was altered or inserted, or appended onto an edited stream head (streams.last_hash)',
      };
    }
    const recorded = Number(BigInt(row.micros) / 1000n);
    const reason = backDated(recorded, this.latestRecorded, 'an earlier revision of its stream');
    if (reason) return { stream: row.stream, revision, position, reason };
    this.latestRecorded = Math.max(this.latestRecorded, recorded);
    this.previousHash = row.hash;
    this.lastPosition = position;
    this.expectedRevision = revision + 1;
    return undefined;
  }

  /** Compares the finished stream with its recorded head. */
  finish(): BrokenLink | undefined {
    const stream = this.stream;
    if (stream === undefined) return undefined;
    this.stream = undefined;
    const head = this.heads.get(stream);
    this.heads.delete(stream);
    const lastRevision = this.expectedRevision - 1;
    if (!head) return { stream, revision: lastRevision, position: this.lastPosition, reason: 'stream missing from the streams table' };
    if (Number(head.revision) !== lastRevision) {
      return {
        stream,
        revision: Number(head.revision),
        position: null,
        reason: `stream head says revision ${head.revision}, events end at ${lastRevision}`,
      };
    }
    if (!sameBytes(head.last_hash, this.previousHash)) {
      return { stream, revision: lastRevision, position: this.lastPosition, reason: 'stream head hash differs from the last event' };
    }
    return undefined;
  }
}

/**
 * Recomputes every stream's chain and checks each stream's recorded head. Reads in pages ordered by
 * (stream, revision), each page with the heads of its streams in one REPEATABLE READ snapshot (an
 * append writes a stream's events and head in one transaction), so memory stays flat and a stream
 * appended to during the walk is compared with the head of the events read. All heads read once
 * before the walk cost about 430 bytes a stream (214 MB for 500,000 streams), and on a live server
 * a stream appended to after that read its new events against its old head: "stream head says
 * revision 269, events end at 270", a broken chain reported for three of five runs beside writers.
 * A stream spanning two pages gets its head again with the second, from the later snapshot.
 */
export async function verifyStreamChains(database: SqlDatabase, options: VerifyChainOptions): Promise<ChainVerification> {
  const s = sql.raw(quoteIdentifier(options.schema));
  const pageSize = options.pageSize ?? 5_000;
  /** Heads of the streams of the pages read and not finished yet (the walker drops each as it finishes it). */
  const heads = new Map<string, HeadRow>();
  const walker = new StreamWalker(heads);
  let checked = 0;
  let after: { stream: string; revision: number } | undefined;
  for (;;) {
    const page = await database.db
      .transaction()
      .setIsolationLevel('repeatable read')
      .setAccessMode('read only')
      .execute(async (trx) => {
        const { rows } = await sql<ChainRow>`
          SELECT stream, revision, position::text AS position, event_id::text AS event_id, type,
                 data::text AS data, metadata::text AS metadata,
                 ((extract(epoch from recorded_at) * 1000000)::bigint)::text AS micros, hash
          FROM ${s}.events
          ${after ? sql`WHERE (stream, revision) > (${after.stream}, ${after.revision}::bigint)` : sql``}
          ORDER BY stream, revision
          LIMIT ${pageSize}`.execute(trx);
        const streams = [...new Set(rows.map((row) => row.stream))];
        // One index probe per stream (`= ANY` may be planned as a scan of the whole table).
        const found = await sql<HeadRow>`
          SELECT h.stream, h.revision, h.last_hash FROM unnest(${streams}::text[]) AS wanted(name)
           CROSS JOIN LATERAL (SELECT stream, revision, last_hash FROM ${s}.streams x WHERE x.stream = wanted.name LIMIT 1) h`.execute(trx);
        return { rows, heads: found.rows };
      });
    for (const head of page.heads) heads.set(head.stream, head);
    for (const row of page.rows) {
      const broken = walker.next(row);
      if (broken) return { ok: false, checked, firstBroken: broken };
      checked += 1;
    }
    options.onProgress?.(checked);
    const last = page.rows[page.rows.length - 1];
    if (!last || page.rows.length < pageSize) break;
    after = { stream: last.stream, revision: Number(last.revision) };
  }
  const broken = walker.finish();
  if (broken) return { ok: false, checked, firstBroken: broken };
  // Streams whose head claims events that are all gone (one probe of the events index per stream, in the server).
  const { rows: headless } = await sql<{ stream: string }>`
    SELECT h.stream FROM ${s}.streams h
     WHERE h.revision >= 0 AND NOT EXISTS (SELECT 1 FROM ${s}.events e WHERE e.stream = h.stream)
     ORDER BY h.stream LIMIT 1`.execute(database.db);
  if (headless[0]) {
    return {
      ok: false,
      checked,
      firstBroken: { stream: headless[0].stream, revision: 0, position: null, reason: 'stream has a head but no events' },
    };
  }
  return { ok: true, checked };
}
