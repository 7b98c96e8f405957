import type { Kysely, QueryExecutorProvider, Transaction } from 'kysely';
import type { EventFilter, RecordedEvent } from '../eventstore/contract.ts';
import {
  builtOtherwise,
  markFailed,
  moveCheckpoints,
  readCheckpointForBatch,
  readCheckpoints,
  readCheckpointsForBatch,
  skipAhead,
  type Checkpoint,
  type CheckpointMove,
  type Lag,
} from './checkpoints.ts';
import { CheckpointMoved, describeError, isTransient, PoisonEvent } from './errors.ts';
import { LeaseLost } from './leases.ts';
import { createBackoff, pause } from '../eventstore/backoff.ts';
import { ioTurns } from '../shared/io-turns.ts';
import type { ProjectedEvent, Projection } from './projection.ts';

/** How projections get from stored events to `ProjectedEvent`s: decryption, upcasting, validation. */
export interface EventCodec {
  decode(recorded: RecordedEvent): Promise<ProjectedEvent>;
  /** Drop a forgotten customer's cached key before later events are decoded. */
  evict(customerId: string): void;
  /**
   * Optional: fetch in bulk what decoding these events will need (the customers' keys), so that
   * `decode` makes no round trip of its own. Called before each run of events between two forgets.
   */
  preload?(events: RecordedEvent[]): Promise<void>;
}

/** One event of a batch: decoded once, shared by every projection. */
export interface BatchItem {
  recorded: RecordedEvent;
  projected?: ProjectedEvent;
  decodeError?: unknown;
}

export const matchesFilter = (filter: EventFilter | undefined, event: { stream: string; type: string }): boolean => {
  if (!filter) return true;
  if (filter.streamPrefixes && !filter.streamPrefixes.some((p) => event.stream.startsWith(p))) return false;
  if (filter.eventTypes && !filter.eventTypes.includes(event.type)) return false;
  return true;
};

/** Decodes run this many at a time: key lookups of uncached customers are round trips. */
const DECODE_CONCURRENCY = 32;

/**
 * Decodes a batch. A `CustomerForgotten` evicts that customer's key before any later event is
 * decoded, so nothing after the forget is decrypted from a cached key: events between two forgets
 * are decoded concurrently, a forget and what follows it only after. Events no projection wants are
 * not decoded at all.
 */
export async function decodeBatch(codec: EventCodec, events: RecordedEvent[], wanted: (e: RecordedEvent) => boolean): Promise<BatchItem[]> {
  const items: BatchItem[] = events.map((recorded) => ({ recorded }));
  const decodeOne = async (item: BatchItem) => {
    try {
      item.projected = await codec.decode(item.recorded);
    } catch (decodeError) {
      if (isTransient(decodeError)) throw decodeError;
      item.decodeError = decodeError;
    }
  };
  let segment: BatchItem[] = [];
  // Thousands of events in a catch-up: requests are answered between them (shared/io-turns.ts).
  const turns = ioTurns();
  const flush = async () => {
    if (segment.length > 0) await codec.preload?.(segment.map((i) => i.recorded));
    for (let i = 0; i < segment.length; i += DECODE_CONCURRENCY) {
      if (turns.due()) await turns.give();
      await Promise.all(segment.slice(i, i + DECODE_CONCURRENCY).map(decodeOne));
    }
    segment = [];
  };
  for (const item of items) {
    if (!wanted(item.recorded)) continue;
    if (item.recorded.type === 'CustomerForgotten') {
      await flush();
      await decodeOne(item);
      if (item.projected?.event.type === 'CustomerForgotten') codec.evict(item.projected.event.data.customerId);
    } else {
      segment.push(item);
    }
  }
  await flush();
  return items;
}

export type ApplyOutcome =
  | { kind: 'applied'; position: bigint }
  /** The checkpoint row says the projection is not running here (failed or stopped elsewhere). */
  | { kind: 'skipped'; position: bigint; state: string }
  /** Its read model was built by another version of the projection (`builtOtherwise`): this code writes nothing to it. */
  | { kind: 'superseded'; position: bigint; built: Pick<Checkpoint, 'version' | 'variant'> }
  | { kind: 'poison'; position: bigint; failure: PoisonEvent };

/**
 * Id of the batch's event at `position`, where a checkpoint moving there records it; null when the
 * batch does not hold it (a batch ended by the feed's caught-up mark). Searched from the end, where a
 * batch's end event is.
 */
export const eventIdAt = (items: readonly BatchItem[], position: bigint): string | null => {
  for (let i = items.length - 1; i >= 0; i--) {
    const recorded = items[i]!.recorded;
    if (recorded.position === position) return recorded.id;
    if (recorded.position < position) return null;
  }
  return null;
};

/** The move of a checkpoint a batch applied to `position`: it keeps its event when it stays where it is. */
const moveTo = (projection: Projection, checkpoint: Checkpoint, items: readonly BatchItem[], position: bigint): CheckpointMove => ({
  projection,
  from: checkpoint.position,
  to: position,
  eventId: position === checkpoint.position ? checkpoint.eventId : eventIdAt(items, position),
});

