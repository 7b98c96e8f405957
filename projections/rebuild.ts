import { sql, type Kysely, type QueryExecutorProvider } from 'kysely';
import type { EventStore, RecordedEvent } from '../eventstore/contract.ts';
import { createBackoff, pause } from '../eventstore/backoff.ts';
import { applyBatch, decodeBatch, matchesFilter, type EventCodec } from './apply-batch.ts';
import { catchUp, eventsToCatchUp, type CatchUpProgress } from './catch-up.ts';
import { analyzeTables } from './statistics.ts';
import { recordFeedEngine } from './feed-engine.ts';
import { ReadModelsHeld, RebuildShadowLost } from './errors.ts';
import { isLockNotGranted, sessionsHolding } from './lock-holders.ts';
import {
  CHECKPOINT_TABLE,
  checkpointsOffTheStore,
  migrateCheckpoints,
  NO_LAG,
  migrateProjections,
  readCheckpoints,
  setState,
  type Checkpoint,
} from './checkpoints.ts';
import type { Projection } from './projection.ts';
import { createReportingViews, keptOnViewsOf } from './reporting.ts';
import { claimShadow, dropAbandonedShadows, newShadowName, type SessionLock } from './shadows.ts';
import { ensureSchema, executeStatements, qualifiedName } from '../shared/sql.ts';

export interface ReadSideDeps {
  db: Kysely<unknown>;
  store: EventStore;
  codec: EventCodec;
  /** Every projection the deployment maintains (read models and analytics). */
  projections: readonly Projection[];
  /** Apply a batch to several projections at once (pg pool: yes; PGlite: no). */
  concurrent?: boolean;
  /** Marks a rebuild's shadow as in use to other processes (projections/shadows.ts). */
  sessionLock?: SessionLock;
}

export interface ReplayOptions extends ReadSideDeps {
  /** Target schema; created, must not hold read-model tables yet unless `replace`. */
  schema: string;
  /** Only events recorded at or before this instant (the read models as they stood then). */
  untilTime?: Date;
  /** Stop at this position (e.g. the live checkpoint, to compare like with like). Default: the head. */
  untilPosition?: bigint;
  /** Drop the schema first if it exists. */
  replace?: boolean;
  /** Events read and applied per batch (default 5000: replay has no latency to keep low). */
  pageSize?: number;
  /** Also create reporting views over the replayed tables in this schema. */
  reportingSchema?: string;
  onProgress?: (progress: ReplayProgress) => void;
  /** Ctrl-C: a batch failing on the database is not tried again (projections/catch-up.ts). */
  signal?: AbortSignal;
}

export interface ReplayProgress extends CatchUpProgress {
  /** Events read in all (counted at the start); null where the store cannot count them. */
  total: number | null;
}

export interface ReplayResult {
  schema: string;
  position: bigint;
  /** Events read (up to `position`), those recorded after `untilTime` included. */
  events: number;
  /** Events read but left out as recorded after `untilTime` (0 without it). */
  recordedLater: number;
  failed: string[];
}

/**
 * Builds every read model (or the `projections` given) from position zero into `schema`, optionally
 * only up to an instant. `crm replay --as-of` and `crm verify` use it.
 */
export async function replayInto(options: ReplayOptions): Promise<ReplayResult> {
  const { db, schema } = options;
  if (options.replace) await sql`DROP SCHEMA IF EXISTS ${sql.id(schema)} CASCADE`.execute(db);
  else await refuseExistingTables(db, schema, options.projections);
  await migrateProjections(db, schema, options.projections);
  // The target fixed before the events up to it are counted: the total is what the replay reads. A
  // replay to a moment ends at an event no count by position knows in advance: no total then.
  const untilPosition = options.untilPosition ?? (await options.store.headPosition());
  const total = options.onProgress && options.untilTime === undefined ? await eventsToCatchUp({ ...options, untilPosition }) : null;
  const result = await catchUp({
    db,
    store: options.store,
    schema,
    projections: options.projections,
    codec: options.codec,
    untilTime: options.untilTime,
    untilPosition,
    concurrent: options.concurrent,
    pageSize: options.pageSize ?? 5_000,
    onProgress: (p) => options.onProgress?.({ ...p, total }),
    ...(options.signal ? { signal: options.signal } : {}),
  });
  if (options.reportingSchema) {
    await createReportingViews(db, { readSchema: schema, reportingSchema: options.reportingSchema, projections: options.projections });
  }
  return { schema, ...result };
}

