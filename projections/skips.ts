import { sql, type QueryExecutorProvider } from 'kysely';
import type { EventStore } from '../eventstore/contract.ts';
import { CHECKPOINT_TABLE, clearFailure, readCheckpoints, type Checkpoint } from './checkpoints.ts';

/**
 * What an operator does about a projection stopped on a poison event (`crm projections retry|skip`).
 *
 * A skip is a recorded fact, not a silent edit: a `ProjectionEventSkipped` event in the system stream
 * `projection-<name>` (no projection reads those streams) says which event, why, and who decided.
 * Every replay of that projection (rebuild, `crm replay`, the auditor's verification) skips the same
 * events, so the read models still equal a replay and the verification names the gap.
 */
export const SKIP_EVENT_TYPE = 'ProjectionEventSkipped';

export const skipStream = (projection: string): string => `projection-${projection}`;

export interface ProjectionSkip {
  projection: string;
  position: bigint;
  /** The event skipped: its id and stream, and the error the projection stopped with. */
  eventId: string | null;
  stream: string | null;
  error: string | null;
  reason: string;
  actor: string | null;
  recordedAt: Date;
}

/** A retry or skip the checkpoint's state does not allow (the message says what to do). */
export class ProjectionOperationRefused extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ProjectionOperationRefused';
  }
}

/** The skips recorded for these projections, by projection. */
export async function readSkips(store: EventStore, projections: readonly string[]): Promise<Map<string, ProjectionSkip[]>> {
  const result = new Map<string, ProjectionSkip[]>();
  for (const projection of projections) {
    const events = await store.readStream(skipStream(projection));
    const skips = events
      .filter((e) => e.type === SKIP_EVENT_TYPE)
      .map((e): ProjectionSkip => {
        const data = e.data as Record<string, unknown>;
        const actor = (e.metadata.actor as { userId?: unknown } | undefined)?.userId;
        return {
          projection,
          position: BigInt(String(data.position)),
          eventId: typeof data.eventId === 'string' ? data.eventId : null,
          stream: typeof data.stream === 'string' ? data.stream : null,
          error: typeof data.error === 'string' ? data.error : null,
          reason: typeof data.reason === 'string' ? data.reason : '',
          actor: typeof actor === 'string' ? actor : null,
          recordedAt: e.recordedAt,
        };
      });
    if (skips.length > 0) result.set(projection, skips);
  }
  return result;
}

const failedCheckpoint = async (db: QueryExecutorProvider, schema: string, name: string): Promise<Checkpoint> => {
  const checkpoint = (await readCheckpoints(db, schema)).get(name);
  if (!checkpoint) {
    throw new ProjectionOperationRefused(
      `Projection "${name}" has no checkpoint: it has not run yet, or there is no such projection (crm projections list names them).`,
    );
  }
  if (checkpoint.state !== 'failed') {
    throw new ProjectionOperationRefused(`Projection ${name} is ${checkpoint.state}, not failed: there is nothing to retry or skip.`);
  }
  return checkpoint;
};

/** Runs the projection again from its checkpoint: the poison event is retried (after a fix of code or data). */
export async function retryProjection(db: QueryExecutorProvider, schema: string, name: string): Promise<Checkpoint> {
  const checkpoint = await failedCheckpoint(db, schema, name);
  await clearFailure(db, schema, name);
  return checkpoint;
}

export interface SkipRequest {
  db: QueryExecutorProvider;
  schema: string;
  store: EventStore;
  projection: string;
  /** Must be the position the projection failed at: the operator names the event they skip. */
  position: bigint;
  reason: string;
  actor: { userId: string; roles: string[] };
  /** Id of the audit event: derived from projection and position by the caller, so a rerun appends it once. */
  eventId: string;
  correlationId: string;
}

/** Records the skip as an audit fact, then moves the checkpoint past the event and runs the projection again. */
export async function skipPoisonEvent(request: SkipRequest): Promise<ProjectionSkip> {
  const { db, schema, projection, position } = request;
  const checkpoint = await failedCheckpoint(db, schema, projection);
  if (checkpoint.failedPosition !== position) {
    throw new ProjectionOperationRefused(
      `Projection ${projection} failed at position ${checkpoint.failedPosition ?? 'unknown'}, not ${position}: ` +
        'name the position shown by `crm projections list` (or /ready).',
    );
  }
  const occurredAt = new Date().toISOString();
  const data = {
    projection,
    position: position.toString(),
    eventId: checkpoint.failedEventId,
    stream: checkpoint.failedStream,
    error: checkpoint.lastError,
    reason: request.reason,
  };
  await request.store.appendToStream(skipStream(projection), [
    {
      id: request.eventId,
      type: SKIP_EVENT_TYPE,
      data,
      metadata: {
        actor: request.actor,
        correlationId: request.correlationId,
        causationId: checkpoint.failedEventId,
        occurredAt,
        schemaVersion: 1,
        command: 'SkipPoisonEvent',
        reason: request.reason,
      },
    },
  ]);
  // Only the failure the operator named: a projection retried and failed elsewhere meanwhile stays failed.
  await sql`UPDATE ${sql.id(schema, CHECKPOINT_TABLE)}
    SET position = GREATEST(position, ${position.toString()}::bigint),
        event_id = CASE WHEN position < ${position.toString()}::bigint THEN failed_event_id ELSE event_id END, state = 'running', last_error = NULL,
        failed_event_id = NULL, failed_position = NULL, failed_stream = NULL, updated_at = now()
    WHERE name = ${projection} AND state = 'failed' AND failed_position = ${position.toString()}::bigint`.execute(db);
  return {
    projection,
    position,
    eventId: checkpoint.failedEventId,
    stream: checkpoint.failedStream,
    error: checkpoint.lastError,
    reason: request.reason,
    actor: request.actor.userId,
    recordedAt: new Date(occurredAt),
  };
}
