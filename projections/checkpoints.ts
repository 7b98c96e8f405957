import { sql, type Kysely, type QueryExecutorProvider } from 'kysely';
import type { Projection } from './projection.ts';
import type { Bigint } from './read-models/common.ts';
import { ensureSchema } from '../shared/sql.ts';
import type { EventStore } from '../eventstore/contract.ts';

/** Where each projection stands: the checkpoint (committed with its read-model changes) and its health. */
export type ProjectionState = 'running' | 'stopped' | 'failed' | 'rebuilding';

export interface Checkpoint {
  name: string;
  version: number;
  /** Projection.variant as the read model was built (null: built before variants were recorded). */
  variant: string | null;
  position: bigint;
  state: ProjectionState;
  eventsBehind: number;
  secondsBehind: number;
  lastError: string | null;
  failedEventId: string | null;
  failedPosition: bigint | null;
  /** Stream of the event it failed on. */
  failedStream: string | null;
  updatedAt: Date;
  /**
   * Id of the event at `position`, the last one the read model took in: the checkpoint names its
   * event, so that a store restored beside newer read models is noticed (`checkpointsOffTheStore`).
   * Null at 0, and where not recorded (a checkpoint that has not moved since the column was added, a
   * batch ended by the feed's caught-up mark): checked by position only.
   */
  eventId: string | null;
}

export const CHECKPOINT_TABLE = 'projection_checkpoints';

export async function migrateCheckpoints(db: QueryExecutorProvider, schema: string): Promise<void> {
  await ensureSchema(db, schema);
  await sql`CREATE TABLE IF NOT EXISTS ${sql.id(schema, CHECKPOINT_TABLE)} (
    name text PRIMARY KEY,
    version integer NOT NULL,
    position bigint NOT NULL DEFAULT 0,
    state text NOT NULL DEFAULT 'running' CHECK (state IN ('running', 'stopped', 'failed', 'rebuilding')),
    events_behind bigint NOT NULL DEFAULT 0,
    seconds_behind double precision NOT NULL DEFAULT 0,
    last_error text,
    failed_event_id text,
    failed_position bigint,
    updated_at timestamptz NOT NULL DEFAULT now(),
    failed_stream text
  )`.execute(db);
  // Tables made before the columns existed. Checked first: ALTER TABLE would wait for running batches.
  const { rows } = await sql<{ column_name: string }>`SELECT column_name FROM information_schema.columns
    WHERE table_schema = ${schema} AND table_name = ${CHECKPOINT_TABLE} AND column_name IN ('failed_stream', 'variant', 'event_id')`.execute(db);
  for (const column of ['failed_stream', 'variant', 'event_id'])
    if (!rows.some((r) => r.column_name === column))
      await sql`ALTER TABLE ${sql.id(schema, CHECKPOINT_TABLE)} ADD COLUMN IF NOT EXISTS ${sql.id(column)} text`.execute(db);
}

/** A `projection_checkpoints` row as the driver returns it (bigint: pg's text, PGlite's number). */
export type CheckpointRow = {
  name: string;
  version: number;
  position: Bigint;
  state: ProjectionState;
  events_behind: Bigint;
  seconds_behind: number;
  last_error: string | null;
  failed_event_id: string | null;
  failed_position: Bigint | null;
  /** A Date from pg; the text PGlite may give is parsed too. */
  updated_at: Date | string;
  failed_stream: string | null;
  variant: string | null;
  event_id: string | null;
};

const toCheckpoint = (r: CheckpointRow): Checkpoint => ({
  name: r.name,
  version: Number(r.version),
  variant: r.variant ?? null,
  position: BigInt(r.position),
  state: r.state,
  eventsBehind: Number(r.events_behind),
  secondsBehind: Number(r.seconds_behind),
  lastError: r.last_error ?? null,
  failedEventId: r.failed_event_id ?? null,
  failedPosition: r.failed_position === null || r.failed_position === undefined ? null : BigInt(r.failed_position),
  failedStream: r.failed_stream ?? null,
  updatedAt: r.updated_at instanceof Date ? r.updated_at : new Date(r.updated_at),
  eventId: r.event_id ?? null,
});