async function refuseExistingTables(db: QueryExecutorProvider, schema: string, projections: readonly Projection[]): Promise<void> {
  const tables = projections.flatMap((p) => p.tables);
  const { rows } = await sql<{ table_name: string }>`SELECT table_name FROM information_schema.tables
    WHERE table_schema = ${schema} AND table_name = ANY(${tables}::text[])`.execute(db);
  if (rows.length > 0) {
    throw new Error(`Schema ${schema} already holds read-model tables (${rows.map((r) => r.table_name).join(', ')}): choose another name or replace it`);
  }
}

/** `events` and `total` count from the start of the rebuild, over its replay and catch-ups. */
export interface RebuildProgress extends ReplayProgress {
  phase: 'replaying' | 'catching-up' | 'swapping' | 'done';
  names: string[];
}

export interface RebuildOptions extends ReadSideDeps {
  /** Live read schema. */
  schema: string;
  reportingSchema: string;
  /** Projections to rebuild (default: all). */
  names?: readonly string[];
  onProgress?: (progress: RebuildProgress) => void;
  /** The live runner in this process, told to re-read its checkpoints after the swap. */
  runner?: { reloadCheckpoints(): Promise<unknown> };
  /** Ctrl-C: the rebuild stops at the next page or swap attempt with `RebuildInterrupted`, the live tables untouched. */
  signal?: AbortSignal;
  /** Give up after this many swap attempts rolled back with the shadow behind (each normally succeeds; retried after a deadlock or the like). */
  maxSwapAttempts?: number;
  /** How long swap attempts meeting a lock held by another session are tried again (default SWAP_LOCK_BOUND_MS). */
  swapLockBoundMs?: number;
}

export interface RebuildResult {
  names: string[];
  position: bigint;
  events: number;
  /** Swap transactions tried, the successful one included (1 unless one was rolled back). */
  swapAttempts: number;
  /** Views (and materialized views) others built on the reporting views that are gone after the swap: make them again. */
  notRestored: string[];
}

/** The rebuild stopped because its `signal` was aborted; its shadow is dropped and the live read models are as they were. */
export class RebuildInterrupted extends Error {
  constructor() {
    super('The rebuild was interrupted; the live read models were left as they were');
    this.name = 'RebuildInterrupted';
  }
}

/**
 * Rebuilds projections from position zero into a shadow schema while the live tables keep serving,
 * then swaps the new tables in within one transaction (old tables dropped, reporting views recreated,
 * checkpoints moved), once the shadow has caught up with the live checkpoint. A query that arrives
 * during the swap waits for the lock and then reads the new table: it never fails.
 */
