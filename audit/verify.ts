import { eventsInSql } from './deps.ts';
import { farMergesSql, unmatchedMergesSql, type FarMerge, type UnmatchedMerge } from './sql/merges.ts';
import { sql, type Kysely, type QueryExecutorProvider } from 'kysely';
import { catchUp, eventsToCatchUp } from '../projections/catch-up.ts';
import { CHECKPOINT_TABLE, ensureCheckpoint, migrateCheckpoints, readCheckpoints, type CheckpointAhead } from '../projections/checkpoints.ts';
import { personalDataCodec } from '../projections/codec.ts';
import { claimShadow, newShadowName } from '../projections/shadows.ts';
import type { Projection } from '../projections/projection.ts';
import { readSkips, type ProjectionSkip } from '../projections/skips.ts';
import type { AuditDeps } from './deps.ts';
import { compareTable, type RowDifference, type TableComparison } from './compare-tables.ts';

/**
 * `crm verify` / `POST /audit/verify`: are the read models exactly what the events say?
 *
 * Every event is replayed into a fresh shadow schema by the projections' own code, up to the
 * position each live projection has reached, and each of their tables is compared with the live
 * one (see compare-tables.ts). On a PostgreSQL server the replay first runs up to where the live
 * projections stand when the check starts, with no transaction held; then the live side is read
 * inside a REPEATABLE READ snapshot, the shadow catches up to the checkpoints that snapshot shows, and
 * the tables are compared: projections keep running during the check and the comparison still sees
 * the live tables exactly at the checkpoints the replay stops at (a checkpoint commits with its rows,
 * invariant 5). PGlite has one connection, so there the live checkpoints are read again after
 * the comparison and the check is repeated if they moved.
 */

export interface VerifyProgress {
  phase: 'replay' | 'compare';
  done: number;
  total: number | null;
}

export interface ReadModelVerification {
  ok: boolean;
  /** Events replayed into the shadow schema. */
  events: number;
  /** Live checkpoint of each projection: what was compared. */
  positions: Record<string, bigint>;
  /**
   * The store's last position when the check started. A live checkpoint below it means the read
   * models were compared only as far as they had been projected: later events were not verified.
   */
  head: bigint;
  tables: TableComparison[];
  /** Differing rows over all tables. */
  differences: number;
  firstDifference?: RowDifference;
  /** Live projections stopped on an event (`crm projections` shows where); their tables are compared as far as they applied. */
  failedProjections: string[];
  /**
   * Events the check's own replay could not apply (a stored event that no longer decodes or
   * validates), one per projection that stopped on one. The live projections may well have applied
   * it; the tables of these projections are not compared (the replay did not complete), and the
   * check fails.
   */
  replayFailures: ReplayFailure[];
  /**
   * Live checkpoints past the store's last event: the read models say they applied events the
   * store does not hold (events cut from the end of the store, or a checkpoint edited). Each fails
   * the check; its tables are compared with a replay of every event there is.
   */
  checkpointsAhead: CheckpointAhead[];
  /**
   * Events an operator skipped (`crm projections skip`): the live read models and the replay both
   * leave them out, so they explain a gap the comparison does not report as a difference.
   */
  skipped: ProjectionSkip[];
  /**
   * Merges recorded on one side only (the duplicate's `CustomerMergedInto` without the primary's
   * `CustomerMerged`), which a replay reproduces: each fails the check. Null where the events are not
   * in SQL (EventStoreDB): not checked.
   */
  unmatchedMerges: UnmatchedMerge[] | null;
  /** Customers more than MAX_MERGE_CHAIN merges from the end of their chain (made before chains were bounded); null as above. */
  farMerges: FarMerge[] | null;
  durationMs: number;
}

/** An event the verification's replay stopped on, for one projection (read from the shadow's checkpoints). */
export interface ReplayFailure {
  projection: string;
  /** Its tables, left out of the comparison. */
  tables: string[];
  position: bigint | null;
  stream: string | null;
  /** Null when the event is not found at that position any more. */
  revision: number | null;
  eventId: string | null;
  error: string;
}

export interface VerifyOptions {
  /** Every projection whose tables are compared (read models and analytics). */
  projections: readonly Projection[];
  /** Ctrl-C: a batch failing on the database is not tried again (projections/catch-up.ts). */
  signal?: AbortSignal;
  onProgress?: (progress: VerifyProgress) => void;
}