export async function readCheckpoints(db: QueryExecutorProvider, schema: string): Promise<Map<string, Checkpoint>> {
  const { rows } = await sql<CheckpointRow>`SELECT * FROM ${sql.id(schema, CHECKPOINT_TABLE)} ORDER BY name`.execute(db);
  return new Map(rows.map((r) => [r.name, toCheckpoint(r)]));
}

/**
 * Registers a projection at position 0 unless it already has a checkpoint; records its variant where
 * the checkpoint was made before variants were, taking the read model as built with the variant it
 * runs with now. That holds for the analytics, the first projection with a variant, only because its
 * version changed with it (8: rebuilt on upgrade); a projection given a variant later needs the same.
 */
export async function ensureCheckpoint(db: QueryExecutorProvider, schema: string, projection: Projection): Promise<void> {
  const table = sql.id(schema, CHECKPOINT_TABLE);
  await sql`INSERT INTO ${table} AS c (name, version, variant) VALUES (${projection.name}, ${projection.version}, ${projection.variant ?? null})
    ON CONFLICT (name) DO UPDATE SET variant = EXCLUDED.variant WHERE c.variant IS NULL AND EXCLUDED.variant IS NOT NULL`.execute(db);
}

/** Whether the read model was built by another version of the projection, or for another variant of it. */
export const builtOtherwise = (checkpoint: Pick<Checkpoint, 'version' | 'variant'> | undefined, projection: Builder): boolean =>
  checkpoint !== undefined &&
  (checkpoint.version !== projection.version || (checkpoint.variant !== null && checkpoint.variant !== (projection.variant ?? null)));

/**
 * Whether a running process must stop writing the read model: another version built it. Not while it
 * is rebuilt: a process being upgraded rebuilds its own projections from the older version's tables.
 */
export const supersedes = (checkpoint: Pick<Checkpoint, 'version' | 'variant'> & { state: string }, projection: Builder): boolean =>
  checkpoint.state !== 'rebuilding' && builtOtherwise(checkpoint, projection);

/**
 * Of `supersedes`: the read model was built by an older version of the projection. To a process that has
 * not started its projections (an API replica with CRM_PROJECTIONS=off, a worker before its start) it is
 * not superseded but awaiting its rebuild by this version, which a process of it does at its start; once a
 * process has started, one built by an older version was rebuilt under it (an older `crm rebuild`).
 */
export const awaitsRebuild = (checkpoint: Pick<Checkpoint, 'version'>, projection: Builder): boolean => checkpoint.version < projection.version;

/** What `awaitsRebuild` means for the operator. */
export const awaitingRebuildBecause = (checkpoint: Pick<Checkpoint, 'version'>, projection: Builder): string =>
  `its read model was built by version ${checkpoint.version} of this projection and awaits its rebuild by version ${projection.version}, ` +
  'which this version of the CRM runs: a crm project or crm serve of this version rebuilds it at its start, the old tables serving meanwhile';

/** What `supersedes` means for the operator, and what to do. */
export const supersededBecause = (checkpoint: Pick<Checkpoint, 'version' | 'variant'>, projection: Builder): string =>
  `its read model was rebuilt by version ${checkpoint.version}${checkpoint.variant ? ` (${checkpoint.variant})` : ''} of this projection, ` +
  `and this process runs version ${projection.version}${projection.variant ? ` (${projection.variant})` : ''}: it writes nothing more to it. ` +
  'Stop this process, or run the version that built the read model here (to go back to this version on purpose: stop every other version, then crm rebuild)';

/**
 * The code that writes a projection's rows, as its checkpoint records it. A checkpoint moves only for
 * the code that built its read model: a process of another version still running after a newer one
 * rebuilt and swapped the tables in (or an older `crm rebuild`) must not write its rows into them.
 */