export async function rebuildProjections(options: RebuildOptions): Promise<RebuildResult> {
  const { db, schema } = options;
  const selected = options.names ? options.projections.filter((p) => options.names!.includes(p.name)) : [...options.projections];
  const unknown = (options.names ?? []).filter((n) => !options.projections.some((p) => p.name === n));
  if (unknown.length > 0) throw new Error(`Unknown projections: ${unknown.join(', ')}`);
  const names = selected.map((p) => p.name);
  const shadow = newShadowName(schema, 'rebuild');
  const checkSignal = () => {
    if (options.signal?.aborted) throw new RebuildInterrupted();
  };
  const progress = (phase: RebuildProgress['phase'], p: ReplayProgress) => {
    checkSignal();
    options.onProgress?.({ ...p, phase, names });
  };

  await migrateCheckpoints(db, schema);
  // What an earlier rebuild killed mid-way left behind goes first; this one's shadow is claimed before
  // any projection is marked `rebuilding`, so a crash from here on is recovered the same way.
  await dropAbandonedShadows(db, schema, { pool: options.concurrent === true });
  const dropShadow = await claimShadow(db, shadow, { rebuilding: names, sessionLock: options.sessionLock });
  let live = new Map<string, Checkpoint>();
  let events = 0;
  try {
    live = await readCheckpoints(db, schema);
    for (const p of selected) if (live.has(p.name)) await setState(db, schema, p.name, 'rebuilding');
    const first = await replayInto({
      db,
      store: options.store,
      codec: options.codec,
      concurrent: options.concurrent,
      projections: selected,
      schema: shadow,
      onProgress: (p) => progress('replaying', p),
      ...(options.signal ? { signal: options.signal } : {}),
    });
    events += first.events;
    if (first.failed.length > 0) {
      const failed = await readCheckpoints(db, shadow);
      const detail = first.failed.map((n) => `${n} on event ${failed.get(n)?.failedEventId} (${failed.get(n)?.lastError})`).join('; ');
      throw new Error(`Rebuild stopped: ${detail}. The live tables were left as they were.`);
    }
    // Swapped in, the tables are queried at once: with statistics, not as tables never analysed (projections/statistics.ts).
    await analyzeTables(
      db,
      shadow,
      selected.flatMap((p) => p.tables),
    );
    // The swap would wait for the shadow to reach a position that does not exist (or one in a history
    // the store no longer has). Read outside the swap's transaction, which on PGlite holds the one
    // connection the store's read would wait for.
    const ahead = await checkpointsOffTheStore(db, schema, options.store, names);
    const pastTheStore = new Set(ahead.map((a) => a.projection));
    const attempts = options.maxSwapAttempts ?? 20;
    /** Swaps rolled back because the shadow was behind (or a deadlock): a lock not granted is bounded by time instead. */
    let behind = 0;
    let lockedSince = performance.now();
    const lockBackoff = createBackoff({ initialMs: 250, maxMs: 4_000 });
    for (let attempt = 1; ; attempt++) {
      // A swap kept waiting (a long query holds a live table) is retried: each retry is a safe point.
      checkSignal();
      // The target fixed first, as for the replay: counted up to it, the total is what this catch-up reads.
      const untilPosition = await options.store.headPosition();
      const rest = options.onProgress ? await eventsToCatchUp({ db, store: options.store, schema: shadow, projections: selected, untilPosition }) : null;
      const more = await catchUp({
        db,
        store: options.store,
        schema: shadow,
        projections: selected,
        codec: options.codec,
        concurrent: options.concurrent,
        untilPosition,
        onProgress: (p) => progress('catching-up', { ...p, events: events + p.events, total: rest === null ? null : events + rest }),
        ...(options.signal ? { signal: options.signal } : {}),
      });
      events += more.events;
      if (more.failed.length > 0)
        throw new Error(`Rebuild stopped: ${more.failed.join(', ')} failed while catching up. The live tables were left as they were.`);
      // A pool: hold the feed so the live runner cannot get ahead of the shadow, then close the last gap
      // and swap. One connection (PGlite) cannot hold a transaction open beside others: the swap is retried.
      const swapped = options.concurrent
        ? await whileFeedHeld(db, async () => {
            events += await applyFinalGap(options, selected, shadow);
            return trySwap(options, selected, shadow, pastTheStore);
          })
        : await trySwap(options, selected, shadow, pastTheStore);
      if (swapped === 'locked') {
        // Another session (a BI query or open transaction on a reporting view, a long read) holds what
        // the swap replaces: tried again with a growing pause, each try waiting briefly, within a bound.
        const wait = lockBackoff.next();
        if (performance.now() + wait > lockedSince + (options.swapLockBoundMs ?? SWAP_LOCK_BOUND_MS)) {
          throw new ReadModelsHeld(
            `swap in the rebuilt ${names.join(', ')}`,
            'the live read models are as they were (its rebuilt tables were dropped)',
            performance.now() - lockedSince,
            await sessionsHolding(db, { relations: Object.values(await swappedRelations(db, schema, selected)).flat() }),
          );
        }
        await pause(wait, options.signal);
        continue;
      }
      lockedSince = performance.now();
      lockBackoff.reset();
      if (swapped !== 'behind') {
        const { position, notRestored } = swapped;
        progress('done', { position, headPosition: position, events, total: events });
        await options.runner?.reloadCheckpoints();
        return { names, position, events, swapAttempts: attempt, notRestored };
      }
      if (++behind >= attempts) throw new Error(`Rebuild of ${names.join(', ')} could not catch up with the live projections after ${attempts} attempts`);
    }
  } catch (caught) {
    // 42P01 / 3F000: a table or the schema itself gone, under the shadow's name.
    const failure = caught as { code?: string; cause?: { code?: string }; message?: string };
    const gone = ['42P01', '3F000'].includes(failure.code ?? failure.cause?.code ?? '') && String(failure.message).includes(shadow);
    const error = gone ? new RebuildShadowLost(shadow, { cause: caught }) : caught;
    await restoreStates(() => Promise.all(selected.filter((p) => live.has(p.name)).map((p) => setState(db, schema, p.name, live.get(p.name)!.state))));
    throw error;
  } finally {
    await dropShadow().catch(() => undefined);
  }
}