/**
 * The live read models were never built in this schema (no checkpoints table: no `crm serve` or
 * `crm project` has run against it yet), so there is nothing to compare a replay with.
 */
export class ReadModelsNotBuilt extends Error {
  constructor(readonly schema: string) {
    super(`No read models to verify in schema ${schema} yet: \`crm serve\` (or \`crm project\`) builds them; start it once, then verify again.`);
    this.name = 'ReadModelsNotBuilt';
  }
}

/**
 * Read models built by another version of their projection than this CRM's (an upgrade whose rebuild
 * has not run yet, or a process of another version beside this one): a replay by this version's code
 * differs from them by design, which a comparison would report as tampering.
 */
export class ReadModelsOfAnotherVersion extends Error {
  constructor(readonly projections: { name: string; built: number; here: number }[]) {
    super(
      `The read models ${projections.map((p) => `${p.name} (version ${p.built}; this CRM's is ${p.here})`).join(', ')} were built by another version of the CRM: ` +
        '`crm serve` or `crm project` of this version rebuilds them when it starts (`crm rebuild` does it now); verify after that. Nothing was compared.',
    );
    this.name = 'ReadModelsOfAnotherVersion';
  }
}

/**
 * A live projection's checkpoint went back while the check replayed (it was reset or rebuilt from an
 * earlier position): the replay is past what the live tables now hold, so they cannot be compared.
 */
export class ReadModelsMovedBack extends Error {
  constructor(readonly projections: string[]) {
    super(
      `The live read models of ${projections.join(', ')} went back to an earlier position during the check (reset or rebuilt meanwhile); run the check again.`,
    );
    this.name = 'ReadModelsMovedBack';
  }
}

const checkpointsExist = async (db: QueryExecutorProvider, schema: string): Promise<boolean> => {
  const { rows } = await sql<{ found: boolean }>`SELECT EXISTS (SELECT 1 FROM information_schema.tables
    WHERE table_schema = ${schema} AND table_name = ${CHECKPOINT_TABLE}) AS found`.execute(db);
  return rows[0]?.found === true;
};

async function prepareShadow(db: Kysely<unknown>, schema: string, projections: readonly Projection[]): Promise<void> {
  await migrateCheckpoints(db, schema);
  for (const projection of projections) {
    await projection.migrate(db, schema);
    await ensureCheckpoint(db, schema, projection);
  }
}

/** Brings each projection in the shadow schema up to `targets` (one catch-up per distinct position). */
async function replayTo(
  deps: AuditDeps,
  shadow: string,
  projections: readonly Projection[],
  targets: Map<string, bigint>,
  onEvents: (events: number, total: number | null) => void,
  signal?: AbortSignal,
): Promise<{ events: number }> {
  const codec = personalDataCodec(deps.personalData);
  const byPosition = new Map<bigint, Projection[]>();
  for (const projection of projections) {
    const target = targets.get(projection.name) ?? 0n;
    if (target > 0n) byPosition.set(target, [...(byPosition.get(target) ?? []), projection]);
  }
  // Each group reads the feed from its own start: the total is the sum, counted before any is replayed.
  let total: number | null = 0;
  for (const [untilPosition, group] of byPosition) {
    const count = await eventsToCatchUp({ db: deps.database.db, store: deps.store, schema: shadow, projections: group, untilPosition });
    total = total === null || count === null ? null : total + count;
  }
  let events = 0;
  for (const [untilPosition, group] of byPosition) {
    const before = events;
    const result = await catchUp({
      db: deps.database.db,
      store: deps.store,
      schema: shadow,
      projections: group,
      codec,
      untilPosition,
      onProgress: (progress) => onEvents(before + progress.events, total),
      ...(signal ? { signal } : {}),
    });
    events += result.events;
  }
  return { events };
}

/**
 * Where the shadow's projections stopped: a replay that failed marks its checkpoint as a live
 * projection's is marked, with the event's position, stream, id and error. The revision is read back
 * from the store, by position.
 */
async function replayFailuresIn(deps: AuditDeps, shadow: string, projections: readonly Projection[]): Promise<ReplayFailure[]> {
  const checkpoints = await readCheckpoints(deps.database.db, shadow);
  const revisions = new Map<bigint, number | null>();
  const failures: ReplayFailure[] = [];
  for (const projection of projections) {
    const checkpoint = checkpoints.get(projection.name);
    if (checkpoint?.state !== 'failed') continue;
    const position = checkpoint.failedPosition;
    if (position !== null && !revisions.has(position)) {
      const [event] = await deps.store.readAll({ fromPosition: position - 1n, maxCount: 1, settleMs: 0 });
      revisions.set(position, event?.position === position ? event.revision : null);
    }
    failures.push({
      projection: projection.name,
      tables: [...projection.tables],
      position,
      stream: checkpoint.failedStream,
      revision: position === null ? null : (revisions.get(position) ?? null),
      eventId: checkpoint.failedEventId,
      error: checkpoint.lastError ?? 'unknown error',
    });
  }
  return failures;
}

const livePositions = async (db: QueryExecutorProvider, schema: string, projections: readonly Projection[]) => {
  const checkpoints = await readCheckpoints(db, schema);
  return {
    positions: new Map(projections.map((p) => [p.name, checkpoints.get(p.name)?.position ?? 0n])),
    failed: projections.filter((p) => checkpoints.get(p.name)?.state === 'failed').map((p) => p.name),
  };
};

/**
 * The replay's targets: each live checkpoint, but none past the store's last event. A projection
 * only ever applies final events and the head is the last final one, so a checkpoint above a head
 * read after it names events that are not there. Replaying up to it waited 30 s for them and ended
 * with "a transaction that wrote events is still open"; it is recorded in `ahead` instead.
 */
async function targetsWithin(deps: AuditDeps, positions: Map<string, bigint>, ahead: Map<string, CheckpointAhead>): Promise<Map<string, bigint>> {
  const head = await deps.store.headPosition();
  const targets = new Map<string, bigint>();
  for (const [projection, position] of positions) {
    if (position > head && !ahead.has(projection)) ahead.set(projection, { projection, position, head });
    targets.set(projection, position > head ? head : position);
  }
  return targets;
}

const samePositions = (a: Map<string, bigint>, b: Map<string, bigint>): boolean =>
  a.size === b.size && [...a].every(([name, position]) => b.get(name) === position);

async function compareAll(
  live: { db: QueryExecutorProvider; schema: string },
  replayed: { db: QueryExecutorProvider; schema: string },
  projections: readonly Projection[],
  replayFailures: readonly ReplayFailure[],
  onProgress: (done: number, total: number) => void,
): Promise<TableComparison[]> {
  // A replay that stopped holds a part of the history: its rows would all read as differences.
  const incomplete = new Set(replayFailures.flatMap((f) => f.tables));
  const tables = [...new Set(projections.flatMap((p) => p.tables))].filter((table) => !incomplete.has(table));
  const results: TableComparison[] = [];
  for (const table of tables) {
    results.push(await compareTable(live, replayed, table));
    onProgress(results.length, tables.length);
  }
  return results;
}

export async function verifyReadModels(deps: AuditDeps, options: VerifyOptions): Promise<ReadModelVerification> {
  const started = performance.now();
  const { projections } = options;
  const db = deps.database.db;
  const readSchema = deps.schemas.read;
  const shadow = newShadowName(readSchema, 'verify');
  const progress = options.onProgress ?? (() => undefined);
  // A replay after the first goes on from the events replayed before it, its total too.
  const onEvents = (before: number) => (events: number, total: number | null) =>
    progress({ phase: 'replay', done: before + events, total: total === null ? null : before + total });
  // Checked first: reading the live checkpoints would otherwise fail with a bare "relation does not exist".
  if (!(await checkpointsExist(db, readSchema))) throw new ReadModelsNotBuilt(readSchema);
  const checkpoints = await readCheckpoints(db, readSchema);
  const otherVersions = projections.filter((p) => (checkpoints.get(p.name)?.version ?? p.version) !== p.version);
  if (otherVersions.length > 0)
    throw new ReadModelsOfAnotherVersion(otherVersions.map((p) => ({ name: p.name, built: checkpoints.get(p.name)!.version, here: p.version })));
  const head = await deps.store.headPosition();
  // Claimed: a process killed mid-check leaves a shadow that the next one to open the read models drops.
  const dropShadow = await claimShadow(db, shadow, { sessionLock: deps.sessionLock });
  const ahead = new Map<string, CheckpointAhead>();
  try {
    await prepareShadow(db, shadow, projections);
    let events = 0;
    let failed: string[] = [];
    let replayFailures: ReplayFailure[] = [];
    let positions: Map<string, bigint>;
    let tables: TableComparison[];
    const compareProgress = (done: number, total: number) => progress({ phase: 'compare', done, total });
    if (deps.database.kind === 'postgres') {
      // The long replay runs outside any snapshot, up to where the live projections stand now. A
      // transaction held open for the whole replay kept PostgreSQL from removing old row versions in
      // every table of the database, the live ones included, for as long as it ran (12 minutes over
      // 1.1M events), and the shadow's own updates piled up as dead rows: the replay fell from 4,400
      // to 1,200 events/s as it went.
      const before = await livePositions(db, readSchema, projections);
      const first = await replayTo(deps, shadow, projections, await targetsWithin(deps, before.positions, ahead), onEvents(0), options.signal);
      // Then one pooled connection holds the live snapshot while the shadow catches up with what the
      // live projections applied meanwhile (a short stretch) and both are compared.
      ({ positions, tables, events, failed, replayFailures } = await db.connection().execute(async (connection) => {
        await sql`BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY`.execute(connection);
        try {
          const live = await livePositions(connection, readSchema, projections);
          const behind = projections.filter((p) => live.positions.get(p.name)! < before.positions.get(p.name)!).map((p) => p.name);
          if (behind.length > 0) throw new ReadModelsMovedBack(behind);
          const rest = await replayTo(deps, shadow, projections, await targetsWithin(deps, live.positions, ahead), onEvents(first.events), options.signal);
          const stopped = await replayFailuresIn(deps, shadow, projections);
          // The shadow side on a connection of its own too: the comparison reads each side through a cursor (compare-tables.ts).
          const compared = await db
            .connection()
            .execute((shadowSide) =>
              compareAll({ db: connection, schema: readSchema }, { db: shadowSide, schema: shadow }, projections, stopped, compareProgress),
            );
          return { positions: live.positions, tables: compared, events: first.events + rest.events, failed: live.failed, replayFailures: stopped };
        } finally {
          await sql`COMMIT`.execute(connection);
        }
      }));
    } else {
      let live = await livePositions(db, readSchema, projections);
      const done = new Map(projections.map((p) => [p.name, 0n]));
      for (let attempt = 0; ; attempt++) {
        // Catching up from where the shadow stands: only the new events are replayed.
        const replay = await replayTo(deps, shadow, projections, await targetsWithin(deps, live.positions, ahead), onEvents(events), options.signal);
        events += replay.events;
        for (const [name, position] of live.positions) done.set(name, position);
        replayFailures = await replayFailuresIn(deps, shadow, projections);
        // PGlite's one session serves both sides (and their cursors).
        tables = await compareAll({ db, schema: readSchema }, { db, schema: shadow }, projections, replayFailures, compareProgress);
        const after = await livePositions(db, readSchema, projections);
        failed = after.failed;
        positions = live.positions;
        if (samePositions(after.positions, live.positions) || attempt >= 4) break;
        live = after;
      }
    }
    const skipped = [
      ...(
        await readSkips(
          deps.store,
          projections.map((p) => p.name),
        )
      ).values(),
    ]
      .flat()
      .filter((skip) => skip.position <= (positions.get(skip.projection) ?? 0n));
    const differences = tables.reduce((n, t) => n + t.differences, 0);
    const firstDifference = tables.flatMap((t) => t.sample)[0];
    const unmatchedMerges = eventsInSql(deps) ? await unmatchedMergesSql(deps) : null;
    const farMerges = eventsInSql(deps) ? await farMergesSql(deps) : null;
    return {
      ok: differences === 0 && ahead.size === 0 && replayFailures.length === 0 && (unmatchedMerges ?? []).length === 0 && (farMerges ?? []).length === 0,
      events,
      positions: Object.fromEntries(positions),
      head,
      tables,
      differences,
      ...(firstDifference ? { firstDifference } : {}),
      failedProjections: failed,
      replayFailures,
      checkpointsAhead: [...ahead.values()],
      skipped,
      unmatchedMerges,
      farMerges,
      durationMs: Math.round(performance.now() - started),
    };
  } finally {
    await dropShadow();
  }
}