export type Builder = Pick<Projection, 'name' | 'version' | 'variant'>;

/** The builders as three arrays for `unnest`: the columns `name, version, variant`. */
const builderArrays = (projections: readonly Builder[]) =>
  sql`${projections.map((p) => p.name)}::text[], ${projections.map((p) => p.version)}::int[], ${projections.map((p) => p.variant ?? null)}::text[]`;
/** Not `builtOtherwise`, in SQL: the checkpoint `c` is of the read model its builder `m` built. */
const builtHere = sql`c.version = m.version AND (c.variant IS NULL OR c.variant = m.variant)`;

/** Creates the tables of `projections` and their checkpoints in `schema` (a replay, a fresh schema). */
export async function migrateProjections(db: Kysely<unknown>, schema: string, projections: readonly Projection[]): Promise<void> {
  await migrateCheckpoints(db, schema);
  for (const p of projections) {
    await p.migrate(db, schema);
    await ensureCheckpoint(db, schema, p);
  }
}

/**
 * The checkpoint as a batch transaction starts: read without a lock, so the transaction takes no
 * transaction id before its first write. The gap-free feed holds back every event committed while any
 * transaction with an id is open, so the shorter that window, the sooner everyone sees new events.
 * Same round trip: the batch commits without waiting for fsync (rows and checkpoint still commit or
 * vanish together, so a crash losing the last batches only makes the runner apply them again).
 */
export async function readCheckpointForBatch(trx: QueryExecutorProvider, schema: string, name: string): Promise<Checkpoint | undefined> {
  const { rows } = await sql<CheckpointRow>`SELECT *, set_config('synchronous_commit', 'off', true) AS async_commit
    FROM ${sql.id(schema, CHECKPOINT_TABLE)} WHERE name = ${name}`.execute(trx);
  return rows[0] ? toCheckpoint(rows[0]) : undefined;
}

/** `readCheckpointForBatch` for several projections sharing one batch transaction: one round trip for all. */
export async function readCheckpointsForBatch(trx: QueryExecutorProvider, schema: string, names: readonly string[]): Promise<Map<string, Checkpoint>> {
  const { rows } = await sql<CheckpointRow>`SELECT *, set_config('synchronous_commit', 'off', true) AS async_commit
    FROM ${sql.id(schema, CHECKPOINT_TABLE)} WHERE name = ANY(${[...names]}::text[])`.execute(trx);
  return new Map(rows.map((r) => [r.name, toCheckpoint(r)]));
}

/** What a checkpoint records of how far behind it was as it moved. */
export interface Lag {
  eventsBehind: number;
  /**
   * When the newest event of the batch was recorded (null: none). Its age is taken in the statement
   * that moves the checkpoint, on the database's clock that recorded it, not on this host's.
   */
  newestRecordedAt: Date | null;
}

/** The lag of a batch that is not part of the live feed (a rebuild, a catch-up): none recorded. */
export const NO_LAG: Lag = { eventsBehind: 0, newestRecordedAt: null };

/** The age of `recordedAt` in seconds on the database's clock (0 for none). */
const secondsSince = (recordedAt: Date | null) => sql`GREATEST(0, COALESCE(EXTRACT(EPOCH FROM clock_timestamp() - ${recordedAt}::timestamptz)::float8, 0))`;

/** A checkpoint moving from `from` to `to`, the position of the event `eventId` (null: not known). */
export interface CheckpointMove {
  projection: Builder;
  from: bigint;
  to: bigint;
  eventId: string | null;
}

/**
 * Moves each projection's checkpoint from `from` to `to` at the end of the batch transaction, in one
 * statement; false unless every one moved (another transaction moved or stopped one of them meanwhile,
 * or another version's rebuild took its read model over): the caller rolls back the whole batch and
 * reads the checkpoints again.
 */