/** How long a failed rebuild keeps trying to put the projections' states back (the database may be coming back). */
const RESTORE_STATES_MS = 15_000;

/**
 * Puts the projections' states back after a failed rebuild, retried while the database comes back: a
 * single try on the connection that had just failed left them `rebuilding` in /ready and the status
 * views until some later crm command set them right.
 */
async function restoreStates(restore: () => Promise<unknown>): Promise<void> {
  const deadline = performance.now() + RESTORE_STATES_MS;
  const backoff = createBackoff({ initialMs: 100, maxMs: 2_000 });
  for (;;) {
    try {
      await restore();
      return;
    } catch {
      if (performance.now() > deadline) return;
      await pause(backoff.next());
    }
  }
}

/**
 * Bounds on a session left idle inside the swap or the feed hold (its client stalled: a frozen
 * process, a network path that drops packets). The swap holds the read models it replaces and the
 * views reading them exclusively and the hold keeps the whole cluster's event feed back: before 2026-12-07 a stall there
 * kept both for the long-work pool's idle bound, 10 minutes. The server ends such a session and the
 * transaction rolls back: the live read models stay as they were. The hold is idle while the last
 * events are applied and the swap runs (seconds), hence its longer bound.
 */
const SWAP_IDLE_BOUND = '5s';
const FEED_HOLD_IDLE_BOUND = '60s';

/** How long the feed hold waits for transactions older than it to end before going ahead anyway. */
const OLDER_TRANSACTIONS_WAIT_MS = 1_000;
/** At most this many events are read while the feed is held (one catch-up pass normally leaves a few). */
const MAX_FINAL_GAP_EVENTS = 2_000;

/**
 * Runs `work` while a transaction holding a transaction id stays open. The gap-free feed only hands out
 * positions below the oldest running transaction id (eventstore/postgres/store.ts), so meanwhile no
 * reader, the live runner included, sees an event appended after the hold began: the events below it
 * form a closed set once the transactions older than the hold have ended (waited for here, briefly).
 * Commands keep being stored; projections see them once the hold ends (milliseconds later).
 * An event store in another database is not held back: the swap then simply retries as before.
 */
