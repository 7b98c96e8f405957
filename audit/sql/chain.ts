import { createHash } from 'node:crypto';
import { sql, type QueryExecutorProvider } from 'kysely';
import { backDated, verifyStreamChains, type ChainVerification } from '../../eventstore/postgres/chain.ts';
import { FINAL_POSITION_BOUND } from '../../eventstore/postgres/migrations.ts';
import { MAX_GLOBAL_POSITION } from '../../eventstore/position.ts';
import { settlesWithin } from '../../shared/deadline.ts';
import type { SqlDatabase } from '../../shared/sql.ts';
import { KEY_GONE, KEY_PUT_BACK, NAMED_CUSTOMERS, verifyCustomerKeys, type CustomerKeysVerification } from './customer-keys.ts';

/**
 * Global tamper evidence for the PostgreSQL engine.
 *
 * Each event's own `hash` chains it to the previous event of its stream (eventstore/postgres/chain.ts),
 * computed inside the append, so writers to different streams never wait for one another. A chain
 * across streams computed at append time would serialise every writer, so instead a *sealer* follows
 * the gap-free feed after the fact, in position order (positions below `xmin << ORDINAL_BITS` are final:
 * no transaction can still commit one), and records per event
 *   global_hash = sha256(previous global_hash (empty for the first) || event.hash)
 * in `<events schema>.event_chain_seals` (made by the event store's migration `0019_event_chain_seals`).
 * The seal also keeps the event's stream, revision and hash so that a deleted event can still be
 * named. What the two chains catch together:
 * - data edited in place: the stream chain (hash no longer matches the content);
 * - an event deleted in the middle or at the end of a stream: the stream chain (revision gap, stream
 *   head) and the global chain (a sealed position has no event);
 * - a forged row: the stream chain (its hash does not fit) and, inside the sealed range, the global
 *   chain (an event that was never sealed);
 * - a stream re-hashed end to end by someone who knows the formula: the global chain (sealed hashes differ);
 * - both chains re-hashed from the change on: only an anchor kept outside the database (`ChainAnchor`).
 * Events appended after the last seal are covered by the stream chains only until the next seal,
 * which is why the projection process seals every second.
 */

export interface GlobalBrokenLink {
  position: bigint;
  stream: string | null;
  revision: number | null;
  reason: string;
  /** Set when the chain ends (its last seal) before an anchor: events recorded after it are missing, not changed. */
  endsAt?: bigint;
  /**
   * Set when the store was restored to an earlier point (or its events after this position cut) and
   * written since: the anchors after this position name history it no longer holds, and the events
   * after them were recorded after those anchors were taken. Nothing it holds was found altered, but
   * the anchored history is gone: still a failed check.
   */
  restoredAfter?: bigint;
}

/**
 * The global chain's hash at a position, kept outside the database (a ticket, a mail, write-once
 * storage). Both chains are plain SHA-256 in the database they protect: someone who can write to it
 * and knows the formula can alter an event and recompute every hash after it, and the chains then
 * verify. An anchor taken before the change no longer matches the rewritten chain, so a rewrite of
 * anything up to the newest anchor is caught; take one after every verification.
 */
export interface ChainAnchor {
  position: bigint;
  /** The global hash sealed at `position`, hex. */
  globalHash: string;
  /**
   * When it was taken, where known (an anchors file keeps it beside each anchor): an anchor no longer
   * on the chain, with events after its position recorded later than this, is history lost to a restore
   * written over since, not a chain rewritten under it (`verifyGlobalChain`).
   */
  takenAt?: Date;
}

/**
 * `<position>:<64 hex digits>`, as `crm verify --chain` prints the head, optionally followed by the ISO
 * 8601 time it was taken, as `--anchors-file` writes it; undefined when malformed.
 */
export const parseChainAnchor = (text: string): ChainAnchor | undefined => {
  const match = /^(\d{1,19}):([0-9a-f]{64})(?:\s+(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d{1,9})?(?:Z|[+-]\d{2}:\d{2})))?$/i.exec(text.trim());
  if (!match || BigInt(match[1]!) > MAX_GLOBAL_POSITION) return undefined;
  const anchor: ChainAnchor = { position: BigInt(match[1]!), globalHash: match[2]!.toLowerCase() };
  if (match[3] === undefined) return anchor;
  const takenAt = new Date(match[3]);
  return Number.isNaN(takenAt.getTime()) ? undefined : { ...anchor, takenAt };
};