export async function moveCheckpoints(trx: QueryExecutorProvider, schema: string, moves: readonly CheckpointMove[], lag: Lag): Promise<boolean> {
  if (moves.length === 0) return true;
  const { rows } = await sql`UPDATE ${sql.id(schema, CHECKPOINT_TABLE)} c
    SET position = m.to_position, event_id = m.event_id, events_behind = ${lag.eventsBehind}, seconds_behind = ${secondsSince(lag.newestRecordedAt)},
        updated_at = now()
    FROM unnest(${builderArrays(moves.map((m) => m.projection))}, ${moves.map((m) => m.from.toString())}::bigint[], ${moves.map((m) => m.to.toString())}::bigint[],
                ${moves.map((m) => m.eventId)}::text[])
      AS m(name, version, variant, from_position, to_position, event_id)
    WHERE c.name = m.name AND c.position = m.from_position AND c.state IN ('running', 'rebuilding') AND ${builtHere}
    RETURNING c.name`.execute(trx);
  return rows.length === moves.length;
}

/**
 * Moves running checkpoints forward over events none of their projections wanted: no read-model
 * change, so no batch transaction, one statement for all of them. Never moves a checkpoint back, nor
 * one of a read model another version built.
 */
export async function skipAhead(
  db: QueryExecutorProvider,
  schema: string,
  projections: readonly Builder[],
  to: { position: bigint; eventId: string | null },
  lag: Lag,
): Promise<void> {
  if (projections.length === 0) return;
  const position = to.position.toString();
  await sql`UPDATE ${sql.id(schema, CHECKPOINT_TABLE)} c
    SET position = GREATEST(c.position, ${position}::bigint),
        event_id = CASE WHEN c.position < ${position}::bigint THEN ${to.eventId}::text ELSE c.event_id END, events_behind = ${lag.eventsBehind},
        seconds_behind = ${secondsSince(lag.newestRecordedAt)}, updated_at = now()
    FROM unnest(${builderArrays(projections)}) AS m(name, version, variant)
    WHERE c.name = m.name AND c.state IN ('running', 'rebuilding') AND ${builtHere}`.execute(db);
}

export async function markFailed(
  db: QueryExecutorProvider,
  schema: string,
  name: string,
  failure: { error: string; eventId: string; position: bigint; stream: string | null },
): Promise<void> {
  await sql`UPDATE ${sql.id(schema, CHECKPOINT_TABLE)}
    SET state = 'failed', last_error = ${failure.error}, failed_event_id = ${failure.eventId},
        failed_position = ${failure.position.toString()}::bigint, failed_stream = ${failure.stream}, updated_at = now()
    WHERE name = ${name}`.execute(db);
}

/**
 * A live checkpoint past the store's last event: the read model says it applied events the store does
 * not hold (events cut from the end of the store, or the store restored from an older backup while the
 * read models were not, or a checkpoint edited).
 */
export interface CheckpointAhead {
  projection: string;
  /** The live checkpoint. */
  position: bigint;
  /** The store's last event when it was found past it (0 where it was not read: a checkpoint naming another event than the store's). */
  head: bigint;
}

/**
 * A live checkpoint that names an event the store does not hold: the read models took in a history
 * the store no longer has (restored from an older backup while the read models were not, or its end
 * cut, or a checkpoint edited). `past`: beyond the store's last event; `missing`: the store has events
 * after it, written since, but none at its position; `other`: another event at its position than the
 * one the projection applied there (positions handed out again, by a server whose transaction counter
 * was moved, or by another engine's store).
 */
export interface CheckpointOffTheStore extends CheckpointAhead {
  kind: 'past' | 'missing' | 'other';
}

/**
 * The checkpoints of `names` (as read now, or `read`) that name events the store does not hold. With
 * `eventIdsAt`, one index probe per distinct position: the event there must exist and be the one the
 * checkpoint recorded (by position alone where it recorded none); the head is read only when one is
 * missing, to tell past the end from a gap. Without it, against the head: read after the checkpoints,
 * as a projection only applies events already final, so a checkpoint being written meanwhile is never
 * above it.
 */