async function whileFeedHeld<T>(db: Kysely<unknown>, work: () => Promise<T>): Promise<T> {
  return db.transaction().execute(async (hold) => {
    await sql`SET LOCAL idle_in_transaction_session_timeout = ${sql.lit(FEED_HOLD_IDLE_BOUND)}`.execute(hold);
    const { rows } = await sql<{ xid: string }>`SELECT pg_current_xact_id()::text AS xid`.execute(hold);
    const own = BigInt(rows[0]!.xid);
    const deadline = performance.now() + OLDER_TRANSACTIONS_WAIT_MS;
    for (;;) {
      const { rows: snapshot } = await sql<{ xmin: string }>`SELECT pg_snapshot_xmin(pg_current_snapshot())::text AS xmin`.execute(hold);
      // A transaction open for long elsewhere: go ahead; the swap checks the positions anyway.
      if (BigInt(snapshot[0]!.xmin) >= own || performance.now() > deadline) break;
      await new Promise((r) => setTimeout(r, 5));
    }
    return work();
  });
}

/**
 * Applies to the shadow the events between its checkpoints and the head of the (held) feed, the way
 * the replay does. Read one event per call: a full page returns at once, where a short one would
 * make the store wait for the hold to end (its settle), which it never does while we wait.
 */
async function applyFinalGap(options: RebuildOptions, selected: Projection[], shadow: string): Promise<number> {
  const { db, store, codec } = options;
  const checkpoints = await readCheckpoints(db, shadow);
  const positions = new Map(selected.map((p) => [p.name, checkpoints.get(p.name)?.position ?? 0n]));
  const head = await store.headPosition();
  let cursor = [...positions.values()].reduce((a, b) => (b < a ? b : a), head);
  const gap: RecordedEvent[] = [];
  // Beyond the cap the shadow stays behind: the swap rolls back and the next attempt catches up first.
  while (cursor < head && gap.length < MAX_FINAL_GAP_EVENTS) {
    const [next] = await store.readAll({ fromPosition: cursor, maxCount: 1 });
    if (!next || next.position > head) break;
    gap.push(next);
    cursor = next.position;
  }
  if (gap.length === 0) return 0;
  const wanted = (e: RecordedEvent) => selected.some((p) => e.position > positions.get(p.name)! && matchesFilter(p.filter, e));
  const items = await decodeBatch(codec, gap, wanted);
  const outcomes = await Promise.all(
    selected.filter((p) => positions.get(p.name)! < cursor).map(async (p) => [p.name, await applyBatch(db, shadow, p, items, cursor, NO_LAG)] as const),
  );
  const failed = outcomes.filter(([, o]) => o.kind !== 'applied').map(([name]) => name);
  if (failed.length > 0)
    throw new Error(`Rebuild stopped: ${failed.join(', ')} failed on the last events before the swap. The live tables were left as they were.`);
  return gap.length;
}

/**
 * How long a rebuild keeps trying a swap whose locks another session holds (a BI query or transaction
 * on a reporting view, a long read of a read model). Each try waits at most the swap's lock_timeout,
 * so readers arriving meanwhile queue behind it that long at most; between tries the pause grows.
 */
export const SWAP_LOCK_BOUND_MS = 60_000;

/** A swap done: where the swapped read models stand, and the views others built on the reporting views that could not be made again. */
type Swapped = { position: bigint; notRestored: string[] };

/**
 * The swap transaction: done, `behind` (rolled back: the live checkpoint is still ahead of the shadow,
 * or a deadlock), or `locked` (rolled back: a lock not granted within the swap's lock_timeout).
 */
async function trySwap(
  options: RebuildOptions,
  selected: Projection[],
  shadow: string,
  pastTheStore: ReadonlySet<string>,
): Promise<Swapped | 'behind' | 'locked'> {
  try {
    return (await swapOnce(options, selected, shadow, pastTheStore)) ?? 'behind';
  } catch (error) {
    // A live batch holding a table this swap drops while waiting for its checkpoint: PostgreSQL breaks
    // the deadlock by aborting one side; either way, catch up again and retry.
    // The pool reports a lock timeout as EventStoreUnavailable; PostgreSQL's code is on its cause.
    const failure = error as { code?: string; cause?: { code?: string } };
    if ((failure.code ?? failure.cause?.code) === '40P01') return 'behind';
    if (isLockNotGranted(error)) return 'locked';
    throw error;
  }
}