/** As `parseChainAnchor` reads it back: with the time it was taken where known. */
export const formatChainAnchor = (anchor: ChainAnchor): string =>
  `${anchor.position}:${anchor.globalHash}${anchor.takenAt ? ` ${anchor.takenAt.toISOString()}` : ''}`;

/** What the check found for one anchor given to it. */
export interface AnchorCheck {
  /** The anchor as checked, `<position>:<hash>`. */
  anchor: string;
  /** The chain as it stands has that hash at that position. */
  matched: boolean;
  /**
   * `differs`: another hash is sealed there (the chain was re-hashed); `missing`: no seal at that
   * position (truncated, or never sealed); `not_reached`: the check stopped at a broken link before it.
   */
  status: 'matched' | 'differs' | 'missing' | 'not_reached';
}

export interface GlobalChainVerification {
  ok: boolean;
  /** Seals walked. */
  checked: number;
  /** The last seal, as an anchor to keep outside the database (null when nothing was sealed yet). */
  head: ChainAnchor | null;
  /** Anchors given that were found on the chain as it stands. */
  anchorsMatched: number;
  /** Each anchor given, in the order given, with what became of it. */
  anchors: AnchorCheck[];
  /** Position of the last seal (null when nothing was sealed yet). */
  sealedThrough: bigint | null;
  /** Events after the last seal, not yet covered by the global chain. */
  unsealed: number;
  firstBroken?: GlobalBrokenLink;
}

export interface ChainsVerification {
  ok: boolean;
  streams: ChainVerification;
  global: GlobalChainVerification;
  /** The customer data keys against the forgets the events record (keys are not events: no chain covers them). */
  keys: CustomerKeysVerification;
  /** The first broken link found, stream chains first (they name the event precisely), then a key that disagrees. */
  firstBroken?: {
    chain: 'stream' | 'global' | 'keys';
    stream: string | null;
    revision: number | null;
    position: bigint | null;
    reason: string;
    endsAt?: bigint;
    restoredAfter?: bigint;
  };
}

const SEAL_BATCH = 5_000;

const sha256 = (previous: Uint8Array | null, eventHash: Uint8Array): Buffer =>
  createHash('sha256')
    .update(previous ?? new Uint8Array(0))
    .update(eventHash)
    .digest();

const sameBytes = (a: Uint8Array | null, b: Uint8Array | null): boolean => a !== null && b !== null && Buffer.compare(Buffer.from(a), Buffer.from(b)) === 0;

const sealsTable = (schema: string) => sql.id(schema, 'event_chain_seals');
const eventsTable = (schema: string) => sql.id(schema, 'events');

/**
 * Last seal, or null before the first. Ordered by the bigint column `s.position`: the text alias
 * would sort "10000000000" before "9999999999" and hand the sealer an old head.
 */
const lastSeal = async (db: QueryExecutorProvider, schema: string) => {
  const { rows } = await sql<{ position: string; global_hash: Uint8Array }>`
    SELECT s.position::text AS position, s.global_hash FROM ${sealsTable(schema)} s ORDER BY s.position DESC LIMIT 1`.execute(db);
  return rows[0] ? { position: BigInt(rows[0].position), globalHash: rows[0].global_hash } : null;
};

/** The global chain's head as stored (its last seal), as an anchor; null before the first seal. Read only, nothing recomputed. */
export const chainHead = async (db: QueryExecutorProvider, schema: string): Promise<ChainAnchor | null> => {
  const last = await lastSeal(db, schema);
  return last ? { position: last.position, globalHash: Buffer.from(last.globalHash).toString('hex') } : null;
};

export interface SealOptions {
  maxEvents?: number;
  /**
   * When another process holds the chain's seal lock: wait for it (up to `SEAL_LOCK_WAIT`) and then
   * seal what is left, as a requested seal does; or return at once, as the periodic sealer does.
   */
  wait?: boolean;
}

/** How long a requested seal waits for another process's seal before giving up with an error. */
const SEAL_LOCK_WAIT = '30s';

/** The seal in progress in this process, per database and chain (events schema). */
const sealsInProgress = new WeakMap<SqlDatabase, Map<string, Promise<number>>>();