const present = (checkpoint: Checkpoint | undefined, projection: Projection, schema: string): Checkpoint => {
  if (!checkpoint) throw new Error(`Projection ${projection.name} has no checkpoint in ${schema}`);
  return checkpoint;
};

/**
 * The batch's events after the projection's checkpoint, applied inside the caller's transaction: the
 * position its checkpoint moves to, `skipped` for a failed or stopped projection, or `superseded`. The checkpoint
 * itself is moved by the caller, with its lease check, just before the commit.
 */
async function applyAfter(
  trx: Transaction<unknown>,
  schema: string,
  projection: Projection,
  checkpoint: Checkpoint,
  items: BatchItem[],
  endPosition: bigint,
): Promise<Exclude<ApplyOutcome, { kind: 'poison' }>> {
  if (checkpoint.state === 'failed' || checkpoint.state === 'stopped') {
    return { kind: 'skipped', position: checkpoint.position, state: checkpoint.state };
  }
  // A newer version rebuilt and swapped this read model in while this process ran on (or an older
  // `crm rebuild` did): its rows are no longer this code's to write.
  if (builtOtherwise(checkpoint, projection)) return { kind: 'superseded', position: checkpoint.position, built: checkpoint };
  const fresh = items.filter((i) => i.recorded.position > checkpoint.position && matchesFilter(projection.filter, i.recorded));
  const undecodable = fresh.find((i) => !i.projected);
  if (undecodable) throw new BatchItemError(undecodable, undecodable.decodeError);
  if (fresh.length > 0)
    await projection.apply(
      { trx, schema },
      fresh.map((i) => i.projected!),
    );
  return { kind: 'applied', position: endPosition > checkpoint.position ? endPosition : checkpoint.position };
}

/**
 * Applies a batch to one projection and advances its checkpoint to `endPosition`, in ONE transaction
 * (invariant 5). Events at or below the stored checkpoint are dropped, so a batch seen twice (restart,
 * a second worker, a swap by rebuild) is never applied twice.
 */
async function applyOnce(db: Kysely<unknown>, schema: string, projection: Projection, items: BatchItem[], endPosition: bigint, lag: Lag, fence?: Fence) {
  return db.transaction().execute(async (trx): Promise<ApplyOutcome> => {
    const checkpoint = present(await readCheckpointForBatch(trx, schema, projection.name), projection, schema);
    const outcome = await applyAfter(trx, schema, projection, checkpoint, items, endPosition);
    if (outcome.kind !== 'applied') return outcome;
    const position = outcome.position;
    // Last, so the lease row stays locked only from here to the commit (projections/leases.ts).
    await fence?.(trx);
    // The commit does not wait for fsync: readCheckpointForBatch set synchronous_commit off for this transaction.
    if (!(await moveCheckpoints(trx, schema, [moveTo(projection, checkpoint, items, position)], lag))) throw new CheckpointMoved(projection.name);
    return { kind: 'applied', position };
  });
}

/** `applyTogether` found a projection of the batch whose lease this worker no longer holds: nothing was committed. */
export class SharedBatchFenced extends Error {
  constructor(readonly projection: string) {
    super(`The lease of projection ${projection} is no longer held; the shared batch was rolled back`);
    this.name = 'SharedBatchFenced';
  }
}

export interface SharedBatchResult {
  outcomes: Map<string, ApplyOutcome>;
  /** Of the `idle` projections, those whose checkpoint moved to the end of the batch (the lease ones still held). */
  movedIdle: string[];
}

/**
 * Applies a batch to several projections in ONE transaction: one begin, one checkpoint read, one
 * lease check and one checkpoint update for all of them instead of one each. Each projection's rows
 * still commit with its own checkpoint (invariant 5), each checkpoint is still moved only from the
 * position the batch read (a batch seen twice is never applied twice), and each lease is still
 * checked before the commit. `idle` projections (nothing to apply) only move their checkpoints.
 *
 * All or nothing: any failure (a poison event, a lost lease, a moved checkpoint, the database) rolls
 * back every projection, and the caller applies the batch again one projection at a time with
 * `applyBatch`, which isolates the failure to the projection it belongs to.
 */