/**
 * What the swap's DROP ... CASCADE takes: the views that read these projections' live tables, however
 * many views deep (in any schema: the reporting views and the views others built on them), ordered as
 * readers lock them (a view before the views it reads); and the others, the tables and the
 * materialized views on them (which LOCK TABLE does not take). Names as SQL (`%I.%I`).
 */
async function swappedRelations(db: QueryExecutorProvider, schema: string, selected: readonly Projection[]): Promise<{ views: string[]; others: string[] }> {
  const { rows } = await sql<{ name: string; view: boolean }>`
    WITH RECURSIVE tables AS (
      SELECT c.oid FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
       WHERE n.nspname = ${schema} AND c.relkind IN ('r', 'p') AND c.relname = ANY(${selected.flatMap((p) => p.tables)}::text[])
    ), dependents(oid, depth) AS (
      SELECT r.ev_class, 1 FROM pg_depend d JOIN pg_rewrite r ON r.oid = d.objid
       WHERE d.classid = 'pg_rewrite'::regclass AND d.refclassid = 'pg_class'::regclass AND d.refobjid IN (SELECT oid FROM tables)
      UNION
      SELECT r.ev_class, x.depth + 1 FROM dependents x
        JOIN pg_depend d ON d.refclassid = 'pg_class'::regclass AND d.refobjid = x.oid AND d.classid = 'pg_rewrite'::regclass
        JOIN pg_rewrite r ON r.oid = d.objid
       WHERE r.ev_class <> x.oid AND x.depth < 16
    )
    SELECT name, view FROM (
      SELECT format('%I.%I', n.nspname, c.relname) AS name, c.relkind = 'v' AS view, -max(x.depth) AS rank
        FROM dependents x JOIN pg_class c ON c.oid = x.oid JOIN pg_namespace n ON n.oid = c.relnamespace
       GROUP BY n.nspname, c.relname, c.relkind
      UNION ALL
      SELECT format('%I.%I', n.nspname, c.relname), false, 0 FROM tables t JOIN pg_class c ON c.oid = t.oid JOIN pg_namespace n ON n.oid = c.relnamespace
    ) r ORDER BY rank, name`.execute(db);
  return { views: rows.filter((r) => r.view).map((r) => r.name), others: rows.filter((r) => !r.view).map((r) => r.name) };
}