/**
 * Seals every final event not sealed yet; returns how many. One writer per chain:
 * - in this process, a seal starts only after the previous one for the same chain ended (the
 *   periodic sealer and `POST /audit/chain/seal` queue behind each other; the second seals what the
 *   first left, usually nothing), which is also what keeps PGlite's single session from sealing twice;
 * - across processes, a transaction-scoped advisory lock: without `wait` a sealer finding it taken
 *   returns 0, with `wait` it waits (bounded) and then continues from the head the other left.
 * Every batch reads the head inside the lock, so a seal never re-seals a position.
 */
export function sealChain(database: SqlDatabase, schema: string, options: SealOptions = {}): Promise<number> {
  const chains = sealsInProgress.get(database) ?? new Map<string, Promise<number>>();
  sealsInProgress.set(database, chains);
  const previous = chains.get(schema) ?? Promise.resolve(0);
  const seal = previous.catch(() => 0).then(() => sealPending(database, schema, options));
  chains.set(schema, seal);
  seal
    .finally(() => {
      if (chains.get(schema) === seal) chains.delete(schema);
    })
    .catch(() => undefined);
  return seal;
}

async function sealPending(database: SqlDatabase, schema: string, options: SealOptions): Promise<number> {
  const lockKey = `crm.event_chain_seals:${schema}`;
  let sealed = 0;
  for (;;) {
    const batch = Math.min(SEAL_BATCH, (options.maxEvents ?? Infinity) - sealed);
    if (batch <= 0) return sealed;
    const count = await database.db.transaction().execute(async (trx) => {
      if (options.wait) {
        await sql`SELECT set_config('lock_timeout', ${SEAL_LOCK_WAIT}, true)`.execute(trx);
        await sql`SELECT pg_advisory_xact_lock(hashtext(${lockKey}))`.execute(trx);
      } else {
        const { rows: lock } = await sql<{ locked: boolean }>`SELECT pg_try_advisory_xact_lock(hashtext(${lockKey})) AS locked`.execute(trx);
        if (!lock[0]?.locked) return -1;
      }
      const head = await lastSeal(trx, schema);
      let previous: Uint8Array | null = head?.globalHash ?? null;
      const { rows } = await sql<{ position: string; stream: string; revision: string; hash: Uint8Array }>`
        SELECT e.position::text AS position, e.stream, e.revision::text AS revision, e.hash FROM ${eventsTable(schema)} e
         WHERE e.position > ${(head?.position ?? -1n).toString()}::bigint
           AND e.position < ${FINAL_POSITION_BOUND}
         ORDER BY e.position
         LIMIT ${batch}`.execute(trx);
      if (rows.length === 0) return 0;
      const globals: Buffer[] = [];
      for (const row of rows) {
        const global = sha256(previous, row.hash);
        globals.push(global);
        previous = global;
      }
      await sql`
        INSERT INTO ${sealsTable(schema)} (position, global_hash, event_hash, stream, revision)
        SELECT u.position, decode(u.global_hash, 'hex'), decode(u.event_hash, 'hex'), u.stream, u.revision
          FROM unnest(${rows.map((r) => r.position)}::bigint[], ${globals.map((g) => g.toString('hex'))}::text[],
                      ${rows.map((r) => Buffer.from(r.hash).toString('hex'))}::text[], ${rows.map((r) => r.stream)}::text[],
                      ${rows.map((r) => r.revision)}::bigint[]) AS u(position, global_hash, event_hash, stream, revision)`.execute(trx);
      return rows.length;
    });
    if (count <= 0) return sealed;
    sealed += count;
    if (count < batch) return sealed;
  }
}

export interface ChainSealer {
  /** Seals now (on demand) and resolves with the number of events sealed. */
  sealNow(): Promise<number>;
  /** Stops the timer and waits for a seal in flight, at most a couple of seconds. */
  stop(): Promise<void>;
}

/**
 * How long `stop` waits for a seal in flight. A seal runs on the long-work connections, whose statement
 * bound is minutes: on a stalled link, waiting for it would hold a shutdown that long. Past this the
 * stop returns; the seal fails when its pool is closed (its connection cut), and the next start seals
 * what it did not (each batch of a seal is one transaction: nothing half-done stays).
 */
const STOP_WAIT_MS = 2_000;

/**
 * Runs `sealChain` every `intervalMs` (the projection process starts one). Errors are reported, never
 * thrown; `onSealed` follows each seal that worked (a caller logging outages ends one there).
 */