export async function checkpointsOffTheStore(
  db: QueryExecutorProvider,
  schema: string,
  store: Pick<EventStore, 'headPosition' | 'eventIdsAt'>,
  names: readonly string[],
  read?: ReadonlyMap<string, Checkpoint>,
): Promise<CheckpointOffTheStore[]> {
  const checkpoints = read ?? (await readCheckpoints(db, schema));
  const named = names.flatMap((name) => {
    const checkpoint = checkpoints.get(name);
    return checkpoint && checkpoint.position > 0n ? [checkpoint] : [];
  });
  if (named.length === 0) return [];
  const found = store.eventIdsAt ? await store.eventIdsAt([...new Set(named.map((c) => c.position))]) : undefined;
  const gone = found ? named.filter((c) => !found.has(c.position)) : named;
  const head = gone.length > 0 ? await store.headPosition() : 0n;
  return named.flatMap((c): CheckpointOffTheStore[] => {
    const at = { projection: c.name, position: c.position, head };
    if (!found) return c.position > head ? [{ ...at, kind: 'past' }] : [];
    const id = found.get(c.position);
    if (id === undefined) return [{ ...at, kind: c.position > head ? 'past' : 'missing' }];
    return c.eventId !== null && c.eventId !== id ? [{ ...at, kind: 'other' }] : [];
  });
}

/** What a checkpoint off the store means, and what to do: the read models hold what the store does not. */
export const offTheStoreBecause = (off: CheckpointOffTheStore): string => {
  const what = {
    past:
      `its checkpoint (position ${off.position}) is past the event store's last event (${off.head}): events were cut from the store, or it was restored ` +
      'from an older backup while the read models were not, and new events would be skipped.',
    missing:
      `its checkpoint (position ${off.position}) names an event the event store does not hold, though it has events after it: it was restored ` +
      'from an older backup while the read models were not, and written since; the read models hold records and changes the store does not.',
    other:
      `the event at its checkpoint's position (${off.position}) is not the one it applied there: the event store was restored from another ` +
      'point in time (or another store put in its place) while the read models were not; the read models hold records and changes the store does not.',
  }[off.kind];
  return (
    `${what} Check the hash chains against the anchors kept outside the database (crm verify --chain --anchors-file <file>), ` +
    'then rebuild the read models from the events (crm rebuild).'
  );
};

/**
 * A projection whose checkpoint names an event the store does not hold (`checkpointsOffTheStore`) fails
 * with `error`, at that position and on no event (there is none to name): a resume or a skip does not
 * fit it, a rebuild does. Only while the checkpoint is still at `found.position`: one a rebuild swapped
 * in meanwhile is left alone. Returns whether it failed it.
 */
export async function markAheadOfStore(db: QueryExecutorProvider, schema: string, found: CheckpointAhead, error: string): Promise<boolean> {
  const { rows } = await sql`UPDATE ${sql.id(schema, CHECKPOINT_TABLE)}
    SET state = 'failed', last_error = ${error}, failed_event_id = NULL, failed_position = position, failed_stream = NULL, updated_at = now()
    WHERE name = ${found.projection} AND position = ${found.position.toString()}::bigint
    RETURNING name`.execute(db);
  return rows.length > 0;
}

export async function setState(db: QueryExecutorProvider, schema: string, name: string, state: ProjectionState): Promise<void> {
  await sql`UPDATE ${sql.id(schema, CHECKPOINT_TABLE)} SET state = ${state}, updated_at = now() WHERE name = ${name}`.execute(db);
}

/** A failed projection starts again from where it stopped (after its code or data was fixed). */
export async function clearFailure(db: QueryExecutorProvider, schema: string, name: string): Promise<void> {
  await sql`UPDATE ${sql.id(schema, CHECKPOINT_TABLE)}
    SET state = 'running', last_error = NULL, failed_event_id = NULL, failed_position = NULL, failed_stream = NULL, updated_at = now()
    WHERE name = ${name}`.execute(db);
}