export async function applyTogether(
  db: Kysely<unknown>,
  schema: string,
  projections: readonly Projection[],
  idle: readonly Projection[],
  items: BatchItem[],
  endPosition: bigint,
  lag: Lag,
  fence?: (trx: QueryExecutorProvider, names: readonly string[]) => Promise<string[]>,
  /** Set to the projection being applied, so that a failure can be told to its projection. */
  progress: { current?: string } = {},
): Promise<SharedBatchResult> {
  return db.transaction().execute(async (trx): Promise<SharedBatchResult> => {
    // Sets synchronous_commit off for this transaction, as readCheckpointForBatch does.
    const checkpoints = await readCheckpointsForBatch(
      trx,
      schema,
      [...projections, ...idle].map((p) => p.name),
    );
    const outcomes = new Map<string, ApplyOutcome>();
    const moves: CheckpointMove[] = [];
    for (const projection of projections) {
      progress.current = projection.name;
      const checkpoint = present(checkpoints.get(projection.name), projection, schema);
      const outcome = await applyAfter(trx, schema, projection, checkpoint, items, endPosition);
      outcomes.set(projection.name, outcome);
      if (outcome.kind === 'applied') moves.push(moveTo(projection, checkpoint, items, outcome.position));
    }
    progress.current = undefined;
    let movedIdle = [...idle];
    if (fence) {
      // Last, so the lease rows stay locked only from here to the commit (projections/leases.ts).
      const held = new Set(
        await fence(
          trx,
          [...moves.map((m) => m.projection), ...idle].map((p) => p.name),
        ),
      );
      const lost = moves.find((m) => !held.has(m.projection.name));
      if (lost) throw new SharedBatchFenced(lost.projection.name);
      movedIdle = idle.filter((p) => held.has(p.name));
    }
    if (!(await moveCheckpoints(trx, schema, moves, lag))) throw new CheckpointMoved(moves.map((m) => m.projection.name).join(', '));
    await skipAhead(trx, schema, movedIdle, { position: endPosition, eventId: eventIdAt(items, endPosition) }, lag);
    return { outcomes, movedIdle: movedIdle.map((p) => p.name) };
  });
}

class BatchItemError extends Error {
  constructor(
    readonly item: BatchItem,
    override readonly cause: unknown,
  ) {
    super(describeError(cause));
  }
}

/** Throws `LeaseLost` inside the batch transaction when this worker may no longer commit for the projection. */
type Fence = (trx: QueryExecutorProvider) => Promise<void>;

export interface ApplyOptions {
  /** Scale-out: checked inside the transaction before the checkpoint moves. */
  fence?: Fence;
  /** Called before each retry of a transient failure; return false to give up (the runner is stopping). */
  shouldRetry?: () => boolean;
  onTransientError?: (error: unknown) => void;
}

/**
 * Applies a batch, retrying transient failures. When the batch itself fails, the events are applied one
 * at a time to find the poison event: everything before it is committed, the projection is marked
 * failed with the event and the error, and the others carry on.
 */
export async function applyBatch(
  db: Kysely<unknown>,
  schema: string,
  projection: Projection,
  items: BatchItem[],
  endPosition: bigint,
  lag: Lag,
  options: ApplyOptions = {},
): Promise<ApplyOutcome> {
  const backoff = createBackoff({ initialMs: 100 });
  let movedRetries = 0;
  for (;;) {
    try {
      return await applyOnce(db, schema, projection, items, endPosition, lag, options.fence);
    } catch (error) {
      // Rolled back: another worker holds the projection now. Neither retried nor a poison event.
      if (error instanceof LeaseLost) throw error;
      // Another worker or a rebuild's swap moved the checkpoint: re-read it and go again at once.
      if (error instanceof CheckpointMoved && movedRetries++ < 100) continue;
      if (isTransient(error)) {
        options.onTransientError?.(error);
        if (options.shouldRetry && !options.shouldRetry()) throw error;
        await pause(backoff.next());
        continue;
      }
      return isolatePoison(db, schema, projection, items, endPosition, lag, error, options);
    }
  }
}

async function isolatePoison(
  db: Kysely<unknown>,
  schema: string,
  projection: Projection,
  items: BatchItem[],
  endPosition: bigint,
  lag: Lag,
  batchError: unknown,
  options: ApplyOptions,
): Promise<ApplyOutcome> {
  const relevant = items.filter((i) => matchesFilter(projection.filter, i.recorded));
  if (relevant.length > 1) {
    for (const item of relevant) {
      const outcome = await applyBatch(db, schema, projection, [item], item.recorded.position, lag, options);
      if (outcome.kind !== 'applied') return outcome;
    }
    // Every event applied on its own: the failure was in the batch as a whole; finish the range (the
    // items again, all applied now, for the id of the event at its end).
    return applyBatch(db, schema, projection, items, endPosition, lag, options);
  }
  const item = relevant[0] ?? items[items.length - 1];
  const cause = batchError instanceof BatchItemError ? batchError.cause : batchError;
  const eventId = item?.recorded.id ?? 'unknown';
  const failedAt = item?.recorded.position ?? endPosition;
  const failure = new PoisonEvent(projection.name, eventId, failedAt, cause);
  const mark = { error: describeError(cause), eventId, position: failedAt, stream: item?.recorded.stream ?? null };
  if (options.fence) {
    // A worker that lost the lease meanwhile leaves the projection to its new holder (LeaseLost).
    await db.transaction().execute(async (trx) => {
      await options.fence!(trx);
      await markFailed(trx, schema, projection.name, mark);
    });
  } else await markFailed(db, schema, projection.name, mark);
  const position = (await readCheckpoints(db, schema)).get(projection.name)?.position ?? 0n;
  return { kind: 'poison', position, failure };
}