async function swapOnce(options: RebuildOptions, selected: Projection[], shadow: string, pastTheStore: ReadonlySet<string>): Promise<Swapped | undefined> {
  const { db, schema } = options;
  const swapped = await db.transaction().execute(async (trx) => {
    // A query that reads several tables (a customer with its revenue lines and the exchange rates)
    // may hold one of them while it waits for another this swap holds: a deadlock that PostgreSQL
    // breaks after deadlock_timeout (1 s) by aborting whichever side checks first, sometimes the
    // query. Waiting at most this long for each lock, the swap gives way first (55P03), and is retried.
    await sql`SET LOCAL lock_timeout = '400ms'`.execute(trx);
    await sql`SET LOCAL idle_in_transaction_session_timeout = ${sql.lit(SWAP_IDLE_BOUND)}`.execute(trx);
    // Lock in the order readers take locks (a reporting view, then the table under it), views first,
    // so a query arriving mid-swap waits instead of deadlocking with the DROP ... CASCADE below. Only
    // the views that read the swapped tables: those the DROP ... CASCADE replaces (the others are left
    // alone, and their readers with them).
    const { views } = await swappedRelations(trx, schema, selected);
    if (views.length > 0) await sql`LOCK TABLE ${sql.join(views.map((v) => sql.raw(v)))} IN ACCESS EXCLUSIVE MODE`.execute(trx);
    // Tables before checkpoints: a live batch writes its tables and moves its checkpoint last, so it
    // finishes before these locks or waits for them; locking the checkpoints first deadlocked with
    // every batch in flight. Declaration order; a batch writing a projection's tables in another
    // order can still deadlock with this (PostgreSQL aborts one side; the swap is then retried).
    const { rows: existing } = await sql<{ name: string }>`SELECT tablename AS name FROM pg_tables
        WHERE schemaname = ${schema} AND tablename = ANY(${selected.flatMap((p) => p.tables)}::text[])`.execute(trx);
    const liveTables = selected.flatMap((p) => p.tables).filter((t) => existing.some((e) => e.name === t));
    if (liveTables.length > 0) {
      await sql`LOCK TABLE ${sql.join(liveTables.map((t) => sql.id(schema, t)))} IN ACCESS EXCLUSIVE MODE`.execute(trx);
    }
    // Lock the live checkpoints: the live runner cannot move them now.
    const names = selected.map((p) => p.name).sort();
    const { rows: liveRows } = await sql<{ name: string; position: string }>`SELECT name, position::text FROM ${sql.id(schema, CHECKPOINT_TABLE)}
        WHERE name = ANY(${names}::text[]) ORDER BY name FOR UPDATE`.execute(trx);
    const shadowCheckpoints = await readCheckpoints(trx, shadow);
    for (const row of liveRows) {
      // Nothing to catch up to: this rebuild is what puts such a projection right.
      if (pastTheStore.has(row.name)) continue;
      if ((shadowCheckpoints.get(row.name)?.position ?? 0n) < BigInt(row.position)) return undefined;
    }
    // Read before the tables go: dropping them drops the views that read them, with others' grants and views on those.
    const kept = await keptOnViewsOf(trx, { readSchema: schema, reportingSchema: options.reportingSchema }, options.projections);
    let position = 0n;
    for (const p of selected) {
      const cp = shadowCheckpoints.get(p.name)!;
      if (cp.position > position) position = cp.position;
      // One round trip for a projection's tables on a server: the swap holds every read model meanwhile.
      const moves = p.tables.flatMap((table) => [
        sql`DROP TABLE IF EXISTS ${sql.id(schema, table)} CASCADE`,
        sql`ALTER TABLE ${sql.id(shadow, table)} SET SCHEMA ${sql.id(schema)}`,
      ]);
      await executeStatements(trx, moves, options.concurrent === true);
      await sql`INSERT INTO ${sql.id(schema, CHECKPOINT_TABLE)} (name, version, variant, position, event_id, state)
          VALUES (${p.name}, ${p.version}, ${p.variant ?? null}, ${cp.position.toString()}::bigint, ${cp.eventId}, 'running')
          ON CONFLICT (name) DO UPDATE SET version = EXCLUDED.version, variant = EXCLUDED.variant, position = EXCLUDED.position,
            event_id = EXCLUDED.event_id, state = 'running',
            last_error = NULL, failed_event_id = NULL, failed_position = NULL, failed_stream = NULL, events_behind = 0, seconds_behind = 0, updated_at = now()`.execute(
        trx,
      );
    }
    // Every checkpoint now holds a position of this store (a rebuild is how read models move to another engine).
    if (selected.length === options.projections.length) await recordFeedEngine(trx, schema, options.store.engine);
    const { notRestored } = await createReportingViews(trx, {
      readSchema: schema,
      reportingSchema: options.reportingSchema,
      projections: options.projections,
      oneRoundTrip: options.concurrent === true,
      kept,
    });
    return { position, notRestored };
  });
  return swapped;
}

export interface TableDifference {
  /** Primary-key values of the row. */
  key: Record<string, unknown>;
  /** The row in the live schema (null: missing there). */
  live: Record<string, unknown> | null;
  /** The row in the other schema (null: missing there). */
  other: Record<string, unknown> | null;
}