export function startChainSealer(
  database: SqlDatabase,
  schema: string,
  options: { intervalMs?: number; onError?: (error: unknown) => void; onSealed?: () => void } = {},
): ChainSealer {
  let running: Promise<number> = Promise.resolve(0);
  let sealing = false;
  let stopped = false;
  const seal = () => {
    running = running
      // Nothing after a stop: the pool is being closed, and its errors would be our own doing.
      .then(async () => {
        if (stopped) return 0;
        const sealed = await sealChain(database, schema);
        options.onSealed?.();
        return sealed;
      })
      .catch((error) => {
        if (!stopped) options.onError?.(error);
        return 0;
      });
    return running;
  };
  const timer = setInterval(() => {
    // One seal at a time: while the database is away, ticks would queue a seal each behind the one waiting.
    if (stopped || sealing) return;
    sealing = true;
    void seal().finally(() => (sealing = false));
  }, options.intervalMs ?? 1_000);
  timer.unref();
  return {
    sealNow: seal,
    async stop() {
      stopped = true;
      clearInterval(timer);
      await settlesWithin(running, STOP_WAIT_MS);
    },
  };
}

/**
 * An event inside the sealed range without a seal: inserted behind the store, or its seal deleted.
 * The next seal tells them apart: its global hash follows from the previous seal through this event
 * (and any other unsealed ones before it) only if they were sealed, and directly only if they never were.
 */
async function unsealedEventReason(database: SqlDatabase, schema: string, previous: Uint8Array | null, position: bigint): Promise<string> {
  const { rows: next } = await sql<{ position: string; global_hash: Uint8Array; event_hash: Uint8Array }>`
    SELECT s.position::text AS position, s.global_hash, s.event_hash FROM ${sealsTable(schema)} s
     WHERE s.position > ${position.toString()}::bigint ORDER BY s.position LIMIT 1`.execute(database.db);
  const seal = next[0];
  if (seal) {
    const { rows: unsealed } = await sql<{ hash: Uint8Array }>`
      SELECT e.hash FROM ${eventsTable(schema)} e
       WHERE e.position >= ${position.toString()}::bigint AND e.position < ${seal.position}::bigint ORDER BY e.position`.execute(database.db);
    const through = unsealed.reduce<Uint8Array | null>((global, e) => sha256(global, e.hash), previous);
    if (sameBytes(sha256(through, seal.event_hash), seal.global_hash)) {
      return "no seal for this event, yet the next seal's global hash follows from it: its seal was deleted behind the store (the event is as it was sealed)";
    }
    if (sameBytes(sha256(previous, seal.event_hash), seal.global_hash)) {
      return 'event was never sealed (the seals around it chain without it): inserted behind the store';
    }
  }
  return 'no seal for this event, and the next seal follows neither through it nor without it: seals deleted or altered, or the event inserted, behind the store';
}

interface WalkRow {
  position: string;
  seal_global: Uint8Array | null;
  seal_event_hash: Uint8Array | null;
  seal_stream: string | null;
  seal_revision: string | null;
  event_hash: Uint8Array | null;
  event_stream: string | null;
  event_revision: string | null;
  /** The event's record time in ms since the epoch (null when the event is missing). */
  event_recorded_ms: number | null;
}

/**
 * Walks the seals in position order beside the events in the same range (a full outer join, so
 * that both a sealed event that is gone and an event that was never sealed show up), recomputing
 * the global chain. Stops at the first broken link.
 */