export interface TableComparison {
  table: string;
  equal: boolean;
  liveRows: number;
  otherRows: number;
  /** md5 over the sorted row hashes: equal tables have equal hashes. */
  liveHash: string;
  otherHash: string;
  differences: TableDifference[];
  /** More differences exist than were returned. */
  truncated: boolean;
}

/**
 * Compares tables of two schemas row by row (md5 of each row's text), and returns the differing rows
 * matched by primary key. `crm verify` compares the live read models with a replay this way.
 */
export async function compareSchemas(
  db: QueryExecutorProvider,
  liveSchema: string,
  otherSchema: string,
  tables: readonly string[],
  options: { maxDifferences?: number } = {},
): Promise<TableComparison[]> {
  const max = options.maxDifferences ?? 100;
  const result: TableComparison[] = [];
  for (const table of tables) {
    const { rows: keyRows } = await sql<{ column_name: string }>`
      SELECT a.attname AS column_name FROM pg_index i
      JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey)
      WHERE i.indrelid = ${qualifiedName(liveSchema, table)}::regclass AND i.indisprimary
      ORDER BY array_position(i.indkey::int2[], a.attnum)`.execute(db);
    const keys = keyRows.map((r) => r.column_name);
    const live = sql.id(liveSchema, table);
    const other = sql.id(otherSchema, table);
    const { rows: summary } = await sql<{ side: string; n: string; h: string | null }>`
      SELECT 'live' AS side, count(*)::text AS n, md5(COALESCE(string_agg(md5(t::text), '' ORDER BY md5(t::text)), '')) AS h FROM ${live} t
      UNION ALL
      SELECT 'other', count(*)::text, md5(COALESCE(string_agg(md5(t::text), '' ORDER BY md5(t::text)), '')) FROM ${other} t`.execute(db);
    const liveSummary = summary.find((s) => s.side === 'live')!;
    const otherSummary = summary.find((s) => s.side === 'other')!;
    const equal = liveSummary.h === otherSummary.h && liveSummary.n === otherSummary.n;
    let differences: TableDifference[] = [];
    let truncated = false;
    if (!equal) {
      const join =
        keys.length > 0
          ? sql.join(
              keys.map((k) => sql`a.j->${k} = b.j->${k}`),
              sql` AND `,
            )
          : sql`a.h = b.h`;
      const { rows } = await sql<{ live: Record<string, unknown> | null; other: Record<string, unknown> | null }>`
        WITH a AS (SELECT md5(t::text) AS h, to_jsonb(t) AS j FROM ${live} t),
             b AS (SELECT md5(t::text) AS h, to_jsonb(t) AS j FROM ${other} t)
        SELECT a.j AS live, b.j AS other FROM a FULL JOIN b ON ${join}
        WHERE a.h IS DISTINCT FROM b.h
        ORDER BY COALESCE(a.j, b.j)::text
        LIMIT ${max + 1}`.execute(db);
      truncated = rows.length > max;
      differences = rows.slice(0, max).map((r) => {
        const row = (r.live ?? r.other)!;
        return { key: Object.fromEntries(keys.map((k) => [k, row[k]])), live: r.live, other: r.other };
      });
    }
    result.push({
      table,
      equal,
      liveRows: Number(liveSummary.n),
      otherRows: Number(otherSummary.n),
      liveHash: liveSummary.h ?? '',
      otherHash: otherSummary.h ?? '',
      differences,
      truncated,
    });
  }
  return result;
}

/** Tables of these projections (what verify compares). */
export const tablesOf = (projections: readonly Projection[]): string[] => projections.flatMap((p) => p.tables);

/** Drops a schema made by `replayInto` (verify's scratch schema). */
export async function dropSchema(db: QueryExecutorProvider, schema: string): Promise<void> {
  await sql`DROP SCHEMA IF EXISTS ${sql.id(schema)} CASCADE`.execute(db);
}

export { ensureSchema };