export async function verifyGlobalChain(
  database: SqlDatabase,
  schema: string,
  options: { onProgress?: (checked: number) => void; pageSize?: number; anchors?: readonly ChainAnchor[] } = {},
): Promise<GlobalChainVerification> {
  // By position: the same anchor given twice (a file and --anchor) counts twice, and must match twice.
  const given = options.anchors ?? [];
  const anchors = new Map<bigint, string[]>();
  for (const a of given) anchors.set(a.position, [...(anchors.get(a.position) ?? []), a.globalHash]);
  /** The global hash sealed at each anchored position the walk reached. */
  const sealedAtAnchor = new Map<bigint, string>();
  /** The last position the walk reached: an anchor at or below it that it did not meet has no seal. */
  let reached = -1n;
  let walkedAll = false;
  const anchorChecks = (): AnchorCheck[] =>
    given.map((a) => {
      const sealed = sealedAtAnchor.get(a.position);
      const status = sealed !== undefined ? (sealed === a.globalHash ? 'matched' : 'differs') : walkedAll || a.position <= reached ? 'missing' : 'not_reached';
      return { anchor: formatChainAnchor(a), matched: status === 'matched', status };
    });
  /** Each anchor as the walk left it, and how many matched (those at a position it stopped at included). */
  const anchorOutcome = (): { anchorsMatched: number; anchors: AnchorCheck[] } => {
    const anchors = anchorChecks();
    return { anchorsMatched: anchors.filter((check) => check.matched).length, anchors };
  };
  const pageSize = options.pageSize ?? SEAL_BATCH;
  const last = await lastSeal(database.db, schema);
  const { rows: unsealedRows } = await sql<{ n: string }>`
    SELECT count(*)::text AS n FROM ${eventsTable(schema)} WHERE position > ${last?.position.toString() ?? '-1'}::bigint`.execute(database.db);
  const unsealed = Number(unsealedRows[0]?.n ?? 0);
  const sealedThrough = last?.position ?? null;
  let previous: Uint8Array | null = null;
  let previousPosition: bigint | null = null;
  let checked = 0;
  let after = '-1';
  /** The latest record time walked so far, and where. */
  let latestRecorded = { ms: -Infinity, position: -1n };
  const broken = (position: bigint, stream: string | null, revision: string | null, reason: string): GlobalChainVerification => ({
    ok: false,
    checked,
    head: null,
    ...anchorOutcome(),
    sealedThrough,
    unsealed,
    firstBroken: { position, stream, revision: revision === null ? null : Number(revision), reason },
  });
  while (last) {
    const { rows } = await sql<WalkRow>`
      WITH s AS (
        SELECT position, global_hash, event_hash, stream, revision FROM ${sealsTable(schema)}
         WHERE position > ${after}::bigint ORDER BY position LIMIT ${pageSize}
      ), bound AS (SELECT max(position) AS hi FROM s),
      e AS (
        SELECT position, hash, stream, revision, recorded_at FROM ${eventsTable(schema)}, bound
         WHERE position > ${after}::bigint AND position <= bound.hi
      )
      SELECT coalesce(s.position, e.position)::text AS position,
             s.global_hash AS seal_global, s.event_hash AS seal_event_hash, s.stream AS seal_stream, s.revision::text AS seal_revision,
             e.hash AS event_hash, e.stream AS event_stream, e.revision::text AS event_revision,
             (extract(epoch from e.recorded_at) * 1000)::float8 AS event_recorded_ms
        FROM s FULL OUTER JOIN e ON e.position = s.position
       ORDER BY coalesce(s.position, e.position)`.execute(database.db);
    if (rows.length === 0) break;
    for (const row of rows) {
      const position = BigInt(row.position);
      reached = position;
      if (row.seal_global !== null && anchors.has(position)) sealedAtAnchor.set(position, Buffer.from(row.seal_global).toString('hex'));
      if (row.seal_global === null) {
        return broken(position, row.event_stream, row.event_revision, await unsealedEventReason(database, schema, previous, position));
      }
      if (row.event_hash === null) {
        return broken(position, row.seal_stream, row.seal_revision, 'sealed event is missing: deleted behind the store');
      }
      if (row.event_stream !== row.seal_stream || row.event_revision !== row.seal_revision) {
        return broken(position, row.event_stream, row.event_revision, `sealed as ${row.seal_stream} revision ${row.seal_revision}: event moved`);
      }
      if (!sameBytes(row.event_hash, row.seal_event_hash)) {
        return broken(position, row.event_stream, row.event_revision, 'event hash differs from the sealed hash: event rewritten');
      }
      // In the log's order: one appended later with an earlier time (a stream chain alone cannot tell
      // when the stream had no event for a long time before it).
      const lateReason = backDated(row.event_recorded_ms!, latestRecorded.ms, `the event at position ${latestRecorded.position}`);
      if (lateReason) return broken(position, row.event_stream, row.event_revision, lateReason);
      if (row.event_recorded_ms! > latestRecorded.ms) latestRecorded = { ms: row.event_recorded_ms!, position };
      const expected = sha256(previous, row.seal_event_hash!);
      if (!sameBytes(expected, row.seal_global)) {
        // Deleting events with their seals breaks the link at the next seal left, which was not touched itself.
        const before = previousPosition === null ? '' : ` at position ${previousPosition}`;
        return broken(
          position,
          row.seal_stream,
          row.seal_revision,
          `global hash does not follow from the previous seal${before}: seal altered, or events deleted together with their seals between the two`,
        );
      }
      const anchored = anchors.get(position);
      if (anchored !== undefined) {
        const sealed = sealedAtAnchor.get(position);
        if (anchored.some((hash) => hash !== sealed)) {
          return broken(
            position,
            row.seal_stream,
            row.seal_revision,
            anchored.includes(sealed!)
              ? // Two hashes for one position: at most one was ever the chain's.
                'the anchors given for this position disagree: one matches the chain, another differs; check where the differing one came from ' +
                  '(a mistyped or foreign anchor), or whether the chain was rewritten between the times the two were taken'
              : // Where the anchor lies, not where the change is: the re-hashed chain holds after the change,
                // so only an earlier anchor that still matches narrows it down.
                'global hash differs from the anchor kept outside the database: the chain was rewritten (re-hashed) at or before this position, ' +
                  'not necessarily in this stream; an earlier anchor that still matches narrows down where',
          );
        }
        anchors.delete(position);
      }
      previous = row.seal_global;
      previousPosition = position;
      checked += 1;
    }
    options.onProgress?.(checked);
    after = rows[rows.length - 1]!.position;
    if (BigInt(after) >= last.position) break;
  }
  // An anchor is a seal's position: one the walk did not meet was sealed once and is gone. The walk
  // covered every seal, so no anchor is left unreached.
  walkedAll = true;
  const [missing] = [...anchors.keys()].sort((a, b) => (a < b ? -1 : 1));
  const sealedEnd = last?.position ?? -1n;
  if (missing !== undefined && missing > sealedEnd) {
    const { rows: newest } = await sql<{ position: string | null }>`SELECT max(position)::text AS position FROM ${eventsTable(schema)}`.execute(database.db);
    const end = newest[0]?.position == null ? -1n : BigInt(newest[0].position);
    // Events go on past the anchor, but its seal and those after it are gone: deleting the trailing
    // seals makes rewritten events look merely "not sealed yet" (this read "the events are missing").
    if (end >= missing) {
      return broken(
        missing,
        null,
        null,
        `no seal at the anchor's position, though the events go on to position ${end}: the seals after ${sealedEnd} were deleted, ` +
          `so the events after ${sealedEnd} are covered by their stream chains only and may have been rewritten and re-hashed; ` +
          'compare them with a backup, and keep this anchor',
      );
    }
    // The store ends before the anchor (restored from an older backup, or its tail cut).
    const ended = broken(missing, null, null, `the store's events end at position ${end}, before this anchor: the events recorded after ${end} are missing`);
    return { ...ended, firstBroken: { ...ended.firstBroken!, endsAt: end } };
  }
  if (missing !== undefined) {
    const lost = await historyLostToRestore(database, schema, given, missing, [...anchors.keys()], [...sealedAtAnchor.keys()]);
    if (!lost) {
      return broken(
        missing,
        null,
        null,
        "no seal at the anchor's position: the chain was truncated or rewritten (an anchor given with the time it was taken, as --anchors-file keeps it, " +
          'tells a restore written over since from a rewrite)',
      );
    }
    const restored = broken(
      missing,
      null,
      null,
      `no event at the anchor's position, and the events after it were recorded after the anchor was taken (from ${lost.nextRecordedAt.toISOString()}, ` +
        `position ${lost.next}): the store was restored to an earlier point (or its events after position ${lost.after} were cut) and has been ` +
        `written since; the anchors after position ${lost.after} are from the history it lost`,
    );
    return { ...restored, firstBroken: { ...restored.firstBroken!, restoredAfter: lost.after } };
  }
  const head = last && previous ? { position: last.position, globalHash: Buffer.from(previous).toString('hex') } : null;
  return { ok: true, checked, head, ...anchorOutcome(), sealedThrough, unsealed };
}

/**
 * Whether the anchors the walk did not meet name history the store lost to a restore (or a cut of its
 * tail) and was written over since, rather than a chain rewritten under them: each was given with the
 * time it was taken, no event is at its position, and the first event after its position was recorded
 * later than it was taken; no anchor after the first of them was met. Returns where the history it
 * still holds ends (its last seal before them) and the first event written since, or undefined.
 *
 * What it cannot tell: the tail deleted on purpose and new events written after. That is still a failed
 * check naming the lost anchors; only an event changed in place, or one missing from the history that
 * was there when an anchor was taken, is called a rewrite.
 */
async function historyLostToRestore(
  database: SqlDatabase,
  schema: string,
  given: readonly ChainAnchor[],
  first: bigint,
  unmet: readonly bigint[],
  met: readonly bigint[],
): Promise<{ after: bigint; next: bigint; nextRecordedAt: Date } | undefined> {
  if (met.some((position) => position > first)) return undefined;
  const takenAt = new Map<bigint, number>();
  for (const position of unmet) {
    const times = given.filter((a) => a.position === position).map((a) => a.takenAt?.getTime());
    if (times.some((t) => t === undefined)) return undefined;
    takenAt.set(position, Math.max(...(times as number[])));
  }
  const { rows } = await sql<{ position: string; held: boolean; next: string | null; next_recorded_ms: number | null }>`
    SELECT u.position::text AS position,
           EXISTS (SELECT 1 FROM ${eventsTable(schema)} e WHERE e.position = u.position) AS held,
           n.position::text AS next, (extract(epoch from n.recorded_at) * 1000)::float8 AS next_recorded_ms
      FROM unnest(${unmet.map(String)}::bigint[]) AS u(position)
      LEFT JOIN LATERAL (SELECT e.position, e.recorded_at FROM ${eventsTable(schema)} e WHERE e.position > u.position ORDER BY e.position LIMIT 1) n ON true`.execute(
    database.db,
  );
  for (const row of rows) {
    if (row.held) return undefined;
    // None after it: the store ends before it, which says nothing against a restore.
    if (row.next_recorded_ms !== null && row.next_recorded_ms <= takenAt.get(BigInt(row.position))!) return undefined;
  }
  const firstRow = rows.find((r) => BigInt(r.position) === first);
  if (firstRow?.next == null || firstRow.next_recorded_ms === null) return undefined;
  const { rows: kept } = await sql<{ position: string | null }>`
    SELECT max(s.position)::text AS position FROM ${sealsTable(schema)} s WHERE s.position < ${first.toString()}::bigint`.execute(database.db);
  return { after: BigInt(kept[0]?.position ?? '0'), next: BigInt(firstRow.next), nextRecordedAt: new Date(firstRow.next_recorded_ms) };
}

/** Recomputes the stream chains and the global chain; names the first broken link. */
export async function verifyChains(
  database: SqlDatabase,
  schema: string,
  options: { onProgress?: (progress: { phase: 'streams' | 'global'; checked: number }) => void; anchors?: readonly ChainAnchor[] } = {},
): Promise<ChainsVerification> {
  const streams = await verifyStreamChains(database, {
    schema,
    onProgress: (checked) => options.onProgress?.({ phase: 'streams', checked }),
  });
  const global = await verifyGlobalChain(database, schema, {
    onProgress: (checked) => options.onProgress?.({ phase: 'global', checked }),
    ...(options.anchors ? { anchors: options.anchors } : {}),
  });
  const keys = await verifyCustomerKeys(database, schema);
  const result: ChainsVerification = { ok: streams.ok && global.ok && keys.ok, streams, global, keys };
  if (streams.firstBroken) result.firstBroken = { chain: 'stream', ...streams.firstBroken };
  else if (global.firstBroken) result.firstBroken = { chain: 'global', ...global.firstBroken };
  else if (!keys.ok) result.firstBroken = { chain: 'keys', ...keyDisagreement(keys) };
  return result;
}

/** The customers whose data key disagrees with their history, both kinds, the first named as the broken link. */
const keyDisagreement = (keys: CustomerKeysVerification): Omit<NonNullable<ChainsVerification['firstBroken']>, 'chain'> => {
  const named = (ids: string[]) => (ids.length > 1 ? ` (${ids.length === NAMED_CUSTOMERS ? 'at least ' : ''}${ids.length} customers: ${ids.join(', ')})` : '');
  const reasons = [
    ...(keys.unforgotten.length > 0
      ? [`the customer ${KEY_PUT_BACK}: it was put back outside the CRM, and its personal data reads in clear${named(keys.unforgotten)}`]
      : []),
    ...(keys.missing.length > 0
      ? [
          `${keys.unforgotten.length > 0 ? `customer ${keys.missing[0]!}` : 'the customer'} ${KEY_GONE}: ` +
            `the key was deleted or erased outside the CRM, and its personal data reads as erased${named(keys.missing)}`,
        ]
      : []),
  ];
  return { stream: `customer-${keys.unforgotten[0] ?? keys.missing[0]!}`, revision: null, position: null, reason: reasons.join('; and ') };
};
